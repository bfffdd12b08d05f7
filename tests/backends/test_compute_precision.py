"""`model.compute_precision`: the station can ask OpenVINO for bf16 compute on purpose (what
ultralytics' OpenVINO path gets silently); every other backend refuses the setting by name."""

import numpy as np
import pytest

from defectgate.backends import load_backend
from defectgate.bundle import load_bundle
from defectgate.config import load_config
from defectgate.errors import BackendError, ConfigError

pytest.importorskip("openvino")


def _cpu_has_bf16() -> bool:
    import openvino as ov
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_openvino_runs_with_the_requested_compute_precision(tiny_bundle):
    """Where the CPU has bf16 (Zen 4/5, Sapphire Rapids) it runs; where it has not (Zen 3, the CI
    runner) the same request is refused by name rather than emulated slower than f32."""
    bundle = load_bundle(tiny_bundle)
    f32 = load_backend(bundle, "openvino", threads=1)
    if not _cpu_has_bf16():
        with pytest.raises(BackendError, match=r"lacks AVX512_BF16 or AMX for bf16 inference .*compute_precision f32"):
            load_backend(bundle, "openvino", threads=1, compute_precision="bf16")
        assert f32.inference_precision == "f32"
        f32.close()
        return
    bf16 = load_backend(bundle, "openvino", threads=1, compute_precision="bf16")
    assert f32.inference_precision == "f32" and bf16.inference_precision == "bf16"
    h, w = bundle.sidecar.input.imgsz
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    a, b = f32.infer(x)[0], bf16.infer(x)[0]
    assert a.shape == b.shape and np.isfinite(b).all()
    f32.close()
    bf16.close()


def test_other_backends_refuse_a_compute_precision(tiny_bundle):
    with pytest.raises(BackendError, match="compute_precision 'bf16' is an OpenVINO setting; backend 'onnxruntime'"):
        load_backend(load_bundle(tiny_bundle), "onnxruntime", compute_precision="bf16")


def test_config_key_is_checked():
    assert load_config(None, ["model.compute_precision=bf16"]).model.compute_precision == "bf16"
    with pytest.raises(ConfigError, match="model.compute_precision"):
        load_config(None, ["model.compute_precision=int4"])
