"""What the PLC program does with the result block, as a pure scan function (clock and encoder
passed in): the Python twin of deploy/plc/defectgate_result.st, used by `defectgate plc-sim` and
the tests. Keep the two in step: same names, same order of the steps in a scan.

Per scan:
1. a new valid result (result_seq changed, RESULT_VALID set) is matched to the part in the
   shift register with that acquisition ID and acked by copying result_seq to ack_seq; a result
   whose part is not (or no longer) in the register is acked too, and counted as orphaned;
2. each part whose eject position the encoder has reached leaves the register: it is rejected
   if its result says NG / NG-failsafe / not judged, or if it has no result at all (fail-safe:
   `reject_without_result`, on by default); an OK part passes;
3. a reject starts the ejector pulse and opens the confirm window; the confirm sensor's rising
   edge inside [confirm_min, confirm_max] after the pulse confirms it, else it is unconfirmed;
4. the PLC heartbeat counts scans.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from .block import PlcBits, PlcBlock, ResultCode, StationBits, StationState, decode_station, encode_plc

REJECT_CODES = {ResultCode.NG, ResultCode.NG_FAILSAFE, ResultCode.NOT_JUDGED}


@dataclass
class TrackedPart:
    acquisition_id: int
    eject_at_ticks: int
    code: ResultCode | None = None  # None: no result yet


@dataclass
class Decision:
    acquisition_id: int
    rejected: bool
    failsafe: bool  # rejected because no result came
    t: float


@dataclass
class PlcProgram:
    camera_to_ejector_ticks: int
    pulse_s: float = 0.03
    confirm_min_s: float = 0.02
    confirm_max_s: float = 0.25
    reject_without_result: bool = True
    register_size: int = 64  # shift register slots (parts between camera and ejector)
    plc: PlcBlock = field(default_factory=PlcBlock)
    register: collections.deque = field(default_factory=collections.deque)
    decisions: list[Decision] = field(default_factory=list)
    orphaned: int = 0
    overflowed: int = 0
    ejector_on: bool = False
    vision_ready: bool = False  # the station's state word says Ready or Executing (the start interlock)
    _ejector_off_at: float = 0.0
    _last_seq: int = 0
    _confirm_windows: collections.deque = field(default_factory=collections.deque)  # (acq, t_fired)
    _last_confirm: bool = False
    _next_acq: int = 1

    # ---- inputs from the line ----
    def trigger(self, encoder_ticks: int) -> int:
        """The photo-eye at the camera saw a part: give it an acquisition ID, trigger the camera
        (trigger_count / trigger_acq_id) and put it into the shift register."""
        acq = self._next_acq
        self._next_acq = (self._next_acq + 1) & 0xFFFFFFFF or 1
        if len(self.register) >= self.register_size:  # more parts than slots: a configuration error;
            self.overflowed += 1  # the oldest is dropped from tracking and counted (as in the ST program)
            self.register.popleft()
        self.register.append(TrackedPart(acq, encoder_ticks + self.camera_to_ejector_ticks))
        self.plc.trigger_count = (self.plc.trigger_count + 1) & 0xFFFF
        self.plc.trigger_acq_id = acq
        return acq

    def set_inputs(self, line_running: bool, bin_full: bool = False, air_low: bool = False) -> None:
        bits = PlcBits(0)
        bits |= PlcBits.LINE_RUNNING if line_running else 0
        bits |= PlcBits.BIN_FULL if bin_full else 0
        bits |= PlcBits.AIR_LOW if air_low else 0
        self.plc.plc_status = int(bits) | (self.plc.plc_status & PlcBits.LINE_STOPPED)

    # ---- one scan ----
    def scan(self, now: float, encoder_ticks: int, station_words: list[int], confirm_sensor: bool) -> list[int]:
        st = decode_station(station_words)
        if st.status & StationBits.RESULT_VALID and st.result_seq != self._last_seq:  # step 1
            self._last_seq = st.result_seq
            part = next((p for p in self.register if p.acquisition_id == st.acquisition_id), None)
            if part is None:
                self.orphaned += 1
            else:
                part.code = ResultCode(st.result_code)
            self.plc.ack_seq = st.result_seq
        if st.status & StationBits.LINE_STOP:
            self.plc.plc_status |= PlcBits.LINE_STOPPED
        self.vision_ready = st.state in (StationState.READY, StationState.EXECUTING)
        while self.register and encoder_ticks >= self.register[0].eject_at_ticks:  # step 2
            self._decide(self.register.popleft(), now)
        if self.ejector_on and now >= self._ejector_off_at:  # step 3
            self.ejector_on = False
        edge = confirm_sensor and not self._last_confirm
        self._last_confirm = confirm_sensor
        if edge:
            for acq, t_fired in self._confirm_windows:
                if t_fired + self.confirm_min_s <= now <= t_fired + self.confirm_max_s:
                    self._confirm_windows.remove((acq, t_fired))
                    self.plc.confirmed = (self.plc.confirmed + 1) & 0xFFFF
                    break
        while self._confirm_windows and now > self._confirm_windows[0][1] + self.confirm_max_s:
            acq, _ = self._confirm_windows.popleft()
            self.plc.unconfirmed = (self.plc.unconfirmed + 1) & 0xFFFF
            self.plc.last_unconfirmed_id = acq
        self.plc.plc_heartbeat = (self.plc.plc_heartbeat + 1) & 0xFFFF  # step 4
        return encode_plc(self.plc)

    def _decide(self, part: TrackedPart, now: float) -> None:
        failsafe = part.code is None
        reject = part.code in REJECT_CODES or (failsafe and self.reject_without_result)
        self.decisions.append(Decision(part.acquisition_id, reject, failsafe and reject, now))
        if not reject:
            return
        self.ejector_on, self._ejector_off_at = True, now + self.pulse_s
        self.plc.ejected = (self.plc.ejected + 1) & 0xFFFF
        self.plc.ejected_failsafe = (self.plc.ejected_failsafe + failsafe) & 0xFFFF
        self.plc.last_ejected_id = part.acquisition_id
        self._confirm_windows.append((part.acquisition_id, now))

    @property
    def open_confirm_windows(self) -> int:
        return len(self._confirm_windows)

    def summary(self) -> dict:
        rej = [d for d in self.decisions if d.rejected]
        return {"parts": len(self.decisions), "ejected": len(rej), "ejected_failsafe": sum(d.failsafe for d in rej),
                "passed": len(self.decisions) - len(rej), "confirmed": self.plc.confirmed,
                "unconfirmed": self.plc.unconfirmed, "results_orphaned": self.orphaned,
                "register_overflows": self.overflowed, "in_register": len(self.register)}
