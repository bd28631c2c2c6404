"""Running top-K of int64 keys in Triton register tiles, for list-major scans that keep each query's
best K rows of a list while walking it in tiles of N = G * K rows.

Sorting the whole (queries, N) tile and then its maximum with the running best costs two full
bitonic sorts of N keys per tile. Only the best K of a tile can matter, so here the tile is cut into
G groups of K, the groups are sorted alternately ascending and descending, and each adjacent pair
keeps its elementwise maximum: the maximum of an ascending and a descending sequence holds the top K
of both and is bitonic, so one bitonic merge (log K compare-exchange stages, not a sort) orders it
again. After log G such rounds one bitonic group of K is left, merged into the running best the same
way. For K = 16, N = 64: 896 key-stages per tile instead of 2 x 21 x 64 = 2688, the same K keys kept.

Descending order comes from bitwise negation (~ reverses int64 order), so every network here sorts
ascending.
"""
from __future__ import annotations

import triton
import triton.language as tl

MAX_K = 128  # _merge_rows unrolls 7 stages
MAX_GROUPS = 8


@triton.jit
def _merge_rows(x, R: tl.constexpr, K: tl.constexpr):
    """x (R, K) with bitonic rows -> each row sorted ascending (log K compare-exchange stages)."""
    for j in tl.static_range(7):
        if (K >> (j + 1)) >= 1:  # stride K / 2, K / 4, ..., 1
            h = tl.reshape(x, [R, K // (2 * (K >> (j + 1))), 2, K >> (j + 1)])
            partner = tl.sum(h, axis=2, keep_dims=True) - h  # the pair's other key (wrapping adds are exact)
            upper = tl.arange(0, 2)[None, None, :, None] == 1
            x = tl.reshape(tl.where(upper, tl.maximum(h, partner), tl.minimum(h, partner)), [R, K])
    return x


@triton.jit
def _alternate(x, R: tl.constexpr, K: tl.constexpr, SORT: tl.constexpr):
    """Rows of x (R, K) sorted ascending at even rows, descending at odd ones: SORT a full sort of rows
    in any order, else a bitonic merge of bitonic rows."""
    odd = (tl.arange(0, R) % 2 == 1)[:, None]
    x = tl.where(odd, ~x, x)
    if SORT:
        x = tl.sort(x, dim=1)
    else:
        x = _merge_rows(x, R, K)
    return tl.where(odd, ~x, x)


@triton.jit
def merge_top(best, keys, BQ: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    """best (BQ, K) sorted descending, keys (BQ, N) in any order, N = G * K with G in 1, 2, 4, 8 ->
    the K largest of each row's best and keys, sorted descending."""
    G: tl.constexpr = N // K
    if G == 1:
        t = tl.sort(keys, dim=1)
    else:
        t = _alternate(tl.reshape(keys, [BQ * G, K]), BQ * G, K, True)
        if G >= 8:
            t = _alternate(tl.max(tl.reshape(t, [BQ * 4, 2, K]), axis=1), BQ * 4, K, False)
        if G >= 4:
            t = _alternate(tl.max(tl.reshape(t, [BQ * 2, 2, K]), axis=1), BQ * 2, K, False)
        t = _merge_rows(tl.max(tl.reshape(t, [BQ, 2, K]), axis=1), BQ, K)  # the tile's top K, ascending
    # the max of a descending and an ascending row is the top K of both, bitonic; ordered descending via ~
    return ~_merge_rows(~tl.maximum(best, t), BQ, K)
