"""ONNX export: model + post-processor in one graph, like the official ``tools/deployment/export_onnx.py``.

Graph inputs: ``images`` ``[N,3,H,W]`` float32 in [0, 1] (plain ``/255`` pixels resized to the eval size,
no letterbox) and ``orig_target_sizes`` ``[N,2]`` int64 as **(w, h)**. Outputs: ``labels`` ``[N,K]`` (0-based),
``boxes`` ``[N,K,4]`` (xyxy, original-image pixels), ``scores`` ``[N,K]``. Unlike the official export, the
ImageNet normalisation of the DINOv3 variants (S/M/L/X) is INSIDE the graph, so every variant takes the
same input. The batch axis ``N`` is dynamic. Explained in notebook ``05_inference.ipynb`` and
``docs/tensorrt.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deimv2.config.loader import Config, load_config
from deimv2.data.images import as_rgb_image
from deimv2.errors import ConfigError, DEIMv2Error
from deimv2.infer.backends import ONNX_METADATA_KEY, ort_session, read_onnx_metadata
from deimv2.infer.detector import load_detector
from deimv2.infer.graph import ONNX_OPSET, DetectionGraph, build_graph, write_onnx
from deimv2.models.build import build_model
from deimv2.utils.inputs import resolve_checkpoint
from deimv2.utils.outputs import OutputError, ensure_output_dir
from deimv2.utils.runtime import time_fn

_log = logging.getLogger(__name__)

__all__ = ["build_export_graph", "check_onnx", "export_onnx", "require_onnx", "write_onnx"]

_INSTALL = 'pip install -e ".[export]"（或 pip install onnx onnxruntime）'


def require_onnx():
    """Import onnx and onnxruntime, or raise a Chinese error saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise DEIMv2Error(f"导出/检查 ONNX 需要 onnx 和 onnxruntime（缺少 {e.name}）。请运行 {_INSTALL}。") from None
    return onnx, onnxruntime


def build_export_graph(config=None, checkpoint=None) -> tuple[DetectionGraph, Config]:
    """The deploy-mode :class:`~deimv2.infer.graph.DetectionGraph` of a checkpoint (or of random weights)."""
    graph, cfg, _ = _export_parts(config, checkpoint)
    return graph, cfg


def _export_parts(config=None, checkpoint=None) -> tuple[DetectionGraph, Config, dict]:
    """``(graph, cfg, metadata)``: the metadata (config, class names, ids, threshold) goes into the ONNX file,
    so ``Detector.from_checkpoint("x.onnx")`` and ``deimv2 predict -r x.onnx`` can run it."""
    meta = {}
    if checkpoint is not None:
        model, cfg, meta = load_detector(checkpoint, config)
    elif config is not None:
        cfg = config if isinstance(config, Config) else load_config(config)
        model = build_model(cfg, num_classes=None)
        cfg = model.config
        _log.info(f"没有给出权重文件（-r），用随机权重导出 {cfg.name}：只能用来测试导出流程，检测结果没有意义。")
    else:
        raise ConfigError("请用 -r 指定权重文件，或至少用 -c 指定变体名（如 atto）。")
    info = {
        "config": cfg.to_dict(),
        "class_names": meta.get("class_names") or cfg.class_names,
        "category_ids": meta.get("category_ids"),
        "conf_threshold": meta.get("conf_threshold"),
        # which checkpoint it came from, without writing the user's folders into a file they may share
        "checkpoint": _checkpoint_id(checkpoint) if checkpoint is not None else None,
    }
    text = json.dumps(info, ensure_ascii=False, default=str)
    return build_graph(model.cpu(), cfg, deploy=True), cfg, {ONNX_METADATA_KEY: text}


def _checkpoint_id(checkpoint) -> str:
    """``<file name>#<16 hex digits of the SHA-256 of its absolute path>``: recognises an earlier export of the
    same checkpoint (:func:`refuse_overwriting`) without storing the path itself."""
    path = Path(checkpoint).resolve()
    return f"{path.name}#{hashlib.sha256(str(path).encode('utf-8')).hexdigest()[:16]}"


def _default_output(cfg: Config, checkpoint) -> Path:
    if checkpoint is not None and Path(checkpoint).is_file():
        return Path(checkpoint).with_suffix(".onnx")
    return Path(f"{cfg.name}.onnx")


