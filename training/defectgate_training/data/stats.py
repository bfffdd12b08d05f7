"""`defectgate data stats DIR [--json]`: what is in a dataset: images per split, OK / NG parts,
boxes and images per class, a histogram of box sizes (longer side in pixels) and image sizes.
Label lines that do not parse are counted, not fatal: `validate` is the tool that judges."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .layout import label_path_for, list_split_images, load_data_yaml, parse_label_text

# Longer box side in pixels. A detector at 640 px downsamples by 8 at its finest level, so boxes
# under ~8 px at training size are the ones it struggles with.
SIZE_BINS = (0, 8, 16, 32, 64, 128, 256)


def _bin_label(i: int) -> str:
    lo = SIZE_BINS[i]
    return f"{lo}-{SIZE_BINS[i + 1]}" if i + 1 < len(SIZE_BINS) else f"{lo}+"


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header, without decoding pixels."""
    try:
        from PIL import Image  # pillow comes with the [train] extra (ultralytics needs it)

        with Image.open(path) as im:
            return im.size
    except ImportError:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        return None if img is None else (img.shape[1], img.shape[0])
    except (OSError, ValueError):
        return None


def compute_stats(path: str | Path) -> dict:
    spec = load_data_yaml(path)
    names = spec.names
    nc = len(names)
    splits: dict[str, dict] = {}
    per_class = {n: {"boxes": 0, "images": 0} for n in names}
    hist = {n: [0] * len(SIZE_BINS) for n in names}
    sizes: Counter = Counter()
    unreadable = invalid_lines = 0
    for split in spec.splits:
        s = {"images": 0, "ok": 0, "ng": 0, "boxes": 0, "boxes_per_class": {n: 0 for n in names}}
        for img in list_split_images(spec, split):
            s["images"] += 1
            wh = _image_size(img)
            if wh is None:
                unreadable += 1
            else:
                sizes[f"{wh[0]}x{wh[1]}"] += 1
            lbl = label_path_for(img)
            rows = []
            if lbl.is_file():
                rows, problems = parse_label_text(lbl.read_text(errors="replace"), str(lbl), nc)
                invalid_lines += sum(p.severity == "error" for p in problems)
            s["ng" if rows else "ok"] += 1
            s["boxes"] += len(rows)
            for c in {r.cls for r in rows}:
                per_class[names[c]]["images"] += 1
            for r in rows:
                per_class[names[r.cls]]["boxes"] += 1
                s["boxes_per_class"][names[r.cls]] += 1
                if wh is not None:
                    side = max(r.w * wh[0], r.h * wh[1])
                    i = max(k for k, lo in enumerate(SIZE_BINS) if side >= lo)
                    hist[names[r.cls]][i] += 1
        splits[split] = s
    totals = {k: sum(s[k] for s in splits.values()) for k in ("images", "ok", "ng", "boxes")}
    return {
        "dataset": str(spec.yaml_path.parent),
        "classes": names,
        "splits": splits,
        "totals": totals,
        "per_class": per_class,
        "box_size_bins_px": [_bin_label(i) for i in range(len(SIZE_BINS))],
        "box_size_histogram": hist,
        "image_sizes": dict(sizes.most_common()),
        "unreadable_images": unreadable,
        "invalid_label_lines": invalid_lines,
    }


def format_stats(st: dict) -> str:
    names = st["classes"]
    w = max(8, *(len(n) for n in names))
    out = [f"dataset {st['dataset']}", ""]
    out.append(f"{'split':<8} {'images':>7} {'OK':>6} {'NG':>6} {'boxes':>7}")
    for split, s in list(st["splits"].items()) + [("total", st["totals"])]:
        out.append(f"{split:<8} {s['images']:>7} {s['ok']:>6} {s['ng']:>6} {s['boxes']:>7}")
    out += ["", f"{'class':<{w}} {'boxes':>7} {'images':>7}   box longer side (px): "
            + " ".join(f"{b:>7}" for b in st["box_size_bins_px"])]
    for n in names:
        pc = st["per_class"][n]
        out.append(f"{n:<{w}} {pc['boxes']:>7} {pc['images']:>7}   {'':21}"
                   + " ".join(f"{v:>7}" for v in st["box_size_histogram"][n]))
    sizes = st["image_sizes"]
    top = ", ".join(f"{k} ({v})" for k, v in list(sizes.items())[:5])
    more = f", and {len(sizes) - 5} more sizes" if len(sizes) > 5 else ""
    out += ["", f"image sizes: {top or 'none'}{more}"]
    if st["unreadable_images"] or st["invalid_label_lines"]:
        out.append(f"unreadable images: {st['unreadable_images']}, invalid label lines: "
                   f"{st['invalid_label_lines']} (run 'defectgate data validate')")
    return "\n".join(out)
