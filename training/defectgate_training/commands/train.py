"""defectgate train: train a detector from a config file, with CLI overrides."""

from __future__ import annotations

import argparse

import yaml

from defectgate.errors import ConfigError


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. --set hyp.lr0=0.005)")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="defectgate train", description="Train a YOLO detector (ultralytics, offline, seeded).")
    p.add_argument("--config", help="training config YAML (e.g. configs/train-default.yaml)")
    p.add_argument("--data", help="dataset yaml (YOLO format)")
    p.add_argument("--model", help="architecture yaml to train from scratch (yolo11n.yaml, yolo26n.yaml), "
                   "or a .pt from an earlier run to train on from (a second stage, a new schedule)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--imgsz", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--device", help="cpu, 0 (first GPU) or auto")
    p.add_argument("--augment", help="augmentation preset: inspection, texture, none")
    p.add_argument("--background", type=float, metavar="SHARE",
                   help="fraction of the training images that are OK crops (empty labels) cut from the train "
                   "split's defect images, e.g. 0.2; 0 = off (default; config key 'background')")
    p.add_argument("--out", help="run folder (default runs/train)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. --set hyp.flipud=0.5 --set augment.rotate90=0.5")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from weights/last.pt")
    a = p.parse_args(argv)
    from ..train import load_train_config, train

    config = a.config
    if a.resume and not config:  # `--resume --out DIR` continues with the config that DIR was trained with
        from pathlib import Path

        saved = Path(a.out or "runs/train") / "config.yaml"
        config = str(saved) if saved.is_file() else None
    overrides = {k: getattr(a, k) for k in ("data", "model", "epochs", "imgsz", "batch", "seed", "workers", "device", "augment", "background", "out")}
    overrides.update(parse_set(a.set))
    cfg = load_train_config(config, overrides)
    result = train(cfg, resume=a.resume)
    m = result.metrics
    print(f"best weights: {result.best}")
    print(f"val mAP50 {m['map50']:.3f}  mAP50-95 {m['map50_95']:.3f}  ({m['epochs_done']} epochs, {m['train_seconds']:.0f} s on {m['device']})")
    return 0