def export_onnx(
    config=None,
    checkpoint=None,
    output=None,
    opset: int | None = None,
    batch_size: int = 1,
    simplify: bool = False,
    check: bool = False,
    dynamic_batch: bool = True,
) -> Path:
    """Export a detector to ONNX (``deimv2 export``): pixels 0-1 and the original sizes in, boxes out.

    The file holds the whole deploy graph (ImageNet normalisation and post-processing included) and, as
    metadata, the config, class names and threshold, so ``Detector.from_checkpoint("x.onnx")`` and
    ``deimv2 predict -r x.onnx`` run it without PyTorch. An existing output is replaced only when it is an
    earlier export of the same checkpoint.

    Args:
        config: variant name, YAML or :class:`~deimv2.config.loader.Config`; needed without ``checkpoint``
            (random weights: only to try the export), or when the checkpoint's variant cannot be recognised.
        checkpoint: the weights file (e.g. ``best.pth``).
        output: the ``.onnx`` file, or a folder for it; default beside the checkpoint (``best.onnx``), else
            ``<config name>.onnx`` in the current folder.
        opset: the ONNX opset; None means :data:`~deimv2.infer.graph.ONNX_OPSET` (the official export script's).
        batch_size: the batch size of the example input (and of the file, without ``dynamic_batch``).
        simplify: run onnxsim when it is installed (skipped for the DINOv3 variants).
        check: compare onnxruntime with PyTorch on CPU afterwards (see :func:`check_onnx`).
        dynamic_batch: let the file take any batch size.

    Returns:
        The path of the written ``.onnx`` file.

    Example:
        Random weights of a 3-class Atto at 160×160 (a trained model: ``checkpoint="best.pth"``):

        >>> import tempfile
        >>> from pathlib import Path
        >>> from deimv2 import export_onnx, load_config
        >>> from deimv2.infer.backends import read_onnx_metadata
        >>> cfg = load_config("atto", num_classes=3, eval_spatial_size=[160, 160])
        >>> path = export_onnx(cfg, output=Path(tempfile.mkdtemp()) / "atto.onnx")
        没有给出权重文件（-r），用随机权重导出 deimv2_hgnetv2_atto_coco：只能用来测试导出流程，检测结果没有意义。
        已导出 ONNX：...atto.onnx（opset 17，输入 160x160，batch 维动态）
        输入：images [N,3,H,W] float32，像素值 0~1（只缩放到输入尺寸后除以 255，不要 letterbox），...
        >>> path.name, read_onnx_metadata(path)["config"]["num_classes"]
        ('atto.onnx', 3)
    """
    opset = ONNX_OPSET if opset is None else int(opset)
    require_onnx()
    checkpoint = resolve_checkpoint(checkpoint) if checkpoint is not None else None
    graph, cfg, metadata = _export_parts(config, checkpoint)
    out = Path(output) if output is not None else _default_output(cfg, checkpoint)
    if out.suffix.lower() != ".onnx":
        out = out / f"{cfg.name}.onnx" if not out.suffix else out.with_suffix(".onnx")
    refuse_overwriting(out, metadata)
    ensure_output_dir(out.parent)
    h, w = (int(v) for v in cfg.eval_spatial_size)
    images, sizes = write_onnx(
        graph, cfg, out, opset=opset, batch_size=batch_size, dynamic_batch=dynamic_batch, metadata=metadata
    )
    _log.info(
        f"已导出 ONNX：{out.resolve()}（opset {opset}，输入 {h}x{w}，batch 维{'动态' if dynamic_batch else '固定'}）"
    )
    _log.info(
        "输入：images [N,3,H,W] float32，像素值 0~1（只缩放到输入尺寸后除以 255，不要 letterbox"
        + ("；ImageNet 归一化已在模型内部" if cfg.input_mean is not None else "")
        + "），"
        "orig_target_sizes [N,2] int64 = 原图 (宽, 高)。输出：labels、boxes（原图像素 xyxy）、scores。"
    )
    if simplify:
        _simplify(out, cfg, images.shape, sizes.shape)
    if check:
        res = check_onnx(out, graph=graph, cfg=cfg)
        if not res["top_match"] and checkpoint is None:
            _log.info(
                "注意：随机权重的模型输出几乎处处相同，top-k 选择由浮点噪声决定，因此不一致是预期的；"
                "请用训练好的权重（-r）检查。"
            )
    return out


def refuse_overwriting(out: Path, metadata: dict) -> None:
    """An existing ``out`` is replaced only when it is an earlier export of the same checkpoint (or of the same
    random-weights variant); any other file (another run's export, a file of the user's) is refused."""
    if not out.exists():
        return
    new = json.loads(metadata[ONNX_METADATA_KEY])
    try:
        old = read_onnx_metadata(out) if out.is_file() else None
    except DEIMv2Error:
        old = None
    same = old is not None and old.get("checkpoint") == new["checkpoint"]
    if new["checkpoint"] is None:
        same = same and old.get("config", {}).get("__name__") == new["config"].get("__name__")
    if not same:
        raise OutputError(
            f"输出 {out} 已存在，而且不是从这个权重导出的（可能是另一次训练的导出或你自己的文件），没有覆盖它。"
            f"修复：用 -o 指定一个新的文件名，例如 -o {out.with_name(out.stem + '_new.onnx')}，或先把它移走。"
        )


