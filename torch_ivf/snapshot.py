"""Attribute snapshots of an index and the torch_ivf objects it holds (quantizer, codebooks,
transforms, inverted lists), so that a training that fails half-way is undone.

Training only rebinds attributes to new tensors (k-means returns fresh centroids, InvertedLists.reset
allocates fresh slabs before any row is written), so the attribute dictionaries, copied one level
deep, are a complete record of what it can change; no tensor is copied.
"""
from __future__ import annotations


def _owned(value) -> bool:
    return hasattr(value, "__dict__") and type(value).__module__.startswith("torch_ivf")


def take(obj) -> list[tuple[object, dict]]:
    """(object, its attributes) for obj and every torch_ivf object reachable through attributes."""
    seen: dict[int, tuple[object, dict]] = {}
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        state = {k: (dict(v) if type(v) is dict else v) for k, v in vars(o).items()}
        seen[id(o)] = (o, state)
        stack.extend(v for v in state.values() if _owned(v))
    return list(seen.values())


def restore(saved: list[tuple[object, dict]]) -> None:
    for o, state in saved:
        version = o.__dict__.get("version")
        o.__dict__.clear()
        o.__dict__.update(state)
        if version is not None and hasattr(o, "_changed"):
            # inverted lists: caches (search graphs, centroid read-backs) key on the version, which
            # must keep rising past the values the failed change used
            o.version = max(version, o.version)
            o._changed()
