from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from perfsmith.verifiers.python.compare import first_difference
from perfsmith.verifiers.python.encode import Opaque, RaisedError, Record, dumps, loads


@dataclasses.dataclass
class Pair:
    a: int
    b: list[float]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -5,
        2**80,
        1.5,
        -0.0,
        "text é",
        b"\x00\xff",
        bytearray(b"ab"),
        [1, [2, [3]]],
        (1, "a", (2.0,)),
        {"k": [1, 2], 3: "x", (1, 2): None},
        {1, 2, 3},
        frozenset({"a"}),
        complex(1, -2),
        [float("inf"), float("-inf")],
        np.arange(12, dtype=np.int32).reshape(3, 4),
        np.array([1.5, np.nan]),
        np.array([True, False]),
        np.float32(2.5),
        np.int64(9),
    ],
)
def test_round_trip_keeps_values(value: Any) -> None:
    back = loads(dumps(value))
    assert (
        first_difference(value if not isinstance(value, np.generic) else value.item(), back) is None
    ), (value, back)


def test_nan_and_structured_values() -> None:
    assert math.isnan(loads(dumps(float("nan"))))
    assert loads(dumps(Pair(1, [2.0]))) == Record("Pair", {"a": 1, "b": [2.0]})
    assert loads(dumps(KeyError("missing"))) == RaisedError("KeyError", "'missing'")

    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    assert loads(dumps(Thing())) == Opaque(Thing.__qualname__, "<thing>")


def test_decoding_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="unknown encoded type"):
        loads('{"~": "pickle", "v": "gASV"}')
    with pytest.raises(ValueError, match="not an encoded value"):
        loads('{"a": 1}')


def test_hostile_values_are_carried_as_data_only() -> None:
    class Evil(list):  # a result whose __eq__ lies
        def __eq__(self, other: object) -> bool:
            return True

        def __reduce__(self) -> Any:
            raise AssertionError("must never be pickled")

    back = loads(dumps(Evil([1])))
    assert back == [1]  # encoded as the plain list it contains, the lie is gone
    assert first_difference([2], back) is not None


class _Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: int, b: object) -> None:
        self.a, self.b = a, b

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Slotted) and (self.a, self.b) == (other.a, other.b)

    __hash__ = None  # type: ignore[assignment]


class _Marker:
    __slots__ = ()


def test_objects_compare_by_state_not_by_address() -> None:
    # the same state in two objects (two processes): equal, whatever their addresses
    assert dumps(_Slotted(1, [2, 3])) == dumps(_Slotted(1, [2, 3]))
    assert dumps(_Slotted(1, [2, 3])) != dumps(_Slotted(1, [2, 4]))
    assert dumps(_Marker()) == dumps(_Marker())
    # integers past Python's 4,300-digit limit on decimal strings round-trip exactly
    big = 7**20_000
    assert loads(dumps(big)) == big and dumps(big) != dumps(big + 1)
