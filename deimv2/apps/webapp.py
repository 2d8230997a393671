"""``deimv2 app``: a Gradio web page for a trained detector.

Upload an image, move the confidence slider, tick the classes to show and, for large images with small objects,
tiled inference; the boxes are drawn with Chinese labels (:func:`deimv2.infer.draw.draw_detections`) and a line counts
them by class. The page is served on this computer only (``share=False``); ``share=True`` asks Gradio for a
temporary public link — only for images you may show to anyone.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from deimv2.infer.detector import Detector
from deimv2.infer.interop import require

__all__ = ["build_app", "detect", "launch_app"]


def detect(detector: Detector, image: Any, conf: float, classes: list[str] | None, tile: bool) -> tuple[Any, str]:
    """One request of the page: (the image with boxes, a summary line such as "检测到 3 个目标：船 2、飞机 1")."""
    if image is None:
        return None, "请先上传一张图片。"
    if classes is not None and not classes:
        return image, "没有勾选任何类别：检测到 0 个目标。"
    kwargs = {"tile": detector.size_hw[0], "overlap": 0.2} if tile else {}
    pred = detector.predict(image, conf=float(conf), classes=classes, **kwargs)
    counts = Counter(pred.names)
    text = f"检测到 {len(pred)} 个目标" + (
        "：" + "、".join(f"{n} {c}" for n, c in counts.most_common()) if counts else ""
    )
    return pred.plot(), text


def build_app(detector: Detector, title: str = "DEIMv2 目标检测") -> Any:
    """The ``gradio.Blocks`` page of ``detector`` (not started; call ``.launch()``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports sent from a teaching demo
    gr = require("gradio", "网页演示")
    names = list(detector.class_names)
    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\n上传图片，调节置信度阈值，选择要显示的类别；大图里的小目标可勾选分块推理。")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="上传图片", elem_id="deimv2-input")
                conf = gr.Slider(
                    0.0, 1.0, value=float(detector.conf), step=0.01, label="置信度阈值", elem_id="deimv2-conf"
                )
                classes = gr.CheckboxGroup(names, value=names, label="显示的类别", elem_id="deimv2-classes")
                tile = gr.Checkbox(
                    False, label=f"分块推理（{detector.size_hw[0]} 像素一块，适合大图小目标）", elem_id="deimv2-tile"
                )
            with gr.Column():
                result = gr.Image(type="pil", label="检测结果", elem_id="deimv2-result")
                summary = gr.Markdown("请先上传一张图片。", elem_id="deimv2-summary")
        inputs = [image, conf, classes, tile]

        def run(img, c, cls, t):
            return detect(detector, img, c, cls, t)

        for trigger in (image.change, conf.change, classes.change, tile.change):
            trigger(run, inputs, [result, summary], trigger_mode="always_last")
    return app


def launch_app(
    checkpoint: str | Path, share: bool = False, port: int | None = None, host: str = "127.0.0.1", **kwargs: Any
) -> Any:
    """Build the page for ``checkpoint`` and serve it (blocks until stopped). ``kwargs`` go to
    :meth:`Detector.from_checkpoint`."""
    app = build_app(Detector.from_checkpoint(checkpoint, **kwargs))
    return app.launch(server_name=host, server_port=port, share=share, inbrowser=False)
