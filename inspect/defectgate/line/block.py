"""The result block: the one register table that the station, the PLC program
(deploy/plc/defectgate_result.st), the simulated PLC and docs/line-integration.md share.

32 words of 16 bits. Words 0-15 are written by the station only, words 16-31 by the PLC only, so
neither side ever overwrites the other's data and one write request per side per cycle is enough
(on Modbus a single Write Multiple Registers is applied at once by the PLC, so the result fields
and the result-valid bit change together). The same words are the S7 data block's bytes, big
endian (S7 WORD / DWORD), two bytes per word: S7 byte offset = 2 x word offset. 32-bit values
take two words, high word first (the S7 DWORD order, and the usual Modbus order).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, fields

BLOCK_WORDS = 32
STATION_WORDS = 16  # words 0..15: station -> PLC; words 16..31: PLC -> station


class StationState(enum.IntEnum):
    """OPC 40100-1 vision system states (the same numbers on every transport)."""
    PREOPERATIONAL = 0
    INITIALIZED = 1
    READY = 2
    EXECUTING = 3
    ERROR = 4


class ResultCode(enum.IntEnum):
    NONE = 0  # no result presented yet
    OK = 1
    NG = 2  # a defect was seen: reject
    NG_FAILSAFE = 3  # the station could not judge the part (inference failed, deadline): reject
    NOT_JUDGED = 4  # the station never judged this acquisition (trigger it could not take): reject


class StationBits(enum.IntFlag):
    RESULT_VALID = 1 << 0  # the result fields hold an un-acked result
    FIFO_FULL = 1 << 1  # a result could not be queued: that part gets no result (the PLC rejects it)
    ACK_TIMEOUT = 1 << 2  # a result was not acked in time (sticky until the next ack)
    TRIGGER_OVERRUN = 1 << 3  # triggers came faster than the station could take them
    ALARM = 1 << 4  # any station alarm is active
    LINE_STOP = 1 << 5  # the station asks the PLC to stop the line (unconfirmed rejects in a row)


class PlcBits(enum.IntFlag):
    LINE_RUNNING = 1 << 0
    BIN_FULL = 1 << 1
    AIR_LOW = 1 << 2
    LINE_STOPPED = 1 << 3  # the PLC stopped the line


@dataclass(frozen=True)
class Field:
    name: str
    offset: int  # word offset in the block
    words: int  # 1 = 16 bit, 2 = 32 bit (high word first)
    doc: str

    @property
    def writer(self) -> str:
        return "station" if self.offset < STATION_WORDS else "PLC"


TABLE: tuple[Field, ...] = (
    Field("heartbeat", 0, 1, "station heartbeat, +1 every heartbeat period (wraps)"),
    Field("state", 1, 1, "station state: 0 Preoperational, 1 Initialized, 2 Ready, 3 Executing, 4 Error"),
    Field("status", 2, 1, "bits: 0 result valid, 1 FIFO full, 2 ack timeout, 3 trigger overrun, 4 alarm, 5 line stop"),
    Field("result_seq", 3, 1, "sequence number of the presented result, 1..65535 (0 = none); ack it"),
    Field("acquisition_id", 4, 2, "part / acquisition ID of the presented result (the trigger's ID when given)"),
    Field("result_code", 6, 1, "0 none, 1 OK, 2 NG, 3 NG-failsafe, 4 not judged; reject on 2, 3 and 4"),
    Field("defect_mask", 7, 2, "bit i = defect class i was seen (classes >= 31 set bit 31)"),
    Field("top_confidence", 9, 1, "highest defect confidence x 10000"),
    Field("model_id", 10, 1, "id of the model that judged the part (registry vNNNN -> NNNN)"),
    Field("fifo_depth", 11, 1, "results waiting for an ack, the presented one included"),
    Field("results_lost", 12, 1, "results never acked (FIFO full or ack timeout), count (wraps)"),
    Field("ack_timeouts", 13, 1, "acks that did not come in ack_timeout_ms, count (wraps)"),
    Field("ack_seq", 16, 1, "PLC: write result_seq here once the result is taken"),
    Field("trigger_count", 17, 1, "PLC: +1 per camera trigger (wraps)"),
    Field("trigger_acq_id", 18, 2, "PLC: acquisition ID of the latest trigger"),
    Field("plc_heartbeat", 20, 1, "PLC: +1 every scan or every 100 ms (the station checks it moves)"),
    Field("plc_status", 21, 1, "PLC bits: 0 line running, 1 bin full, 2 air low, 3 line stopped"),
    Field("ejected", 22, 1, "PLC: rejects fired, count (wraps)"),
    Field("ejected_failsafe", 23, 1, "PLC: of those, parts rejected for having no (valid) result"),
    Field("confirmed", 24, 1, "PLC: rejects the confirm sensor saw, count"),
    Field("unconfirmed", 25, 1, "PLC: rejects the confirm sensor did not see in its window, count"),
    Field("last_ejected_id", 26, 2, "PLC: acquisition ID of the latest reject"),
    Field("last_unconfirmed_id", 28, 2, "PLC: acquisition ID of the latest unconfirmed reject"),
)
BY_NAME = {f.name: f for f in TABLE}


@dataclass
class StationBlock:
    heartbeat: int = 0
    state: int = StationState.PREOPERATIONAL
    status: int = 0
    result_seq: int = 0
    acquisition_id: int = 0
    result_code: int = ResultCode.NONE
    defect_mask: int = 0
    top_confidence: int = 0
    model_id: int = 0
    fifo_depth: int = 0
    results_lost: int = 0
    ack_timeouts: int = 0


@dataclass
class PlcBlock:
    ack_seq: int = 0
    trigger_count: int = 0
    trigger_acq_id: int = 0
    plc_heartbeat: int = 0
    plc_status: int = 0
    ejected: int = 0
    ejected_failsafe: int = 0
    confirmed: int = 0
    unconfirmed: int = 0
    last_ejected_id: int = 0
    last_unconfirmed_id: int = 0


def _put(words: list[int], block: object, base: int) -> None:
    for f in fields(block):  # type: ignore[arg-type]
        spec = BY_NAME[f.name]
        value = int(getattr(block, f.name)) & ((1 << (16 * spec.words)) - 1)
        at = spec.offset - base
        if spec.words == 2:
            words[at], words[at + 1] = value >> 16, value & 0xFFFF
        else:
            words[at] = value


def _get(words: list[int], cls: type, base: int):
    values = {}
    for f in fields(cls):
        spec = BY_NAME[f.name]
        at = spec.offset - base
        values[f.name] = (words[at] << 16) | words[at + 1] if spec.words == 2 else words[at]
    return cls(**values)


def encode_station(block: StationBlock) -> list[int]:
    """Words 0..15 (what the station writes)."""
    words = [0] * STATION_WORDS
    _put(words, block, 0)
    return words


def decode_station(words: list[int]) -> StationBlock:
    _check_len(words, STATION_WORDS, "station words")
    return _get(list(words), StationBlock, 0)


def encode_plc(block: PlcBlock) -> list[int]:
    """Words 16..31 (what the PLC writes), as a 16-word list."""
    words = [0] * (BLOCK_WORDS - STATION_WORDS)
    _put(words, block, STATION_WORDS)
    return words


def decode_plc(words: list[int]) -> PlcBlock:
    _check_len(words, BLOCK_WORDS - STATION_WORDS, "PLC words")
    return _get(list(words), PlcBlock, STATION_WORDS)


def words_to_s7(words: list[int]) -> bytearray:
    return bytearray(struct.pack(f">{len(words)}H", *words))


def s7_to_words(data: bytes) -> list[int]:
    if len(data) % 2:
        raise ValueError(f"an S7 block of {len(data)} bytes is not a whole number of words")
    return list(struct.unpack(f">{len(data) // 2}H", bytes(data)))


def _check_len(words: list[int], n: int, what: str) -> None:
    if len(words) != n:
        raise ValueError(f"{what}: expected {n} words, got {len(words)}")


def markdown_table(base: int = 0) -> str:
    """The register table as docs/line-integration.md shows it (a test keeps the two equal)."""
    rows = ["| word | S7 byte | name | type | written by | meaning |", "|---|---|---|---|---|---|"]
    for f in TABLE:
        kind = "UDINT (2 words, high first)" if f.words == 2 else "UINT"
        rows.append(f"| {base + f.offset} | {2 * f.offset} | `{f.name}` | {kind} | {f.writer} | {f.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m defectgate.line.block > table.md: what the docs paste
    print(markdown_table())