def _simplify(path: Path, cfg: Config, image_shape, size_shape) -> None:
    backbone = cfg.model.backbone.name
    if backbone.startswith("dinov3_"):
        _log.info(f"跳过 onnxsim：{cfg.name}（DEIMv2-L/X，DINOv3 骨干）的图较大，简化耗时很长且收益很小。")
        return
    try:
        import onnx
        import onnxsim
    except ImportError:
        _log.info("跳过 onnxsim：没有安装（pip install onnxsim）。不简化的 ONNX 也能直接使用。")
        return
    model, ok = onnxsim.simplify(
        str(path), test_input_shapes={"images": list(image_shape), "orig_target_sizes": list(size_shape)}
    )
    if ok:
        onnx.save(model, str(path))
        _log.info(f"onnxsim 简化完成：{path}")
    else:
        _log.info("onnxsim 简化后的模型没有通过校验，保留未简化的文件。")


def check_onnx(
    path: str | Path,
    graph: DetectionGraph | None = None,
    cfg: Config | None = None,
    image=None,
    runs: int = 5,
    top: int = 10,
    batch: int = 1,
) -> dict:
    """Run the ONNX file in onnxruntime (CPU) and compare with the PyTorch graph on the same input.

    ``image``: a path / PIL / numpy image (default: a fixed random image). Returns (and prints)
    ``max_abs_scores`` (all K scores; both are sorted), ``top_labels_equal`` / ``top_max_abs_boxes`` for the
    ``top`` best detections, ``top_match`` (labels equal and boxes within ``1e-3 * max(1, side / 1000)`` px),
    ``max_abs_boxes`` over all K (large only where two scores tie and swap places) and both CPU latencies
    (ms, median of ``runs``).
    """
    require_onnx()
    if graph is None or cfg is None:
        raise ConfigError("check_onnx 需要对应的 PyTorch 模型（graph 和 cfg），请通过 export_onnx(check=True) 调用。")
    h, w = (int(v) for v in cfg.eval_spatial_size)
    if image is None:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (h * 3 // 2, w, 3), dtype=np.uint8))
    pil = as_rgb_image(image)
    arr = np.asarray(pil.resize((w, h), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    arr = np.ascontiguousarray(np.repeat(arr, batch, 0))
    sizes = np.array([pil.size] * batch, dtype=np.int64)
    sess = ort_session(path)  # torch's thread count, thread spinning off (see deimv2.infer.backends.ort_session)
    feeds = {"images": arr, "orig_target_sizes": sizes}
    labels_o, boxes_o, scores_o = sess.run(["labels", "boxes", "scores"], feeds)
    x, s = torch.from_numpy(arr), torch.from_numpy(sizes)
    with torch.inference_mode():
        labels_t, boxes_t, scores_t = (t.numpy() for t in graph(x, s))
    k = min(top, scores_t.shape[1])
    result = {
        "max_abs_boxes": float(np.abs(boxes_o - boxes_t).max()),
        "max_abs_scores": float(np.abs(scores_o - scores_t).max()),
        "top_labels_equal": bool((labels_o[:, :k] == labels_t[:, :k]).all()),
        "top_max_abs_boxes": float(np.abs(boxes_o[:, :k] - boxes_t[:, :k]).max()),
    }
    tol = 1e-3 * max(1.0, max(pil.size) / 1000)
    result["top_match"] = result["top_labels_equal"] and result["top_max_abs_boxes"] < tol
    with torch.inference_mode():
        result["torch_ms"] = time_fn(lambda: graph(x, s), runs=runs)["median_ms"]
    result["onnxruntime_ms"] = time_fn(lambda: sess.run(None, feeds), runs=runs)["median_ms"]
    _log.info(
        f"ONNX 检查（onnxruntime vs PyTorch，CPU {torch.get_num_threads()} 线程，batch {batch}）：\n"
        f"  scores 最大误差 {result['max_abs_scores']:.2e}；全部 {scores_t.shape[1]} 个框的最大误差 {result['max_abs_boxes']:.2e} 像素"
        f"（分数几乎相同的两个框可能交换名次，这时这个数会很大，属正常）；\n"
        f"  前 {k} 个检测 {'一致' if result['top_match'] else '不一致'}（类别相同且框误差 {result['top_max_abs_boxes']:.2e} 像素）；\n"
        f"  延迟（中位数）：PyTorch {result['torch_ms']:.1f} ms，onnxruntime {result['onnxruntime_ms']:.1f} ms"
    )
    return result
