"""The OPC UA Machine Vision server against a real asyncua client on 127.0.0.1: the address space,
ResultReady events through a subscription, methods only for a user from the file."""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("asyncua", reason="needs the [line] extra (asyncua)")

from asyncua import Client, ua  # noqa: E402

from defectgate.errors import ConfigError  # noqa: E402
from defectgate.line.block import ResultCode, StationState  # noqa: E402
from defectgate.line.opcua import NAMESPACE, OpcUaVisionServer, ResultInfo  # noqa: E402

pytestmark = pytest.mark.slow  # an OPC UA server start is ~1 s


@pytest.fixture
def server(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("# line engineers\nplc:s3cret\n")
    selected = []

    def select(version: str) -> str:
        if version == "v9999":
            raise ValueError("no such version in the registry")
        selected.append(version)
        return version

    srv = OpcUaVisionServer("127.0.0.1", 0, str(users), select_model=select, name="t").start()
    srv.selected = selected
    yield srv
    srv.close()


async def _vision(client: Client):
    idx = await client.get_namespace_index(NAMESPACE)
    vs = await client.nodes.objects.get_child(f"{idx}:VisionSystem")
    return idx, vs


class _Events:
    def __init__(self):
        self.events = []

    def event_notification(self, event):
        self.events.append(event)


def test_results_arrive_as_resultready_events_and_in_lastresult(server):
    async def go():
        async with Client(server.endpoint) as client:  # anonymous: reading and subscribing is allowed
            idx, vs = await _vision(client)
            handler = _Events()
            sub = await client.create_subscription(20, handler)
            etype = await client.nodes.types.get_child(["0:EventTypes", "0:BaseEventType", f"{idx}:ResultReadyEventType"])
            await sub.subscribe_events(vs, etype)
            server.set_state(StationState.EXECUTING)
            server.publish(ResultInfo("r-1", 41, 0xABCDEF01, ResultCode.NG, ["scratch", "dent"], "v0007", 0.93))
            server.publish(ResultInfo("r-2", 42, 2, ResultCode.OK, [], "v0007"))
            server.set_counters({"PartsInspected": 2, "PartsNG": 1})
            for _ in range(100):
                if len(handler.events) >= 2:
                    break
                await asyncio.sleep(0.02)
            first, second = handler.events[:2]
            assert (first.ResultId, first.PartId, first.AcquisitionId, first.ResultState) == ("r-1", "41", 0xABCDEF01, 2)
            assert first.DefectClasses == ["scratch", "dent"] and first.ModelVersion == "v0007"
            assert second.ResultState == int(ResultCode.OK)
            last = await vs.get_child([f"{idx}:ResultManagement", f"{idx}:LastResult", f"{idx}:ResultId"])
            assert await last.read_value() == "r-2"
            state = await vs.get_child([f"{idx}:VisionSystemStateMachine", f"{idx}:CurrentState"])
            assert await state.read_value() == "Executing"
            counter = await vs.get_child([f"{idx}:Counters", f"{idx}:PartsInspected"])
            assert await counter.read_value() == 2

    asyncio.run(go())


def test_methods_need_a_user_from_the_file(server):
    async def call_select(user=None, password=None, version="v0003"):
        client = Client(server.endpoint)
        if user:
            client.set_user(user)
            client.set_password(password)
        async with client:
            idx, vs = await _vision(client)
            recipe = await vs.get_child(f"{idx}:RecipeManagement")
            return await recipe.call_method(f"{idx}:SelectModel", ua.Variant(version, ua.VariantType.String))

    async def go():
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
            await call_select()  # anonymous: read-only
        assert server.selected == []
        assert await call_select("plc", "s3cret") == "v0003"
        assert server.selected == ["v0003"]
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidArgument"):
            await call_select("plc", "s3cret", "v9999")  # the registry refused it
        with pytest.raises(ua.UaError):
            await call_select("plc", "wrong")  # the session itself is refused
        async with Client(server.endpoint) as client:
            client_user = Client(server.endpoint)
            client_user.set_user("plc")
            client_user.set_password("s3cret")
            async with client_user:
                idx, vs = await _vision(client_user)
                sm = await vs.get_child(f"{idx}:VisionSystemStateMachine")
                await sm.call_method(f"{idx}:Start")
                number = await sm.get_child(f"{idx}:CurrentStateNumber")
                assert await number.read_value() == int(StationState.EXECUTING)
                await sm.call_method(f"{idx}:Stop")
                assert await number.read_value() == int(StationState.READY)
            idx, vs = await _vision(client)
            loaded = await vs.get_child([f"{idx}:RecipeManagement", f"{idx}:LoadedModel"])
            assert await loaded.read_value() == "v0003"
            with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
                await loaded.write_value("v0001")  # anonymous writes are refused

    asyncio.run(go())


def test_a_port_already_taken_is_a_clear_error():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(ConfigError, match=f"line.opcua.port: 127.0.0.1:{port} is already in use"):
            OpcUaVisionServer("127.0.0.1", port).start()


def test_a_bad_users_file_names_the_line_without_echoing_it(tmp_path):
    bad = tmp_path / "users.txt"
    bad.write_text("plc:ok\nnocolon-secret\n")
    with pytest.raises(ConfigError, match=r"users.txt line 2: expected 'user:password'") as err:
        OpcUaVisionServer("127.0.0.1", 0, str(bad))
    assert "nocolon-secret" not in str(err.value)
