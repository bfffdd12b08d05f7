"""Model hot swap: the station reloads a newly promoted bundle without stopping the line.

`model.bundle` may name a bundle folder, or a model registry folder holding a `current` pointer:
a symlink to the version folder, or a text file with the version folder's name (or path), or JSON
`{"version": "v0003", "path": "v0003"}`. A watcher thread polls it every `model.watch_s` seconds;
when the bundle it resolves to changes (another folder or another sidecar sha256), it loads and
checks the new bundle, opens its backend and runs one warm-up inference *off the line*, then hands
the ready Inspector to the station, which uses it from the next captured frame on. Frames already
in flight finish on the old model, so no frame is judged twice or not at all; `ModelSlot` counts
them and closes the old model (releases its engine) once its last frame is done. A bundle that
fails to load is logged and refused (the line goes on with the current model) until the pointer
changes again."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from .bundle import SIDECAR_NAME, Bundle, load_bundle, read_sidecar
from .errors import BundleError, DefectgateError

log = logging.getLogger(__name__)


def resolve_bundle_path(path: str | Path) -> Path:
    """A bundle folder as is; a registry folder through its `current` pointer."""
    path = Path(path)
    pointer = path / "current"
    if (path / SIDECAR_NAME).is_file() or not (pointer.exists() or pointer.is_symlink()):
        return path
    if pointer.is_symlink() or pointer.is_dir():
        return pointer.resolve()
    text = pointer.read_text().strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{pointer}: registry pointer is not valid JSON ({exc})") from exc
        text = str(data.get("path") or data.get("version") or "")
    if not text:
        raise BundleError(f"{pointer}: registry pointer is empty; promote a model with 'defectgate promote'")
    target = Path(text)
    return target if target.is_absolute() else path / target


def _key(path: Path) -> tuple[str, str]:
    return str(path.resolve()), read_sidecar(path / SIDECAR_NAME).sha256


class BundleWatcher:
    def __init__(self, bundle_path: str | Path, poll_s: float, build: Callable[[Bundle], Any],
                 swap: Callable[[Any], None], current: Bundle | None = None):
        self.path = Path(bundle_path)
        self.poll_s, self.build, self.swap = poll_s, build, swap
        self.swaps = 0
        self.failures = 0
        self.last_error = ""
        self._key = _key(current.root) if current is not None else None
        self._refused: tuple[str, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hotswap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def poll(self) -> bool:
        """Check once; swap when the resolved bundle changed. True when a swap happened."""
        try:
            target = resolve_bundle_path(self.path)
            key = _key(target)
        except (OSError, DefectgateError) as exc:  # pointer half-written or bundle copying: next poll
            log.debug("hot swap: %s not readable yet: %s", self.path, exc)
            return False
        if key == self._key or key == self._refused:
            return False
        inspector = None
        try:
            bundle = load_bundle(target)
            inspector = self.build(bundle)
            inspector.warm_up()
        except Exception as exc:  # a bad bundle must never take the line down: keep the current model
            if inspector is not None:
                inspector.close()  # opened but unusable: release its engine now
            self.failures += 1
            self.last_error = str(exc)
            self._refused = key
            log.error("hot swap refused %s: %s (staying on the current model)", target, exc)
            return False
        self.swap(inspector)
        self._key = key
        self.swaps += 1
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()


class ModelSlot:
    """The station's current model, and how many frames each model still has in flight. A model
    swapped out is closed (its engine released) when its last in-flight frame is done: at once when
    it has none. `take()` when a frame starts on the current model, `release(model)` when that frame
    is judged, failed or dropped."""

    def __init__(self, current: Any):
        self.current = current
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # id(model) -> frames
        self._retired: dict[int, Any] = {}  # swapped out, waiting for their last frame

    def take(self) -> Any:
        with self._lock:
            model = self.current
            self._in_flight[id(model)] = self._in_flight.get(id(model), 0) + 1
            return model

    def release(self, model: Any) -> None:
        with self._lock:
            left = self._in_flight.get(id(model), 0) - 1
            if left > 0:
                self._in_flight[id(model)] = left
                return
            self._in_flight.pop(id(model), None)
            done = self._retired.pop(id(model), None)
        if done is not None:
            _close(done)

    def swap(self, model: Any) -> Any:
        """Make `model` current; returns the model it replaces."""
        with self._lock:
            old, self.current = self.current, model
            if old is model:
                return old
            idle = self._in_flight.get(id(old), 0) == 0
            if not idle:
                self._retired[id(old)] = old
        if idle:
            _close(old)
        return old

    def close(self) -> None:
        """End of the run: close the current model and any still waiting for frames that never came back."""
        with self._lock:
            models = [self.current, *self._retired.values()]
            self._retired.clear()
            self._in_flight.clear()
        for model in models:
            _close(model)


def _close(model: Any) -> None:
    try:
        model.close()
    except Exception as exc:  # releasing an engine must not stop the line; say so and go on
        log.warning("closing model %s: %s", getattr(model, "version", model), exc)
