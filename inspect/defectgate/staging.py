"""Write a folder (a model bundle, a dataset) or a file (a report, a sidecar, a registry record) all
at once or not at all: build it in a temp folder or file beside its destination, then swap it into
place with a rename. A crash, a full disk or a failed check leaves the old one untouched and no
half-written new one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temp file in the same folder and a rename (the parent folder is
    created). The temp name carries the process and thread, so two writers never share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """`data` as indented JSON (one trailing newline), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


@contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder next to `final`. When the block succeeds the folder replaces
    `final` as a whole (an existing one is moved aside first, then deleted); when it raises, the temp
    folder is deleted and `final` is left as it was."""
    final = Path(final).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; bundles and datasets are read by the station's user too
    old = None
    try:
        yield tmp
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not final.exists():
            os.rename(old, final)  # the swap itself failed: put the old folder back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
