"""`defectgate parity`: the reference and each candidate backend see the same images through the
station's own path; the report names matched detections, differences and the mAP50 drop."""

import json
import subprocess
import sys

import pytest

from defectgate.errors import ConfigError
from defectgate_training.backend_parity import Target, compare_backends
from defectgate_training.export import PARITY

pytestmark = pytest.mark.slow


def test_target_parsing():
    assert Target.parse("runs/b:openvino") == Target(__import__("pathlib").Path("runs/b"), "openvino")
    assert Target.parse("runs/b").backend == "onnxruntime"
    with pytest.raises(ConfigError, match="BUNDLE"):
        Target.parse(":openvino")


@pytest.fixture(scope="module")
def busy_bundle(tmp_path_factory):
    """The tiny random-weight YOLO whose outputs vary with the image: plenty of detections to compare."""
    from tinyyolo import export_tiny_yolo, make_onnx_bundle

    root = tmp_path_factory.mktemp("parity")
    return make_onnx_bundle(export_tiny_yolo(root), root / "bundle")


def images(folder, n):
    import cv2
    from tinyyolo import part_images

    return [cv2.imread(str(p)) for p in sorted(part_images(folder, n).iterdir())]


def score_bar(bundle_dir, imgs):
    """Untrained scores are small: compare the top ~10 % of candidate scores, not those above 0.1."""
    import numpy as np

    from defectgate.backends import load_backend
    from defectgate.bundle import load_bundle
    from defectgate.preprocess import Preprocessor

    b = load_bundle(bundle_dir)
    be, pre = load_backend(b, "onnxruntime"), Preprocessor(b.sidecar.input)
    q = float(np.quantile([be.infer(pre(im)[0])[0][0, 4:].max(0) for im in imgs], 0.9))
    return PARITY["fp32"].__class__(conf=q, margin=q * 0.3, score=0.02, box_px=1.0)


def test_openvino_matches_onnxruntime_detection_by_detection(busy_bundle, tmp_path):
    pytest.importorskip("openvino")
    images_ = images(tmp_path / "imgs", 4)
    tol = score_bar(busy_bundle, images_)
    (row,) = compare_backends(Target(busy_bundle), [Target(busy_bundle, "openvino")], images_, tol)
    assert row["runs_on"].startswith("openvino") and row["images"] == 4
    assert row["detections_matched"] > 0, "nothing was compared"
    # random weights give near-tied duplicate boxes, and NMS may keep a different one of a tie in each
    # engine: a few unpartnered boxes are expected; matched ones must agree closely
    assert row["mismatches"] <= 0.05 * row["detections_matched"]
    assert row["max_box_px"] <= 1.0 and row["max_score_diff"] <= 0.02


def test_a_different_model_is_reported_as_mismatching(busy_bundle, tmp_path):
    """The check can fail: the same architecture with other weights disagrees box by box."""
    from tinyyolo import export_tiny_yolo, make_onnx_bundle

    other = make_onnx_bundle(export_tiny_yolo(tmp_path, bn_batches=(1, 1)), tmp_path / "other")
    imgs = images(tmp_path / "imgs", 2)
    (row,) = compare_backends(Target(busy_bundle), [Target(other)], imgs, score_bar(busy_bundle, imgs))
    assert row["mismatches"] > 0.2 * row["detections_matched"] and row["first_mismatch"]


def test_cli_reports_map_drop_and_exit_code(bundle, synth_data, tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "parity.json"
    r = subprocess.run([sys.executable, "-m", "defectgate.cli", "parity", "--candidate", f"{bundle.bundle}:openvino",
                        "--data", str(synth_data), "--images", "3", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    (cand,) = report["candidates"]
    assert report["reference"].endswith(":onnxruntime")
    assert abs(cand["map50_drop"]) <= 0.005 and cand["within_map_tolerance"] is True
    # a candidate whose classes differ from the reference's is refused by name
    bad = subprocess.run([sys.executable, "-m", "defectgate.cli", "parity", "--reference", "nowhere",
                          "--candidate", str(bundle.bundle), "--data", str(synth_data)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr
