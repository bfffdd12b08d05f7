"""The register table and the pure handshake logic (fake clock, no sleeping, no I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from defectgate.clock import FakeClock
from defectgate.line import block as B
from defectgate.line.handshake import EventKind, Handshake, PartResult, model_id, result_from_verdict
from defectgate.types import Detections, Outcome, Verdict


def test_table_fields_do_not_overlap_and_match_the_dataclasses():
    used: dict[int, str] = {}
    for f in B.TABLE:
        for w in range(f.offset, f.offset + f.words):
            assert w not in used, f"{f.name} overlaps {used[w]} at word {w}"
            used[w] = f.name
        assert (f.offset < B.STATION_WORDS) == (f.offset + f.words - 1 < B.STATION_WORDS), "a field straddles the halves"
    assert max(used) < B.BLOCK_WORDS
    names = [f.name for f in B.TABLE]
    assert names == [f.name for f in B.fields(B.StationBlock)] + [f.name for f in B.fields(B.PlcBlock)]


def test_blocks_round_trip_through_words_and_s7_bytes():
    st = B.StationBlock(heartbeat=7, state=3, status=5, result_seq=65535, acquisition_id=0xDEADBEEF, result_code=2,
                        defect_mask=0x80000001, top_confidence=9876, model_id=12, fifo_depth=3, results_lost=1,
                        ack_timeouts=1)
    words = B.encode_station(st)
    assert len(words) == 16 and words[4:6] == [0xDEAD, 0xBEEF], "32-bit values are high word first"
    assert B.decode_station(B.s7_to_words(B.words_to_s7(words))) == st
    assert B.words_to_s7(words)[8:12] == bytes.fromhex("deadbeef"), "S7 DWORD at byte 2 x word offset, big endian"
    plc = B.PlcBlock(ack_seq=9, trigger_count=2, trigger_acq_id=123456789, plc_heartbeat=1, plc_status=3,
                     last_unconfirmed_id=0xFFFFFFFF)
    assert B.decode_plc(B.encode_plc(plc)) == plc
    with pytest.raises(ValueError, match="expected 16 words, got 15"):
        B.decode_plc([0] * 15)


def _result(part: int, code=B.ResultCode.OK) -> PartResult:
    return PartResult(part, 1000 + part, code)


def _ack(hs: Handshake, clock: FakeClock, beat: int = 0) -> B.StationBlock:
    shown = hs.station_block(clock.now())
    hs.take_plc(B.PlcBlock(ack_seq=shown.result_seq, plc_heartbeat=beat), clock.now())
    return shown


def test_results_are_presented_in_order_and_advance_only_on_the_ack():
    clock = FakeClock()
    hs = Handshake(clock, fifo_size=8, ack_timeout_s=1.0)
    for part in (1, 2, 3):
        assert hs.submit(_result(part))
    first = hs.station_block(clock.now())
    assert first.status & B.StationBits.RESULT_VALID and first.acquisition_id == 1001 and first.result_seq == 1
    assert first.fifo_depth == 3
    hs.take_plc(B.PlcBlock(ack_seq=0), clock.now())  # no ack yet: the same result stays
    assert hs.station_block(clock.now()).result_seq == 1
    assert _ack(hs, clock).result_seq == 1
    assert _ack(hs, clock, 1).acquisition_id == 1002
    assert _ack(hs, clock, 2).acquisition_id == 1003
    idle = hs.station_block(clock.now())
    assert not idle.status & B.StationBits.RESULT_VALID and idle.result_seq == 3, "fields stay, valid bit drops"
    assert [(e.kind, e.part_id) for e in hs.events() if e.kind is EventKind.delivered] == \
        [(EventKind.delivered, 1), (EventKind.delivered, 2), (EventKind.delivered, 3)]


def test_an_ack_that_never_comes_times_out_counts_and_sets_the_bit():
    clock = FakeClock()
    hs = Handshake(clock, ack_timeout_s=0.2)
    hs.submit(_result(5))
    clock.advance(0.19)
    assert hs.station_block(clock.now()).status & B.StationBits.RESULT_VALID
    clock.advance(0.02)
    blk = hs.station_block(clock.now())
    assert blk.status & B.StationBits.ACK_TIMEOUT and not blk.status & B.StationBits.RESULT_VALID
    assert blk.ack_timeouts == 1 and blk.results_lost == 1
    [ev] = hs.events()
    assert (ev.kind, ev.part_id, ev.detail) == (EventKind.undelivered, 5, "ack_timeout")
    hs.submit(_result(6))
    _ack(hs, clock)
    assert not hs.station_block(clock.now()).status & B.StationBits.ACK_TIMEOUT, "a good ack clears the bit"


def test_a_full_fifo_is_a_visible_error_and_every_result_ends_in_one_event():
    clock = FakeClock()
    hs = Handshake(clock, fifo_size=8, ack_timeout_s=10)
    accepted = [hs.submit(_result(p)) for p in range(10)]
    assert accepted == [True] * 8 + [False] * 2
    blk = hs.station_block(clock.now())
    assert blk.status & B.StationBits.FIFO_FULL and blk.fifo_depth == 8 and blk.results_lost == 2
    lost = [e.part_id for e in hs.events() if e.kind is EventKind.undelivered]
    assert lost == [8, 9] and hs.counts["fifo_full"] == 2
    hs.close(clock.now())
    assert sorted(e.part_id for e in hs.events()) == list(range(8)), "close reports the 8 queued as undelivered"


def test_sequence_numbers_skip_zero_when_they_wrap():
    clock = FakeClock()
    hs = Handshake(clock, fifo_size=1, ack_timeout_s=10)
    hs._seq = 65534
    seqs = []
    for p in range(3):
        hs.submit(_result(p))
        seqs.append(_ack(hs, clock, p).result_seq)
    assert seqs == [65535, 1, 2]


def test_trigger_ids_are_handed_to_captured_parts_and_an_overrun_is_flagged():
    clock = FakeClock()
    hs = Handshake(clock, fifo_size=2)
    hs.take_plc(B.PlcBlock(trigger_count=40, trigger_acq_id=1), clock.now())  # history at the first read
    assert hs.take_trigger() is None
    hs.take_plc(B.PlcBlock(trigger_count=41, trigger_acq_id=501), clock.now())
    assert hs.take_trigger() == 501 and hs.take_trigger() is None
    hs.take_plc(B.PlcBlock(trigger_count=43, trigger_acq_id=503), clock.now())  # 502 came and went unseen
    assert hs.station_block(clock.now()).status & B.StationBits.TRIGGER_OVERRUN
    assert hs.take_trigger() == 503
    assert [e.kind for e in hs.events()] == [EventKind.plc_back, EventKind.trigger_overrun]
    for n in (504, 505, 506):  # three triggers nobody takes: the FIFO of IDs (2) drops the oldest
        hs.take_plc(B.PlcBlock(trigger_count=n - 460, trigger_acq_id=n), clock.now())
    assert hs.counts["triggers_lost"] == 2, "502 between two reads, 504 never claimed: two parts the PLC rejects"
    assert hs.take_trigger() == 505 and hs.plc_first.trigger_count == 40


def test_wait_trigger_hands_over_the_next_trigger_or_none_after_the_timeout():
    import threading

    clock = FakeClock()
    hs = Handshake(clock)
    hs.take_plc(B.PlcBlock(trigger_count=7), clock.now())
    assert hs.wait_trigger(0.01) is None
    threading.Timer(0.05, lambda: hs.take_plc(B.PlcBlock(trigger_count=8, trigger_acq_id=77), clock.now())).start()
    assert hs.wait_trigger(5.0) == 77, "woken by the link's read, not by the timeout"


def test_a_plc_heartbeat_that_stops_is_reported_stale():
    clock = FakeClock()
    hs = Handshake(clock, plc_timeout_s=0.5)
    hs.take_plc(B.PlcBlock(plc_heartbeat=1), clock.now())
    clock.advance(0.4)
    hs.take_plc(B.PlcBlock(plc_heartbeat=1), clock.now())
    assert hs.plc_alive
    clock.advance(0.2)
    hs.take_plc(B.PlcBlock(plc_heartbeat=1), clock.now())
    assert not hs.plc_alive and hs.events()[-1].kind is EventKind.plc_stale
    hs.take_plc(B.PlcBlock(plc_heartbeat=2), clock.now())
    assert hs.plc_alive


def test_heartbeat_counts_in_its_period():
    clock = FakeClock()
    hs = Handshake(clock, heartbeat_s=0.1)
    beats = []
    for _ in range(5):
        beats.append(hs.station_block(clock.now()).heartbeat)
        clock.advance(0.05)
    assert beats == [0, 0, 1, 1, 2]


def test_verdicts_map_to_codes_masks_confidence_and_model_ids():
    dets = Detections(np.array([[0, 0, 1, 1], [0, 0, 2, 2]], np.float32), np.array([0.5, 0.91], np.float32),
                      np.array([2, 40]))
    ng = result_from_verdict(Verdict(7, Outcome.NG, detections=dets, model_version="v0012"), 0x1_0000_0007)
    assert (ng.code, ng.defect_mask, ng.top_confidence, ng.model_id, ng.acquisition_id) == \
        (B.ResultCode.NG, (1 << 2) | (1 << 31), 9100, 12, 7)
    fs = result_from_verdict(Verdict(8, Outcome.NG, failsafe=True), 8)
    assert fs.code is B.ResultCode.NG_FAILSAFE
    assert result_from_verdict(Verdict(9, Outcome.OK), 9).code is B.ResultCode.OK
    assert model_id("abc") == model_id("abc") != model_id("abd")
