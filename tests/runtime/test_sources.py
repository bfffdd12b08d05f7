"""Frame sources: file replay (folder, image, video), cameras (URI parsing, reconnect after an
unplug, corrupt frames), the synthetic free-run conveyor."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectgate.clock import FakeClock, MonotonicClock
from defectgate.config import ConveyorSection, SourceSection
from defectgate.errors import SourceError
from defectgate.sources import open_source
from defectgate.sources.camera import CameraSource, capture_args


def _images(folder: Path, n: int, hw=(48, 64)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((*hw, 3), 20 * i, np.uint8)
        cv2.imwrite(str(folder / f"img_{i:02d}.png"), img)
    return folder


def _open(uri: str, clock=None, **kw):
    return open_source(SourceSection(uri=uri, **kw), ConveyorSection(), clock or MonotonicClock())


def _drain(src, limit=1000):
    out = []
    while not src.exhausted and len(out) < limit:
        f = src.read(0.5)
        if f is not None:
            out.append(f)
    return out


def test_folder_replay_skips_and_counts_corrupt_images(tmp_path):
    folder = _images(tmp_path / "shift", 4)
    (folder / "img_01b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # truncated upload
    (folder / "img_03.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # a label: img_03 is NG
    (folder / "img_00.txt").write_text("")  # an empty label: img_00 is OK
    src = _open(f"file://{folder}")
    frames = _drain(src)
    assert [f.seq for f in frames] == [0, 1, 2, 3] and src.corrupt == 1
    assert [f.part_id for f in frames] == [0, 1, 2, 3]
    assert frames[0].truth == {"ng": False} and frames[3].truth == {"ng": True} and frames[1].truth is None
    assert int(frames[2].image[0, 0, 0]) == 40  # order by name, img_01b skipped
    assert src.unreadable == [("img_01b.png", "unreadable or corrupt image")], "named, for the replay's report"
    assert src.names == ["img_00.png", "img_01.png", "img_02.png", "img_03.png"]


def test_folder_replay_of_a_yolo_split_finds_truth_where_ultralytics_does_and_reads_below_on_request(tmp_path):
    ds = tmp_path / "ds"
    folder = _images(ds / "images" / "val", 3)
    (ds / "labels" / "val").mkdir(parents=True)
    (ds / "labels" / "val" / "img_01.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (ds / "labels" / "val" / "img_02.txt").write_text("")
    frames = _drain(_open(f"file://{folder}"))
    assert [f.truth for f in frames] == [None, {"ng": True}, {"ng": False}]
    nested = _drain(_open(f"file://{ds / 'images'}?recursive=1"))  # e.g. a station archive's images/YYYYMMDD/
    assert len(nested) == 3 and nested[1].truth == {"ng": True} and nested[1].source.endswith("#val/img_01.png")
    with pytest.raises(SourceError, match="no images"):
        _open(f"file://{ds / 'images'}")  # not recursive: the folder itself holds no image


def test_recorded_speed_paces_frames_on_the_clock_and_loops(tmp_path):
    folder = _images(tmp_path / "shift", 3)
    clock = FakeClock(100.0)
    frames = _drain(_open(f"file://{folder}?speed=recorded&fps=4&loop=2", clock))
    assert len(frames) == 6
    assert np.allclose(np.diff([f.t_capture for f in frames]), 0.25)


def test_video_replay(tmp_path):
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    src = _open(f"file://{path}")
    frames = _drain(src)
    assert len(frames) == 10 and all(f.part_id is None for f in frames)  # free-run: no part ids
    assert src.width == 64 and src.fps == pytest.approx(25)


@pytest.mark.parametrize("uri,message", [
    ("file:///no/such/folder", "does not exist"),
    ("file://{tmp}/notes.txt", "neither an image"),
    ("file://{tmp}?speed=fast", "speed='fast'"),
    ("file://{tmp}?sped=max", "unknown parameter"),
    ("v4l2://video0", "device path"),
    ("usb://front", "camera index"),
    ("gst://videotestsrc ! autovideosink", "appsink"),
    ("ftp://x", "unknown scheme"),
])
def test_bad_source_uris_say_what_is_wrong(tmp_path, uri, message):
    (tmp_path / "notes.txt").write_text("x")
    _images(tmp_path, 1)
    with pytest.raises(SourceError, match=message):
        _open(uri.format(tmp=tmp_path))


def test_camera_uris_map_to_opencv_backends():
    target, api, props = capture_args("v4l2:///dev/video2?width=1280&height=720&fps=60&fourcc=MJPG")
    assert target == "/dev/video2" and api == cv2.CAP_V4L2
    assert props[cv2.CAP_PROP_FRAME_WIDTH] == 1280 and props[cv2.CAP_PROP_FPS] == 60
    assert props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert capture_args("usb://1")[0] == 1
    assert capture_args("rtsp://10.0.0.2/s1")[1] == cv2.CAP_FFMPEG
    if "GStreamer:                   YES" not in cv2.getBuildInformation():
        with pytest.raises(SourceError, match="without GStreamer"):
            capture_args("gst://nvarguscamerasrc ! nvvidconv ! appsink")


class FlakyCamera:
    """Stands in for the camera hardware only (cv2.VideoCapture's read/isOpened/release): serves
    frames, corrupt frames, and an unplug that lasts `unplugged` open attempts."""

    def __init__(self, script: list, world: dict):
        self.script, self.world = script, world

    def isOpened(self):
        return True

    def read(self):
        time.sleep(0.002)
        if not self.script:
            time.sleep(0.01)
            return True, np.zeros((48, 64, 3), np.uint8)
        item = self.script.pop(0)
        if isinstance(item, str) and item == "unplug":
            self.world["unplugged"] = 3
            return False, None
        return True, item

    def release(self):
        pass


def _opener(script):
    world = {"unplugged": 0, "opens": 0}

    def opener(uri):
        world["opens"] += 1
        if world["unplugged"] > 0:
            world["unplugged"] -= 1
            cap = FlakyCamera([], world)
            cap.isOpened = lambda: False
            return cap
        return FlakyCamera(script, world)

    return opener, world


def test_camera_unplugged_and_back_reconnects_with_backoff_and_counts_corrupt():
    good = [np.full((48, 64, 3), v, np.uint8) for v in (1, 2, 3, 4)]
    script = [good[0], None, np.zeros((0,), np.uint8), np.zeros((20, 30, 3), np.uint8), good[1], "unplug",
              good[2], np.full((48, 64), 7, np.uint8), good[3]]
    opener, world = _opener(script)
    cfg = SourceSection(uri="usb://0", reconnect_backoff_s=0.01, reconnect_backoff_max_s=0.05, trigger="free_run")
    cam = CameraSource(cfg, MonotonicClock(), opener=opener)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (cam.reconnects < 1 or cam.frames < 6):
        time.sleep(0.01)
    after = cam.read(1.0)  # the stream goes on after the reconnect
    cam.close()
    assert after is not None and after.seq >= 5
    assert cam.disconnects == 1 and cam.reconnects == 1
    assert world["opens"] == 1 + 3 + 1  # first open, three refused while unplugged, then back
    assert cam.corrupt == 3  # None, empty, wrong size; the grey frame is converted, not corrupt


def test_camera_missing_at_start_is_a_clear_error():
    def opener(uri):
        cap = FlakyCamera([], {})
        cap.isOpened = lambda: False
        return cap

    with pytest.raises(SourceError, match="camera could not be opened"):
        CameraSource(SourceSection(uri="usb://3"), MonotonicClock(), opener=opener)


def test_external_trigger_frames_carry_part_ids_and_the_encoder():
    opener, _ = _opener([np.full((48, 64, 3), 1, np.uint8), np.full((48, 64, 3), 2, np.uint8)])
    position = iter([10.0, 22.5, 30.0, 40.0] + [50.0] * 1000)
    cam = CameraSource(SourceSection(uri="usb://0", trigger="external"), MonotonicClock(), opener=opener,
                       encoder=lambda: next(position))
    frames = []
    while len(frames) < 2:
        f = cam.read(1.0)
        if f is not None:
            frames.append(f)
        time.sleep(0.003)  # slower than the camera: older frames are overwritten, never queued
    cam.close()
    assert frames[0].part_id == frames[0].seq and frames[0].encoder_mm is not None


def test_free_run_conveyor_shows_each_part_in_several_frames():
    src = _open("synthetic://conveyor?mode=freerun&parts=3&realtime=0&fps=20&width=160&height=120")
    frames = _drain(src)
    seen: dict[int, int] = {}
    for f in frames:
        assert f.part_id is None and f.encoder_mm == pytest.approx(f.seq * 600 / 20)
        for p in f.truth["parts"]:
            seen[p["part"]] = seen.get(p["part"], 0) + 1
    assert sorted(seen) == [0, 1, 2] and min(seen.values()) >= 5
