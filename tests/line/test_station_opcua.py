"""The station's OPC UA server (line.opcua): a real asyncua client selects a registry version with
SelectModel and the running station judges the next parts with it (hot swap between two parts)."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("asyncua", reason="needs the [line] extra (asyncua)")

from asyncua import Client, ua  # noqa: E402
from line_helpers import wait_for  # noqa: E402
from station_helpers import make_bundle  # noqa: E402
from station_line_helpers import archive_rows, line_station_cfg  # noqa: E402

from defectgate.line.opcua import NAMESPACE  # noqa: E402
from defectgate.station import build_station  # noqa: E402

pytestmark = pytest.mark.slow


def test_selectmodel_swaps_the_running_stations_model_to_a_registry_version(tiny_bundle, tmp_path):
    registry = tmp_path / "registry"
    for version in ("v0001", "v0002"):
        make_bundle(tiny_bundle / "model.onnx", registry / version, version=version)
    (registry / "current").symlink_to("v0001")
    users = tmp_path / "users.txt"
    users.write_text("mes:pw\n")
    cfg = line_station_cfg(tiny_bundle, tmp_path, "synthetic://conveyor?parts=40&width=96&height=72",
                           f"model.bundle={registry}", "line.opcua.enabled=true", "line.opcua.host=127.0.0.1",
                           "line.opcua.port=0", f"line.opcua.users_file={users}")
    built = build_station(cfg)
    endpoint = built.station.line.link.opcua.endpoint
    runner = threading.Thread(target=built.station.run, daemon=True)
    runner.start()

    async def select(version: str):
        client = Client(endpoint)
        client.set_user("mes")
        client.set_password("pw")
        async with client:
            idx = await client.get_namespace_index(NAMESPACE)
            recipe = await client.nodes.objects.get_child([f"{idx}:VisionSystem", f"{idx}:RecipeManagement"])
            try:
                return await recipe.call_method(f"{idx}:SelectModel", ua.Variant(version, ua.VariantType.String))
            except ua.UaStatusCodeError as exc:
                return type(exc).__name__

    try:
        assert wait_for(lambda: built.station.stats.verdicts_total >= 3, 20.0)
        assert asyncio.run(select("v0009")) == "BadInvalidArgument", "a version the registry lacks is refused"
        assert asyncio.run(select("v0002")) == "v0002"
        assert built.station.inspector.version == "v0002"
    finally:
        built.station.stop.set()
        runner.join(20.0)
        built.close()
    versions = [r["model_version"] for r in archive_rows(tmp_path)[0]]
    assert versions[0] == "v0001" and versions[-1] == "v0002" and versions == sorted(versions), \
        "each part judged by one model, the swap between two parts"
