"""``with component:``: every background component closes itself on leaving the block."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Closing"]


class Closing(abc.ABC):
    """A context manager that calls :meth:`close` (with its defaults) on exit."""

    __slots__ = ()

    @abc.abstractmethod
    def close(self) -> object:
        """Release what the component holds. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
