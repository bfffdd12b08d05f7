"""Live cameras through OpenCV, chosen by URI:

    usb://0                                  UVC camera index 0 (V4L2 on Linux)
    v4l2:///dev/video2?width=1280&height=720&fps=60&fourcc=MJPG
    rtsp://user:pass@10.0.0.20:554/stream1   IP camera (FFmpeg, TCP transport, smallest buffer)
    gst://<pipeline ending in appsink>       GStreamer (needs an OpenCV built with GStreamer, as on JetPack)

GStreamer examples (the `gst://` prefix is followed by the pipeline exactly as for gst-launch-1.0):

    Jetson CSI camera (Argus):
      gst://nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=60/1
        ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1
    GigE Vision / USB3 Vision camera through aravis (external trigger set in the camera's features):
      gst://aravissrc camera-name="Basler-12345678" exposure=2000 trigger=Line1 ! video/x-raw,format=GRAY8
        ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1

A reader thread owns the device: it grabs continuously, keeps only the newest frame (a slow
consumer never builds a backlog inside the driver), skips and counts corrupt frames, and when the
camera drops (cable pulled, PoE reset, stream timeout) it releases it and reopens with exponential
backoff until it is back. `read(timeout)` returns the newest frame not yet returned, or None.

Trigger modes (`source.trigger`): `external` — every frame is one part (camera hardware trigger
from a photo-eye), so the Frame carries `part_id`; `free_run` — frames stream and the tracker
finds the parts. An optional encoder (any callable returning the belt position in mm) is latched
into `Frame.encoder_mm` at capture.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Callable, Protocol
from urllib.parse import urlparse

import cv2
import numpy as np

from ..clock import Clock
from ..config import SourceSection, TriggerMode
from ..errors import SourceError
from ..types import Frame
from .uri import number, query

log = logging.getLogger(__name__)


class Capture(Protocol):
    """The part of cv2.VideoCapture the source uses (a test double replaces only the hardware)."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


def capture_args(uri: str) -> tuple[Any, int, dict[int, float]]:
    """(filename-or-index, OpenCV API preference, properties to set) for a camera URI."""
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme in ("usb", "v4l2"):
        q = query(uri, {"width", "height", "fps", "fourcc"})
        props: dict[int, float] = {}
        if "fourcc" in q:
            code = q["fourcc"]
            if len(code) != 4:
                raise SourceError(f"{uri}: fourcc={code!r} must be 4 characters, e.g. MJPG or YUYV")
            props[cv2.CAP_PROP_FOURCC] = cv2.VideoWriter_fourcc(*code)
        for key, prop in (("width", cv2.CAP_PROP_FRAME_WIDTH), ("height", cv2.CAP_PROP_FRAME_HEIGHT),
                          ("fps", cv2.CAP_PROP_FPS)):
            if key in q:
                props[prop] = number(uri, q, key, 0, float, low=1)
        props[cv2.CAP_PROP_BUFFERSIZE] = 1
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        if scheme == "usb":
            try:
                return int(parsed.netloc), api, props
            except ValueError as exc:
                raise SourceError(f"{uri}: usb://N needs a camera index, e.g. usb://0") from exc
        if not parsed.path.startswith("/dev/"):
            raise SourceError(f"{uri}: v4l2:// needs a device path, e.g. v4l2:///dev/video0")
        return parsed.path, api, props
    if scheme == "rtsp":
        # TCP: no smeared frames from lost UDP packets; applies to every FFmpeg capture in the process
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        return uri, cv2.CAP_FFMPEG, {cv2.CAP_PROP_BUFFERSIZE: 1}
    if scheme == "gst":
        pipeline = uri[len("gst://"):].strip()
        if "appsink" not in pipeline:
            raise SourceError(f"{uri}: a gst:// pipeline must end in 'appsink' (e.g. '... ! videoconvert ! "
                              "video/x-raw,format=BGR ! appsink drop=1 max-buffers=1')")
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise SourceError(f"{uri}: this OpenCV ({cv2.__version__}) was built without GStreamer; on a Jetson use "
                              "the JetPack OpenCV (python3-opencv), elsewhere an OpenCV built with -DWITH_GSTREAMER=ON")
        return pipeline, cv2.CAP_GSTREAMER, {}
    raise SourceError(f"{uri}: not a camera URI (usb://, v4l2://, rtsp://, gst://)")


