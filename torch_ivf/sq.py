"""Scalar quantizers with Faiss's qtypes and code layout, so codes move between faiss and torch-ivf
unchanged.

Each component x_i is mapped to [0, 1] by a trained range (per dimension, or one range for the
"uniform" types: min and max of the training set), truncated to 8, 6 or 4 bits and decoded to the
middle of its bin: x = vmin + (code + 0.5) / (2^bits - 1) * vdiff. fp16 and bf16 need no training;
both round halfway cases away from zero, as Faiss does (bf16: the upper 16 bits after adding 0x8000).
The "direct" types need no training either: the code is the component itself truncated to a byte
(integers in [0, 255], or in [-128, 127] stored plus 128); values outside wrap modulo 256, as Faiss's
cast does on x86.

Not built: Faiss's QT_0bit (no code at all) and the rotation-based quantizers QT_*_tqmse, QT_*_tq
(TurboQuant) and QT_*_eden (EDEN); their qtypes are refused with the list of supported ones.

Bit layout of a code (little-endian, component i): 8-bit one byte each; 4-bit component i in the low
(i even) or high (i odd) nibble of byte i // 2; 6-bit four components in three bytes,
c0 | c1 << 6 | c2 << 12 | c3 << 18.
"""
from __future__ import annotations

import numpy as np
import torch

from .arrays import back, float_rows, positive_int

QT_8bit, QT_4bit, QT_8bit_uniform, QT_4bit_uniform, QT_fp16, QT_8bit_direct, QT_6bit, QT_bf16 = 0, 1, 2, 3, 4, 5, 6, 7
QT_8bit_direct_signed = 8
_BITS = {QT_8bit: 8, QT_6bit: 6, QT_4bit: 4, QT_8bit_uniform: 8, QT_4bit_uniform: 4}
_UNIFORM = {QT_8bit_uniform, QT_4bit_uniform}
_HALF = {QT_fp16, QT_bf16}
DIRECT_OFFSET = {QT_8bit_direct: 0, QT_8bit_direct_signed: -128}  # x = code + offset
_UNTRAINED = _HALF | set(DIRECT_OFFSET)  # nothing to learn
QTYPES = {"QT_8bit": QT_8bit, "QT_6bit": QT_6bit, "QT_4bit": QT_4bit, "QT_8bit_uniform": QT_8bit_uniform,
          "QT_4bit_uniform": QT_4bit_uniform, "QT_fp16": QT_fp16, "QT_bf16": QT_bf16,
          "QT_8bit_direct": QT_8bit_direct, "QT_8bit_direct_signed": QT_8bit_direct_signed}
# Faiss's qtypes that are not built here (values as in faiss 1.15), named in the error
_NOT_BUILT = {9: "QT_0bit", **{v: f"QT_{b}bit_tqmse" for v, b in zip(range(10, 15), (1, 2, 3, 4, 8))},
              **{v: f"QT_{b}bit_tq" for v, b in zip(range(15, 19), (2, 3, 4, 5))},
              **{v: f"QT_{b}bit_eden" for v, b in zip(range(19, 27), range(1, 9))}}


def check_qtype(qtype) -> int:
    """A qtype constant (or its name, "QT_8bit" ...)."""
    if isinstance(qtype, str) and qtype in QTYPES:
        return QTYPES[qtype]
    supported = f"supported: {', '.join(QTYPES)} (or their values)"
    name = qtype if isinstance(qtype, str) else None
    if not isinstance(qtype, bool) and isinstance(qtype, (int, np.integer)):
        if int(qtype) in QTYPES.values():
            return int(qtype)
        name = _NOT_BUILT.get(int(qtype))
    if name in _NOT_BUILT.values():
        raise ValueError(f"qtype {name} is not supported (QT_0bit and the rotation-based TurboQuant / EDEN "
                         f"quantizers are not built); {supported}")
    raise ValueError(f"qtype must be one of the {supported}, got {qtype!r}")


