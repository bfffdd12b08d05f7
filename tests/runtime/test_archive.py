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
