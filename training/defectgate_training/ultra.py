"""Import ultralytics fully offline. Call `ultralytics()` instead of `import ultralytics`.

Why a helper: ultralytics reads YOLO_OFFLINE / YOLO_CONFIG_DIR once at import time, writes a
settings file, and its plots try to download Arial.ttf when the font is missing. On a plant PC or in
CI there is no network, so we set the environment first and put a local font (matplotlib's
DejaVuSans, always installed with matplotlib) where ultralytics looks for Arial.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from defectgate.errors import require

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def config_dir() -> Path:
    """Where ultralytics keeps settings.json and fonts: $YOLO_CONFIG_DIR, else a per-user cache."""
    env = os.environ.get("YOLO_CONFIG_DIR")
    path = Path(env) if env else Path.home() / ".cache" / "defectgate" / "ultralytics"
    return path


def prepare_offline() -> Path:
    """Set the environment ultralytics reads at import and provide its fonts locally. Idempotent."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations' version check goes online
    cfg = config_dir()
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    cfg.mkdir(parents=True, exist_ok=True)
    missing = [name for name in FONT_NAMES if not (cfg / name).is_file()]
    if missing:
        import matplotlib

        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        for name in missing:
            # per-process temp name: several trainings may start at once on one machine
            tmp = cfg / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(font, tmp)
            tmp.replace(cfg / name)
    return cfg


def ultralytics():
    """The ultralytics module, imported offline; MissingExtraError names the [train] extra if absent."""
    prepare_offline()
    module = require("ultralytics", "train", "training and export")
    # Settings that would reach the network or write outside the run folder.
    off = {k: False for k in ("sync", "hub", "wandb", "tensorboard", "mlflow", "comet", "clearml", "dvc", "neptune", "raytune")
           if k in module.settings}
    if off:
        module.settings.update(off)
    return module