class ScalarQuantizer:
    """``ScalarQuantizer(d, qtype=QT_8bit, *, device=None)``, Faiss's ScalarQuantizer: ``train(x)``,
    ``compute_codes(x) -> (n, code_size) uint8``, ``decode(codes) -> (n, d) float32``; numpy in, numpy
    out. ``trained``: Faiss's trained vector (vmin then vdiff: d values each, or one each for the
    uniform types; empty for fp16, bf16 and the direct types)."""

    QT_8bit, QT_6bit, QT_4bit, QT_8bit_uniform, QT_4bit_uniform, QT_fp16, QT_bf16 = (
        QT_8bit, QT_6bit, QT_4bit, QT_8bit_uniform, QT_4bit_uniform, QT_fp16, QT_bf16)
    QT_8bit_direct, QT_8bit_direct_signed = QT_8bit_direct, QT_8bit_direct_signed

    def __init__(self, d: int, qtype=QT_8bit, *, device=None):
        positive_int(d, "d")
        self.d, self.qtype = int(d), check_qtype(qtype)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.trained = torch.empty(0, device=self.device)

    @property
    def bits(self) -> int:
        """Bits per dimension of the code type (16 for fp16 / bf16)."""
        return 8 if self.qtype in DIRECT_OFFSET else _BITS.get(self.qtype, 16)

    @property
    def code_size(self) -> int:
        """Bytes per code (Faiss's code_size)."""
        return 2 * self.d if self.qtype in _HALF else (self.d * self.bits + 7) // 8

    @property
    def is_trained(self) -> bool:
        """True once the ranges are learnt (always for fp16, bf16 and the direct types)."""
        return self.qtype in _UNTRAINED or self.trained.numel() > 0

    def train(self, x) -> None:
        """Learn the ranges (min and max, per dimension or overall) from x (n, d)."""
        x = self._rows(x)
        if self.qtype in _UNTRAINED:
            return
        if x.shape[0] == 0:
            raise ValueError("x must have at least one row to train")
        if self.qtype in _UNIFORM:
            vmin, vmax = x.min().reshape(1), x.max().reshape(1)
        else:
            vmin, vmax = x.min(0).values, x.max(0).values
        self.trained = torch.cat([vmin, vmax - vmin])

    def set_trained(self, trained: torch.Tensor) -> None:
        """Use the given ranges (min then max - min; 2 * d values, 2 for uniform types, 0 for the
        untrained types)."""
        t = torch.as_tensor(trained, dtype=torch.float32).reshape(-1)
        want = 0 if self.qtype in _UNTRAINED else 2 if self.qtype in _UNIFORM else 2 * self.d
        if t.numel() != want:
            raise ValueError(f"trained must hold {want} values for qtype {self.qtype}, got {t.numel()}")
        self.trained = t.to(self.device)

    def compute_codes(self, x):
        """(n, code_size) uint8 codes of x (n, d)."""
        was_numpy = isinstance(x, np.ndarray)
        self._require_trained()
        return back(self.encode(self._rows(x)), was_numpy)

    def decode(self, codes):
        """(n, d) float32 vectors of codes (n, code_size) uint8."""
        was_numpy = isinstance(codes, np.ndarray)
        self._require_trained()
        c = torch.as_tensor(codes)
        if c.dtype != torch.uint8 or c.ndim != 2 or c.shape[1] != self.code_size:
            raise ValueError(f"codes must be a uint8 array of shape (n, {self.code_size}), got {c.dtype} {tuple(c.shape)}")
        return back(self.decode_codes(c.to(self.device)), was_numpy)

    # ---- tensor forms (no checks; any leading shape) ---------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 codes (..., code_size) of float32 x (..., d)."""
        if self.qtype == QT_fp16:
            # Faiss rounds halfway cases away from zero, torch to even: add 1 where they differ
            h = x.half().contiguous().view(torch.int16)
            u = x.contiguous().view(torch.int32)
            tie = ((u & 0x1FFF) == 0x1000) & ((u & 0x2000) == 0) & ((u & 0x7F800000) >= 0x38800000)
            return torch.where(tie & ((h & 0x7C00) != 0x7C00), h + 1, h).view(torch.uint8)
        if self.qtype == QT_bf16:
            u = x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
            return (((u + 0x8000) >> 16) & 0xFFFF).to(torch.int16).view(torch.uint8)
        if self.qtype in DIRECT_OFFSET:  # Faiss casts x - offset (float) to a byte: truncate, then wrap
            return ((x - float(DIRECT_OFFSET[self.qtype])).to(torch.int32) & 0xFF).to(torch.uint8)
        vmin, vdiff = self._range()
        safe = torch.where(vdiff != 0, vdiff, torch.ones_like(vdiff))
        xi = torch.where(vdiff != 0, (x - vmin) / safe, torch.zeros_like(x)).clamp(0.0, 1.0)
        if self.bits == 8:  # Faiss: (int)(255 * x) in float; the 4- and 6-bit codecs multiply in double
            return (xi * 255.0).to(torch.uint8)
        levels = (1 << self.bits) - 1
        q = (xi.double() * float(levels)).to(torch.int64)
        if self.bits == 4:
            q = torch.nn.functional.pad(q, (0, self.d % 2))
            return (q[..., 0::2] | (q[..., 1::2] << 4)).to(torch.uint8)
        q = torch.nn.functional.pad(q, (0, (-self.d) % 4)).unflatten(-1, (-1, 4))
        word = q[..., 0] | (q[..., 1] << 6) | (q[..., 2] << 12) | (q[..., 3] << 18)
        out = torch.stack([word & 0xFF, (word >> 8) & 0xFF, (word >> 16) & 0xFF], -1).flatten(-2)
        return out[..., : self.code_size].to(torch.uint8)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """float32 (..., d) of uint8 codes (..., code_size)."""
        if self.qtype == QT_fp16:
            return codes.contiguous().view(torch.float16).float()
        if self.qtype == QT_bf16:
            return (codes.contiguous().view(torch.int16).to(torch.int32) << 16).view(torch.float32)
        if self.qtype in DIRECT_OFFSET:
            return codes.float() + float(DIRECT_OFFSET[self.qtype])
        c = codes.to(torch.int32)
        if self.bits == 8:
            bins = c
        elif self.bits == 4:
            bins = torch.stack([c & 0xF, c >> 4], -1).flatten(-2)[..., : self.d]
        else:
            c = torch.nn.functional.pad(c, (0, (-c.shape[-1]) % 3)).unflatten(-1, (-1, 3))
            word = c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)
            bins = torch.stack([(word >> s) & 0x3F for s in (0, 6, 12, 18)], -1).flatten(-2)[..., : self.d]
        vmin, vdiff = self._range()
        return vmin + ((bins.float() + 0.5) / float((1 << self.bits) - 1)) * vdiff

    def to(self, device) -> "ScalarQuantizer":
        """Move the ranges to ``device`` in place; returns self."""
        self.device = torch.device(device)
        self.trained = self.trained.to(self.device)
        return self

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.trained.numel() // 2
        return self.trained[:n], self.trained[n:]

    def _rows(self, x) -> torch.Tensor:
        x = float_rows(x, self.d, self.device)[0]
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or Inf")
        return x

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise ValueError("the ScalarQuantizer must be trained first")
