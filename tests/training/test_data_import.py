"""`defectgate data import --format voc|coco|yolo`: sources written by hand in each format from
rendered scenes (whose true boxes we know), imported, and compared box by box."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from defectgate.cli import main as cli
from defectgate.synthparts import CLASSES, render_scene

NEU = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "neu-det"
HW = (96, 128)
SYNTH_ORDER = ",".join(CLASSES)


def _scenes(n: int, seed: int = 0):
    return [render_scene(seed * 100 + i, HW, ng_rate=0.7) for i in range(n)]


def _label_boxes(dst: Path, split: str, stem: str) -> tuple[list[int], np.ndarray]:
    text = (dst / "labels" / split / f"{stem}.txt").read_text().split()
    rows = np.array([float(v) for v in text]).reshape(-1, 5)
    h, w = HW
    xyxy = np.stack([(rows[:, 1] - rows[:, 3] / 2) * w, (rows[:, 2] - rows[:, 4] / 2) * h,
                     (rows[:, 1] + rows[:, 3] / 2) * w, (rows[:, 2] + rows[:, 4] / 2) * h], 1)
    return rows[:, 0].astype(int).tolist(), xyxy


def _find(dst: Path, stem: str) -> str:
    hits = list((dst / "images").glob(f"*/{stem}.*"))
    assert len(hits) == 1, hits
    return hits[0].parent.name


def _voc_xml(filename: str, scene, extra_object: str = "") -> str:
    objs = "".join(
        f"<object><name>{CLASSES[c]}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1:g}</xmin>"
        f"<ymin>{y0 + 1:g}</ymin><xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox></object>"
        for (x0, y0, x1, y1), c in zip(scene.boxes.tolist(), scene.class_ids.tolist()))
    return (f"<annotation><folder>x</folder><filename>{filename}</filename><size><width>{HW[1]}</width>"
            f"<height>{HW[0]}</height><depth>3</depth></size>{objs}{extra_object}</annotation>")


def _write_voc(root: Path, scenes, image_sets: dict[str, list[int]] | None = None) -> None:
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for i, s in enumerate(scenes):
        cv2.imwrite(str(root / "JPEGImages" / f"part{i}.png"), s.image)
        # like NEU-DET, the XML names a .jpg while the file on disk is a .png
        (root / "Annotations" / f"part{i}.xml").write_text(_voc_xml(f"part{i}.jpg", s))
    if image_sets:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        for split, idx in image_sets.items():
            (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"part{i}\n" for i in idx))


def test_voc_import_reproduces_the_true_boxes(tmp_path: Path):
    scenes = _scenes(8)
    _write_voc(tmp_path / "voc", scenes)
    dst = tmp_path / "out"
    assert cli(["data", "import", "--format", "voc", str(tmp_path / "voc"), str(dst), "--classes", SYNTH_ORDER,
                "--val", "0.25", "--seed", "1"]) == 0
    data = yaml.safe_load((dst / "data.yaml").read_text())
    assert list(data["names"].values()) == list(CLASSES) and Path(data["path"]).is_absolute()
    splits = [_find(dst, f"part{i}") for i in range(8)]
    assert splits.count("val") == 2 and splits.count("train") == 6
    for i, s in enumerate(scenes):
        cls, xyxy = _label_boxes(dst, splits[i], f"part{i}")
        assert cls == s.class_ids.tolist()
        assert np.allclose(xyxy, s.boxes, atol=1e-3)
    assert cli(["data", "validate", str(dst)]) == 0


def test_voc_image_sets_decide_the_splits_and_classes_default_to_sorted_names(tmp_path: Path):
    scenes = _scenes(6, seed=1)
    _write_voc(tmp_path / "voc", scenes, {"train": [0, 1, 2, 3], "val": [4, 5]})
    dst = tmp_path / "out"
    assert cli(["data", "import", "--format", "voc", str(tmp_path / "voc"), str(dst)]) == 0
    assert [_find(dst, f"part{i}") for i in range(6)] == ["train"] * 4 + ["val"] * 2
    names = list(yaml.safe_load((dst / "data.yaml").read_text())["names"].values())
    present = sorted({CLASSES[c] for s in scenes for c in s.class_ids})
    assert names == present
    s = next(i for i, sc in enumerate(scenes) if sc.ng)
    cls, _ = _label_boxes(dst, _find(dst, f"part{s}"), f"part{s}")
    assert [names[c] for c in cls] == [CLASSES[c] for c in scenes[s].class_ids]


def test_voc_class_missing_from_classes_is_named(tmp_path: Path, capsys):
    scenes = [s for s in _scenes(6, seed=2) if s.ng][:2]
    _write_voc(tmp_path / "voc", scenes)
    extra = "<object><name>rust</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
    (tmp_path / "voc" / "Annotations" / "part1.xml").write_text(_voc_xml("part1.jpg", scenes[1], extra))
    assert cli(["data", "import", "--format", "voc", str(tmp_path / "voc"), str(tmp_path / "out"),
                "--classes", SYNTH_ORDER]) == 2
    err = capsys.readouterr().err
    assert "part1.xml" in err and "'rust'" in err
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_voc_malformed_xml_names_file_and_line(tmp_path: Path, capsys):
    _write_voc(tmp_path / "voc", _scenes(2))
    (tmp_path / "voc" / "Annotations" / "part0.xml").write_text("<annotation>\n<filename>part0.jpg\n</annotation>")
    assert cli(["data", "import", "--format", "voc", str(tmp_path / "voc"), str(tmp_path / "out")]) == 2
    assert "part0.xml:3" in capsys.readouterr().err


def test_voc_box_outside_image_is_refused(tmp_path: Path, capsys):
    _write_voc(tmp_path / "voc", _scenes(2))
    bad = "<object><name>dent</name><bndbox><xmin>100</xmin><ymin>5</ymin><xmax>160</xmax><ymax>20</ymax></bndbox></object>"
    (tmp_path / "voc" / "Annotations" / "part0.xml").write_text(_voc_xml("part0.jpg", _scenes(1)[0], bad))
    assert cli(["data", "import", "--format", "voc", str(tmp_path / "voc"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "part0.xml" in err and "outside" in err and not (tmp_path / "out").exists()


def test_corrupt_image_is_refused_and_nothing_written(tmp_path: Path, capsys):
    _write_voc(tmp_path / "voc", _scenes(3))
    (tmp_path / "voc" / "JPEGImages" / "part2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert cli(["data", "import", "--format", "voc", str(tmp_path / "voc"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "part2.png" in err and "decoded" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voc"]


def _coco(scenes, ids: list[int], file_prefix: str = "") -> dict:
    cats = [{"id": 10 + k, "name": n} for k, n in enumerate(CLASSES)]
    images, anns = [], []
    for i in ids:
        images.append({"id": 100 + i, "file_name": f"{file_prefix}part{i}.png", "width": HW[1], "height": HW[0]})
        for (x0, y0, x1, y1), c in zip(scenes[i].boxes.tolist(), scenes[i].class_ids.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": 10 + c,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0, "area": (x1 - x0) * (y1 - y0)})
    anns.append({"id": 999, "image_id": 100 + ids[0], "category_id": 10, "bbox": [0, 0, 50, 50], "iscrowd": 1})
    return {"images": images, "annotations": anns, "categories": cats}


def test_coco_import_per_split_files(tmp_path: Path):
    scenes = _scenes(6, seed=3)
    src = tmp_path / "coco"
    (src / "images" / "train").mkdir(parents=True)
    (src / "images" / "val").mkdir(parents=True)
    (src / "annotations").mkdir()
    for i, s in enumerate(scenes):
        cv2.imwrite(str(src / "images" / ("train" if i < 4 else "val") / f"part{i}.png"), s.image)
    (src / "annotations" / "instances_train.json").write_text(json.dumps(_coco(scenes, [0, 1, 2, 3])))
    (src / "annotations" / "instances_val2017.json").write_text(json.dumps(_coco(scenes, [4, 5])))
    dst = tmp_path / "out"
    assert cli(["data", "import", "--format", "coco", str(src), str(dst)]) == 0
    names = list(yaml.safe_load((dst / "data.yaml").read_text())["names"].values())
    assert names == list(CLASSES)  # categories ordered by id, ids renumbered from 0
    for i, s in enumerate(scenes):
        split = _find(dst, f"part{i}")
        assert split == ("train" if i < 4 else "val")
        cls, xyxy = _label_boxes(dst, split, f"part{i}")
        assert cls == s.class_ids.tolist()  # the crowd box on part0 was skipped
        assert np.allclose(xyxy, s.boxes, atol=1e-3)
    ok = [i for i, s in enumerate(scenes) if not s.ng]
    for i in ok:  # images without annotations are OK parts with empty label files
        assert (dst / "labels" / _find(dst, f"part{i}") / f"part{i}.txt").read_text() == ""


def test_coco_unknown_image_id_names_the_annotation(tmp_path: Path, capsys):
    scenes = [s for s in _scenes(6, seed=4) if s.ng][:2]
    for i, s in enumerate(scenes):
        cv2.imwrite(str(tmp_path / f"part{i}.png"), s.image)
    doc = _coco(scenes, [0, 1])
    doc["annotations"][0]["image_id"] = 555
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    assert cli(["data", "import", "--format", "coco", str(tmp_path / "ann.json"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "ann.json: annotations[0]" in err and "555" in err


def test_coco_broken_json_names_the_line(tmp_path: Path, capsys):
    (tmp_path / "ann.json").write_text('{\n "images": [\n  {"id": 1,,}\n ]\n}')
    assert cli(["data", "import", "--format", "coco", str(tmp_path / "ann.json"), str(tmp_path / "out")]) == 2
    assert "ann.json:3" in capsys.readouterr().err


def test_yolo_flat_folder_and_class_remap(tmp_path: Path):
    scenes = _scenes(6, seed=5)
    src = tmp_path / "flat"
    src.mkdir()
    (src / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for i, s in enumerate(scenes):
        cv2.imwrite(str(src / f"part{i}.png"), s.image)
        h, w = HW
        (src / f"part{i}.txt").write_text("".join(
            f"{c} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}\n"
            for (x0, y0, x1, y1), c in zip(s.boxes.tolist(), s.class_ids.tolist())))
    first = tmp_path / "first"
    assert cli(["data", "import", "--format", "yolo", str(src), str(first), "--val", "0.34"]) == 0
    # importing that dataset again with a different class order remaps ids by name
    reordered = list(reversed(CLASSES))
    second = tmp_path / "second"
    assert cli(["data", "import", "--format", "yolo", str(first), str(second), "--classes", ",".join(reordered)]) == 0
    for i, s in enumerate(scenes):
        split = _find(second, f"part{i}")
        assert split == _find(first, f"part{i}")  # splits carried over
        cls, xyxy = _label_boxes(second, split, f"part{i}")
        assert [reordered[c] for c in cls] == [CLASSES[c] for c in s.class_ids]
        assert np.allclose(xyxy, s.boxes, atol=1e-3)


def test_yolo_source_with_bad_label_line(tmp_path: Path, capsys):
    src = tmp_path / "flat"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), _scenes(1)[0].image)
    (src / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n0 1.7 0.5 0.1 0.1\n")
    assert cli(["data", "import", "--format", "yolo", str(src), str(tmp_path / "out"), "--classes", "scratch"]) == 2
    err = capsys.readouterr().err
    assert "a.txt:2" in err and "out of range" in err


@pytest.mark.skipif(not NEU.is_dir(), reason="../shared/datasets/neu-det is not present on this machine")
def test_neu_det_voc_import_matches_its_yolo_labels(tmp_path: Path):
    """NEU-DET ships both the original VOC XML and YOLO labels: our VOC importer must agree."""
    dst = tmp_path / "neu"
    assert cli(["data", "import", "--format", "voc", str(NEU), str(dst)]) == 0
    names = list(yaml.safe_load((dst / "data.yaml").read_text())["names"].values())
    assert names == list(yaml.safe_load((NEU / "data.yaml").read_text())["names"].values())
    theirs = sorted((NEU / "labels").glob("*/*.txt"))
    assert len(theirs) == len(list((dst / "labels").glob("*/*.txt")))
    for lbl in theirs[::25]:
        mine = dst / "labels" / lbl.parent.name / lbl.name
        a = np.loadtxt(lbl, ndmin=2)
        b = np.loadtxt(mine, ndmin=2)
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5), lbl.name


def test_coco_files_with_different_categories_are_refused(tmp_path: Path, capsys):
    scenes = _scenes(2, seed=6)
    for i, s in enumerate(scenes):
        cv2.imwrite(str(tmp_path / f"part{i}.png"), s.image)
    (tmp_path / "train.json").write_text(json.dumps(_coco(scenes, [0])))
    other = _coco(scenes, [1])
    other["categories"][3]["name"] = "rust"
    (tmp_path / "val.json").write_text(json.dumps(other))
    assert cli(["data", "import", "--format", "coco", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "val.json" in err and "rust" in err and "differ" in err and not (tmp_path / "out").exists()


def test_empty_source(tmp_path: Path, capsys):
    (tmp_path / "voc").mkdir()
    assert cli(["data", "import", "--format", "voc", str(tmp_path / "voc"), str(tmp_path / "out")]) == 2
    assert "no Pascal VOC" in capsys.readouterr().err
