"""Synthetic inspection frames: one machined part on a conveyor belt, sometimes with defects.

This is the project's embedded default dataset and the picture source of the `synthetic://`
conveyor, so it lives in the runtime package and needs only numpy and OpenCV.

A frame is built in three layers:
  belt   dark rubber with low- and high-frequency noise, longitudinal streaks and splice seams;
  part   a sprite (colour + alpha) of a steel plate with bolt holes, a washer or an L-bracket:
         brushed texture, chamfered edges shaded by the light direction, faint machining marks;
         defects are drawn into the sprite and clipped to the part, so they are always ON it;
  camera soft shadow, lighting gradient, specular highlight, dust specks, blur and sensor noise.

Nuisances (bolt holes, machining marks, dust, highlights, seams) are deliberately NOT labelled: a
model must learn to ignore them. Defects are sized so they survive a 320 -> 192 px downscale
(scratches and cracks 3-4 px wide at 320, boxes mostly 15-65 px) and every box is the tight bound
of the pixels the defect visibly changed. Everything is deterministic per seed.

Calibration (synthparts-2): YOLO11n from scratch, 600 images, imgsz 192, 12 epochs on a 2-core
CPU with mosaic=0 scale=0.2 warmup_epochs=1 reached val mAP50 0.17 and caught 42/51 NG parts at
confidence 0.05 with 2/69 OK parts rejected; the thinner, fainter defects of synthparts-1 gave
mAP50 0.10 and 36/51. Fewer/weaker defects than this and the 3-minute demo model misses most.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .synthdefects import CLASSES, Sprite, add_defect, smooth_noise  # noqa: F401  (CLASSES is this module's too)

GENERATOR_VERSION = "synthparts-2"

@dataclass
class Scene:
    image: np.ndarray  # H x W x 3 uint8 BGR
    boxes: np.ndarray  # (K, 4) float32 xyxy in pixels, K may be 0
    class_ids: np.ndarray  # (K,) int64 indices into CLASSES
    part_box: np.ndarray  # (4,) float32 xyxy of the part itself in pixels

    @property
    def ng(self) -> bool:
        return len(self.boxes) > 0


def render_scene(seed: int, hw: tuple[int, int] = (240, 320), ng_rate: float = 0.4,
                 center_jitter: float = 0.08) -> Scene:
    """Render one camera frame of a part on the belt; NG (1-3 defects) with probability ng_rate."""
    h, w = int(hw[0]), int(hw[1])
    if h < 32 or w < 32:
        raise ValueError(f"render_scene: image size {hw} is too small (need at least 32x32)")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFF, 0x5EED]))
    ref = min(h, w) / 240.0  # all sizes below are in pixels of a 240-px-high frame
    n_defects = int(rng.integers(1, 4)) if rng.random() < ng_rate else 0

    belt = _belt(rng, h, w)
    sprite = _part(rng, ref, n_defects)
    cx = w / 2 + rng.uniform(-1, 1) * center_jitter * w
    cy = h / 2 + rng.uniform(-1, 1) * center_jitter * h
    image, boxes, class_ids, part_box = _compose(rng, belt, sprite, cx, cy, ref)
    return Scene(image=image, boxes=boxes, class_ids=class_ids, part_box=part_box)


# ----------------------------------------------------------------------------------------- belt
def _belt(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(32, 62)
    tint = rng.uniform(-3, 3, size=3).astype(np.float32)
    g = np.full((h, w), base, np.float32)
    g += smooth_noise(rng, h, w, rng.uniform(25, 60)) * rng.uniform(2, 6)
    # rubber grain: fine noise smeared along the belt's running direction (x)
    grain = rng.standard_normal((h, w)).astype(np.float32)
    grain = cv2.blur(grain, (int(rng.integers(5, 15)), 1)) * rng.uniform(4, 9)
    g += grain
    # splice seams across the belt and a worn track along it
    for _ in range(int(rng.integers(0, 3))):
        x = int(rng.integers(0, w))
        width = int(rng.integers(2, 5))
        g[:, max(0, x - width // 2): x + width // 2 + 1] += rng.choice([-1, 1]) * rng.uniform(8, 18)
    if rng.random() < 0.5:
        y = int(rng.integers(0, h))
        band = np.exp(-(((np.arange(h) - y) / rng.uniform(10, 30)) ** 2)).astype(np.float32)
        g += band[:, None] * rng.uniform(-6, 8)
    return np.clip(g[..., None] + tint, 0, 255)


# ----------------------------------------------------------------------------------------- part
def _rot(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]], np.float32)


def _chamfered_rect(w: float, h: float, c: float) -> np.ndarray:
    x, y = w / 2, h / 2
    return np.array([[-x + c, -y], [x - c, -y], [x, -y + c], [x, y - c], [x - c, y], [-x + c, y],
                     [-x, y - c], [-x, -y + c]], np.float32)


def _part_shape(rng: np.random.Generator, ref: float) -> tuple[str, np.ndarray, float]:
    """Draw the part's silhouette (unrotated is never used: geometry is rotated here).
    Returns (kind, alpha mask float32, brush angle)."""
    scale = ref * rng.uniform(0.85, 1.15)
    angle = rng.uniform(0, 2 * np.pi)
    kind = rng.choice(["plate", "washer", "bracket"], p=[0.45, 0.33, 0.22])
    holes: list[tuple[np.ndarray, float]] = []
    if kind == "plate":
        pw, ph = rng.uniform(120, 150) * scale, rng.uniform(82, 108) * scale
        outline = [_chamfered_rect(pw, ph, rng.uniform(5, 12) * scale)]
        if rng.random() < 0.7:  # bolt holes near the corners
            r = rng.uniform(5, 8) * scale
            inset = r + rng.uniform(7, 11) * scale
            for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                holes.append((np.array([[sx * (pw / 2 - inset), sy * (ph / 2 - inset)]], np.float32), r))
        radius = float(np.hypot(pw, ph) / 2)
    elif kind == "washer":
        ro = rng.uniform(52, 64) * scale
        outline = []
        holes.append((np.zeros((1, 2), np.float32), ro * rng.uniform(0.28, 0.4)))
        radius = float(ro)
    else:  # L-bracket
        bw, bh = rng.uniform(120, 145) * scale, rng.uniform(100, 125) * scale
        arm = rng.uniform(42, 52) * scale
        x0, y0 = -bw / 2, -bh / 2
        outline = [np.array([[x0, y0], [x0 + bw, y0], [x0 + bw, y0 + arm], [x0 + arm, y0 + arm],
                             [x0 + arm, y0 + bh], [x0, y0 + bh]], np.float32)]
        r = rng.uniform(5, 7) * scale
        holes.append((np.array([[x0 + bw - arm / 2, y0 + arm / 2]], np.float32), r))
        holes.append((np.array([[x0 + arm / 2, y0 + bh - arm / 2]], np.float32), r))
        radius = float(np.hypot(bw, bh) / 2)

    size = int(np.ceil(2 * radius)) + 8
    centre = np.array([size / 2, size / 2], np.float32)
    # draw at 4x with sub-pixel shift, then area-downsample: anti-aliased edges
    ss, shift = 4, 2
    big = np.zeros((size * ss, size * ss), np.uint8)
    k = float(ss * (1 << shift))
    if kind == "washer":
        c = tuple(int(v * k) for v in centre)
        cv2.circle(big, c, int(radius * k), 255, -1, cv2.LINE_8, shift)
    for poly in outline:
        pts = ((_rot(poly, angle) + centre) * k).astype(np.int32)
        cv2.fillPoly(big, [pts], 255, cv2.LINE_8, shift)
    for pos, r in holes:
        p = (_rot(pos, angle) + centre)[0]
        cv2.circle(big, (int(p[0] * k), int(p[1] * k)), int(r * k), 0, -1, cv2.LINE_8, shift)
    alpha = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return str(kind), alpha, angle


def _brushed_metal(rng: np.random.Generator, alpha: np.ndarray, brush_angle: float) -> np.ndarray:
    n = alpha.shape[0]
    base = rng.uniform(115, 170)
    tint = np.array([rng.uniform(-4, 8), rng.uniform(-3, 3), rng.uniform(-8, 4)], np.float32)
    noise = rng.standard_normal((n, n)).astype(np.float32)
    length = int(rng.integers(15, 31))
    kernel = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    d = np.array([np.cos(brush_angle), np.sin(brush_angle)]) * c
    cv2.line(kernel, (int(round(c - d[0])), int(round(c - d[1]))), (int(round(c + d[0])), int(round(c + d[1]))), 1.0, 1)
    kernel /= kernel.sum()
    brushed = cv2.filter2D(noise, -1, kernel, borderType=cv2.BORDER_REFLECT)
    brushed *= rng.uniform(8, 16) / max(float(brushed.std()), 1e-3)
    g = base + brushed + smooth_noise(rng, n, n, rng.uniform(30, 70)) * rng.uniform(2, 6)
    return g[..., None] + tint


def _chamfer_shading(alpha: np.ndarray, light: np.ndarray, ref: float, strength: float) -> np.ndarray:
    """Edges (outline and holes) lit by a directional light: the chamfer facing the light is
    bright, the other dark; this is what makes the part read as machined metal."""
    width = max(1.5, 2.5 * ref)
    soft = cv2.GaussianBlur(alpha, (0, 0), width)
    gx = cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy) + 1e-6
    # the surface normal of the chamfer points away from the part interior (-grad)
    facing = -(gx * light[0] + gy * light[1]) / mag
    edge = np.clip(mag / (mag.max() + 1e-6) * 2.0, 0, 1)
    return facing * edge * strength


def _machining_marks(rng: np.random.Generator, color: np.ndarray, alpha: np.ndarray, ref: float) -> None:
    """Faint 1-px tool marks and a milling arc: NOT defects, low contrast on purpose."""
    n = alpha.shape[0]
    marks = np.zeros((n, n), np.float32)
    if rng.random() < 0.7:
        ang = rng.uniform(0, np.pi)
        d = np.array([np.cos(ang), np.sin(ang)])
        normal = np.array([-d[1], d[0]])
        start = rng.uniform(-n / 3, n / 3)
        for i in range(int(rng.integers(2, 6))):
            o = n / 2 + normal * (start + i * rng.uniform(5, 12) * ref)
            p1, p2 = o - d * n, o + d * n
            cv2.line(marks, tuple(int(v) for v in p1), tuple(int(v) for v in p2), float(rng.uniform(0.5, 1.0)), 1, cv2.LINE_AA)
    if rng.random() < 0.4:
        c = (int(rng.uniform(0.2, 0.8) * n), int(rng.uniform(0.2, 0.8) * n))
        r = int(rng.uniform(0.3, 0.7) * n)
        cv2.ellipse(marks, c, (r, r), 0, rng.uniform(0, 360), rng.uniform(0, 360) + 60, 1.0, 1, cv2.LINE_AA)
    color += (marks * alpha * rng.choice([-1.0, 1.0]) * rng.uniform(4, 8))[..., None]


def _part(rng: np.random.Generator, ref: float, n_defects: int) -> Sprite:
    kind, alpha, angle = _part_shape(rng, ref)
    brush = angle + (0.0 if rng.random() < 0.7 else np.pi / 2)
    color = _brushed_metal(rng, alpha, brush)
    light_angle = rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(light_angle), np.sin(light_angle)], np.float32)
    color += _chamfer_shading(alpha, light, ref, rng.uniform(35, 60))[..., None]
    _machining_marks(rng, color, alpha, ref)
    np.clip(color, 0, 255, out=color)
    sprite = Sprite(color=color, alpha=alpha, boxes=[], class_ids=[])
    for _ in range(n_defects):
        add_defect(rng, sprite, ref, light)
    return sprite


# -------------------------------------------------------------------------------------- compose
def _compose(rng: np.random.Generator, belt: np.ndarray, sprite: Sprite, cx: float, cy: float, ref: float):
    h, w = belt.shape[:2]
    n = sprite.alpha.shape[0]
    x0, y0 = int(round(cx - n / 2)), int(round(cy - n / 2))
    # paste window (clipped to the frame)
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + n), min(h, y0 + n)
    sx0, sy0 = fx0 - x0, fy0 - y0
    sx1, sy1 = sx0 + (fx1 - fx0), sy0 + (fy1 - fy0)

    alpha_full = np.zeros((h, w), np.float32)
    color_full = np.zeros((h, w, 3), np.float32)
    if fx1 > fx0 and fy1 > fy0:
        alpha_full[fy0:fy1, fx0:fx1] = sprite.alpha[sy0:sy1, sx0:sx1]
        color_full[fy0:fy1, fx0:fx1] = sprite.color[sy0:sy1, sx0:sx1]

    # soft shadow cast on the belt by an overhead light slightly off-axis
    off = rng.uniform(2, 6, 2) * ref * rng.choice([-1, 1], 2)
    m = np.float32([[1, 0, off[0]], [0, 1, off[1]]])
    shadow = cv2.warpAffine(alpha_full, m, (w, h))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 3 * ref)
    img = belt * (1 - 0.45 * shadow[..., None])
    img = img * (1 - alpha_full[..., None]) + color_full * alpha_full[..., None]

    # lighting gradient across the field of view and a specular highlight on the part
    ga = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx - w / 2) * np.cos(ga) + (yy - h / 2) * np.sin(ga)) / max(h, w)
    img *= (1 + ramp * rng.uniform(0.15, 0.45))[..., None]
    if rng.random() < 0.8:
        sx, sy = cx + rng.normal(0, 25 * ref), cy + rng.normal(0, 25 * ref)
        sigma = rng.uniform(15, 35) * ref
        spec = np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * sigma * sigma)) * rng.uniform(25, 50)
        img += (spec * alpha_full)[..., None]

    # dust specks (on belt and part alike): nuisances, never labelled
    for _ in range(int(rng.poisson(5))):
        px, py = rng.uniform(0, w), rng.uniform(0, h)
        shade = rng.choice([25.0, 220.0])
        cv2.circle(img, (int(px * 4), int(py * 4)), int(rng.uniform(0.6, 1.6) * ref * 4),
                   (shade, shade, shade), -1, cv2.LINE_AA, 2)

    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9) * ref)
    img += rng.normal(0, rng.uniform(1.5, 4.0), img.shape).astype(np.float32)
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    boxes, class_ids = [], []
    for (bx0, by0, bx1, by1), cls in zip(sprite.boxes, sprite.class_ids):
        full = (bx1 - bx0) * (by1 - by0)
        c = [max(bx0 + x0, 0.0), max(by0 + y0, 0.0), min(bx1 + x0, float(w)), min(by1 + y0, float(h))]
        if c[2] <= c[0] or c[3] <= c[1] or (c[2] - c[0]) * (c[3] - c[1]) < 0.4 * full:
            continue  # mostly outside the frame: not visible enough to be a labelled defect
        boxes.append(c)
        class_ids.append(cls)
    ys, xs = np.nonzero(alpha_full > 0.5)
    part_box = (np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
                if len(xs) else np.zeros(4, np.float32))
    return (image, np.array(boxes, np.float32).reshape(-1, 4), np.array(class_ids, np.int64), part_box)
