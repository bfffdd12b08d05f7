"""The source interface: `read(timeout)` returns the next Frame, or None when none came in time.
`exhausted` turns True when a finite source (a file, a synthetic run) has nothing more to give."""

from __future__ import annotations

from typing import Protocol

from ..types import Frame


class Source(Protocol):
    uri: str
    exhausted: bool

    def read(self, timeout: float) -> Frame | None: ...

    def close(self) -> None: ...
