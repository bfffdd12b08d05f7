"""Build a TensorRT engine bundle from an ONNX bundle (`defectgate engine build`).

Runs on the machine that will run the engine (a Jetson has no training extra, so this lives in the
runtime package and imports tensorrt / cuda-python lazily). An engine only runs on the TensorRT
version and GPU it was built with; the engine bundle's sidecar records both in `engine_info`, and
`backends.tensorrt` refuses a mismatch.

INT8 uses TensorRT's entropy calibrator fed with the bundle's own preprocessing over dataset images,
so calibration sees exactly the tensors the station will feed. A timing cache kept beside the output
makes rebuilds (other precisions, new weights of the same architecture) much faster.

Note: TensorRT 10 is the target (JetPack 6 ships 10.3). TensorRT 11 removed implicit INT8 calibration;
there an INT8 build is refused with a message instead of failing deep inside the builder.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from .bundle import Bundle, load_bundle, sha256_file, write_sidecar
from .errors import BackendError, BundleError, DatasetError, require
from .images import IMAGE_SUFFIXES, evenly_spaced, list_images, read_image
from .preprocess import Preprocessor
from .staging import staged_dir

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
MIN_SIDE = 16  # smaller than this is a thumbnail or a broken file, not a camera frame
TIMING_CACHE_NAME = "tensorrt-timing.cache"


# -- calibration images (shared with the OpenVINO INT8 export) --------------------------------------------
def calibration_images(folder: str | Path, allow_mixed_sizes: bool = False, limit: int = 0) -> list[Path]:
    """The images of `folder` (recursively), at most `limit` spread over the sorted list (the one
    sampling rule, images.evenly_spaced), checked: 8-bit, all grey or all colour, one frame size (the
    station's camera gives one kind and size; a folder that mixes them is usually the wrong one)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: calibration folder not found; pass --calib with a folder of station images")
    paths = list_images(folder)
    if not paths:
        raise DatasetError(
            f"{folder}: no calibration images ({', '.join(sorted(IMAGE_SUFFIXES))}); INT8 needs a few hundred images "
            "like the station's frames, e.g. the dataset's train/images folder"
        )
    paths = evenly_spaced(paths, limit)
    check_calibration_images(paths, allow_mixed_sizes)
    return paths


def check_calibration_images(paths: Sequence[Path], allow_mixed_sizes: bool = False) -> None:
    """Refuse, by file name, what would make a calibration set unlike the station's frames."""
    if not paths:
        raise DatasetError("no calibration images given; INT8 needs a few hundred images like the station's frames")
    sizes: dict[tuple[int, int], list[Path]] = {}
    # A mono camera's frames reach the model as grey replicated to 3 channels, as training read them;
    # what is wrong is a set that mixes grey and colour (two cameras, or the wrong folder).
    kinds: dict[int, list[Path]] = {}
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DatasetError(f"{p}: not a readable image; remove it from the calibration folder")
        channels = 1 if img.ndim == 2 else img.shape[2]
        if channels not in (1, 3):
            raise DatasetError(
                f"{p}: has {channels} channels; calibration images must be grey (1) or colour (3) like camera "
                "frames: drop the alpha channel (e.g. cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)) or remove the image"
            )
        kinds.setdefault(channels, []).append(p)
        if img.dtype != np.uint8:
            raise DatasetError(f"{p}: is {img.dtype}, calibration images must be 8-bit like the camera frames")
        h, w = img.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise DatasetError(f"{p}: is {w}x{h} pixels, too small to be a camera frame (under {MIN_SIDE} px)")
        sizes.setdefault((h, w), []).append(p)
    if len(kinds) > 1:
        grey, colour = kinds[1], kinds[3]
        odd, rest = (grey, colour) if len(grey) <= len(colour) else (colour, grey)
        raise DatasetError(
            f"{odd[0]}: is {'grey' if odd is grey else 'colour'}, {len(rest)} other calibration images are "
            f"{'colour' if odd is grey else 'grey'} ({len(odd)} differ); calibrate on frames of the station's one camera"
        )
    if len(sizes) > 1 and not allow_mixed_sizes:
        (mh, mw), common = max(sizes.items(), key=lambda kv: len(kv[1]))
        odd = [(p, hw) for hw, ps in sizes.items() if hw != (mh, mw) for p in ps]
        first, (oh, ow) = odd[0]
        raise DatasetError(
            f"{first}: is {ow}x{oh} pixels, {len(common)} other calibration images are {mw}x{mh} "
            f"({len(odd)} image(s) differ); calibrate on frames of one camera size, or remove the odd ones"
        )


def calibration_fingerprint(paths: Sequence[Path], root: str | Path) -> str:
    """sha256 over (relative name, content sha256) of every image: names the exact calibration set."""
    h = hashlib.sha256()
    root = Path(root)
    for p in sorted(paths):
        h.update(str(p.relative_to(root) if p.is_relative_to(root) else p.name).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


class CalibrationBatches:
    """Calibration images through the bundle's Preprocessor, packed into contiguous (B, 3, H, W)
    batches of the engine's input batch size. Pure numpy: the TensorRT calibrator only copies these
    to the GPU. A last partial batch is dropped (TensorRT needs full batches). A bundle whose batch is
    its test-time views is calibrated as it runs: each batch is one image's views (tta.view_batcher)."""

    def __init__(self, bundle: Bundle, images: Sequence[Path], batch_size: int | None = None):
        from .tta import view_batcher

        spec = bundle.sidecar.input
        self.views = view_batcher(bundle.sidecar) if batch_size is None else None
        self.batch_size = 1 if self.views is not None else int(batch_size or spec.batch)
        if self.batch_size < 1:
            raise BackendError(f"calibration batch size {self.batch_size} must be at least 1")
        if len(images) < self.batch_size:
            raise DatasetError(f"{len(images)} calibration image(s) are fewer than one batch of {self.batch_size}")
        self.images = list(images)
        self.pre = Preprocessor(spec)
        self.shape = (spec.batch if self.views is not None else self.batch_size, 3, *spec.imgsz)
        self.dtype = np.float16 if spec.dtype == "float16" else np.float32
        self.nbytes = int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize
        self._buffer = np.empty(self.shape, self.dtype)

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            for j, path in enumerate(self.images[start:start + self.batch_size]):
                batch = self.pre(read_image(path))[0]
                if self.views is not None:
                    self._buffer[...] = self.views(batch)[0]
                else:
                    self._buffer[j] = batch[0]
            yield self._buffer


# -- build --------------------------------------------------------------------------------------------------
@dataclass
class EngineBuild:
    bundle_dir: Path
    precision: str
    seconds: float
    engine_info: dict[str, Any]


def gpu_identity(cudart: Any, device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") through cuda-python, or a clear error without a GPU."""
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or not count:
        reason = cudart.cudaGetErrorString(err)[1].decode() if int(err) != 0 else "no CUDA device"
        raise BackendError(
            f"no usable NVIDIA GPU ({reason}); TensorRT engines are built and run on the GPU that uses them "
            "(a Jetson or a CUDA machine): use backend onnxruntime or openvino here"
        )
    err, prop = cudart.cudaGetDeviceProperties(device)
    if int(err) != 0:
        raise BackendError(f"cannot read the properties of CUDA device {device}: {cudart.cudaGetErrorString(err)[1].decode()}")
    name = prop.name.decode(errors="replace").rstrip("\0") if isinstance(prop.name, bytes) else str(prop.name)
    return name, f"{prop.major}.{prop.minor}"


def import_cudart() -> Any:
    """cuda-python's runtime module: `cuda.bindings.runtime` (12.6+) or the older `cuda.cudart`."""
    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415 - optional, GPU machines only

        return cudart
    except ImportError:
        return require("cuda.cudart", "gpu", "the TensorRT engine (cuda-python)")


def default_out_dir(bundle_dir: Path, precision: str) -> Path:
    return bundle_dir.parent / f"{bundle_dir.name}-tensorrt-{precision}"


def build_engine(bundle_dir: str | Path, precision: str = "fp16", calib_dir: str | Path | None = None,
                 out_dir: str | Path | None = None, workspace_gb: float = 2.0, timing_cache: str | Path | None = None,
                 calib_limit: int = 500, device: int = 0) -> EngineBuild:
    """Build `model.engine` + sidecar from an ONNX bundle. Returns where it went and what it recorded."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision '{precision}' is unknown; use one of {', '.join(PRECISIONS)}")
    bundle = load_bundle(bundle_dir)
    if bundle.sidecar.engine != "onnx":
        raise BundleError(f"{bundle.root}: an engine is built from an ONNX bundle, this one is '{bundle.sidecar.engine}'")
    calib: list[Path] = []
    fingerprint = ""
    if precision == "int8":
        if calib_dir is None:
            raise DatasetError("INT8 needs calibration images: pass --calib DIR (e.g. the dataset's train/images)")
        calib = calibration_images(calib_dir, limit=calib_limit)
        fingerprint = calibration_fingerprint(calib, calib_dir)
        batches = CalibrationBatches(bundle, calib)  # checked before the slow GPU part starts
    out = Path(out_dir) if out_dir else default_out_dir(bundle.root, precision)
    cache_path = Path(timing_cache) if timing_cache else out.parent / TIMING_CACHE_NAME

    trt = require("tensorrt", "gpu", "building a TensorRT engine")
    cudart = import_cudart()
    gpu_name, capability = gpu_identity(cudart, device)
    major = int(trt.__version__.split(".")[0])
    if precision == "int8" and major >= 11:
        raise BackendError(
            f"TensorRT {trt.__version__} removed implicit INT8 calibration; build fp16 here, or INT8 with "
            "TensorRT 10 (JetPack 6)"
        )

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(bundle.model_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"{bundle.model_path}: TensorRT's ONNX parser refused the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    calibrator = None
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot take run in FP16, not FP32
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = make_entropy_calibrator(trt, cudart, batches)
        config.int8_calibrator = calibrator

    log.info("building %s TensorRT %s engine for %s (%s, sm %s)", precision.upper(), trt.__version__,
             bundle.model_path.name, gpu_name, capability)
    t0 = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - t0
    if calibrator is not None:
        calibrator.free()
    if serialized is None:
        raise BackendError("TensorRT could not build the engine (see the TensorRT messages above)")
    _save_timing_cache(config, cache_path)

    engine_info = {
        "tensorrt_version": trt.__version__,
        "gpu_name": gpu_name,
        "compute_capability": capability,
        "precision": precision,
        "build_seconds": round(seconds, 1),
        "workspace_gb": workspace_gb,
    }
    if precision == "int8":
        engine_info["calibration"] = {"fingerprint": fingerprint, "images": len(batches) * batches.batch_size,
                                      "folder": Path(calib_dir).name, "algorithm": "entropy2"}
    out = _write_engine_bundle(bundle, bytes(serialized), out, precision, engine_info)
    log.info("engine built in %.1f s -> %s", seconds, out)
    return EngineBuild(out, precision, seconds, engine_info)


def make_entropy_calibrator(trt: Any, cudart: Any, batches: CalibrationBatches) -> Any:
    """A trt.IInt8EntropyCalibrator2 over `batches`: one device buffer, filled batch by batch. The class
    is defined here because it must subclass a TensorRT type, which only exists once tensorrt imports."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._iter = iter(batches)
            err, self._device = cudart.cudaMalloc(batches.nbytes)
            _check(cudart, err, "cudaMalloc for calibration")
            self.batches_done = 0

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._iter)
            except StopIteration:
                return None  # tells TensorRT calibration is over
            batch = np.ascontiguousarray(batch)
            (err,) = cudart.cudaMemcpy(self._device, batch.ctypes.data, batches.nbytes,
                                       cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            _check(cudart, err, "cudaMemcpy of a calibration batch")
            self.batches_done += 1
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            return None  # always calibrate: a cache would be stale for other weights or images

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

        def free(self) -> None:
            if self._device is not None:
                cudart.cudaFree(self._device)
                self._device = None

    return EntropyCalibrator()


def _check(cudart: Any, err: Any, what: str) -> None:
    if int(err) != 0:
        raise BackendError(f"{what} failed: {cudart.cudaGetErrorString(err)[1].decode()}")


def _save_timing_cache(config: Any, path: Path) -> None:
    data = config.get_timing_cache().serialize()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(data))
    tmp.replace(path)


def _write_engine_bundle(bundle: Bundle, engine: bytes, out: Path, precision: str, engine_info: dict[str, Any]) -> Path:
    """Engine + sidecar into a temp folder beside `out`, then swapped in: never half a bundle."""
    out = out.resolve()
    if out == bundle.root.resolve():
        raise BundleError(f"{out}: write the engine bundle to its own folder, not over the ONNX bundle")
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(out) as tmp:
        (tmp / "model.engine").write_bytes(engine)
        src = bundle.sidecar
        sidecar = src.model_copy(update={
            "model_file": "model.engine", "sha256": sha256_file(tmp / "model.engine"), "engine": "tensorrt",
            "precision": precision, "source_onnx_sha256": src.sha256,
            # FP32 metrics describe FP32 numerics only; reduced precision is measured by the parity check
            "metrics": dict(src.metrics) if precision == "fp32" else {},
            "engine_info": {**engine_info, "source_metrics": dict(src.metrics)},
            "versions": {**src.versions, "tensorrt": engine_info["tensorrt_version"]},
        })
        write_sidecar(tmp, sidecar)
    return out
