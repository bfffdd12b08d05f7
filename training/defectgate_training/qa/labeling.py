"""Label images from a folder (any image folder inside a configured --label-dir): list images,
read existing YOLO labels, write new ones. Labels go where ultralytics looks for them: the last
'/images/' of the path becomes '/labels/'; an image in a plain folder gets a .txt beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from defectgate.staging import write_text_atomic

from ..datayaml import label_path_for
from .boxes import boxes_to_yolo_lines, yolo_lines_to_boxes
from .errors import QAError
from .images import IMAGE_SUFFIXES
from .paths import confine


class LabelFolders:
    def __init__(self, roots: Sequence[Path]):
        self.roots = [Path(r).resolve() for r in roots]

    def folder(self, text: str) -> Path:
        """A folder the browser asked for, confined to the label roots."""
        path = confine(text or ".", self.roots, what="folder")
        if not path.is_dir():
            raise QAError(f"folder {text!r} ({path}) does not exist")
        return path

    def images(self, text: str) -> list[Path]:
        folder = self.folder(text)
        found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise QAError(f"folder {text!r} ({folder}) has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return found

    def image(self, text: str) -> Path:
        path = confine(text, self.roots, what="image")
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            raise QAError(f"image {text!r} ({path}) does not exist or is not an image file")
        return path

    def display_name(self, image: Path) -> str:
        for root in self.roots:
            if image.is_relative_to(root):
                return str(image.relative_to(root))
        return str(image)


def read_labels(image: Path, classes: Sequence[str], width: int, height: int) -> list[dict[str, Any]] | None:
    """Existing YOLO labels of an image, or None when it has no label file yet."""
    label = label_path_for(image)
    if not label.is_file():
        return None
    return yolo_lines_to_boxes(label.read_text(), classes, width, height, str(label))


def write_labels(image: Path, boxes: Sequence[dict[str, Any]], classes: Sequence[str], width: int, height: int) -> Path:
    label = label_path_for(image)
    lines = boxes_to_yolo_lines(boxes, classes, width, height)
    write_text_atomic(label, "".join(line + "\n" for line in lines))
    return label
