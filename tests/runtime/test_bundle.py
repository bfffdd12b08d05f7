import json

import pytest

from defectgate.bundle import SIDECAR_NAME, load_bundle, read_sidecar, sha256_file
from defectgate.errors import BundleError


def make_bundle(tmp_path, classes=("scratch", "dent"), **overrides):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really onnx, but hashed")
    side = {
        "format": "defectgate-bundle", "schema_version": 1, "model_file": "model.onnx",
        "sha256": sha256_file(model), "classes": list(classes),
        "input": {"imgsz": [64, 64]}, "output": {"layout": "yolo_raw", "shape": [1, 4 + len(classes), 84]},
    }
    side.update(overrides)
    (tmp_path / SIDECAR_NAME).write_text(json.dumps(side))
    return tmp_path


def test_valid_bundle_loads(tmp_path):
    b = load_bundle(make_bundle(tmp_path))
    assert b.classes == ["scratch", "dent"]
    assert b.model_path.name == "model.onnx"
    assert len(b.version) == 12


def test_sha256_mismatch_is_refused_and_says_so(tmp_path):
    root = make_bundle(tmp_path)
    (root / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="sha256 .* does not match"):
        load_bundle(root)


def test_class_list_mismatch_is_refused(tmp_path):
    with pytest.raises(BundleError, match="do not match the expected"):
        load_bundle(make_bundle(tmp_path), expect_classes=["scratch", "crack"])


def test_unknown_layout_names_the_key(tmp_path):
    root = make_bundle(tmp_path, output={"layout": "ssd", "shape": [1]})
    with pytest.raises(BundleError, match="output.layout"):
        load_bundle(root)


def test_schema_version_and_foreign_json_refused(tmp_path):
    with pytest.raises(BundleError, match="schema_version"):
        load_bundle(make_bundle(tmp_path, schema_version=99))
    (tmp_path / SIDECAR_NAME).write_text('{"hello": 1}')
    with pytest.raises(BundleError, match="not a defectgate sidecar"):
        read_sidecar(tmp_path / SIDECAR_NAME)


def test_missing_bundle_and_missing_model_file(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope")
    root = make_bundle(tmp_path)
    (root / "model.onnx").unlink()
    with pytest.raises(BundleError, match="is missing"):
        load_bundle(root)


def test_threshold_outside_range_refused(tmp_path):
    with pytest.raises(BundleError, match="class_thresholds"):
        load_bundle(make_bundle(tmp_path, class_thresholds={"dent": 1.5}))
