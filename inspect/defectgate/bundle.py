"""Model bundles: a model file plus `model.json`, the sidecar that is the contract between export
and runtime. Export writes it; the runtime only reads and checks it. Nothing here is shared code
with the exporter: the JSON schema below is the whole agreement.

Layout of a bundle folder:
    model.onnx | model.engine | model.xml(+.bin)   the model file named by `model_file`
    model.json                                       this sidecar
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import BundleError
from .partscore import unknown_features
from .staging import write_json_atomic

SCHEMA_VERSION = 1
SIDECAR_NAME = "model.json"
# Output layouts the runtime can decode (postprocess.py):
#   yolo_raw: (1, 4 + nc, anchors), boxes cx cy w h in input pixels, class scores after sigmoid; needs NMS
#   end2end:  (1, max_det, 6), x1 y1 x2 y2 score class in input pixels; NMS-free (YOLO26, YOLOv10)
OutputLayout = Literal["yolo_raw", "end2end"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    name: str = "images"
    imgsz: tuple[int, int] = Field(description="model input height, width in pixels")
    layout: Literal["NCHW"] = "NCHW"
    color: Literal["RGB", "BGR"] = "RGB"
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    letterbox_pad: int = 114
    letterbox_center: bool = True
    batch: int = 1


class OutputSpec(_Strict):
    name: str = "output0"
    layout: OutputLayout
    shape: list[int | str]
    max_det: int = 300
    # the head's strides in anchor order (yolo_raw), e.g. [8, 16, 32]; tta needs them to mirror the grid
    strides: list[int] = Field(default_factory=list)


class TtaSpec(_Strict):
    """Test-time augmentation the bundle is judged with (tta.py): mirror views averaged per anchor,
    and shrunk views fused with the frame's. Export calibrates the thresholds with it on, so it
    belongs to the bundle, not to the station config."""

    flips: Literal["none", "hflip", "hvflip"] = "none"
    scales: list[float] = Field(default_factory=lambda: [1.0])

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: list[float]) -> list[float]:
        if not v or v[0] != 1.0:
            raise ValueError(f"scales must start with 1.0 (the frame itself), got {v}")
        if any(not 0.25 <= s <= 1.0 for s in v) or len(set(v)) != len(v):
            raise ValueError(f"scales must be distinct factors in 0.25..1.0, got {v}")
        return v

    @property
    def active(self) -> bool:
        return self.flips != "none" or len(self.scales) > 1

    @property
    def views(self) -> int:
        """Inferences per frame: every mirror view at every scale (tta.FLIPS has the mirror views)."""
        return FLIP_VIEWS[self.flips] * len(self.scales)


FLIP_VIEWS = {"none": 1, "hflip": 2, "hvflip": 4}


class PartScoreSpec(_Strict):
    """The part-level decision (partscore.py): NG when sigmoid(weights · features + bias) >= threshold,
    over the detections at or above box_floor. Absent: a part is NG when any box passes its class
    threshold. Export fits it on the calibration split (`defectgate export --part-score`)."""

    kind: Literal["logistic"] = "logistic"
    features: list[str]
    weights: list[float]
    bias: float
    threshold: float = Field(ge=0.0, le=1.0)
    box_floor: float = Field(0.01, gt=0.0, le=1.0)
    target_escape_rate: float | None = None
    fitted_on: str = ""

    @model_validator(mode="after")
    def _weights_fit(self) -> "PartScoreSpec":
        if not self.features:
            raise ValueError("features must name at least one feature")
        if len(self.weights) != len(self.features):
            raise ValueError(f"{len(self.weights)} weights for {len(self.features)} features {self.features}")
        return self


class Sidecar(_Strict):
    format: Literal["defectgate-bundle"] = "defectgate-bundle"
    schema_version: int = SCHEMA_VERSION
    model_file: str
    sha256: str
    engine: Literal["onnx", "tensorrt", "openvino"] = "onnx"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    architecture: str = ""
    classes: list[str]
    input: InputSpec
    output: OutputSpec
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    tta: TtaSpec = Field(default_factory=TtaSpec)
    part_score: PartScoreSpec | None = None
    class_thresholds: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = ""
    version: str = Field(default="", description="registry version label, e.g. v0003")
    # Engine-specific facts (TensorRT version and GPU name for an engine, calibration fingerprint
    # for INT8); the backend that loads the file checks them.
    engine_info: dict[str, Any] = Field(default_factory=dict)
    source_onnx_sha256: str = ""

    @field_validator("classes")
    @classmethod
    def _classes_nonempty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("classes must list at least one class name")
        if len(set(v)) != len(v):
            raise ValueError(f"classes has duplicate names: {v}")
        return v

    @field_validator("class_thresholds")
    @classmethod
    def _thresholds_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for name, t in v.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"class_thresholds[{name!r}] = {t} is outside 0..1")
        return v

    @model_validator(mode="after")
    def _batch_fits_the_views(self) -> "Sidecar":
        """A bundle runs its views as one batch (input.batch = views) or one at a time (batch 1)."""
        batch, views = self.input.batch, self.tta.views
        if batch not in (1, views):
            raise ValueError(f"input.batch {batch} does not fit the {views} view(s) per frame of tta "
                             f"{self.tta.model_dump()}: a bundle's batch is 1 or its number of views; "
                             "re-export it with the --tta it is meant to run")
        if isinstance(self.output.shape[0], int) and self.output.shape[0] != batch:
            raise ValueError(f"output.shape {self.output.shape} has batch {self.output.shape[0]}, input.batch is {batch}")
        return self

    @model_validator(mode="after")
    def _tta_fits_the_head(self) -> "Sidecar":
        if not self.tta.active:
            return self
        out, tta = self.output, f"tta {self.tta.model_dump()}"
        if out.layout != "yolo_raw":
            raise ValueError(f"{tta} merges the views of a yolo_raw head; output.layout is '{out.layout}' "
                             "(export a YOLO26 model with --head nms to use tta)")
        if not out.strides:
            raise ValueError(f"{tta} needs output.strides (the head's strides); re-export the bundle")
        h, w = self.input.imgsz
        if h % max(out.strides) or w % max(out.strides):
            raise ValueError(f"{tta}: input.imgsz {h}x{w} is not a multiple of the largest stride "
                             f"{max(out.strides)}, so mirrored grids do not line up")
        anchors = sum((h // s) * (w // s) for s in out.strides)
        if isinstance(out.shape[-1], int) and out.shape[-1] != anchors:
            raise ValueError(f"{tta}: output.strides {out.strides} at {h}x{w} give {anchors} anchors, "
                             f"output.shape says {out.shape[-1]}")
        return self

    @model_validator(mode="after")
    def _part_score_fits_the_classes(self) -> "Sidecar":
        if self.part_score is None:
            return self
        bad = unknown_features(self.part_score.features, self.classes)
        if bad:
            raise ValueError(f"part_score.features {bad} are not features of a model with classes {self.classes} "
                             "(the part score was fitted for another model: re-export with --part-score)")
        return self

    def threshold_for(self, class_name: str) -> float:
        return self.class_thresholds.get(class_name, self.conf_threshold)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Bundle:
    """A checked bundle: `model_path` exists and its sha256 matches the sidecar."""

    def __init__(self, root: Path, sidecar: Sidecar):
        self.root = root
        self.sidecar = sidecar

    @property
    def model_path(self) -> Path:
        return self.root / self.sidecar.model_file

    @property
    def classes(self) -> list[str]:
        return self.sidecar.classes

    @property
    def version(self) -> str:
        return self.sidecar.version or self.sidecar.sha256[:12]

    def __repr__(self) -> str:
        return f"Bundle({self.root}, {self.sidecar.engine}/{self.sidecar.precision}, version={self.version})"


def read_sidecar(path: Path) -> Sidecar:
    """Parse a sidecar file without checking the model file (for tools that rewrite it)."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: sidecar not found; a bundle is a folder with {SIDECAR_NAME} and its model file")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != "defectgate-bundle":
        raise BundleError(f"{path}: not a defectgate sidecar (missing \"format\": \"defectgate-bundle\")")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: sidecar schema_version {raw.get('schema_version')!r} is not supported "
            f"(this runtime reads {SCHEMA_VERSION}); re-export the bundle with a matching defectgate"
        )
    try:
        return Sidecar.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        where = f"sidecar key '{key}'" if key else "sidecar"  # a whole-sidecar check names its keys itself
        raise BundleError(f"{path}: {where}: {first['msg']}") from exc


