"""A safe wire format for values that cross a sandbox boundary.

Candidate code is hostile, so its results are never unpickled outside a sandbox. This
format carries plain data only (None, bools, ints, floats with NaN and infinities,
complex, str, bytes, lists, tuples, dicts with any such keys, sets, numpy arrays,
dataclass records, exceptions by type and message) as JSON; decoding builds nothing but
those, so it runs no code. Anything else is encoded as an opaque record of its type and
repr, which compares equal only to the same record.

Standard library only on the encoding side: the harness runs it inside the sandbox.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from typing import Any

MAX_DEPTH = 200
_DEFAULT_REPR: Any = object.__repr__


@dataclasses.dataclass(frozen=True)
class Opaque:
    """A value the format does not carry: its type's name and its repr."""

    type_name: str
    text: str


@dataclasses.dataclass(frozen=True)
class Record:
    """A dataclass instance, decoded as its type's name and its fields."""

    type_name: str
    fields: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RaisedError:
    """An exception, by type name and message."""

    type_name: str
    message: str


def _float(x: float) -> Any:
    if math.isnan(x):
        return {"~": "float", "v": "nan"}
    if math.isinf(x):
        return {"~": "float", "v": "inf" if x > 0 else "-inf"}
    return x


def encode(value: Any, _depth: int = 0) -> Any:
    """A JSON-ready tree for `value`."""
    if _depth > MAX_DEPTH:
        return {"~": "opaque", "t": type(value).__qualname__, "r": "<nested too deeply>"}
    d = _depth + 1
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if type(value) is int and abs(value) < 2**53:
            return value
        # Hex: unlike decimal, not subject to Python's limit on int-to-string digits.
        return {"~": "int", "x": format(int(value), "x")}
    if isinstance(value, float):
        return (
            _float(float(value))
            if type(value) is float
            else {"~": "float", "v": repr(float(value))}
        )
    if isinstance(value, complex):
        return {"~": "complex", "re": _float(value.real), "im": _float(value.imag)}
    if isinstance(value, (bytes, bytearray)):
        return {"~": type(value).__name__, "v": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list):
        return [encode(v, d) for v in value]
    if isinstance(value, tuple):
        return {"~": "tuple", "v": [encode(v, d) for v in value]}
    if isinstance(value, dict):
        return {"~": "dict", "v": [[encode(k, d), encode(v, d)] for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        return {"~": type(value).__name__, "v": [encode(v, d) for v in value]}
    if isinstance(value, BaseException):
        return {"~": "error", "t": type(value).__qualname__, "m": str(value)[:2000]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "~": "record",
            "t": type(value).__qualname__,
            "v": {f.name: encode(getattr(value, f.name), d) for f in dataclasses.fields(value)},
        }
    if type(value).__repr__ is _DEFAULT_REPR and not isinstance(value, type):
        fields = _attributes(value)
        if fields is not None:
            # a plain object (a method's instance, say): its repr is an address, so it is
            # compared by its attributes (its __dict__ and __slots__), like a dataclass
            return {
                "~": "record",
                "t": type(value).__qualname__,
                "v": {k: encode(v, d) for k, v in fields.items()},
            }
    module = type(value).__module__
    if (module == "numpy" or module.startswith("numpy.")) and (
        hasattr(value, "tobytes")
        and hasattr(value, "shape")
        and getattr(value, "dtype", None) is not None
    ):
        dtype = value.dtype
        if dtype.kind in "biufc":
            if value.shape == () and type(value).__name__ != "ndarray":  # a numpy scalar
                return encode(value.item(), d) if dtype.kind != "b" else bool(value)
            return {
                "~": "ndarray",
                "dtype": dtype.str,
                "shape": list(value.shape),
                "v": base64.b64encode(value.tobytes(order="C")).decode(),
            }
    if module == "torch" and hasattr(value, "detach"):
        array = value.detach().cpu().numpy()
        return {"~": "tensor", "device": str(value.device), "v": encode(array, d)}
    return {"~": "opaque", "t": type(value).__qualname__, "r": _repr(value)}


def _attributes(value: Any) -> dict[str, Any] | None:
    """An object's attributes from its __dict__ and every class's __slots__, or None when
    it has neither (then its repr stands for it)."""
    found: dict[str, Any] = {}
    has_any = False
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        has_any = True
        found.update((str(k), v) for k, v in state.items())
    for cls in type(value).__mro__:
        if "__slots__" not in cls.__dict__:
            continue
        has_any = True  # a Python class that declares its state (maybe none)
        slots = cls.__dict__["__slots__"]
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if hasattr(value, name):
                found[name] = getattr(value, name)
    return found if has_any else None


def _repr(value: Any) -> str:
    try:
        return repr(value)[:2000]
    except Exception as exc:  # a repr that fails (a huge int inside) still leaves a record
        return f"<repr raised {type(exc).__name__}>"


def dumps(value: Any) -> str:
    return json.dumps(encode(value), allow_nan=False, separators=(",", ":"))


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((repr(k), _hashable(v)) for k, v in value.items()))
    if isinstance(value, set):
        return frozenset(_hashable(v) for v in value)
    return value


def decode(tree: Any) -> Any:
    """Plain Python values (and numpy arrays, where numpy is installed) from a tree."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(v) for v in tree]
    if not isinstance(tree, dict) or "~" not in tree:
        raise ValueError(f"not an encoded value: {str(tree)[:80]}")
    tag = tree["~"]
    if tag == "int":
        return int(tree["x"], 16) if "x" in tree else int(tree["v"])
    if tag == "float":
        return float(tree["v"])
    if tag == "complex":
        return complex(decode(tree["re"]), decode(tree["im"]))
    if tag in ("bytes", "bytearray"):
        raw = base64.b64decode(tree["v"])
        return raw if tag == "bytes" else bytearray(raw)
    if tag == "tuple":
        return tuple(decode(v) for v in tree["v"])
    if tag == "dict":
        return {_hashable(decode(k)): decode(v) for k, v in tree["v"]}
    if tag in ("set", "frozenset"):
        items = {_hashable(decode(v)) for v in tree["v"]}
        return items if tag == "set" else frozenset(items)
    if tag == "error":
        return RaisedError(str(tree["t"]), str(tree["m"]))
    if tag == "record":
        return Record(str(tree["t"]), {k: decode(v) for k, v in tree["v"].items()})
    if tag == "ndarray":
        import numpy as np

        data = base64.b64decode(tree["v"])
        return np.frombuffer(data, dtype=np.dtype(tree["dtype"])).reshape(tree["shape"]).copy()
    if tag == "tensor":
        return decode(tree["v"])  # compared as an array; the device is kept in the tree
    if tag == "opaque":
        return Opaque(str(tree["t"]), str(tree["r"]))
    raise ValueError(f"unknown encoded type {tag!r}")


def loads(text: str) -> Any:
    return decode(json.loads(text))
