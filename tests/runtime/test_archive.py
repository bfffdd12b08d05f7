"""The archive: rows never lost, images dropped and counted when the disk cannot keep up."""

from __future__ import annotations

import sqlite3
import time

import numpy as np

from defectgate.archive import Archive
from defectgate.types import Detections, Outcome, Verdict

CLASSES = ["scratch", "dent"]


def _verdict(i: int, ng: bool = True) -> Verdict:
    dets = Detections(np.array([[1, 2, 10, 12]], np.float32), np.array([0.9], np.float32), np.array([0]))
    return Verdict(part_id=i, outcome=Outcome.NG if ng else Outcome.OK, reasons=["scratch"] if ng else [],
                   detections=dets if ng else Detections.empty(), t_capture=1.0, t_decided=1.02, model_version="v1")


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 80, 3), dtype=np.uint8)


def _rows(db, sql="SELECT COUNT(*) FROM parts"):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()


def test_rows_images_runs_and_the_schema_the_qa_app_reads(tmp_path):
    a = Archive(tmp_path, "run1", "line-1", CLASSES, ok_sample_rate=0.5)
    a.start_run("v1", "onnxruntime:CPU", "{}")
    for i in range(6):
        a.submit(_verdict(i, ng=i % 2 == 0), _image(i))
    a.record_fire(0, 1.5, 1.5004)
    a.end_run({"parts": 6})
    a.close()
    conn = sqlite3.connect(a.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [r[1] for r in conn.execute("PRAGMA table_info(parts)")]
    assert cols[:15] == ["id", "run_id", "station", "part_id", "ts_utc", "t_capture", "verdict", "reasons",
                         "detections", "model_version", "latency_ms", "failsafe", "truth_ng", "image_path",
                         "image_dropped"]
    rows = conn.execute("SELECT part_id, verdict, image_path FROM parts ORDER BY part_id").fetchall()
    assert [r[1] for r in rows] == ["NG", "OK", "NG", "OK", "NG", "OK"]
    kept = [r for r in rows if r[2]]
    assert all((tmp_path / r[2]).is_file() for r in kept)
    assert sum(1 for r in rows if r[1] == "OK" and r[2]) == 1  # 3 OK parts at a 0.5 sample rate
    run = conn.execute("SELECT ended_utc, report FROM runs WHERE run_id='run1'").fetchone()
    assert run[0] is not None and '"parts": 6' in run[1]


def test_quota_reached_drops_images_but_keeps_rows(tmp_path):
    a = Archive(tmp_path, "r", "s", CLASSES, quota_mb=0.02)  # ~ one noisy 64x80 jpg
    for i in range(10):
        a.submit(_verdict(i), _image(i))
        time.sleep(0.01)
    a.close()
    assert _rows(a.db_path) == (10,)
    assert a.stats.images >= 1 and a.stats.images_dropped == 10 - a.stats.images
    assert _rows(a.db_path, "SELECT SUM(image_dropped) FROM parts") == (a.stats.images_dropped,)


def test_full_disk_drops_images_and_counts_them(tmp_path):
    import shutil

    free_mb = shutil.disk_usage(tmp_path).free / 1e6
    a = Archive(tmp_path, "r", "s", CLASSES, min_free_mb=free_mb * 10)  # the disk is "full" by our margin
    for i in range(5):
        a.submit(_verdict(i), _image(i))
    a.close()
    assert _rows(a.db_path) == (5,) and a.stats.images == 0 and a.stats.images_dropped == 5


def test_write_errors_drop_the_image_not_the_row(tmp_path):
    import datetime as dt

    a = Archive(tmp_path, "r", "s", CLASSES)
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    (tmp_path / "images" / day).write_text("not a folder")  # every image write now fails with OSError
    for i in range(3):
        a.submit(_verdict(i), _image(i))
    a.close()
    assert _rows(a.db_path) == (3,) and a.stats.write_errors == 3 and a.stats.images_dropped == 3


def test_a_slow_disk_never_blocks_the_line(tmp_path):
    """The image writer is held up (a slow disk): submit() returns at once for every part, the
    bounded image queue overflows into counted drops, and every row still arrives."""
    a = Archive(tmp_path, "r", "s", CLASSES, queue_size=2)
    release = __import__("threading").Event()
    real_write = a._write_image

    def stuck_write(item):
        release.wait(10)
        real_write(item)

    a._write_image = stuck_write
    for i in range(50):
        a.submit(_verdict(i), _image(i))  # would deadlock here if submit() waited for the disk
    dropped_while_stuck = a.stats.images_dropped
    release.set()
    a.close()
    assert dropped_while_stuck >= 50 - 3
    assert _rows(a.db_path) == (50,)


def test_shadow_rows_link_to_their_part_and_keep_the_image_only_a_disagreement_needs(tmp_path):
    a = Archive(tmp_path, "run1", "line-1", CLASSES)  # NG images kept, no OK samples
    cases = {0: (True, True), 1: (True, False), 2: (False, True), 3: (False, False)}  # part: (live NG, shadow NG)
    for part, (live_ng, shadow_ng) in cases.items():
        live = _verdict(part, live_ng)
        a.submit(live, _image(part))
        cand = _verdict(part, shadow_ng)
        cand.model_version, cand.t_decided = "v2", 1.05
        a.submit_shadow(cand, live, _image(part))
    a.close()
    assert a.stats.shadow_rows == 4
    conn = sqlite3.connect(a.db_path)
    rows = conn.execute("SELECT s.part_id, s.verdict, s.live_verdict, s.model_version, s.image_path, p.image_path, "
                        "s.latency_ms FROM shadow s JOIN parts p ON p.run_id = s.run_id AND p.part_id = s.part_id "
                        "ORDER BY s.part_id").fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(0, "NG", "NG", "v2"), (1, "OK", "NG", "v2"),
                                                        (2, "NG", "OK", "v2"), (3, "OK", "OK", "v2")]
    shadow_img = {r[0]: r[4] for r in rows}
    live_img = {r[0]: r[5] for r in rows}
    # part 2: the live model passed it (no live image), the candidate rejects it: the shadow row keeps the image
    assert shadow_img[2] and shadow_img[2].endswith("_NG_shadow.jpg") and (tmp_path / shadow_img[2]).is_file()
    assert live_img[2] is None
    # part 1: the live row already keeps the NG image; agreements need no second copy
    assert shadow_img[1] is None and live_img[1] and shadow_img[0] is None and shadow_img[3] is None
    assert rows[0][6] == 50.0
