"""OpenVINO with the preprocessing in its graph (uint8 canvas in), several streams, and the checks
that refuse what this machine cannot run: an IR newer than the installed OpenVINO, an INT8 model or
bf16 compute on a CPU without the instructions. `backend: auto` computes in f32 where only the compute
precision cannot run, and falls back to ONNX Runtime where OpenVINO cannot run the bundle at all."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectgate.backends import load_backend
from defectgate.bundle import TtaSpec, load_bundle, read_sidecar, sha256_file, write_sidecar
from defectgate.detector import Detector
from defectgate.errors import BackendError, BundleError
from defectgate.preprocess import letterbox

from tinyyolo import part_images

ov = pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
ovb = pytest.importorskip("defectgate.backends.openvino")
OpenVinoBackend = ovb.OpenVinoBackend


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[np.ndarray]:
    folder = part_images(tmp_path_factory.mktemp("frames"), 4, seed=3)
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]


def _with_sidecar(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    side = read_sidecar(dst / "model.json")
    write_sidecar(dst, side.model_copy(update=changes))
    return dst


@pytest.mark.parametrize("normalise", [
    {},  # the ultralytics default: RGB, 1/255
    {"color": "BGR", "mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3)},  # every step of the graph formula
])
def test_uint8_canvas_in_the_graph_gives_what_the_float_input_gives(tiny_bundle, tmp_path, frames, normalise):
    side = read_sidecar(tiny_bundle / "model.json")
    root = _with_sidecar(tiny_bundle, tmp_path / "b", input=side.input.model_copy(update=normalise))
    bundle = load_bundle(root)
    in_graph = Detector(bundle, OpenVinoBackend(bundle, in_graph_preprocess=True), conf_floor=0.0)
    on_cpu = Detector(bundle, load_backend(bundle, "onnxruntime"), conf_floor=0.0)
    assert (in_graph.input_format, on_cpu.input_format) == ("nhwc_u8", "nchw")
    for image in frames:
        canvas, info = in_graph.prepare(image)
        assert canvas.dtype == np.uint8 and canvas.shape == (1, *side.input.imgsz, 3)
        x, info_cpu = on_cpu.prepare(image)
        assert info == info_cpu
        np.testing.assert_array_equal(canvas[0], letterbox(image, side.input.imgsz)[0])  # the BGR canvas as it is
        a, r = in_graph.infer(canvas)[0], on_cpu.infer(x)[0]
        assert np.abs(a[0, :4] - r[0, :4]).max() < 0.05  # boxes, input pixels
        assert np.abs(a[0, 4:] - r[0, 4:]).max() < 1e-3  # class scores


def test_the_detector_asks_for_the_graph_preprocessing_except_with_shrunk_views(tiny_bundle, tmp_path):
    plain = Detector(load_bundle(tiny_bundle), backend_name="openvino")
    assert plain.input_format == "nhwc_u8" and plain.backend.input_format == "nhwc_u8"
    side = read_sidecar(tiny_bundle / "model.json")
    scaled = _with_sidecar(tiny_bundle, tmp_path / "ms", tta=TtaSpec(scales=[1.0, 0.75]),
                           output=side.output.model_copy(update={"strides": [8, 16, 32]}))
    assert Detector(load_bundle(scaled), backend_name="openvino").input_format == "nchw"


def test_two_streams_run_two_frames_at_once_with_the_results_of_one(tiny_bundle, frames):
    bundle = load_bundle(tiny_bundle)
    two = OpenVinoBackend(bundle, streams=2, in_graph_preprocess=True)
    one = OpenVinoBackend(bundle, in_graph_preprocess=True)
    assert two.concurrency == 2 and int(two.compiled.get_property("NUM_STREAMS")) == 2
    assert one.concurrency == 1 and one.hint == "LATENCY"
    det = Detector(bundle, one)
    batches = [det.prepare(f)[0].copy() for f in frames]
    want = [one.infer(b)[0] for b in batches]
    got: dict[int, list[np.ndarray]] = {}

    def worker(k: int) -> None:
        got[k] = [two.infer(batches[i])[0] for i in range(len(batches)) for _ in range(3)][::3]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k in range(2):
        for a, b in zip(got[k], want):
            np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(BackendError, match="streams = 0"):
        OpenVinoBackend(bundle, streams=0)
    with pytest.raises(BackendError, match="streams '2' is an OpenVINO setting; backend 'onnxruntime'"):
        load_backend(bundle, "onnxruntime", streams=2)


def _rewrite_writer(xml: Path, version: str) -> None:
    text = xml.read_text()
    assert 'name="OpenVINO Runtime" value="' in text
    start = text.index('name="OpenVINO Runtime" value="') + len('name="OpenVINO Runtime" value="')
    xml.write_text(text[:start] + version + text[text.index('"', start):])


def test_an_ir_newer_than_this_openvino_is_refused_with_what_to_do(tiny_bundle, tmp_path):
    int8 = pytest.importorskip("defectgate_training.openvino_int8", reason="the [train] extra is not installed")
    out = int8.export_openvino_ir(tiny_bundle, tmp_path / "ir")
    assert ovb.ir_writer_version(out / "model.xml") == ovb.ov_version(ov)  # what this OpenVINO wrote
    _rewrite_writer(out / "model.xml", "2099.1.0-1-abc")
    side = read_sidecar(out / "model.json")
    write_sidecar(out, side.model_copy(update={"sha256": sha256_file(out / "model.xml")}))
    with pytest.raises(BundleError, match=r"model.xml: this IR was written by OpenVINO 2099\.1\.0, this machine has "
                                          r".*upgrade it \(pip install 'openvino>=2099\.1\.0'\) or re-export"):
        OpenVinoBackend(load_bundle(out))


def test_a_too_new_ir_beside_the_onnx_is_skipped_for_the_onnx(tiny_bundle, tmp_path, caplog):
    int8 = pytest.importorskip("defectgate_training.openvino_int8", reason="the [train] extra is not installed")
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    int8.export_openvino_ir(root)
    _rewrite_writer(root / "model.xml", "2099.1.0")
    with caplog.at_level(logging.WARNING, logger="defectgate.backends.openvino"):
        backend = OpenVinoBackend(load_bundle(root))
    assert backend.model_file.name == "model.onnx"
    assert "newer than this" in caplog.text and "converting model.onnx instead" in caplog.text


@pytest.mark.parametrize("written, installed, newer", [
    ("2026.4.1", "2026.4.1", False), ("2026.4.9", "2026.4.1", False), ("2026.5.0", "2026.4.1", True),
    ("2027.0", "2026.4.1", True), ("2025.1.0", "2026.4.1", False), ("", "2026.4.1", False)])
def test_release_comparison_ignores_patches(written, installed, newer):
    assert ovb._newer_than_installed(written, installed) is newer


def _cpu_without(monkeypatch, missing: str) -> None:
    real = ov.Core.get_property

    def get_property(core, *args):
        value = real(core, *args)
        if args[-1] == "OPTIMIZATION_CAPABILITIES":
            return [c for c in value if c != missing]
        return value

    monkeypatch.setattr(ov.Core, "get_property", get_property)


def test_int8_on_a_cpu_without_int8_instructions_is_refused_and_auto_falls_back(tiny_bundle, tmp_path, monkeypatch,
                                                                                caplog):
    root = _with_sidecar(tiny_bundle, tmp_path / "q", precision="int8")  # an ONNX (QDQ) INT8 bundle
    _cpu_without(monkeypatch, "INT8")
    with pytest.raises(BackendError, match="lacks INT8 instructions .* for int8 inference .*run the FP32 bundle"):
        OpenVinoBackend(load_bundle(root))
    with caplog.at_level(logging.INFO, logger="defectgate.backends"):
        backend = load_backend(load_bundle(root), "auto")
    assert backend.name.startswith("onnxruntime:")
    assert "backend auto: openvino cannot run model.onnx here" in caplog.text
    assert "lacks INT8 instructions" in caplog.text and "falling back to onnxruntime" in caplog.text


def test_bf16_compute_on_a_cpu_without_bf16_is_refused(tiny_bundle, monkeypatch):
    _cpu_without(monkeypatch, "BF16")
    with pytest.raises(BackendError, match=r"lacks AVX512_BF16 or AMX for bf16 inference .*use compute_precision f32"):
        OpenVinoBackend(load_bundle(tiny_bundle), inference_precision="bf16")
    OpenVinoBackend(load_bundle(tiny_bundle)).close()  # f32 needs nothing special


@pytest.mark.parametrize("kind", ["onnx", "ir"])
def test_auto_with_bf16_on_a_cpu_without_it_computes_in_f32_on_openvino_and_says_so(tiny_bundle, tmp_path,
                                                                                    monkeypatch, caplog, kind):
    import platform

    if kind == "onnx" and platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("auto picks OpenVINO for an ONNX bundle on x86 only")
    root = tiny_bundle
    if kind == "ir":  # an IR bundle runs on OpenVINO only: no other engine to fall back to
        from defectgate_training import openvino_int8 as int8

        root = int8.export_openvino_ir(tiny_bundle, tmp_path / "ir")
    _cpu_without(monkeypatch, "BF16")
    with caplog.at_level(logging.INFO, logger="defectgate.backends"):
        backend = load_backend(load_bundle(root), "auto", compute_precision="bf16")
    assert backend.name.startswith("openvino:") and backend.inference_precision == "f32"
    assert "cannot compute" in caplog.text and "in bf16 here" in caplog.text and "computing in f32" in caplog.text
    assert "lacks AVX512_BF16 or AMX" in caplog.text and "falling back to onnxruntime" not in caplog.text
    backend.close()
    with pytest.raises(BackendError, match="lacks AVX512_BF16 or AMX"):  # asked by name, it is still refused
        load_backend(load_bundle(root), "openvino", compute_precision="bf16")


def test_auto_keeps_openvino_when_it_runs(tiny_bundle, caplog):
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("auto picks OpenVINO on x86 only")
    with caplog.at_level(logging.INFO, logger="defectgate.backends"):
        backend = load_backend(load_bundle(tiny_bundle), "auto", in_graph_preprocess=True)
    assert backend.name.startswith("openvino:") and backend.input_format == "nhwc_u8"
    assert "falling back" not in caplog.text
