"""The albumentations pipeline: config checking, what it leaves out, that it keeps boxes on their
defects through ultralytics' own wrapper, and that ultralytics training really calls it."""

from __future__ import annotations

import numpy as np
import pytest

from defectgate.errors import ConfigError

A = pytest.importorskip("albumentations", reason="needs the [train] extra")

from defectgate_training import augment as aug  # noqa: E402


def test_presets_and_overrides_resolve():
    assert aug.load_augment_config("inspection").rotate90 == 0
    assert aug.load_augment_config("texture").rotate90 == 0.5
    cfg = aug.load_augment_config({"preset": "texture", "noise": 0.0})
    assert cfg.noise == 0 and cfg.rotate90 == 0.5
    assert aug.build_transforms(aug.load_augment_config("none")) is None  # "off" = ultralytics built-in


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match=r"augment\.blur_limit"):
        aug.load_augment_config({"blur_limit": 15})
    with pytest.raises(ConfigError, match="preset: 'fancy' is unknown"):
        aug.load_augment_config("fancy")
    with pytest.raises(ConfigError, match=r"augment\.cutout"):
        aug.load_augment_config({"cutout": 0.5})


def test_no_transform_that_can_erase_a_small_defect():
    everything = aug.load_augment_config({"preset": "texture", "downscale": 1, "rotate_degrees": 5, "blur": 1})
    names = {type(t).__name__ for t in aug.build_transforms(everything)}
    assert not names & {"CoarseDropout", "GridDropout", "RandomResizedCrop", "RandomCrop", "Erasing", "PixelDropout"}
    blur = next(t for t in aug.build_transforms(everything) if type(t).__name__ == "OneOf")
    assert all(max(b.blur_limit) <= 5 for b in blur.transforms)


def _bright_box(img: np.ndarray) -> np.ndarray:
    ys, xs = np.where(img[..., 0] > 200)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize("extra", [{"rotate90": 1.0}, {"rotate_degrees": 0.0, "rotate90": 1.0, "noise": 1.0, "blur": 1.0}])
def test_boxes_follow_the_defect_through_ultralytics_wrapper(extra):
    """A white rectangle labelled as a box: after the pipeline (inside ultralytics' Albumentations
    wrapper, as in training) the returned box still frames the white pixels."""
    pytest.importorskip("ultralytics")
    from defectgate_training.ultra import ultralytics

    ultralytics()  # offline settings before ultralytics reads them at import
    from ultralytics.data.augment import Albumentations
    from ultralytics.utils.instance import Instances

    cfg = aug.load_augment_config({"preset": "inspection", "brightness_contrast": 0, "gamma": 0, "clahe": 0,
                                   "jpeg": 0, **extra})
    wrapper = Albumentations(p=1.0, transforms=aug.build_transforms(cfg))
    assert wrapper.transform is not None and wrapper.contains_spatial
    rng = np.random.default_rng(0)
    for trial in range(8):
        img = np.full((96, 128, 3), 60, np.uint8)
        x0, y0 = int(rng.integers(5, 60)), int(rng.integers(5, 40))
        img[y0:y0 + 20, x0:x0 + 40] = 255
        box = np.array([[x0, y0, x0 + 40, y0 + 20]], np.float32)
        labels = {"img": img, "cls": np.array([[1.0]]),
                  "instances": Instances(box.copy(), np.zeros((0, 1000, 2), np.float32), bbox_format="xyxy", normalized=False)}
        out = wrapper(labels)
        inst = out["instances"]
        inst.convert_bbox("xyxy")
        h, w = out["img"].shape[:2]
        if inst.normalized:
            inst.denormalize(w, h)
        assert len(inst.bboxes) == 1 and out["cls"].ravel().tolist() == [1.0]
        np.testing.assert_allclose(inst.bboxes[0], _bright_box(out["img"]), atol=1.5)


@pytest.mark.slow
def test_training_calls_the_pipeline_with_consistent_boxes(trained):
    """The probe appended to the pipeline ran inside the ultralytics dataloader during the 1-epoch
    run, on training-size images, and every box it saw was a valid normalised box."""
    from box_probe import BoxProbe

    calls = BoxProbe.calls
    assert len(calls) >= 8  # one per training sample (24 images x 1 epoch, 80% train)
    assert all(c["shape"][:2] == (64, 64) for c in calls)
    seen = [c["boxes"] for c in calls if c["boxes"] is not None and len(c["boxes"])]
    assert seen, "no labelled sample passed the probe"
    for boxes in seen:
        xyxy = boxes[:, :4]
        assert (xyxy >= -1e-6).all() and (xyxy <= 1 + 1e-6).all()
        assert (xyxy[:, 2] > xyxy[:, 0]).all() and (xyxy[:, 3] > xyxy[:, 1]).all()
    args = (trained.run_dir / "args.yaml").read_text()
    assert "RandomRotate90" in args and "TrainingBoxProbe" in args  # ultralytics recorded the pipeline
