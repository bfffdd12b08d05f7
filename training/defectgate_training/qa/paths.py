"""Confine paths that come from the browser (or from archive rows) to configured folders.
A path is resolved (symlinks and `..` included) before it is compared, so `../`, absolute paths
and symlinks that leave the folder are all refused the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .errors import PathEscapeError


def confine(path: str | Path, roots: Sequence[Path], what: str = "path") -> Path:
    """Resolve `path` (relative paths are taken relative to the first root) and return it if it
    lies inside one of `roots`; raise PathEscapeError otherwise."""
    if not roots:
        raise PathEscapeError(f"{what} {str(path)!r}: no folders are configured for this; start the app with --label-dir")
    text = str(path).strip()
    if "\x00" in text:
        raise PathEscapeError(f"{what} {text!r}: contains a NUL byte")
    resolved_roots = [Path(r).resolve() for r in roots]
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = resolved_roots[0] / candidate
    candidate = candidate.resolve()
    for root in resolved_roots:
        if candidate == root or candidate.is_relative_to(root):
            return candidate
    allowed = ", ".join(str(r) for r in resolved_roots)
    raise PathEscapeError(f"{what} {text!r} resolves to {candidate}, which is outside the allowed folders ({allowed})")
