"""Train a YOLO detector with ultralytics: typed config (YAML + CLI overrides), seeded, offline,
resumable, one run folder per run:

    OUT/config.yaml      the resolved training config (what was asked for)
    OUT/data.yaml        the dataset yaml with an absolute path (what ultralytics read)
    OUT/data-bg/         with `background: SHARE` > 0 only: the train split plus OK crops (background.py)
    OUT/args.yaml        ultralytics' full argument set (written by ultralytics)
    OUT/results.csv      metrics per epoch (written by ultralytics)
    OUT/epochs.jsonl     the same per epoch as JSON lines, with wall time
    OUT/weights/{best,last}.pt
    OUT/run.json         final metrics of best.pt on val, data fingerprint, versions, hardware, time
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from defectgate.errors import ConfigError, DatasetError
from defectgate.staging import write_json_atomic

from . import augment as aug
from . import background
from .datayaml import fingerprint, load_data_yaml, resolved_yaml, split_images
from .ultra import ultralytics

log = logging.getLogger(__name__)

# ultralytics train arguments we own (set from TrainConfig fields); `hyp` may not override them.
OWNED = {"data", "epochs", "imgsz", "batch", "seed", "workers", "device", "project", "name", "exist_ok",
         "augmentations", "resume", "model", "amp", "trainer"}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("yolo11n.yaml", description="architecture yaml (from scratch) or a .pt to fine-tune")
    data: str = ""
    out: str = "runs/train"
    epochs: int = Field(30, ge=1)
    imgsz: int = Field(192, ge=32)
    batch: int = Field(16, ge=1)
    seed: int = 0
    workers: int = Field(2, ge=0)
    device: str = "auto"
    augment: Any = "inspection"
    # Training arithmetic. auto: bf16 autocast on a GPU, and on a CPU with native bf16 (AVX512_BF16/AMX:
    # 1.75x faster per step on Zen 4, see cpu_bf16.py); fp32 elsewhere. bf16 on a CPU without it is refused.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Fraction of the training images that are OK crops (empty labels) cut from the train split's defect
    # images (background.py); 0 = off, the train split as it is.
    background: float = 0.0
    # Any other ultralytics train argument (fliplr, flipud, mosaic, hsv_v, cos_lr, lr0, close_mosaic,
    # cache, amp, patience, time, deterministic, plots, ...).
    hyp: dict[str, Any] = Field(default_factory=dict)

    @field_validator("background")
    @classmethod
    def _share(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError("the share of OK crops in the training set must be in [0, 1) (0 = off, e.g. 0.2)")
        return v


@dataclass
class TrainResult:
    run_dir: Path
    best: Path
    last: Path
    metrics: dict


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    raw: dict[str, Any] = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: training config not found (see configs/train-default.yaml)")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of training settings")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if "." in key:  # hyp.lr0=0.005
            head, tail = key.split(".", 1)
            section = raw.get(head)
            if isinstance(section, str):  # augment: texture -> {preset: texture, ...}
                section = {"preset": section}
            raw[head] = {**(section or {}), tail: value}
        else:
            raw[key] = value
    where = str(path) if path else "train config"
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: key '{key}': {first['msg']} (got {first.get('input')!r})") from exc
    bad = OWNED & set(cfg.hyp)
    if bad:
        raise ConfigError(f"{where}: hyp.{sorted(bad)[0]} is a top-level setting; set it outside 'hyp'")
    if not cfg.data:
        raise ConfigError(f"{where}: key 'data' is missing; pass --data path/to/data.yaml")
    aug.load_augment_config(cfg.augment, where=f"{where}: augment")  # fail early on a bad augment section
    return cfg


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def _precision_args(precision: str, device: str) -> dict[str, Any]:
    """ultralytics train arguments for the configured arithmetic on this device."""
    if device != "cpu":
        # fp16 AMP would download yolo26n.pt for its self-check; bf16 skips it
        return {"amp": False} if precision == "fp32" else {"amp": "bf16"}
    from .cpu_bf16 import cpu_has_native_bf16, trainer_class

    if precision == "fp32" or (precision == "auto" and not cpu_has_native_bf16()):
        return {"amp": False}
    if not cpu_has_native_bf16():
        raise ConfigError("precision: bf16 asked for, but this CPU has no native bf16 (AVX512_BF16 or AMX); "
                          "use precision: fp32 or auto")
    log.info("CPU with native bf16: training in bf16 autocast (precision: fp32 turns it off)")
    return {"amp": True, "trainer": trainer_class()}


def _epoch_logger(jsonl: Path, t0: float):
    def on_fit_epoch_end(trainer) -> None:
        if trainer.epoch + 1 > trainer.epochs:  # ultralytics calls this once more after the final validation
            return
        row = {"epoch": trainer.epoch + 1, "epochs": trainer.epochs, "wall_s": round(time.monotonic() - t0, 1)}
        row.update({k: round(float(v), 5) for k, v in (trainer.metrics or {}).items()})
        row.update({k: round(float(v), 5) for k, v in trainer.label_loss_items(trainer.tloss).items()}
                   if trainer.tloss is not None else {})
        with open(jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        log.info("epoch %d/%d  mAP50 %.3f  mAP50-95 %.3f  (%.0fs)", row["epoch"], row["epochs"],
                 row.get("metrics/mAP50(B)", float("nan")), row.get("metrics/mAP50-95(B)", float("nan")), row["wall_s"])

    return on_fit_epoch_end


def train(cfg: TrainConfig, resume: bool = False, extra_transforms: list | None = None,
          callbacks: dict | None = None) -> TrainResult:
    """Train per `cfg`. `extra_transforms` (albumentations objects) are appended to the configured
    pipeline; tests use it to observe what the pipeline receives inside ultralytics. `callbacks`
    are extra ultralytics callbacks by event name."""
    run_dir = Path(cfg.out).resolve()
    last = run_dir / "weights" / "last.pt"
    spec = load_data_yaml(cfg.data)
    for split in ("train", "val"):
        split_images(spec, split)  # DatasetError naming the yaml when a split is missing or empty
    augment_cfg = aug.load_augment_config(cfg.augment)
    # Refuse before anything is written into the run folder (it may hold an earlier run).
    if resume and not last.is_file():
        raise ConfigError(f"{last}: nothing to resume; train without --resume first")
    if not resume and cfg.model.endswith(".pt") and not Path(cfg.model).is_file():
        # ultralytics would try to download a missing .pt by its name; a resume needs only last.pt
        raise ConfigError(f"key 'model': {cfg.model} not found (a .pt must be a file from an earlier run; "
                          "to train from scratch name an architecture yaml such as yolo11n.yaml)")
    bg_plan = bg = None
    if cfg.background:  # train on the mix; a resume finds it where the first run built it
        if resume:
            bg = background.read_manifest(run_dir / "data-bg")
        else:
            bg_plan = background.plan(spec, cfg.background, cfg.seed)
    U = ultralytics()
    device = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    if bg_plan:
        bg = background.write(bg_plan, run_dir / "data-bg")
    if bg:
        spec = load_data_yaml(bg["data"])
        log.info("background %.2f: %d OK crops beside %d train images (%d with defects)", cfg.background,
                 bg["ok_crops"], bg["train_images"], bg["defect_images"])
    data_yaml = resolved_yaml(spec, run_dir / "data.yaml")
    _write_yaml(run_dir / "config.yaml", cfg.model_dump(mode="json"))
    jsonl = run_dir / "epochs.jsonl"
    t0 = time.monotonic()

    if resume:
        log.info("resuming %s", last)
        model = U.YOLO(str(last))
        model.add_callback("on_fit_epoch_end", _epoch_logger(jsonl, t0))
        for event, fn in (callbacks or {}).items():
            model.add_callback(event, fn)
        model.train(resume=True, workers=cfg.workers, device=device, **_precision_args(cfg.precision, device))
    else:
        if jsonl.exists():
            jsonl.unlink()
        args: dict[str, Any] = {
            "data": str(data_yaml), "epochs": cfg.epochs, "imgsz": cfg.imgsz, "batch": cfg.batch,
            "seed": cfg.seed, "deterministic": True, "workers": cfg.workers, "device": device,
            "project": str(run_dir.parent), "name": run_dir.name, "exist_ok": True, "verbose": True,
        }
        args.update(_precision_args(cfg.precision, device))
        transforms = (aug.build_transforms(augment_cfg) or []) + list(extra_transforms or [])
        if transforms:
            args["augmentations"] = transforms
        args.update(cfg.hyp)
        log.info("training %s on %s (%d epochs, imgsz %d, device %s); %s", cfg.model, spec.yaml_path,
                 cfg.epochs, cfg.imgsz, device, aug.describe(augment_cfg))
        model = U.YOLO(cfg.model)
        model.add_callback("on_fit_epoch_end", _epoch_logger(jsonl, t0))
        for event, fn in (callbacks or {}).items():
            model.add_callback(event, fn)
        model.train(**args)

    trainer = model.trainer
    save_dir = Path(trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        raise DatasetError(f"{save_dir}: training finished without weights/best.pt; see the log above")
    metrics = {k: float(v) for k, v in (trainer.metrics or {}).items()}
    import torch

    summary = {
        "best": str(best),
        "metrics_val": metrics,
        "map50": metrics.get("metrics/mAP50(B)"),
        "map50_95": metrics.get("metrics/mAP50-95(B)"),
        "epochs_done": int(trainer.epoch + 1),
        "train_seconds": round(time.monotonic() - t0, 1),
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": _cpus()},
        "data": fingerprint(spec),
        "versions": tool_versions(),
        "augment": aug.describe(augment_cfg),
    }
    if bg:
        summary["background"] = bg
    write_json_atomic(save_dir / "run.json", summary)
    log.info("best weights %s  mAP50 %.3f  mAP50-95 %.3f", best, summary["map50"] or 0, summary["map50_95"] or 0)
    return TrainResult(save_dir, best, save_dir / "weights" / "last.pt", summary)


def tool_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("defectgate", "ultralytics", "torch", "albumentations", "onnx", "onnxruntime"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def _write_yaml(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
