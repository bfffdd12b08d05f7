"""The trained PyTorch network (`best.pt`) as a runtime Backend, with the sidecar a bundle of it would
carry, so that `defectgate evaluate --model best.pt` and export's parity check run it through the
runtime's one `Detector` (letterbox, test-time views, decode at the sidecar's `max_det` and IoU) like
any bundle. The sidecar sections (input, output, default thresholds) are written here for both: the
PyTorch stand-in and the exported bundle (export.build_sidecar) cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from defectgate.bundle import Bundle, Sidecar, sha256_file
from defectgate.detector import Detector
from defectgate.errors import BundleError

from .ultra import ultralytics

HEADS = ("auto", "nms-free", "nms")
DEFAULT_CONF = 0.25  # the sidecar's default class threshold until export calibrates per-class ones
NMS_IOU = 0.45


def load_torch_model(weights: Path, head: str = "auto"):
    """The trained network as a float32 CPU torch module in eval mode, plus its checkpoint facts.

    head: which output head runs. A YOLO26-style model has two: the one-to-one head ("nms-free",
    the default where there is one) and the one-to-many head its training also fits ("nms": boxes
    that need NMS, what ultralytics validates by default). After a short from-scratch training the
    one-to-one head can still put out duplicates (docs/accuracy.md), so the choice is the user's."""
    if head not in HEADS:
        raise BundleError(f"head '{head}' is not one of {', '.join(HEADS)}")
    U = ultralytics()
    yolo = U.YOLO(str(weights))
    model = yolo.model.float().eval().to("cpu")
    names = yolo.model.names
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    train_args = dict(getattr(yolo, "ckpt", {}) or {}).get("train_args", {}) or {}
    arch = Path(str(getattr(yolo.model, "yaml", {}).get("yaml_file", "") or "")).stem
    if head == "nms-free" and not nms_free(model):
        raise BundleError(f"{weights}: {arch or 'this model'} has no NMS-free head; use --head nms or auto")
    if nms_free(model):
        model.end2end = head != "nms"  # True: the one-to-one head, what the end2end ONNX export runs
    return yolo, model, names, train_args, arch


def head_strides(model) -> list[int]:
    """The detection head's strides in anchor order (e.g. [8, 16, 32]); the sidecar records them."""
    stride = getattr(model, "stride", None)
    return [int(s) for s in stride.tolist()] if stride is not None else []


def nms_free(model) -> bool:
    """YOLO26/YOLOv10-style models carry a one-to-one head that needs no NMS."""
    head = model.model[-1] if hasattr(model, "model") else None
    return getattr(head, "one2one_cv2", None) is not None


def torch_forward(model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
    while isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, dict):  # end-to-end heads may return {"one2one": ...}
        out = out.get("one2one", next(iter(out.values())))
        while isinstance(out, (list, tuple)):
            out = out[0]
    return out.detach().cpu().numpy()


class TorchBackend:
    """The PyTorch forward behind the runtime's Backend interface (numpy in, numpy out)."""

    name = "pytorch"

    def __init__(self, model: Any):
        self.model = model

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return [torch_forward(self.model, batch)]

    def close(self) -> None:
        self.model = None


# ---------------------------------------------------------------- the sidecar sections
def layout_of(dims: list, num_classes: int, where: str) -> str:
    """(1, 4 + nc, A) is yolo_raw (boxes + class scores per anchor, NMS needed); (1, N, 6) is end2end."""
    if len(dims) == 3 and dims[1] == 4 + num_classes and dims[2] != 6:
        return "yolo_raw"
    if len(dims) == 3 and dims[2] == 6:
        return "end2end"
    raise BundleError(f"{where} has shape {dims}; expected (1, {4 + num_classes}, A) "
                      "for a YOLO11-style head or (1, N, 6) for an end-to-end head")


def network_sections(names: list[str], imgsz: int, layout: str, dims: list, strides: list[int], tta: dict,
                     input_name: str = "images", output_name: str = "output0") -> dict:
    """The sidecar keys that describe the network and how to judge with it: classes, input geometry
    and normalisation (ultralytics' letterbox, RGB, 1/255), output layout with max_det and strides,
    default thresholds, test-time views."""
    return {
        "classes": list(names),
        "input": {"name": input_name, "imgsz": [imgsz, imgsz], "layout": "NCHW", "color": "RGB", "dtype": "float32",
                  "scale": 1.0 / 255.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                  "letterbox_pad": 114, "letterbox_center": True, "batch": 1},
        "output": {"name": output_name, "layout": layout, "shape": list(dims),
                   "max_det": int(dims[1]) if layout == "end2end" else 300,
                   "strides": list(strides) if layout == "yolo_raw" else []},
        "conf_threshold": DEFAULT_CONF,
        "iou_threshold": NMS_IOU,
        "tta": tta,
    }


def torch_detector(weights: str | Path, imgsz: int | None = None, head: str = "auto", tta: str | None = None,
                   conf_floor: float | None = None) -> Detector:
    """A Detector over the PyTorch network of `weights`, judged as its bundle would be: the input size
    it was trained at (or `imgsz`), the head's output layout, `tta` (a defectgate.tta preset) as views."""
    from defectgate.tta import preset

    weights = Path(weights)
    views = preset(tta or "none")
    _, model, names, train_args, arch = load_torch_model(weights, head)
    size = int(imgsz or train_args.get("imgsz") or 640)
    dims = list(torch_forward(model, np.zeros((1, 3, size, size), np.float32)).shape)
    layout = layout_of(dims, len(names), f"{weights}: output")
    if views.active and layout != "yolo_raw":
        raise BundleError(f"{weights}: tta merges the views of a yolo_raw head; this model runs its NMS-free "
                          "head (use --head nms)")
    spec = {"model_file": weights.name, "sha256": sha256_file(weights), "architecture": arch,
            **network_sections(names, size, layout, dims, head_strides(model), views.model_dump())}
    try:
        sidecar = Sidecar.model_validate(spec)
    except ValidationError as exc:
        raise BundleError(f"{weights}: {exc.errors()[0]['msg']}") from exc
    return Detector(Bundle(weights.parent, sidecar), TorchBackend(model), conf_floor=conf_floor)
