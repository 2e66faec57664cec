"""Deep comparison of a reference's and a candidate's results, for differential testing.

Compares containers recursively, dataclasses field by field, floats with relative and
absolute tolerances (NaN equals NaN), numpy arrays and torch tensors element-wise
(`allclose`, NaN-aware, with shape and dtype checked first), and reports the *first*
difference with its path (`result[2]['total']`) so it can be fed back to the LLM.
numpy and torch are never imported here: arrays and tensors are recognised by shape.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Tolerance:
    rtol: float = 1e-9
    atol: float = 0.0


@dataclass(frozen=True, slots=True)
class Difference:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's limit on decimal digits, maybe inside
        text = _big(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _big(value: Any) -> str:
    """An integer too long to print, by its length and last digits."""
    if isinstance(value, int):
        digits = int(abs(value).bit_length() * 0.30103) + 1
        tail = abs(value) % 10**12
        return f"{'-' if value < 0 else ''}<an integer of about {digits} digits ending {tail:012d}>"
    return f"<a {type(value).__name__} holding integers too long to print>"


def _is_array(value: Any) -> bool:
    # numpy scalars have a shape too, but register as numbers: compare them as numbers.
    return (
        hasattr(value, "shape")
        and hasattr(value, "dtype")
        and hasattr(value, "__array__")
        and not isinstance(value, numbers.Number)
    )


def _is_tensor(value: Any) -> bool:
    return all(hasattr(value, a) for a in ("detach", "cpu", "numpy", "shape", "dtype"))


def _floats_close(a: float, b: float, tol: Tolerance) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=tol.rtol, abs_tol=tol.atol)


def _kind(value: Any) -> str:
    """Type classes that may stand for each other: numpy scalars register with the
    `numbers` ABCs, so np.float64 and float are both "float"."""
    if isinstance(value, bool) or (
        type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    ):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, numbers.Complex):
        return "complex"
    return type(value).__qualname__


def _compare_arrays(expected: Any, actual: Any, path: str, tol: Tolerance) -> Difference | None:
    import numpy as np  # only reached when the values are arrays, so numpy is installed

    e, a = np.asarray(expected), np.asarray(actual)
    if e.shape != a.shape:
        return Difference(path, f"shape {a.shape} differs from the reference's {e.shape}")
    if e.dtype != a.dtype:
        return Difference(path, f"dtype {a.dtype} differs from the reference's {e.dtype}")
    if e.dtype.kind in "fc":
        close = np.isclose(a, e, rtol=tol.rtol, atol=tol.atol, equal_nan=True)
    else:
        close = a == e
    if bool(np.all(close)):
        return None
    bad = np.argwhere(~close)
    first = tuple(int(i) for i in bad[0])
    where = "".join(f"[{i}]" for i in first)
    return Difference(
        f"{path}{where}",
        f"expected {e[first]!r}, got {a[first]!r} ({len(bad)} of {e.size} elements differ)",
    )


def first_difference(
    expected: Any, actual: Any, tol: Tolerance | None = None, path: str = "result"
) -> Difference | None:
    """None when `actual` matches `expected`; otherwise where and how they first differ."""
    return _compare(expected, actual, tol or Tolerance(), path, set())


def _compare(
    expected: Any, actual: Any, tol: Tolerance, path: str, seen: set[tuple[int, int]]
) -> Difference | None:
    if expected is actual and not isinstance(expected, float):
        return None
    if _is_tensor(expected) or _is_tensor(actual):
        if not (_is_tensor(expected) and _is_tensor(actual)):
            return Difference(path, f"expected a tensor, got {type(actual).__qualname__}")
        for attr in ("device", "layout"):
            if str(getattr(expected, attr, "")) != str(getattr(actual, attr, "")):
                return Difference(
                    path,
                    f"{attr} {getattr(actual, attr)} differs from "
                    f"the reference's {getattr(expected, attr)}",
                )
        return _compare_arrays(
            expected.detach().cpu().numpy(), actual.detach().cpu().numpy(), path, tol
        )
    if _is_array(expected) or _is_array(actual):
        if not (_is_array(expected) and _is_array(actual)):
            return Difference(path, f"expected an array, got {type(actual).__qualname__}")
        return _compare_arrays(expected, actual, path, tol)
    if isinstance(expected, BaseException):
        if type(expected) is not type(actual):
            return Difference(
                path, f"raised {type(actual).__name__} instead of {type(expected).__name__}"
            )
        return None
    ek, ak = _kind(expected), _kind(actual)
    if ek != ak:
        return Difference(
            path,
            f"type {type(actual).__qualname__} differs from the "
            f"reference's {type(expected).__qualname__} "
            f"(expected {_short(expected)}, got {_short(actual)})",
        )
    if ek in ("float", "complex"):
        e, a = complex(expected), complex(actual)
        ok = _floats_close(e.real, a.real, tol) and _floats_close(e.imag, a.imag, tol)
        return None if ok else Difference(path, f"expected {expected!r}, got {actual!r}")
    if ek in ("bool", "int") or isinstance(expected, (str, bytes, bytearray, type(None))):
        if expected == actual:
            return None
        return Difference(path, f"expected {_short(expected)}, got {_short(actual)}")
    key = (id(expected), id(actual))
    if key in seen:  # a cycle: already being compared further up
        return None
    seen.add(key)
    if isinstance(expected, (list, tuple)):
        if len(expected) != len(actual):
            return Difference(
                path, f"length {len(actual)} differs from the reference's {len(expected)}"
            )
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            diff = _compare(e, a, tol, f"{path}[{i}]", seen)
            if diff is not None:
                return diff
        return None
    if isinstance(expected, Mapping):
        missing = [k for k in expected if k not in actual]
        if missing:
            return Difference(path, f"key {_short(missing[0])} is missing")
        extra = [k for k in actual if k not in expected]
        if extra:
            return Difference(path, f"unexpected key {_short(extra[0])}")
        for k in expected:
            diff = _compare(expected[k], actual[k], tol, f"{path}[{k!r}]", seen)
            if diff is not None:
                return diff
        return None
    if isinstance(expected, (set, frozenset)):
        if expected == actual:
            return None
        missing = expected - actual
        if missing:
            return Difference(path, f"element {_short(next(iter(missing)))} is missing")
        return Difference(path, f"unexpected element {_short(next(iter(actual - expected)))}")
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        for f in dataclasses.fields(expected):
            diff = _compare(
                getattr(expected, f.name), getattr(actual, f.name), tol, f"{path}.{f.name}", seen
            )
            if diff is not None:
                return diff
        return None
    try:
        equal = bool(expected == actual)
    except Exception as exc:
        return Difference(path, f"cannot be compared ({type(exc).__name__}: {exc})")
    return None if equal else Difference(path, f"expected {_short(expected)}, got {_short(actual)}")
