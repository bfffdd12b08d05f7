"""Each result-block transport against a real server on 127.0.0.1: the station's words arrive
where the register table says, the PLC's words come back, and a dead peer is a LinkError, fast."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pymodbus", reason="needs the [station] extra")

from line_helpers import free_port  # noqa: E402

from defectgate.clock import MonotonicClock  # noqa: E402
from defectgate.errors import ConfigError  # noqa: E402
from defectgate.line import block as B  # noqa: E402
from defectgate.line.handshake import EventKind, Handshake, PartResult  # noqa: E402
from defectgate.line.modbus_link import ModbusClientTransport, ModbusServerTransport  # noqa: E402
from defectgate.line.modbus_server import RegisterServer  # noqa: E402
from defectgate.line.transport import LinkError  # noqa: E402
from defectgate.line.worker import LinkWorker  # noqa: E402

STATION = B.encode_station(B.StationBlock(heartbeat=3, state=3, status=1, result_seq=9, acquisition_id=0x12345678,
                                          result_code=2, defect_mask=5, top_confidence=7000, model_id=4))
PLC = B.encode_plc(B.PlcBlock(ack_seq=9, trigger_count=4, trigger_acq_id=0xCAFE0001, plc_heartbeat=77))


def test_modbus_client_writes_the_station_half_and_reads_the_plc_half():
    plc = RegisterServer("127.0.0.1", free_port(), registers=200, what="test PLC")
    try:
        plc.write(116, PLC)
        link = ModbusClientTransport("127.0.0.1", plc.port, base=100)
        assert link.exchange(STATION) == PLC
        assert plc.read(100, 16) == STATION and plc.read(99, 1) == [0], "nothing written outside the block"
        assert B.decode_station(plc.read(100, 16)).acquisition_id == 0x12345678
        link.close()
    finally:
        plc.close()


def test_modbus_client_fails_fast_when_nobody_listens_and_reconnects_later():
    port = free_port()
    link = ModbusClientTransport("127.0.0.1", port, reconnect_s=0.05, timeout_s=0.1)
    t0 = time.monotonic()
    with pytest.raises(LinkError, match=f"127.0.0.1:{port}"):
        link.exchange(STATION)
    with pytest.raises(LinkError, match="next connect attempt"):
        link.exchange(STATION)  # within reconnect_s: no new connect, no wait
    assert time.monotonic() - t0 < 0.5
    plc = RegisterServer("127.0.0.1", port, what="test PLC")
    try:
        time.sleep(0.06)
        assert link.exchange(STATION) == [0] * 16
    finally:
        plc.close()
    with pytest.raises(LinkError, match="link lost|cannot connect"):
        for _ in range(3):  # the first exchange after the server died may still be buffered
            link.exchange(STATION)
            time.sleep(0.06)


def test_modbus_client_names_the_address_when_the_plc_refuses():
    plc = RegisterServer("127.0.0.1", free_port(), registers=20, what="test PLC")  # too small for base 100
    try:
        with pytest.raises(LinkError, match=r"holding registers 100\.\.131"):
            ModbusClientTransport("127.0.0.1", plc.port, base=100).exchange(STATION)
    finally:
        plc.close()


def test_modbus_server_transport_is_polled_by_a_real_client():
    from pymodbus.client import ModbusTcpClient

    link = ModbusServerTransport("127.0.0.1", free_port(), base=10)
    client = ModbusTcpClient("127.0.0.1", port=int(link.name.split(":")[2].split("/")[0]))
    try:
        assert link.exchange(STATION) == [0] * 16
        client.connect()
        assert client.read_holding_registers(10, count=16, device_id=1).registers == STATION
        client.write_registers(26, PLC, device_id=1)
        assert link.exchange(STATION) == PLC
    finally:
        client.close()
        link.close()


def test_a_taken_port_is_a_clear_config_error():
    blocker = RegisterServer("127.0.0.1", free_port(), what="first")
    try:
        with pytest.raises(ConfigError, match=f"line.modbus_server: 127.0.0.1:{blocker.port} is already in use"):
            ModbusServerTransport("127.0.0.1", blocker.port)
    finally:
        blocker.close()


def test_s7_transport_against_snap7s_own_server(s7_server):
    from defectgate.line.s7_link import S7Transport

    s7_server.data[96:128] = B.words_to_s7(PLC)
    link = S7Transport("127.0.0.1", db=100, start=64, port=s7_server.port)
    assert link.exchange(STATION) == PLC
    assert B.s7_to_words(s7_server.data[64:96]) == STATION
    assert s7_server.data[78:82] == bytes.fromhex("00000005"), "defect_mask is the DWORD at DBB 64 + 2 x 7"
    link.close()
    s7_server.stop()
    link2 = S7Transport("127.0.0.1", db=100, port=s7_server.port, reconnect_s=10)
    with pytest.raises(LinkError, match=f"s7:127.0.0.1:{s7_server.port}"):
        link2.exchange(STATION)


def _acking_plc(server: RegisterServer, base: int, rounds: int, beat: list[int]) -> None:
    """What the PLC program does with the block: ack a valid result by copying its seq."""
    for _ in range(rounds):
        st = B.decode_station(server.read(base, 16))
        beat[0] += 1
        ack = st.result_seq if st.status & B.StationBits.RESULT_VALID else B.decode_plc(server.read(base + 16, 16)).ack_seq
        server.write(base + 16, B.encode_plc(B.PlcBlock(ack_seq=ack, plc_heartbeat=beat[0])))
        time.sleep(0.005)


def test_worker_delivers_every_result_through_a_real_modbus_server_and_survives_it_dying():
    clock = MonotonicClock()
    plc = RegisterServer("127.0.0.1", free_port(), what="test PLC")
    hs = Handshake(clock, fifo_size=8, ack_timeout_s=0.3)
    link = ModbusClientTransport("127.0.0.1", plc.port, reconnect_s=0.05)
    worker = LinkWorker(hs, link, clock, cycle_s=0.005).start()
    beat = [0]
    try:
        for part in range(5):
            hs.submit(PartResult(part, 100 + part, B.ResultCode.NG))
        _acking_plc(plc, 0, 60, beat)
        delivered = [e.part_id for e in hs.events() if e.kind is EventKind.delivered]
        assert delivered == list(range(5))
        assert worker.link_up
        plc.close()  # mid-run: the PLC goes away
        for part in range(5, 8):
            hs.submit(PartResult(part, 100 + part, B.ResultCode.OK))
        time.sleep(0.5)
        events = hs.events()
        assert sorted(e.part_id for e in events if e.kind is EventKind.undelivered) == [5, 6, 7]
        assert all(e.detail == "ack_timeout" for e in events if e.kind is EventKind.undelivered)
        assert not worker.link_up and worker.link_failures > 0
    finally:
        worker.stop()
        link.close()
