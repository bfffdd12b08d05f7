"""Albumentations pipeline for inspection images, handed to ultralytics through its `augmentations`
train argument (ultralytics wraps the list in `Albumentations` inside `v8_transforms`, after mosaic
and the affine step, before HSV and flips; it serialises it with `A.to_dict` so DataLoader workers
and checkpoints get a copy).

Why these transforms: a camera on a line sees the same part under drifting light, focus and sensor
noise, so the pipeline is mostly photometric. It deliberately leaves out anything that can erase a
small defect: no cutout/dropout, no strong blur (kernel <= 5), no downscale below 0.75, no crops
(ultralytics' own mosaic/affine already handle scale and position). Geometric transforms that move
pixels are off unless the part allows them: `rotate90` suits textures and round parts, not parts
with a fixed orientation; `rotate_degrees` is for small fixture wobble.

Configure with a mapping (YAML `augment:` section) or a preset name:
    augment: inspection            # the default below
    augment: none                  # ultralytics' built-in albumentations (all near p=0)
    augment: {preset: inspection, rotate90: 0.5, noise: 0.3}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from defectgate.errors import ConfigError, require


class AugmentConfig(BaseModel):
    """Probabilities (0..1) and strengths of each transform. 0 disables a transform."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    brightness_contrast: float = Field(0.5, ge=0, le=1, description="RandomBrightnessContrast probability")
    brightness_limit: float = Field(0.2, ge=0, le=0.5)
    contrast_limit: float = Field(0.2, ge=0, le=0.5)
    gamma: float = Field(0.3, ge=0, le=1, description="RandomGamma probability (exposure curve)")
    clahe: float = Field(0.1, ge=0, le=1, description="CLAHE probability (local contrast, lighting falloff)")
    noise: float = Field(0.25, ge=0, le=1, description="GaussNoise probability (sensor noise)")
    noise_std: tuple[float, float] = Field((0.01, 0.04), description="GaussNoise std range, fraction of 255")
    blur: float = Field(0.15, ge=0, le=1, description="Gaussian/motion blur probability (focus, belt motion)")
    blur_limit: int = Field(3, ge=3, le=5, description="largest blur kernel; kept small so thin scratches survive")
    jpeg: float = Field(0.1, ge=0, le=1, description="ImageCompression probability (camera/JPEG artefacts)")
    jpeg_quality: tuple[int, int] = (75, 100)
    downscale: float = Field(0.0, ge=0, le=1, description="Downscale probability (cheaper optics)")
    rotate90: float = Field(0.0, ge=0, le=1, description="RandomRotate90 probability; only for parts without fixed orientation")
    rotate_degrees: float = Field(0.0, ge=0, le=15, description="small rotation limit in degrees (fixture wobble)")
    rotate_p: float = Field(0.3, ge=0, le=1)


PRESETS: dict[str, dict[str, Any]] = {
    "inspection": {},
    # Textures with no up/down (steel strip, fabric, wood): any multiple of 90 degrees is a valid image.
    "texture": {"rotate90": 0.5, "clahe": 0.2},
    "none": {"enabled": False},
}


def load_augment_config(value: Any, where: str = "augment") -> AugmentConfig:
    """Accept a preset name, a mapping (optionally with `preset:`), or an AugmentConfig."""
    if isinstance(value, AugmentConfig):
        return value
    if value is None:
        value = "inspection"
    if isinstance(value, bool):
        value = "inspection" if value else "none"
    if isinstance(value, str):
        value = {"preset": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a preset name or a mapping, got {type(value).__name__}")
    value = dict(value)
    preset = value.pop("preset", "inspection")
    if preset not in PRESETS:
        raise ConfigError(f"{where}.preset: '{preset}' is unknown; use one of {', '.join(PRESETS)}")
    try:
        return AugmentConfig.model_validate({**PRESETS[preset], **value})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}.{key}: {first['msg']} (got {first.get('input')!r})") from exc


def build_transforms(cfg: AugmentConfig) -> list | None:
    """The albumentations transforms for ultralytics' `augmentations` argument, or None to keep
    ultralytics' built-in list (what `enabled: false` means: augmentation "off" in comparisons)."""
    if not cfg.enabled:
        return None
    A = require("albumentations", "train", "training augmentation")
    t: list = []
    if cfg.brightness_contrast:
        t.append(A.RandomBrightnessContrast(brightness_limit=cfg.brightness_limit, contrast_limit=cfg.contrast_limit,
                                            p=cfg.brightness_contrast))
    if cfg.gamma:
        t.append(A.RandomGamma(gamma_limit=(80, 120), p=cfg.gamma))
    if cfg.clahe:
        t.append(A.CLAHE(clip_limit=(1.0, 2.0), tile_grid_size=(8, 8), p=cfg.clahe))
    if cfg.noise:
        t.append(A.GaussNoise(std_range=tuple(cfg.noise_std), p=cfg.noise))
    if cfg.blur:
        t.append(A.OneOf([A.GaussianBlur(blur_limit=(3, cfg.blur_limit)),
                          A.MotionBlur(blur_limit=(3, cfg.blur_limit))], p=cfg.blur))
    if cfg.jpeg:
        t.append(A.ImageCompression(quality_range=tuple(cfg.jpeg_quality), p=cfg.jpeg))
    if cfg.downscale:
        t.append(A.Downscale(scale_range=(0.75, 0.95), p=cfg.downscale))
    if cfg.rotate90:
        t.append(A.RandomRotate90(p=cfg.rotate90))
    if cfg.rotate_degrees:
        # Rotating an axis-aligned box grows it; keep angles small so boxes stay tight.
        t.append(A.Affine(rotate=(-cfg.rotate_degrees, cfg.rotate_degrees), fit_output=False, border_mode=0,
                          fill=114, p=cfg.rotate_p))
    return t or None


def describe(cfg: AugmentConfig) -> str:
    if not cfg.enabled:
        return "albumentations: ultralytics built-in (off)"
    items = build_transforms(cfg) or []
    return "albumentations: " + ", ".join(f"{type(x).__name__}(p={x.p:g})" for x in items)
