"""Box conversions between the three places boxes live: archive detections
({xyxy, confidence, class_id, class}), the annotator component ({xmin, ymin, xmax, ymax, label,
color}) and YOLO label lines ('class cx cy w h', normalised)."""

from __future__ import annotations

from typing import Any, Sequence

from .errors import QAError

# distinct, colour-blind-friendly-ish colours, one per class index (cycled)
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def class_colors(classes: Sequence[str]) -> list[tuple[int, int, int]]:
    return [PALETTE[i % len(PALETTE)] for i in range(len(classes))]


def records_to_annotator(records: Sequence[dict[str, Any]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Archive/model detections -> annotator boxes (integer pixels, class name as label)."""
    colors = class_colors(classes)
    out = []
    for r in records:
        name = str(r.get("class") or _name(int(r.get("class_id", -1)), classes))
        cid = classes.index(name) if name in classes else -1
        x1, y1, x2, y2 = (float(v) for v in r["xyxy"])
        box = {"xmin": int(round(x1)), "ymin": int(round(y1)), "xmax": int(round(x2)), "ymax": int(round(y2)),
               "label": name}
        if cid >= 0:
            box["color"] = colors[cid]
        out.append(box)
    return out


def annotator_value_boxes(value: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The boxes of an annotator value. The component can rotate the image in the browser and then
    reports boxes in the rotated frame; rather than guess, a rotated view is refused."""
    value = value or {}
    if int(value.get("orientation") or 0) % 4:
        raise QAError("the image is rotated in the editor; rotate it back to its original orientation, then decide/save")
    return list(value.get("boxes") or [])


def annotator_to_boxes(boxes: Sequence[dict[str, Any]] | None, classes: Sequence[str],
                       width: int, height: int) -> list[dict[str, Any]]:
    """Annotator boxes -> stored boxes {xyxy, class, class_id}, clipped to the image; a box with
    a label that is not a class name is refused (the message names it)."""
    out = []
    for b in boxes or []:
        label = str(b.get("label") or "").strip()
        if label not in classes:
            raise QAError(f"box label {label!r} is not a class of this model; choose one of {', '.join(classes)}")
        x1, x2 = sorted((float(b["xmin"]), float(b["xmax"])))
        y1, y2 = sorted((float(b["ymin"]), float(b["ymax"])))
        x1, x2 = max(0.0, x1), min(float(width), x2)
        y1, y2 = max(0.0, y1), min(float(height), y2)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue  # a box dragged off the image or collapsed to a line carries no label
        out.append({"xyxy": [x1, y1, x2, y2], "class": label, "class_id": list(classes).index(label)})
    return out


def boxes_to_yolo_lines(boxes: Sequence[dict[str, Any]], classes: Sequence[str], width: int, height: int) -> list[str]:
    """Stored boxes -> YOLO label lines in the class order of `classes` (the model's)."""
    lines = []
    for b in boxes:
        name = b["class"]
        if name not in classes:
            raise QAError(f"class {name!r} of a reviewed box is not among the export classes {list(classes)}")
        x1, y1, x2, y2 = b["xyxy"]
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            continue
        lines.append(f"{list(classes).index(name)} {(x1 + w / 2) / width:.6f} {(y1 + h / 2) / height:.6f} "
                     f"{w / width:.6f} {h / height:.6f}")
    return lines


def yolo_lines_to_boxes(text: str, classes: Sequence[str], width: int, height: int, source: str) -> list[dict[str, Any]]:
    """YOLO label text -> stored boxes; a bad line raises QAError naming file and line."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            c = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:5])
            if len(parts) != 5:
                raise ValueError
        except ValueError:
            raise QAError(f"{source}:{lineno}: expected 'class cx cy w h', got {line!r}") from None
        if not 0 <= c < len(classes):
            raise QAError(f"{source}:{lineno}: class id {c} is outside 0..{len(classes) - 1} ({', '.join(classes)})")
        out.append({"xyxy": [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height],
                    "class": classes[c], "class_id": c})
    return out


def _name(cid: int, classes: Sequence[str]) -> str:
    return classes[cid] if 0 <= cid < len(classes) else f"class{cid}"
