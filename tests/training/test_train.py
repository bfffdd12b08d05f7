"""defectgate train: config checking, the run folder, resume."""

from __future__ import annotations

import json

import pytest
import yaml

from defectgate.errors import ConfigError, DatasetError
from defectgate_training.train import load_train_config


def test_config_file_and_overrides(tmp_path):
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("model: yolo26n.yaml\ndata: d.yaml\nepochs: 5\naugment: texture\nhyp: {flipud: 0.5}\n")
    cfg = load_train_config(cfg_file, {"epochs": 2, "hyp.cos_lr": True, "augment.noise": 0.0, "imgsz": None})
    assert (cfg.model, cfg.epochs, cfg.imgsz) == ("yolo26n.yaml", 2, 192)
    assert cfg.hyp == {"flipud": 0.5, "cos_lr": True}
    assert cfg.augment == {"preset": "texture", "noise": 0.0}


@pytest.mark.parametrize("text, match", [
    ("data: d.yaml\nepochs: 0\n", "key 'epochs'"),
    ("data: d.yaml\nepoch: 3\n", "key 'epoch'"),
    ("epochs: 3\n", "key 'data' is missing"),
    ("data: d.yaml\nhyp: {epochs: 3}\n", "hyp.epochs is a top-level setting"),
    ("data: d.yaml\naugment: {gamma: 2}\n", r"augment\.gamma"),
    ("data: [unclosed\n", "not valid YAML"),
    ("data: d.yaml\nprecision: fp16\n", "key 'precision'"),
    ("data: d.yaml\nhyp: {amp: false}\n", "hyp.amp is a top-level setting"),
])
def test_bad_config_names_file_and_key(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_train_config(f)
    assert "bad.yaml" in str(exc.value)


def test_missing_dataset_is_a_clear_error(tmp_path):
    pytest.importorskip("ultralytics")
    from defectgate_training.train import train

    cfg = load_train_config(None, {"data": str(tmp_path / "nope" / "data.yaml"), "out": str(tmp_path / "run")})
    with pytest.raises(DatasetError, match="dataset yaml not found"):
        train(cfg)


def test_resume_without_a_run_is_refused(synth_data, tmp_path):
    pytest.importorskip("ultralytics")
    from defectgate_training.train import train

    cfg = load_train_config(None, {"data": str(synth_data), "out": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(cfg, resume=True)
    assert not (tmp_path / "run").exists()  # refused before the run folder is touched


@pytest.mark.slow
def test_run_folder_holds_config_metrics_and_weights(trained, synth_data):
    run = trained.run_dir
    assert trained.best == run / "weights" / "best.pt" and trained.best.stat().st_size > 100_000
    assert (run / "weights" / "last.pt").is_file()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["epochs"] == 1 and config["seed"] == 0 and config["imgsz"] == 64
    data = yaml.safe_load((run / "data.yaml").read_text())
    assert data["path"].startswith("/")  # absolute: ultralytics would resolve a relative one elsewhere
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1] and "metrics/mAP50(B)" in epochs[0]
    assert (run / "results.csv").read_text().count("\n") == 2  # header + one epoch
    summary = json.loads((run / "run.json").read_text())
    assert summary["epochs_done"] == 1 and summary["data"]["images"] == {"train": 19, "val": 5}
    assert len(summary["data"]["sha256"]) == 64 and summary["versions"]["ultralytics"]


def test_a_missing_pt_is_refused_before_ultralytics_tries_to_download_it(synth_data, tmp_path):
    pytest.importorskip("ultralytics")
    from defectgate_training.train import train

    cfg = load_train_config(None, {"data": str(synth_data), "model": str(tmp_path / "stage1.pt"),
                                   "out": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match=r"key 'model': .*stage1\.pt not found"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # refused before the run folder is touched


@pytest.mark.slow
def test_a_second_stage_starts_from_the_first_stages_weights(trained, synth_data, tmp_path):
    """`--model run/weights/best.pt`: the new run's network starts as the earlier run's best, not afresh."""
    import torch

    from defectgate_training.train import train

    first = torch.load(trained.best, map_location="cpu", weights_only=False)["model"].float().state_dict()
    start: dict = {}

    def snapshot(trainer):
        start.update({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    cfg = load_train_config(None, {"data": str(synth_data), "model": str(trained.best), "epochs": 1, "imgsz": 64,
                                   "batch": 8, "workers": 0, "device": "cpu", "out": str(tmp_path / "stage2"),
                                   "augment": "none", "hyp": {"plots": False, "val": False}})
    result = train(cfg, callbacks={"on_train_start": snapshot})
    weights = [k for k, v in first.items() if v.dtype.is_floating_point and "bn" not in k and v.dim() == 4]
    assert len(weights) > 50
    assert all(torch.equal(start[k], first[k]) for k in weights)
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["model"] == str(trained.best)
    assert result.best.is_file()


class _Interrupted(Exception):
    pass


@pytest.mark.slow
def test_resume_continues_an_interrupted_run(synth_data, tmp_path):
    """A 2-epoch run killed after epoch 1 continues from weights/last.pt and finishes epoch 2."""
    from defectgate_training.train import train

    run = tmp_path / "run"
    cfg = load_train_config(None, {"data": str(synth_data), "epochs": 2, "imgsz": 64, "batch": 8, "workers": 0,
                                   "device": "cpu", "out": str(run), "augment": "none", "hyp": {"plots": False}})

    def crash_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise _Interrupted()

    with pytest.raises(_Interrupted):
        train(cfg, callbacks={"on_fit_epoch_end": crash_after_first_epoch})
    assert (run / "weights" / "last.pt").is_file() and not (run / "run.json").exists()
    from defectgate.cli import main

    assert main(["train", "--resume", "--out", str(run)]) == 0  # the config comes from run/config.yaml
    assert json.loads((run / "run.json").read_text())["epochs_done"] == 2
    epochs = [json.loads(line)["epoch"] for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]  # the log keeps epoch 1 from before the crash and adds epoch 2


def test_bf16_on_a_cpu_without_native_bf16_is_refused_and_auto_falls_back(monkeypatch):
    from defectgate_training import cpu_bf16
    from defectgate_training.train import _precision_args

    monkeypatch.setattr(cpu_bf16, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="precision: bf16 .* no native bf16"):
        _precision_args("bf16", "cpu")
    assert _precision_args("auto", "cpu") == {"amp": False}
    assert _precision_args("fp32", "0") == {"amp": False} and _precision_args("auto", "0") == {"amp": "bf16"}


@pytest.mark.slow
@pytest.mark.parametrize("precision, dtype", [("bf16", "torch.bfloat16"), ("fp32", "torch.float32")])
def test_cpu_training_runs_the_model_in_the_configured_precision(synth_data, tmp_path, precision, dtype):
    """What the convolutions actually compute in during a CPU training step (not what a flag says)."""
    pytest.importorskip("ultralytics")
    from defectgate_training.cpu_bf16 import cpu_has_native_bf16
    from defectgate_training.train import train

    if precision == "bf16" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    seen: set[str] = set()

    def hook_first_conv(trainer):
        conv = next(m for m in trainer.model.modules() if m.__class__.__name__ == "Conv2d")
        conv.register_forward_hook(lambda mod, inp, out: seen.add(str(out.dtype)) if mod.training else None)

    cfg = load_train_config(None, {"data": str(synth_data), "epochs": 1, "imgsz": 64, "batch": 8, "workers": 0,
                                   "device": "cpu", "out": str(tmp_path / "run"), "augment": "none",
                                   "precision": precision, "hyp": {"plots": False, "val": False}})
    result = train(cfg, callbacks={"on_train_start": hook_first_conv})
    assert seen == {dtype}
    assert result.best.is_file()
