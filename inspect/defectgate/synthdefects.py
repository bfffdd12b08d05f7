"""The defects of the synthetic parts (synthparts.py): scratches, dents, cracks and stains painted into
a part's sprite, each kept only where it visibly changes the part, its box the tight bound of those
pixels. Split from synthparts.py (the belt, the part, the camera) to keep each module to one job."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CLASSES: tuple[str, ...] = ("scratch", "dent", "crack", "stain")

# A defect must change a pixel by at least this much (grey levels, after clipping to the part)
# for the pixel to count towards its box: boxes bound what is visible, not what was drawn.
_VISIBLE_DELTA = 10.0


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish noise with features about `cell` pixels across."""
    sh, sw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    small = rng.standard_normal((sh, sw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@dataclass
class Sprite:
    """A part rendered on its own: float32 BGR colour, alpha in 0..1, defects in sprite pixels."""

    color: np.ndarray
    alpha: np.ndarray
    boxes: list[list[float]]
    class_ids: list[int]


def _interior_point(rng: np.random.Generator, alpha: np.ndarray, margin: float) -> np.ndarray | None:
    """A random point at least `margin` px inside the part (away from outline and holes)."""
    solid = (alpha > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(solid, cv2.DIST_L2, 3)
    ys, xs = np.nonzero(dist > margin)
    if len(xs) == 0:
        ys, xs = np.nonzero(dist > dist.max() * 0.6)
        if len(xs) == 0:
            return None
    i = int(rng.integers(len(xs)))
    return np.array([xs[i], ys[i]], np.float32)


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _polyline_mask(n: int, paths: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Anti-aliased coverage (0..1) of polylines drawn with the given thicknesses."""
    m = np.zeros((n, n), np.float32)
    for pts, thick in paths:
        cv2.polylines(m, [np.round(pts * 16).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA, 4)
    return np.clip(m, 0, 1)


def _scratch(rng, n, p, ref, base_mean, light):
    length = rng.uniform(26, 62) * ref
    ang = rng.uniform(0, np.pi)
    d = np.array([np.cos(ang), np.sin(ang)], np.float32)
    normal = np.array([-d[1], d[0]], np.float32)
    t = np.linspace(-0.5, 0.5, 24, dtype=np.float32)[:, None]
    bend = rng.uniform(-0.12, 0.12) * length
    pts = p + d * (t * length) + normal * (bend * (1 - 4 * t * t))
    thick = max(2, int(round(rng.choice([3, 3, 4]) * ref)))
    cov = _polyline_mask(n, [(pts, thick)])
    # a scratch is a bright groove on dark steel or a dark one on bright steel
    sign = 1.0 if base_mean < 150 else -1.0
    if rng.random() < 0.25:
        sign = -sign
    delta = sign * rng.uniform(65, 95)
    return cov[..., None] * np.array([delta, delta, delta], np.float32)


def _dent(rng, n, p, ref, base_mean, light):
    a = rng.uniform(9, 16) * ref
    b = a * rng.uniform(0.6, 1.0)
    phi = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    dx, dy = xx - p[0], yy - p[1]
    c, s = np.cos(phi), np.sin(phi)
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    r = np.sqrt(u * u + v * v)
    inside = r < 1.0
    # a concave cup: the wall facing away from the light is lit, the near wall in shadow
    lu = light[0] * c + light[1] * s
    lv = -light[0] * s + light[1] * c
    shade = np.where(inside, (u * lu + v * lv) * rng.uniform(60, 85) - rng.uniform(15, 30), 0.0)
    rim = np.exp(-((r - 1.05) / 0.14) ** 2) * rng.uniform(30, 50)
    rim *= 0.5 + 0.5 * np.clip(-(u * lu + v * lv) / (r + 1e-6), 0, 1)  # rim catches the light on one side
    delta = (shade + rim).astype(np.float32)
    return np.repeat(delta[..., None], 3, axis=2)


def _crack(rng, n, p, ref, base_mean, light):
    def walk(start, heading, length, step):
        pts = [start]
        for _ in range(max(2, int(length / step))):
            heading += rng.uniform(-0.6, 0.6)
            pts.append(pts[-1] + np.array([np.cos(heading), np.sin(heading)], np.float32) * step)
        return np.array(pts, np.float32), heading

    heading = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(28, 55) * ref
    main, _ = walk(p - np.array([np.cos(heading), np.sin(heading)], np.float32) * length / 2, heading, length, 4 * ref)
    paths = [(main, max(3, int(round(3 * ref))))]
    for _ in range(int(rng.integers(1, 3))):
        i = int(rng.integers(1, len(main) - 1))
        br, _ = walk(main[i], heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2), rng.uniform(8, 18) * ref, 3 * ref)
        paths.append((br, max(2, int(round(2 * ref)))))
    cov = _polyline_mask(n, paths)
    delta = -rng.uniform(85, 110)
    return cov[..., None] * np.array([delta, delta, delta], np.float32)


def _stain(rng, n, p, ref, base_mean, light):
    blob = np.zeros((n, n), np.float32)
    spread = rng.uniform(7, 16) * ref
    for _ in range(int(rng.integers(3, 7))):
        q = p + rng.normal(0, spread * 0.6, 2)
        cv2.circle(blob, (int(q[0] * 16), int(q[1] * 16)), int(rng.uniform(0.4, 0.9) * spread * 16), 1.0, -1, cv2.LINE_AA, 4)
    blob = cv2.GaussianBlur(blob, (0, 0), max(1.0, 2.0 * ref))
    # irregular outline: modulate by smooth noise, keep a soft edge
    blob *= 0.75 + 0.5 * np.clip(smooth_noise(rng, n, n, 6 * ref), -1, 1)
    cov = np.clip((blob - 0.25) * 2.5, 0, 1) * rng.uniform(0.6, 0.85)
    colours = [(40, 75, 130), (55, 95, 150), (95, 70, 55), (60, 60, 70)]  # rust, light rust, oil, grime (BGR)
    target = np.array(colours[int(rng.integers(len(colours)))], np.float32)
    target += rng.uniform(-10, 10, 3).astype(np.float32)
    return cov[..., None] * (target - base_mean)


_PAINTERS = (_scratch, _dent, _crack, _stain)


def add_defect(rng: np.random.Generator, sprite: Sprite, ref: float, light: np.ndarray) -> None:
    n = sprite.alpha.shape[0]
    solid = np.clip((sprite.alpha - 0.5) * 2, 0, 1)  # defects live strictly on the part
    for _attempt in range(8):
        cls = int(rng.integers(len(CLASSES)))
        p = _interior_point(rng, sprite.alpha, margin=8 * ref)
        if p is None:
            return
        base_mean = float(sprite.color[int(p[1]), int(p[0])].mean())
        delta = _PAINTERS[cls](rng, n, p, ref, base_mean, light) * solid[..., None]
        new = np.clip(sprite.color + delta, 0, 255)
        visible = np.abs(new - sprite.color).max(axis=2) >= _VISIBLE_DELTA
        ys, xs = np.nonzero(visible)
        if len(xs) < 12:
            continue
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        if min(box[2] - box[0], box[3] - box[1]) < 3:
            continue
        if any(_iou(box, other) > 0.2 for other in sprite.boxes):
            continue
        sprite.color = new
        sprite.boxes.append(box)
        sprite.class_ids.append(cls)
        return
