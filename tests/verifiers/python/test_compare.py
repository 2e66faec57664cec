from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from perfsmith.verifiers.python.compare import Tolerance, first_difference


@dataclasses.dataclass
class Point:
    x: float
    tags: list[str]


class FakeTensor:
    """Implements the part of torch.Tensor the comparison reads."""

    def __init__(self, data: Any, device: str = "cpu") -> None:
        self._data = np.asarray(data)
        self.device = device
        self.layout = "strided"
        self.shape = self._data.shape
        self.dtype = self._data.dtype

    def detach(self) -> FakeTensor:
        return self

    def cpu(self) -> FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self._data


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ([1, 2.0, "x", None, b"y"], [1, 2.0, "x", None, b"y"]),
        ({"a": [1, {"b": (2, 3)}]}, {"a": [1, {"b": (2, 3)}]}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({1, 2, 3}, {3, 2, 1}),
        (0.1 + 0.2, 0.3),
        (float("nan"), float("nan")),
        (float("inf"), float("inf")),
        (np.float64(1.5), 1.5),
        (np.int64(7), 7),
        (Point(1.0, ["a"]), Point(1.0, ["a"])),
        (np.array([1.0, np.nan, 3.0]), np.array([1.0, np.nan, 3.0 + 1e-12])),
        (FakeTensor([[1.0, 2.0]]), FakeTensor([[1.0, 2.0]])),
        (ValueError("a"), ValueError("b")),
        (complex(1, 2), complex(1, 2 + 1e-12)),
    ],
)
def test_equal_values(expected: Any, actual: Any) -> None:
    assert first_difference(expected, actual) is None


@pytest.mark.parametrize(
    ("expected", "actual", "path", "message"),
    [
        ([1, 2, 3], [1, 2, 4], "result[2]", "expected 3, got 4"),
        ([1, 2], [1, 2, 3], "result", "length 3"),
        ({"a": {"b": 1.0}}, {"a": {"b": 1.5}}, "result['a']['b']", "expected 1.0, got 1.5"),
        ({"a": 1}, {}, "result", "key 'a' is missing"),
        ({}, {"z": 1}, "result", "unexpected key 'z'"),
        ([1], [1.0], "result[0]", "type float differs"),
        (True, 1, "result", "type int differs"),
        ((1, 2), [1, 2], "result", "type list differs"),
        ({1, 2}, {1, 3}, "result", "element 2 is missing"),
        (Point(1.0, ["a"]), Point(1.0, ["b"]), "result.tags[0]", "expected 'a'"),
        (1.0, float("nan"), "result", "got nan"),
        (np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]]), "result[1][1]", "1 of 4"),
        (np.zeros(3), np.zeros(4), "result", "shape (4,)"),
        (np.zeros(3, dtype=np.float32), np.zeros(3), "result", "dtype float64"),
        (np.zeros(3), [0.0, 0.0, 0.0], "result", "expected an array"),
        (FakeTensor([1.0]), FakeTensor([1.0], device="cuda:0"), "result", "device cuda:0"),
        (FakeTensor([1.0, 2.0]), FakeTensor([1.0, 2.5]), "result[1]", "expected"),
        (KeyError("k"), ValueError("k"), "result", "raised ValueError instead of KeyError"),
    ],
)
def test_differences_name_the_first_place(
    expected: Any, actual: Any, path: str, message: str
) -> None:
    diff = first_difference(expected, actual)
    assert diff is not None
    assert diff.path == path and message in diff.message, str(diff)


def test_tolerances_apply_to_floats_and_arrays() -> None:
    loose = Tolerance(rtol=1e-3, atol=1e-6)
    assert first_difference(1.0, 1.0005, loose) is None
    assert first_difference(1.0, 1.01, loose) is not None
    assert first_difference(0.0, 5e-7, loose) is None
    assert first_difference(np.array([1.0]), np.array([1.0005]), loose) is None
    assert first_difference(np.array([1.0]), np.array([1.0005])) is not None


def test_cycles_and_deep_nesting_terminate() -> None:
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert first_difference(a, b) is None
    deep_a: Any = 0
    deep_b: Any = 1
    for _ in range(200):
        deep_a, deep_b = [deep_a], [deep_b]
    diff = first_difference(deep_a, deep_b)
    assert diff is not None and diff.path.endswith("[0]" * 200)


def test_values_that_refuse_comparison_are_reported() -> None:
    class Weird:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

        __hash__ = object.__hash__

    diff = first_difference(Weird(), Weird())
    assert diff is not None and "cannot be compared" in diff.message
    assert diff.path == "result" and "RuntimeError: no" in diff.message
