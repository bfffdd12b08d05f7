import pytest

from defectgate.config import ActuatorKind, BackendName, load_config
from defectgate.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "station.yaml"
    p.write_text(text)
    return p


def test_demo_config_loads():
    cfg = load_config("configs/demo-station.yaml")
    assert cfg.model.backend is BackendName.onnxruntime
    assert cfg.actuator.kind is ActuatorKind.simulated


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"conveyor\.belt_sped_mm_s: unknown key"):
        load_config(write(tmp_path, "conveyor:\n  belt_sped_mm_s: 3\n"))


def test_bad_enum_lists_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.backend: got 'cuda'; allowed: .*'onnxruntime'"):
        load_config(write(tmp_path, "model:\n  backend: cuda\n"))


def test_ejector_before_camera_is_impossible_geometry(tmp_path):
    with pytest.raises(ConfigError, match="downstream of the camera"):
        load_config(write(tmp_path, "conveyor:\n  camera_to_ejector_mm: -50\n"))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"station.yaml: line \d+ is not valid YAML"):
        load_config(write(tmp_path, "model:\n  bundle: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_overrides_are_typed_and_checked():
    cfg = load_config("configs/demo-station.yaml", ["conveyor.belt_speed_mm_s=900", "model.backend=openvino"])
    assert cfg.conveyor.belt_speed_mm_s == 900.0 and cfg.model.backend is BackendName.openvino
    with pytest.raises(ConfigError, match="belt_speed_mm_s"):
        load_config("configs/demo-station.yaml", ["conveyor.belt_speed_mm_s=-1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config("configs/demo-station.yaml", ["conveyor.belt_speed_mm_s"])


def test_unknown_source_scheme_names_the_uri_and_the_known_schemes():
    from defectgate.clock import FakeClock
    from defectgate.errors import SourceError
    from defectgate.sources import open_source

    cfg = load_config(None, ["source.uri=carrier-pigeon://coop"])
    with pytest.raises(SourceError, match=r"carrier-pigeon://coop.*unknown scheme.*synthetic://"):
        open_source(cfg.source, cfg.conveyor, FakeClock())
