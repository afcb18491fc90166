"""lazy: a dataclass field given a Later is made on first read, once, and kept."""

from __future__ import annotations

import dataclasses

import pytest

from gpuwatch.lazy import Later, Lazy, pending


@dataclasses.dataclass
class Box(Lazy):
    a: int
    b: list[int]
    c: str = "c"


def test_a_later_is_made_on_first_read_once_and_kept():
    made: list[int] = []

    def make() -> list[int]:
        made.append(1)
        return [1, 2]

    box = Box(1, Later(make))  # type: ignore[arg-type]
    assert pending(box, "b") is not None and not made
    assert box.b == [1, 2] and box.b is box.b and made == [1]
    assert pending(box, "b") is None and pending(box, "a") is None
    assert dataclasses.replace(box, a=2) == Box(2, [1, 2])
    plain = Box(3, [4])
    assert plain.b == [4] and pending(plain, "b") is None


def test_replace_and_equality_make_the_value_and_typos_still_fail():
    box = Box(1, Later(lambda: [5]))  # type: ignore[arg-type]
    assert dataclasses.replace(box).b == [5]
    with pytest.raises(AttributeError, match="'Box' object has no attribute 'bb'"):
        box.bb  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):
        box._later_b  # type: ignore[attr-defined]  # noqa: B018  (made already: gone)
