"""Input checks shared by theory/: one-line ValueErrors that name the argument, its value and what is allowed.

Every public function validates before doing any work, so a bad call fails fast with a message such as
``logits: contains nan at index (0, 2); allowed: finite real numbers``.
"""

from __future__ import annotations

import numbers

import numpy as np


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def array(value: object, name: str, *, min_ndim: int = 1) -> np.ndarray:
    """Return ``value`` as a finite float64 array with at least ``min_ndim`` axes and a non-empty last axis."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: cannot convert {_show(value)} to a float array; allowed: real numbers"
        ) from None
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name}: has {arr.ndim} axes (shape {arr.shape}); allowed: at least {min_ndim} "
            "(last axis = actions)"
        )
    if arr.ndim >= 1 and arr.shape[-1] == 0:
        raise ValueError(f"{name}: last axis is empty (shape {arr.shape}); allowed: at least one entry")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: contains {arr[idx]} at index {idx}; allowed: finite real numbers")
    return arr


def like(value: object, name: str, logits: np.ndarray) -> np.ndarray:
    """A per-action array (rewards, dz, ...) whose last axis matches ``logits`` and whose leading axes broadcast."""
    arr = array(value, name)
    if arr.shape[-1] != logits.shape[-1]:
        raise ValueError(
            f"{name}: shape {arr.shape} has {arr.shape[-1]} actions but logits shape {logits.shape} has "
            f"{logits.shape[-1]}; allowed: the same last axis as logits"
        )
    try:
        np.broadcast_shapes(arr.shape, logits.shape)
    except ValueError:
        raise ValueError(
            f"{name}: shape {arr.shape} does not broadcast with logits shape {logits.shape}; "
            "allowed: leading axes that broadcast"
        ) from None
    return arr


def scalar(
    value: object,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """A finite real scalar in the interval given by ``lo``/``hi`` (closed unless ``*_open``)."""
    ok_type = isinstance(value, numbers.Real) or (isinstance(value, np.ndarray) and value.ndim == 0)
    if not ok_type or isinstance(value, bool):
        raise ValueError(f"{name}: got {_show(value)}; allowed: a real number")
    x = float(value)
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    interval = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
    if not np.isfinite(x):
        raise ValueError(f"{name}: got {x}; allowed: a finite number in {interval}")
    if lo is not None and (x < lo or (lo_open and x == lo)):
        raise ValueError(f"{name}: got {x}; allowed: {interval}")
    if hi is not None and (x > hi or (hi_open and x == hi)):
        raise ValueError(f"{name}: got {x}; allowed: {interval}")
    return x


def integer(value: object, name: str, *, lo: int, hi: int | None = None) -> int:
    """An integer in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: got {_show(value)}; allowed: an integer >= {lo}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name}: got {v}; allowed: an integer in [{lo}, {'inf' if hi is None else hi}]")
    return v
