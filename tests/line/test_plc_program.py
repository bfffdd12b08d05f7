"""The PLC program's scan logic (the Python twin of deploy/plc/defectgate_result.st), pure."""

from __future__ import annotations

from defectgate.line import block as B
from defectgate.line.plc_program import PlcProgram


def _result(seq: int, acq: int, code: B.ResultCode) -> list[int]:
    return B.encode_station(B.StationBlock(status=B.StationBits.RESULT_VALID, result_seq=seq, acquisition_id=acq,
                                           result_code=code))


IDLE = B.encode_station(B.StationBlock())


def test_the_shift_register_carries_results_to_the_ejector_and_rejects_parts_without_one():
    prog = PlcProgram(camera_to_ejector_ticks=1000, pulse_s=0.03)
    a, b, c = prog.trigger(0), prog.trigger(100), prog.trigger(200)
    assert prog.plc.trigger_count == 3 and prog.plc.trigger_acq_id == c
    plc = B.decode_plc(prog.scan(0.0, 250, _result(1, a, B.ResultCode.NG), False))
    assert plc.ack_seq == 1, "the result is acked by copying its seq"
    plc = B.decode_plc(prog.scan(0.01, 260, _result(2, b, B.ResultCode.OK), False))
    assert plc.ack_seq == 2 and not prog.decisions, "nothing reaches the ejector before 1000 ticks"
    prog.scan(0.1, 999, IDLE, False)
    assert not prog.ejector_on
    prog.scan(0.2, 1000, IDLE, False)
    assert prog.ejector_on and [d.rejected for d in prog.decisions] == [True], "part a (NG) is ejected at its position"
    prog.scan(0.24, 1150, IDLE, False)
    assert not prog.ejector_on, "the pulse ends after pulse_s"
    prog.scan(0.3, 1300, IDLE, False)
    assert [(d.acquisition_id, d.rejected, d.failsafe) for d in prog.decisions] == \
        [(a, True, False), (b, False, False), (c, True, True)], "c never got a result: rejected, fail-safe"
    assert (prog.plc.ejected, prog.plc.ejected_failsafe, prog.plc.last_ejected_id) == (2, 1, c)


def test_pass_without_result_can_be_chosen_and_late_results_are_orphaned():
    prog = PlcProgram(camera_to_ejector_ticks=10, reject_without_result=False)
    a = prog.trigger(0)
    prog.scan(0.0, 20, IDLE, False)
    prog.scan(0.1, 20, _result(1, a, B.ResultCode.NG), False)  # too late: the part has passed
    assert [d.rejected for d in prog.decisions] == [False] and prog.orphaned == 1
    assert prog.plc.ack_seq == 1, "acked all the same, so the station's FIFO moves on"


def test_confirm_sensor_edges_inside_the_window_confirm_and_missing_ones_count():
    prog = PlcProgram(camera_to_ejector_ticks=10, confirm_min_s=0.02, confirm_max_s=0.1)
    a, b = prog.trigger(0), prog.trigger(5)
    prog.scan(0.0, 20, _result(1, a, B.ResultCode.NG), False)  # a and b ejected (b fail-safe) at t=0
    prog.scan(0.05, 20, IDLE, True)  # one edge: confirms a
    prog.scan(0.06, 20, IDLE, True)  # held level: no second edge
    prog.scan(0.2, 20, IDLE, False)
    assert (prog.plc.confirmed, prog.plc.unconfirmed, prog.plc.last_unconfirmed_id) == (1, 1, b)


def test_the_heartbeat_counts_scans_and_line_stop_is_latched():
    prog = PlcProgram(camera_to_ejector_ticks=10)
    for i in range(3):
        prog.scan(i * 0.01, 0, IDLE, False)
    assert prog.plc.plc_heartbeat == 3
    prog.scan(0.1, 0, B.encode_station(B.StationBlock(status=B.StationBits.LINE_STOP)), False)
    prog.set_inputs(line_running=True)
    assert prog.plc.plc_status & B.PlcBits.LINE_STOPPED and prog.plc.plc_status & B.PlcBits.LINE_RUNNING
