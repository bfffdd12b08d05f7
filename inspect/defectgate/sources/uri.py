"""Small URI helpers shared by the sources: query parameters checked against a known set."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from ..errors import SourceError


def query(uri: str, known: set[str]) -> dict[str, str]:
    parsed = urlparse(uri)
    q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = set(q) - known
    if unknown:
        raise SourceError(f"{uri}: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    return q


def file_path(uri: str) -> Path:
    """file:///abs/path and file://relative/path both work (the second is read relative to the cwd)."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.netloc + parsed.path))


def number(uri: str, q: dict[str, str], key: str, default: float, kind=float, low: float | None = None):
    try:
        value = kind(q.get(key, default))
    except ValueError as exc:
        raise SourceError(f"{uri}: parameter {key}={q.get(key)!r} is not a {kind.__name__}") from exc
    if low is not None and value < low:
        raise SourceError(f"{uri}: parameter {key}={value} must be >= {low}")
    return value
