"""Frame sources chosen by URI scheme. Camera drivers import OpenCV/GStreamer features lazily."""

from __future__ import annotations

from urllib.parse import urlparse

from ..clock import Clock
from ..config import ConveyorSection, SourceSection
from ..errors import SourceError
from .base import Source

SCHEMES = ("synthetic", "file", "usb", "v4l2", "rtsp", "gst")


def open_source(cfg: SourceSection, conveyor: ConveyorSection, clock: Clock) -> Source:
    scheme = urlparse(cfg.uri).scheme
    if scheme == "synthetic":
        from .synthetic import FreeRunConveyor, SyntheticConveyor

        if "mode=freerun" in cfg.uri:
            return FreeRunConveyor(cfg.uri, clock, conveyor.belt_speed_mm_s, conveyor.part_pitch_mm, conveyor.fov_mm)
        return SyntheticConveyor(cfg.uri, clock, conveyor.belt_speed_mm_s, conveyor.part_pitch_mm, conveyor.fov_mm)
    if scheme == "file":
        from .files import FileSource

        return FileSource(cfg, clock)
    if scheme in ("usb", "v4l2", "rtsp", "gst"):
        from .camera import CameraSource
        from .encoder import open_encoder

        return CameraSource(cfg, clock, encoder=open_encoder(cfg.encoder, conveyor))
    raise SourceError(f"source.uri '{cfg.uri}': unknown scheme '{scheme}'; use one of {', '.join(s + '://' for s in SCHEMES)}")


__all__ = ["Source", "open_source", "SCHEMES"]
