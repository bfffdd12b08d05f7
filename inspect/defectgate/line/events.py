"""What the line link tells the station: one event type for every part-level and line-level
happening (result delivered or not, reject confirmed or not, line inputs, timing process)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventKind(str, enum.Enum):
    delivered = "delivered"  # the PLC acked the part's result
    undelivered = "undelivered"  # never acked (detail: fifo_full, ack_timeout, link_closed): the PLC rejects it
    trigger_overrun = "trigger_overrun"  # triggers lost between two reads, or more than the FIFO holds
    plc_stale = "plc_stale"  # the PLC heartbeat stopped moving, or the link is down
    plc_back = "plc_back"
    reject_confirmed = "reject_confirmed"  # the confirm sensor saw the rejected part in its window
    reject_unconfirmed = "reject_unconfirmed"  # it did not: counted per part, alarm
    line_stop = "line_stop"  # N unconfirmed rejects in a row: the line-stop output is set
    input_changed = "input_changed"  # bin_full / air_low / line_running changed (detail: name=0|1)
    fired = "fired"  # timing process: the pulse went out (t = when)
    missed = "missed"  # timing process: the window was missed, or the process died (detail says which)
    timing_died = "timing_died"  # the timing process died; it is being restarted


@dataclass(frozen=True)
class LineEvent:
    kind: EventKind
    t: float
    part_id: int | None = None
    acquisition_id: int | None = None
    detail: str = ""
