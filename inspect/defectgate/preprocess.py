"""Letterbox and normalise a BGR frame into a preallocated NCHW buffer. All parameters come from
the bundle sidecar's `input` section; the geometry matches ultralytics' LetterBox (center, pad 114,
round(d -/+ 0.1) split) so that the runtime sees exactly what training and export saw."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .bundle import InputSpec


@dataclass(frozen=True)
class LetterboxInfo:
    """How a source image maps into the model input: input = source * gain + (pad_x, pad_y)."""

    gain: float
    pad_x: float
    pad_y: float
    src_hw: tuple[int, int]

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """Map input-pixel boxes back to source-image pixels, clipped to the image."""
        out = xyxy.astype(np.float32, copy=True)
        h, w = self.src_hw
        x, y = out[:, 0::2], out[:, 1::2]  # views: x1, x2 and y1, y2
        np.minimum(np.maximum((x - self.pad_x) / self.gain, 0, out=x), w, out=x)
        np.minimum(np.maximum((y - self.pad_y) / self.gain, 0, out=y), h, out=y)
        return out

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        out = xyxy.astype(np.float32, copy=True)
        out[:, [0, 2]] = out[:, [0, 2]] * self.gain + self.pad_x
        out[:, [1, 3]] = out[:, [1, 3]] * self.gain + self.pad_y
        return out


def letterbox(image: np.ndarray, out_hw: tuple[int, int], pad_value: int = 114, center: bool = True,
              out: np.ndarray | None = None) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping aspect ratio and pad to `out_hw`. Writes into `out` (H, W, 3 uint8) if given:
    the resize lands in its window directly and only the borders around it are painted."""
    h, w = image.shape[:2]
    oh, ow = out_hw
    gain = min(oh / h, ow / w)
    nw, nh = int(round(w * gain)), int(round(h * gain))
    dw, dh = (ow - nw) / 2, (oh - nh) / 2
    top, left = (int(round(dh - 0.1)), int(round(dw - 0.1))) if center else (0, 0)
    if out is None:
        out = np.empty((oh, ow, 3), np.uint8)
    window = out[top:top + nh, left:left + nw]
    if (nw, nh) == (w, h):
        window[...] = image
    else:
        cv2.resize(image, (nw, nh), dst=window, interpolation=cv2.INTER_LINEAR)
    out[:top] = pad_value
    out[top + nh:] = pad_value
    out[top:top + nh, :left] = pad_value
    out[top:top + nh, left + nw:] = pad_value
    return out, LetterboxInfo(gain=gain, pad_x=float(left), pad_y=float(top), src_hw=(h, w))


class Preprocessor:
    """Reusable letterbox + normalise with buffers allocated once per input size.

    `in_graph`: the engine does the layout change, the colour order and the normalisation itself
    (OpenVINO's PrePostProcessor, backends/openvino.py): the batch handed out is then the letterboxed
    BGR canvas as it is, (1, H, W, 3) uint8, and the CPU's share of preprocessing is the resize."""

    def __init__(self, spec: InputSpec, in_graph: bool = False):
        self.spec = spec
        self.hw = tuple(spec.imgsz)
        self.in_graph = in_graph
        self._canvas = np.empty((1, *self.hw, 3), np.uint8)
        dtype = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}[spec.dtype]
        self._batch = self._canvas if in_graph else np.empty((1, 3, *self.hw), dtype)
        mean = np.asarray(spec.mean, np.float32)
        std = np.asarray(spec.std, np.float32)
        # fold scale, mean and std into one multiply-add per channel
        self._mul = (spec.scale / std).reshape(3, 1, 1)
        self._add = (-mean / std).reshape(3, 1, 1)
        self._identity = bool(np.allclose(mean, 0) and np.allclose(std, 1))

    def __call__(self, image_bgr: np.ndarray) -> tuple[np.ndarray, LetterboxInfo]:
        canvas, info = letterbox(image_bgr, self.hw, self.spec.letterbox_pad, self.spec.letterbox_center, self._canvas[0])
        if self.in_graph:
            return self._batch, info
        chw = canvas.transpose(2, 0, 1)
        if self.spec.color == "RGB":
            chw = chw[::-1]
        if self.spec.dtype == "uint8":
            self._batch[0] = chw
        elif self._identity:
            np.multiply(chw, self.spec.scale, out=self._batch[0], casting="unsafe")
        else:
            self._batch[0] = chw * self._mul + self._add
        return self._batch, info
