"""INT8 on CPU: post-training quantization (PTQ) of the OpenVINO model with NNCF, and a backend that runs it.

``nncf.quantize`` runs the float32 model on calibration images (about 300 from the training set), measures the
range of every activation and stores weights and activations of the convolutions and matrix products in 8-bit
integers. Smaller file, usually faster on CPUs with VNNI/AMX instructions, slightly different detections: always
measure AP before using it (``benchmarks/int8.py``). Never the default: ``deimv2 export --int8 --calib DATA``
writes ``<checkpoint>_int8.xml`` (+ ``.bin``), :func:`int8_detector` loads it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deimv2.data.images import list_images, load_image
from deimv2.errors import ConfigError, DatasetError
from deimv2.infer.backends import OpenVINOBackend, cached_onnx
from deimv2.infer.detector import Detector
from deimv2.infer.export import build_export_graph
from deimv2.infer.interop import require
from deimv2.utils.inputs import resolve_checkpoint

__all__ = ["CALIB_IMAGES", "Int8Backend", "calibration_images", "default_int8_path", "int8_detector", "quantize_int8"]

_log = logging.getLogger(__name__)

#: calibration images used at most (NNCF's default subset size)
CALIB_IMAGES = 300


def default_int8_path(checkpoint: str | Path) -> Path:
    """``best.pth`` -> ``best_int8.xml`` in the same folder."""
    p = Path(checkpoint)
    return p.with_name(f"{p.stem}_int8.xml")


def calibration_images(data: str | Path, limit: int = CALIB_IMAGES) -> list[Path]:
    """Up to ``limit`` images spread evenly over ``data`` (its ``train``/``images`` subfolder when present)."""
    root = Path(data)
    if not root.exists():
        raise DatasetError(f"校准数据 {root} 不存在。请用 --calib 给出训练集文件夹（或数据集根目录）。")
    for sub in ("train", "images/train", "train/images"):
        if (root / sub).is_dir():
            root = root / sub
            break
    files = list_images(root, recursive=True) if root.is_dir() else [root]
    if not files:
        raise DatasetError(f"校准数据 {root} 里没有图片。INT8 量化需要几百张与训练集相似的图片（不需要标注）。")
    step = max(1, len(files) // limit)
    return files[::step][:limit]


def quantize_int8(
    checkpoint: str | Path,
    calib: str | Path,
    output: str | Path | None = None,
    config: Any = None,
    limit: int = CALIB_IMAGES,
) -> Path:
    """Quantize the checkpoint's OpenVINO model to INT8 with ``nncf.quantize``; returns the ``.xml`` written."""
    nncf = require("nncf", "INT8 量化")
    ov = require("openvino", "INT8 量化")
    checkpoint = resolve_checkpoint(checkpoint)
    out = Path(output) if output is not None else default_int8_path(checkpoint)
    if out.suffix.lower() != ".xml":
        raise ConfigError(f"INT8 模型的输出文件 {out} 应以 .xml 结尾（OpenVINO IR，旁边另存同名 .bin）。")
    files = calibration_images(calib, limit)
    graph, cfg = build_export_graph(config, checkpoint)
    model = ov.Core().read_model(str(cached_onnx(graph, cfg, checkpoint, verbose=False)))
    h, w = (int(v) for v in cfg.eval_spatial_size)

    def transform(path: Path) -> dict:
        img = load_image(path)
        arr = np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
        return {"images": np.ascontiguousarray(arr), "orig_target_sizes": np.array([img.size], dtype=np.int64)}

    _log.info("INT8 量化：用 %s 里的 %d 张图片校准（NNCF 训练后量化，需要一两分钟）……", calib, len(files))
    quantized = nncf.quantize(
        model, nncf.Dataset(files, transform), subset_size=len(files), model_type=nncf.ModelType.TRANSFORMER
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out


class Int8Backend(OpenVINOBackend):
    """:class:`~deimv2.infer.backends.OpenVINOBackend` on an NNCF INT8 model; logs that it is INT8 every time it loads."""

    name = "openvino-int8"

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise DatasetError(
                f"找不到 INT8 模型 {path}。请先运行 deimv2 export -r 权重.pth --int8 --calib 训练集文件夹 生成它。"
            )
        super().__init__(path, threads)
        _log.warning("推理后端：OpenVINO INT8 量化模型 %s（NNCF 训练后量化，检测结果与 float32 略有不同）", path)


def int8_detector(checkpoint: str | Path, model: str | Path | None = None, **kwargs: Any) -> Detector:
    """A :class:`~deimv2.infer.detector.Detector` of ``checkpoint`` (class names, threshold) running the INT8 ``model``
    (default ``<checkpoint>_int8.xml``). ``kwargs`` go to :meth:`Detector.from_checkpoint`."""
    checkpoint = resolve_checkpoint(checkpoint)
    threads = kwargs.pop("threads", None)
    kwargs.setdefault("device", "cpu")  # OpenVINO on the CPU
    det = Detector.from_checkpoint(checkpoint, backend="torch", **kwargs)
    det.backend = Int8Backend(model if model is not None else default_int8_path(checkpoint), threads)
    return det
