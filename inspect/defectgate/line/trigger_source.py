"""`line.trigger: plc`: the station takes one frame per PLC trigger, the way a smart camera takes a
trigger over the fieldbus. The link's service thread reads the PLC's trigger count and the
trigger's acquisition ID from the block every cycle; this source waits for the next trigger, reads
one frame from the camera (or the synthetic conveyor with `realtime=0`) and gives it the PLC's
acquisition ID as its part id. So the result the station sends for that part carries the ID the
PLC's shift register knows, with no guessing which frame belongs to which trigger.

A trigger is seen at most one link cycle (`result_block.cycle_ms`) after the PLC raised it, so the
part has moved up to speed x cycle further when the frame is taken: size the field of view for it,
or use a hardware-triggered camera (`line.trigger: camera`). Triggers that come faster than one per
cycle lose their IDs: trigger overrun (status bit 3, event, alarm); the PLC rejects those parts."""

from __future__ import annotations

import dataclasses
from typing import Any


class PlcTriggeredSource:
    def __init__(self, inner: Any, handshake: Any):
        self.inner, self.handshake = inner, handshake
        self.uri = f"{inner.uri} (triggered by the PLC)"
        self.triggers = 0
        self._waiting: int | None = None  # a trigger whose frame the camera has not delivered yet

    def __getattr__(self, name: str) -> Any:  # the camera's counters (corrupt, disconnects, hw, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def exhausted(self) -> bool:
        return self.inner.exhausted

    def read(self, timeout: float):
        acq = self._waiting if self._waiting is not None else self.handshake.wait_trigger(timeout)
        if acq is None:
            return None
        self.triggers += self._waiting is None
        frame = self.inner.read(timeout)
        if frame is None:
            self._waiting = acq
            return None
        self._waiting = None
        # the PLC tracks the part from its trigger: the station's encoder estimate plays no part
        return dataclasses.replace(frame, part_id=acq, encoder_mm=None)

    def close(self) -> None:
        self.inner.close()
