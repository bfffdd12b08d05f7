"""A simulated PLC on a real Modbus TCP server (`defectgate plc-sim`): a belt with an encoder, a
photo-eye that triggers the camera every `pitch_mm`, the PLC program of plc_program.py scanned
every `scan_s`, the ejector output and a reject-confirm sensor that sees each rejected part
`confirm_delay_ms` after the pulse, except for a fraction `confirm_miss_rate` of them. The sensor's
pulse lasts `confirm_pulse_ms` and is written in at least one scan however late that scan runs (a
part that fell through the light barrier was seen; a scan delayed by a busy host must not erase it).

A run of a fixed length (`make demo-plc`): `parts` stops the photo-eye after that many parts, and
`wait_for_station` keeps the belt still until the station's state word says Ready or Executing (the
usual interlock: the line does not start before its vision system); `finished` then holds once every
part has passed the ejector and every confirm window has closed.

Modbus map (addresses from 0; `base` moves the result block):
    holding registers base..base+31   the result block (block.py; the station is the client)
    holding registers 40..41          encoder count, 32 bit, low word first (source.encoder)
    coil 0                            station_fires: the station's ejector command (actuator kind modbus)
    coil 1                            the ejector valve (the PLC's output; plc_tracks)
    discrete inputs 0..3              reject_confirm, bin_full, air_low, line_running (line.inputs kind modbus)
"""

from __future__ import annotations

import logging
import random
import threading

from ..clock import Clock, MonotonicClock
from ..errors import ConfigError
from .block import BLOCK_WORDS, STATION_WORDS
from .modbus_server import RegisterServer
from .plc_program import PlcProgram

log = logging.getLogger(__name__)

ENCODER_REGISTER = 40
DI = {"reject_confirm": 0, "bin_full": 1, "air_low": 2, "line_running": 3}


class PlcSimulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 5020, base: int = 0, belt_speed_mm_s: float = 600.0,
                 ticks_per_mm: float = 10.0, camera_to_ejector_mm: float = 300.0, pitch_mm: float | None = 120.0,
                 scan_s: float = 0.002, pulse_ms: float = 30.0, confirm_delay_ms: float = 60.0,
                 confirm_miss_rate: float = 0.0, confirm_pulse_ms: float = 20.0,
                 confirm_window_ms: tuple[float, float] = (20.0, 250.0),
                 reject_without_result: bool = True, seed: int = 0, clock: Clock | None = None,
                 parts: int | None = None, wait_for_station: bool = False):
        if base <= ENCODER_REGISTER + 1 < base + BLOCK_WORDS or base <= ENCODER_REGISTER < base + BLOCK_WORDS:
            raise ConfigError(f"plc-sim --base {base}: the result block {base}..{base + BLOCK_WORDS - 1} overlaps the "
                              f"encoder registers {ENCODER_REGISTER}..{ENCODER_REGISTER + 1}; use 0 or >= 42")
        if not 0 <= confirm_miss_rate <= 1:
            raise ConfigError(f"plc-sim --confirm-miss-rate {confirm_miss_rate}: a fraction 0..1")
        if confirm_pulse_ms <= 0:
            raise ConfigError(f"plc-sim --confirm-pulse-ms {confirm_pulse_ms}: a length > 0")
        self.base, self.clock = base, clock or MonotonicClock()
        self.speed, self.ticks_per_mm, self.pitch_mm, self.scan_s = belt_speed_mm_s, ticks_per_mm, pitch_mm, scan_s
        self.confirm_delay_s, self.miss_rate = confirm_delay_ms / 1000, confirm_miss_rate
        self.confirm_pulse_s = confirm_pulse_ms / 1000
        self.program = PlcProgram(round(camera_to_ejector_mm * ticks_per_mm), pulse_ms / 1000,
                                  confirm_window_ms[0] / 1000, confirm_window_ms[1] / 1000, reject_without_result)
        self.server = RegisterServer(host, port, registers=max(base + BLOCK_WORDS, ENCODER_REGISTER + 2) + 8,
                                     bits=8, what="plc-sim")
        self.port = port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sensor_pulses: list[list] = []  # confirm-sensor pulses: [start time, written in a scan yet]
        self.running, self.bin_full, self.air_low = not wait_for_station, False, False
        self.parts, self.wait_for_station = parts, wait_for_station
        self.triggered = 0
        self._ticks = 0.0
        self._next_trigger_mm = 0.0
        self._last_command = False
        self.scans = 0
        self.confirm_missed = 0
        self._thread = threading.Thread(target=self._run, name="plc-sim-scan", daemon=True)

    def start(self) -> "PlcSimulator":
        self._t_last = self.clock.now()
        self._thread.start()
        return self

    def trigger(self) -> int:
        """A part at the photo-eye now (tests and demos that place parts themselves: pitch_mm=None)."""
        with self._lock:
            return self.program.trigger(int(self._ticks))

    def set_line(self, running: bool | None = None, bin_full: bool | None = None, air_low: bool | None = None) -> None:
        with self._lock:
            self.running = self.running if running is None else running
            self.bin_full = self.bin_full if bin_full is None else bin_full
            self.air_low = self.air_low if air_low is None else air_low

    def scan_once(self) -> None:
        now = self.clock.now()
        with self._lock:
            if self.running:
                self._ticks += (now - self._t_last) * self.speed * self.ticks_per_mm
            self._t_last = now
            mm = self._ticks / self.ticks_per_mm
            while self.pitch_mm is not None and self.running and mm >= self._next_trigger_mm and not self._all_in():
                self.program.trigger(int(self._next_trigger_mm * self.ticks_per_mm))
                self.triggered += 1
                self._next_trigger_mm += self.pitch_mm
            station_words, coils = self.server.transact([(self.base, STATION_WORDS, 3), (0, 2, 1)])
            if self.wait_for_station and not self.running and self.program.vision_ready:
                self.running = True  # the start interlock (the last scan saw the station Ready): belt on
                log.info("plc-sim: station ready, belt running")
            command = coils[0]
            ejected_before = self.program.plc.ejected
            due = [p for p in self._sensor_pulses if p[0] <= now and (now < p[0] + self.confirm_pulse_s or not p[1])]
            for p in due:
                p[1] = True
            sensor = bool(due)
            self.program.set_inputs(self.running, self.bin_full, self.air_low)
            plc_words = self.program.scan(now, int(self._ticks), station_words, sensor)
            fired = (self.program.plc.ejected - ejected_before) & 0xFFFF  # plc_tracks: the PLC's own rejects
            fired += bool(command and not self._last_command)  # station_fires: the station's coil rose
            self._last_command = bool(command)
            for _ in range(fired):  # each part leaves the belt: the confirm sensor sees it, unless it misses
                if self._rng.random() < self.miss_rate:
                    self.confirm_missed += 1
                else:
                    self._sensor_pulses.append([now + self.confirm_delay_s, False])
            self._sensor_pulses = [p for p in self._sensor_pulses if now < p[0] + self.confirm_pulse_s or not p[1]]
            levels = [sensor, self.bin_full, self.air_low, self.running]
            ticks = int(self._ticks) & 0xFFFFFFFF
        self.server.transact(writes=[(self.base + STATION_WORDS, plc_words, 3),
                                     (ENCODER_REGISTER, [ticks & 0xFFFF, ticks >> 16], 3),
                                     (1, [self.program.ejector_on], 1), (0, levels, 2)])
        self.scans += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = self.clock.now()
            try:
                self.scan_once()
            except (RuntimeError, TimeoutError) as exc:  # the server thread is gone: the sim is closing
                log.error("plc-sim scan failed: %s", exc)
                return
            self._stop.wait(max(0.0, self.scan_s - (self.clock.now() - t0)))

    def _all_in(self) -> bool:
        return self.parts is not None and self.triggered >= self.parts

    @property
    def finished(self) -> bool:
        """A run of `parts` parts is over: all triggered, all past the ejector, every confirm window closed."""
        with self._lock:
            return self._all_in() and not self.program.register and not self.program.open_confirm_windows

    def summary(self) -> dict:
        with self._lock:
            return {**self.program.summary(), "confirm_sensor_misses": self.confirm_missed, "scans": self.scans,
                    "decisions": [[d.acquisition_id, d.rejected, d.failsafe] for d in self.program.decisions]}

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self.server.close()