def open_cv2(uri: str) -> Capture:
    target, api, props = capture_args(uri)
    cap = cv2.VideoCapture(target, api)
    for prop, value in props.items():
        cap.set(prop, value)
    return cap


class CameraSource:
    def __init__(self, cfg: SourceSection, clock: Clock, opener: Callable[[str], Capture] | None = None,
                 encoder: Callable[[], float] | None = None):
        self.uri = cfg.uri
        if opener is None:
            capture_args(cfg.uri)  # validate the URI before any device is touched
        self.opener = opener or open_cv2
        self.clock, self.encoder = clock, encoder
        self.external_trigger = cfg.trigger is TriggerMode.external
        self.backoff, self.backoff_max = cfg.reconnect_backoff_s, cfg.reconnect_backoff_max_s
        self.exhausted = False  # a camera never runs out; close() ends it
        self.frames = 0
        self.corrupt = 0
        self.overwritten = 0  # frames replaced by a newer one before anybody read them
        self.disconnects = 0
        self.reconnects = 0
        self.connected = threading.Event()
        self._cv = threading.Condition()
        self._latest: Frame | None = None
        self._stop = threading.Event()
        self._shape: tuple[int, ...] | None = None
        self._cap = self._open()
        if self._cap is None:
            raise SourceError(f"{cfg.uri}: camera could not be opened (check the cable / address, that no other "
                              "process holds it, and the user's access to the device)")
        get = getattr(self._cap, "get", None)
        self.width = int(get(cv2.CAP_PROP_FRAME_WIDTH)) if get is not None else 0
        self._thread = threading.Thread(target=self._reader, name="camera", daemon=True)
        self._thread.start()

    def _open(self) -> Capture | None:
        try:
            cap = self.opener(self.uri)
        except cv2.error as exc:
            log.warning("%s: open failed: %s", self.uri, exc)
            return None
        if not cap.isOpened():
            cap.release()
            return None
        self.connected.set()
        return cap

    def _reader(self) -> None:
        delay = self.backoff
        while not self._stop.is_set():
            if self._cap is None:
                if self._stop.wait(delay):
                    return
                self._cap = self._open()
                if self._cap is None:
                    delay = min(delay * 2, self.backoff_max)
                    continue
                self.reconnects += 1
                delay = self.backoff
                log.info("%s: camera back after reconnect #%d", self.uri, self.reconnects)
            try:
                ok, image = self._cap.read()
            except cv2.error as exc:
                log.warning("%s: read raised %s", self.uri, exc)
                ok, image = False, None
            if not ok:
                self.disconnects += 1
                self.connected.clear()
                log.error("%s: camera lost; reconnecting with backoff %.1f..%.1f s", self.uri, self.backoff,
                          self.backoff_max)
                self._cap.release()
                self._cap = None
                continue
            image = self._check(image)
            if image is None:
                self.corrupt += 1
                continue
            t = self.clock.now()
            enc = self.encoder() if self.encoder is not None else None
            with self._cv:
                seq = self.frames
                self.frames += 1
                if self._latest is not None:
                    self.overwritten += 1
                self._latest = Frame(image=image, t_capture=t, seq=seq, encoder_mm=enc,
                                     part_id=seq if self.external_trigger else None, source=self.uri)
                self._cv.notify_all()

    def _check(self, image: np.ndarray | None) -> np.ndarray | None:
        """A usable BGR frame, or None for a corrupt one (empty, wrong type, changed size mid-stream)."""
        if image is None or not isinstance(image, np.ndarray) or image.size == 0 or image.dtype != np.uint8:
            return None
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.ndim != 3 or image.shape[2] not in (3, 4):
            return None
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if self._shape is None:
            self._shape = image.shape
        elif image.shape != self._shape:  # a torn / truncated transfer decodes to the wrong size
            return None
        return image

    def read(self, timeout: float) -> Frame | None:
        with self._cv:
            if self._latest is None:
                self._cv.wait(timeout)
            frame, self._latest = self._latest, None
        return frame

    def close(self) -> None:
        self._stop.set()
        self.exhausted = True
        self._thread.join(2.0)
        if self._cap is not None:
            self._cap.release()
        close_encoder = getattr(self.encoder, "close", None)
        if close_encoder is not None:
            close_encoder()
