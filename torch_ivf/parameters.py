"""Faiss's ParameterSpace setters, for code that tunes indexes by name."""
from __future__ import annotations

import numpy as np

from .index import IndexIVF, IndexRefine


class ParameterError(ValueError, RuntimeError):
    """A parameter the index does not have: a ValueError, and the RuntimeError Faiss raises."""


class ParameterSpace:
    """``set_index_parameter(index, name, value)`` and ``set_index_parameters(index, "nprobe=16,k_factor_rf=4")``.

    Names: ``nprobe`` and ``max_codes`` (IVF indexes, also through a refine wrapper), ``k_factor_rf``
    (IndexRefine). Faiss's auto-tuning (initialize, combinations, explore) is not provided."""

    def set_index_parameter(self, index, name: str, value) -> None:
        """Set ``name`` ("nprobe", "max_codes" or "k_factor_rf") to ``value`` on ``index``.

        Raises:
            TypeError: name not a str or value not a number.
            ValueError: a non-whole nprobe / max_codes, or a value the index refuses.
            ParameterError: a name the index does not have.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"value must be a number, got {type(value).__name__}")
        if isinstance(index, IndexRefine):
            if name == "k_factor_rf":
                index.k_factor = value
                return
            index = index.base  # every other name is the base index's, as in Faiss
        if isinstance(index, IndexIVF) and name in ("nprobe", "max_codes"):
            if value != int(value):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            setattr(index, name, int(value))
            return
        raise ParameterError(f"{type(index).__name__} has no parameter {name!r} (known: nprobe, max_codes, k_factor_rf)")

    def set_index_parameters(self, index, description: str) -> None:
        """Comma-separated ``name=value`` pairs, applied left to right."""
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, got {type(description).__name__}")
        pairs = []
        for item in filter(None, description.replace(" ", "").split(",")):
            name, _, value = item.partition("=")
            try:
                pairs.append((name, float(value)))
            except ValueError:
                raise ValueError(f"description must be 'name=number' pairs, got {item!r}") from None
        for name, value in pairs:  # all parsed first: a malformed pair changes nothing
            self.set_index_parameter(index, name, value)