def write_sidecar(root: Path, sidecar: Sidecar) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a sidecar."""
    return write_json_atomic(Path(root) / SIDECAR_NAME, sidecar.model_dump(mode="json"))


def load_bundle(path: str | Path, expect_classes: list[str] | None = None) -> Bundle:
    """Load a bundle folder (or its model.json) and refuse it when the model file is missing, its
    sha256 differs from the sidecar, or the class list differs from `expect_classes`."""
    path = Path(path)
    root = path.parent if path.name == SIDECAR_NAME or path.is_file() else path
    if not root.exists():
        raise BundleError(f"{root}: model bundle not found; export one with 'defectgate export'")
    sidecar = read_sidecar(root / SIDECAR_NAME)
    model = root / sidecar.model_file
    if not model.is_file():
        raise BundleError(f"{model}: model file named by {root / SIDECAR_NAME} is missing")
    digest = sha256_file(model)
    if digest != sidecar.sha256:
        raise BundleError(
            f"{model}: sha256 {digest[:12]}… does not match the sidecar's {sidecar.sha256[:12]}…; "
            "the model file was changed or the bundle is mixed up: re-export it"
        )
    if expect_classes is not None and list(expect_classes) != sidecar.classes:
        raise BundleError(
            f"{root}: bundle classes {sidecar.classes} do not match the expected {list(expect_classes)}"
        )
    return Bundle(root, sidecar)
