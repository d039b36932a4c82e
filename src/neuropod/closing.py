"""``Closing``: the context manager protocol of every object that owns something to release."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

_T = TypeVar("_T", bound="Closing")


class Closing:
    """A base class whose ``with`` block ends with ``close()``.

    A subclass defines ``close`` (idempotent, so that an explicit close inside the block is
    harmless); ``with obj:`` then yields ``obj`` and closes it on the way out, exception or not.
    """

    def close(self) -> None:
        """Release what the object owns. Idempotent."""
        raise NotImplementedError(f"{type(self).__name__} must define close()")

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
