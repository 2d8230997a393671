"""Files in, drawn files out: the image / folder / video runner behind ``deimv2 predict`` (:func:`predict_cli`).

It plans every output before the model is loaded: an output that would replace an input is refused (nothing is
written), and images under ``-o`` inside ``-i`` (earlier outputs) are skipped. The detector comes from a callable,
so :func:`predict_files` needs none of :mod:`deimv2.infer.detector`; :func:`predict_cli` makes it. Policy: ``docs/errors.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from deimv2.data.images import IMAGE_EXTS, as_rgb_image, list_images
from deimv2.errors import DatasetError, DEIMv2Error, WeightsError
from deimv2.infer.detector import Detector
from deimv2.infer.stream import decoded_batches, video_batches
from deimv2.infer.tiling import check_tiling
from deimv2.utils.inputs import MAX_DET, check_conf, check_max_det
from deimv2.utils.outputs import OutputError, ensure_output_dir
from deimv2.utils.runtime import resolve_device

_log = logging.getLogger(__name__)

__all__ = ["VIDEO_EXTS", "plan_jobs", "predict_files", "refuse_overwriting_inputs"]

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def plan_jobs(source: Path, output: Path) -> tuple[list, Path]:
    """``([(input file, output file, name in the report)], output folder)`` for an image, a folder (recursive,
    mirrored; our own earlier outputs under ``output`` skipped) or a video."""
    if source.is_dir():
        files = list_images(source, recursive=True)
        out, src = output.resolve(), source.resolve()
        own = [f for f in files if out != src and out.is_relative_to(src) and f.resolve().is_relative_to(out)]
        if own:  # -o inside -i: the images there are our earlier outputs
            files = [f for f in files if f not in own]
            _log.info(f"跳过输出文件夹 {output} 里的 {len(own)} 张图片：它们是之前推理的结果，不是输入。")
        if not files:
            raise DatasetError(f"文件夹 {source} 里（含子文件夹）没有图片（{'、'.join(IMAGE_EXTS)}）。")
        return [(f, output / f.relative_to(source), f.relative_to(source).as_posix()) for f in files], output
    if _is_video(source):
        out_dir = output.parent if output.suffix.lower() in VIDEO_EXTS else output
        target = output if output.suffix.lower() in VIDEO_EXTS else output / (source.stem + ".mp4")
        return [(source, target, source.name)], out_dir
    if source.suffix.lower() in IMAGE_EXTS:
        target = output if output.suffix.lower() in IMAGE_EXTS else output / source.name
        return [(source, target, source.name)], target.parent
    raise DatasetError(
        f"不支持的输入文件 {source}：图片请用 {'、'.join(IMAGE_EXTS)}，视频请用 {'、'.join(VIDEO_EXTS)}。"
    )


def refuse_overwriting_inputs(jobs: list, source: Path, output: Path) -> None:
    """Raise before anything is written when an output file would replace an input file (``-o`` = ``-i`` …)."""
    inputs = {src.resolve() for src, _, _ in jobs}
    clash = [dst for _, dst, _ in jobs if dst.resolve() in inputs]
    if clash:
        raise OutputError(
            f"输出 {output} 会覆盖输入 {source} 里的原图（例如 {clash[0]}，共 {len(clash)} 个文件），没有写出任何文件。"
            f"修复：用 -o 指定另一个文件夹，例如 -o {source.parent / (source.stem + '_检测结果')}。"
        )


def predict_files(
    make_detector: Callable[[float | None, int], Any],
    checkpoint,
    source,
    output,
    conf=None,
    max_det=MAX_DET,
    device=None,
    save_json=False,
    num_workers=0,
) -> dict:
    """Check the options, plan the outputs, then ``make_detector(conf, max_det)`` and run it over ``source``.
    Returns where the outputs went (see :func:`deimv2.infer.detector.predict_cli`)."""
    if source is None or not Path(source).exists():
        raise DatasetError(f"输入 {source} 不存在。请给出一张图片、一个图片文件夹或一个视频文件（mp4/avi/mov/mkv）。")
    if checkpoint is None:
        raise WeightsError("请用 -r/--checkpoint 指定权重文件（训练得到的 best.pth / last.pth 或官方权重）。")
    conf, max_det = check_conf(conf, "--conf"), check_max_det(max_det, "--max-det")
    resolve_device(device)  # a bad -d is refused before anything is written
    source, output = Path(source), Path(output)
    jobs, out_dir = plan_jobs(source, output)
    refuse_overwriting_inputs(jobs, source, output)
    ensure_output_dir(out_dir)  # before the model is loaded
    det = make_detector(conf, max_det)
    _log.info(
        f"模型：{det.cfg.name}（{det.num_classes} 类），设备 {det.device}，推理后端 {det.backend.name}，"
        f"置信度阈值 {det.conf:g}"
    )
    if _is_video(source) and not source.is_dir():
        return _predict_video(det, source, output, save_json)
    return _predict_images(det, jobs, source, out_dir, save_json, num_workers)


def _predict_images(det, jobs: list, source: Path, out_dir: Path, save_json: bool, num_workers: int) -> dict:
    """Every planned image drawn with its boxes (and, with ``save_json``, all boxes in one COCO results file);
    files that cannot be read are skipped and listed, and only when none can be read is that an error."""
    rows, total, done, failed = [], 0, 0, []
    # decoded in a DataLoader (with workers: ahead of the model); one bad file must not stop the folder
    for batch in decoded_batches([src for src, _, _ in jobs], as_rgb_image, det.batch_size, num_workers):
        failed += [(jobs[i][2], err) for i, _, err in batch if err is not None]
        chunk = [(i, im) for i, im, err in batch if err is None]
        if not chunk:
            continue
        preds = det.predict([im for _, im in chunk])
        for (i, _), pred in zip(chunk, preds):
            src, dst, rel = jobs[i]
            pred.path = str(src)
            ensure_output_dir(dst.parent)
            pred.plot().save(dst)
            total += len(pred)
            done += 1
            rows.extend({"file_name": rel, **r} for r in pred.to_coco(image_id=i))
    _report_unreadable(failed, done, len(jobs), source)
    _log.info(f"已处理 {done} 张图片，共 {total} 个检测框；结果图保存在 {out_dir.resolve()}")
    info = {"images": done, "detections": total, "output": out_dir, "failed": [rel for rel, _ in failed]}
    if save_json:
        info["json"] = _write_json(out_dir / "predictions.json", rows)
    return info


def _report_unreadable(failed: list, done: int, planned: int, source: Path) -> None:
    """Warn about each file that could not be read; raise when not one of the ``planned`` files could."""
    if failed:
        _log.warning(f"有 {len(failed)} 个文件无法读取，已跳过（其余图片照常输出）：")
        for rel, why in failed:
            _log.warning(f"  - {rel}：{why}")
    if not done:
        raise DatasetError(
            f"{source} 中的 {planned} 个图片文件都无法读取，没有输出任何结果。"
            "请确认它们是完整的图片（可用看图软件打开）。"
        )


def _write_json(path: Path, rows: list) -> Path:
    """COCO results list (``image_id`` = position of the image in the sorted input) with file/category names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    _log.info(f"COCO 格式结果（bbox 为 [x, y, w, h] 像素）已保存到 {path.resolve()}")
    return path


def _import_cv2():
    try:
        import cv2
    except ImportError:
        raise DEIMv2Error(
            "处理视频需要 OpenCV。请运行 pip install opencv-python（服务器上可用 opencv-python-headless），"
            "或先把视频拆成图片再对文件夹推理。"
        ) from None
    return cv2


def _predict_video(det, source: Path, output: Path, save_json: bool) -> dict:
    cv2 = _import_cv2()
    target = output if output.suffix.lower() in VIDEO_EXTS else output / (source.stem + ".mp4")
    target.parent.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise DatasetError(f"OpenCV 无法打开视频 {source}：文件可能损坏，或缺少解码器。请先用播放器确认视频可以播放。")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    frames, total, rows = 0, 0, []
    try:
        with closing(video_batches(cap, det.batch_size)) as batches:  # decoded in a background thread, in order
            for batch in batches:
                for pred in det.predict(batch):
                    writer.write(np.asarray(pred.plot())[:, :, ::-1].copy())
                    rows.extend({"file_name": source.name, "frame": frames, **r} for r in pred.to_coco(image_id=frames))
                    total += len(pred)
                    frames += 1
    finally:
        cap.release()
        writer.release()
    _log.info(f"已处理 {frames} 帧，共 {total} 个检测框；结果视频保存在 {target.resolve()}")
    info = {"frames": frames, "detections": total, "output": target}
    if save_json:
        info["json"] = _write_json(target.with_suffix(".json"), rows)
    return info


# --------------------------------------------------------------------------- command line
def predict_cli(
    config=None,
    checkpoint=None,
    source=None,
    output="outputs/predict",
    names=None,
    conf=None,
    max_det=MAX_DET,
    device=None,
    save_json=False,
    classes=None,
    backend="auto",
    num_workers=0,
    tile=None,
    overlap=0.2,
) -> dict:
    """``deimv2 predict``: image, folder (recursive, mirrored output) or video. Returns where outputs went.

    ``names``: the name of every class in training order (default: from the checkpoint); ``classes``: keep only
    these classes (names or 0-based ids), as in :meth:`Detector.predict` and Ultralytics; ``backend`` as in
    :class:`Detector`; ``num_workers``: processes decoding a folder ahead of the model (default none, see
    :mod:`deimv2.infer.stream`). The files are planned and written by :func:`predict_files`.
    ``tile`` / ``overlap``: tiled inference, as in :meth:`Detector.predict`.
    """
    if tile is not None:
        check_tiling(tile, overlap)  # before anything is loaded or written

    def make_detector(conf, max_det):
        det = Detector.from_checkpoint(
            checkpoint,
            config=config,
            device=device,
            conf=conf,
            max_det=max_det,
            class_names=names,
            classes=classes,
            backend=backend,
        )
        det.tile, det.overlap = tile, overlap
        return det

    return predict_files(make_detector, checkpoint, source, output, conf, max_det, device, save_json, num_workers)
