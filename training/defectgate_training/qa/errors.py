"""QA app errors: each is a DefectgateError, so the CLI prints it on one line and exits 2, and
the UI shows its message in the status line."""

from __future__ import annotations

from defectgate.errors import DefectgateError


class QAError(DefectgateError):
    """A QA action cannot be done (bad decision, nothing to export, unreadable image)."""


class ArchiveError(QAError):
    """The station archive is missing, unreadable or has no parts."""


class PathEscapeError(QAError):
    """A path from the browser points outside the configured folders."""


class AuthError(QAError):
    """Login credentials are missing or malformed, or the bind address needs them."""
