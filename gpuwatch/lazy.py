"""Dataclass fields made on first use: a field given a `Later` instead of its value.

A loaded trace's samples (10 million rows: read whole only if a renderer or the user asks) and
an analysis's full merged table (its report-only columns: built only if asked) are such fields.
They stay ordinary dataclass fields (their order, __init__, dataclasses.replace); `Lazy` moves a
Later aside at construction, and makes the value when the attribute is first read, then keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable


class Later:
    """A value not made yet: `make()` makes it; `source`, what it is made from, where a caller
    can use that instead (a table's column reader)."""

    def __init__(self, make: Callable[[], Any], source: Any = None) -> None:
        self.make, self.source = make, source


_AT = "_later_"  # (where a field's Later waits in the instance's __dict__)


class Lazy:
    """A dataclass mixin: any field given a Later is made when first read."""

    def __post_init__(self) -> None:
        for name, v in list(self.__dict__.items()):
            if isinstance(v, Later):
                self.__dict__[_AT + name] = self.__dict__.pop(name)

    if not TYPE_CHECKING:  # (hidden from type checkers: every other attribute stays checked)
        def __getattr__(self, name: str) -> Any:
            later = self.__dict__.get(_AT + name)
            if later is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            value = self.__dict__[name] = later.make()
            del self.__dict__[_AT + name]
            return value


def pending(obj: Any, name: str) -> Later | None:
    """The Later that field `name` of `obj` still holds, or None once made (or never lazy)."""
    v = vars(obj).get(_AT + name)
    return v if isinstance(v, Later) else None
