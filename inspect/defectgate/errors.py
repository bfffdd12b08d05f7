"""The project's exception types. Every message names the file, key or value that is wrong
and what to do; the CLI prints it on one line and exits 2."""

from __future__ import annotations


class DefectgateError(Exception):
    """Base class: an error a user can fix. The CLI prints it without a traceback."""


class ConfigError(DefectgateError):
    """A station or training config is missing, malformed or impossible."""


class BundleError(DefectgateError):
    """A model bundle is missing, damaged, or does not match its sidecar."""


class SourceError(DefectgateError):
    """A frame source cannot be opened (unknown URI, missing camera, unreadable file)."""


class BackendError(DefectgateError):
    """An inference backend cannot load a model or failed to run it."""


class ActuatorError(DefectgateError):
    """An actuator could not be driven (GPIO unavailable, PLC unreachable)."""


class DatasetError(DefectgateError):
    """A dataset is empty, unreadable or inconsistent."""


class MissingExtraError(DefectgateError):
    """An optional dependency is not installed; the message names the pip extra."""

    def __init__(self, module: str, extra: str, what: str = ""):
        self.module, self.extra = module, extra
        purpose = f" for {what}" if what else ""
        super().__init__(
            f"the Python module '{module}' is needed{purpose} but not installed; "
            f"install it with: pip install 'defectgate[{extra}]'"
        )


def require(module: str, extra: str, what: str = ""):
    """Import an optional dependency lazily, or raise MissingExtraError with the install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # ImportError covers a module blocked by sys.modules[name] = None
        raise MissingExtraError(module, extra, what) from exc
