"""Drawing detections with Chinese labels on images (PIL) and in grids (matplotlib).

Images may be anything :func:`deimv2.data.images.as_rgb_image` reads (path, PIL, numpy, torch); the Chinese
font comes from :mod:`deimv2.utils.fonts`. Explained in notebook 02_convert.ipynb and 05_inference.ipynb.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from deimv2.data.images import as_rgb_image
from deimv2.utils.fonts import load_cjk_font, setup_matplotlib_cjk

__all__ = ["PALETTE", "GT_COLOR", "color_for", "draw_detections", "show_grid"]

# --------------------------------------------------------------------------- colours
PALETTE: tuple[str, ...] = (
    "#E6194B",
    "#3CB44B",
    "#4363D8",
    "#F58231",
    "#911EB4",
    "#42D4F4",
    "#F032E6",
    "#BFEF45",
    "#FFE119",
    "#469990",
    "#9A6324",
    "#800000",
    "#808000",
    "#000075",
    "#FF6F61",
    "#00A86B",
    "#B8860B",
    "#1E90FF",
    "#DC143C",
    "#7B68EE",
)
GT_COLOR = "#00FF00"


def color_for(label: int) -> tuple[int, int, int]:
    """Fixed RGB colour of a class id (the same class always gets the same colour)."""
    return ImageColor.getrgb(PALETTE[int(label) % len(PALETTE)])[:3]


def _resolve_color(label: int, colors: Any) -> tuple[int, int, int]:
    if colors is None:
        return color_for(label)
    if isinstance(colors, str) or (
        isinstance(colors, (tuple, list))
        and len(colors) in (3, 4)
        and all(isinstance(c, (int, np.integer)) for c in colors)
    ):
        single = colors
    elif isinstance(colors, Mapping):
        single = colors.get(label)
        if single is None:
            return color_for(label)
    else:
        single = colors[int(label) % len(colors)]
    if isinstance(single, str):
        return ImageColor.getrgb(single)[:3]
    return tuple(int(c) for c in single[:3])  # type: ignore[return-value]


def _class_name(label: int, names: Any) -> str:
    if names is None:
        return str(label)
    if isinstance(names, Mapping):
        return str(names.get(label, label))
    return str(names[label]) if 0 <= label < len(names) else str(label)


# --------------------------------------------------------------------------- inputs
def _as_numpy(x: Any, dtype) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _default_sizes(width: int, height: int) -> tuple[int, int]:
    """Line width and font size (pixels) readable from 160 px thumbnails to 4000 px photos."""
    side = (width + height) / 2
    return max(2, round(side * 0.003)), max(12, round(side * 0.03))


# --------------------------------------------------------------------------- drawing
def draw_detections(
    image: Any,
    boxes: Any,
    labels: Any,
    scores: Any = None,
    names: Sequence[str] | Mapping[int, str] | None = None,
    colors: Any = None,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """Draw boxes with "名称 0.87" labels on a copy of ``image`` and return it as a PIL RGB image.

    image: anything :func:`~deimv2.data.images.as_rgb_image` reads (path, PIL image, numpy HWC uint8 or float in
        [0,1], torch CHW tensor); drawn on a copy.
    boxes: (N, 4) xyxy in pixels; labels: (N,) class ids; scores: (N,) or None (name only).
    names: class names, a list indexed by class id or a dict {id: name}; missing ids print the id.
    colors: None (fixed palette per class), one colour, a list indexed by class id, or a dict.
    line_width / font_size: pixels; by default scaled with the image size.
    """
    img = as_rgb_image(image)
    w, h = img.size
    box_arr, label_arr, score_arr = _detection_arrays(boxes, labels, scores)
    auto_lw, auto_fs = _default_sizes(w, h)
    font = load_cjk_font(int(font_size or auto_fs))
    draw = ImageDraw.Draw(img)
    corners = _draw_boxes(draw, box_arr, label_arr, colors, int(line_width or auto_lw), (w, h))
    texts = [_class_name(int(label), names) for label in label_arr]
    if score_arr is not None:
        texts = [f"{text} {score:.2f}" for text, score in zip(texts, score_arr)]
    _draw_labels(draw, texts, corners, font, w)  # after all boxes, so that no box line crosses a label
    return img


def _detection_arrays(boxes: Any, labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Boxes ``(N, 4)`` float, labels ``(N,)`` int and scores ``(N,)`` float or None, checked."""
    box_arr = _as_numpy(boxes, np.float64)
    if box_arr.size == 0:
        box_arr = box_arr.reshape(0, 4)
    if box_arr.ndim != 2 or box_arr.shape[1] != 4:
        raise ValueError(f"boxes 的形状应为 (N, 4)（xyxy 像素坐标），实际为 {tuple(box_arr.shape)}。")
    if not np.isfinite(box_arr).all():
        raise ValueError("boxes 中含有 NaN 或 inf，无法绘制；请检查模型输出或标注。")
    label_arr = _as_numpy(labels, np.int64).reshape(-1)
    score_arr = None if scores is None else _as_numpy(scores, np.float64).reshape(-1)
    n = len(box_arr)
    if len(label_arr) != n or (score_arr is not None and len(score_arr) != n):
        raise ValueError(
            f"boxes、labels、scores 的数量必须一致：{n}、{len(label_arr)}、"
            f"{'无' if score_arr is None else len(score_arr)}。"
        )
    return box_arr, label_arr, score_arr


def _draw_boxes(draw: ImageDraw.ImageDraw, boxes: np.ndarray, labels: np.ndarray, colors: Any, lw: int, size) -> list:
    """Each box (clipped to the image) in its class colour; returns ``(x1, y1, colour)`` of each, for its label."""
    w, h = size
    drawn = []
    for i in range(len(boxes)):
        x1, y1, x2, y2 = boxes[i]
        x1, x2 = sorted((min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)))
        y1, y2 = sorted((min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)))
        color = _resolve_color(int(labels[i]), colors)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=lw)
        drawn.append((x1, y1, color))
    return drawn


def _draw_labels(draw: ImageDraw.ImageDraw, texts: list[str], corners: list, font, width: int) -> None:
    """Each text on a box of its colour above the top-left corner of its box (``corners``: ``(x1, y1, colour)``;
    inside the box when there is no room above), in black or white by the colour's brightness."""
    _, top, _, bottom = font.getbbox("国Ag0", anchor="ls")
    pad = max(1, round(font.size * 0.12))
    label_h = (bottom - top) + 2 * pad
    for text, (x1, y1, color) in zip(texts, corners):
        label_w = round(draw.textlength(text, font=font)) + 2 * pad
        lx = min(max(x1, 0), max(width - label_w, 0))
        ly = y1 - label_h if y1 - label_h >= 0 else y1  # above the box, else inside at the top edge
        draw.rectangle((lx, ly, lx + label_w, ly + label_h), fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        text_color = (0, 0, 0) if luminance > 150 else (255, 255, 255)
        draw.text((lx + pad, ly + pad - top), text, font=font, fill=text_color, anchor="ls")


def _prediction_parts(pred: Any) -> tuple[Any, Any, Any]:
    if isinstance(pred, Mapping):
        return pred["boxes"], pred["labels"], pred.get("scores")
    if isinstance(pred, (tuple, list)) and len(pred) in (2, 3):
        return pred[0], pred[1], pred[2] if len(pred) == 3 else None
    raise ValueError("每个预测应为 {'boxes', 'labels', 'scores'} 字典或 (boxes, labels, scores) 元组。")


def _gt_to_xyxy(boxes: np.ndarray, fmt: str, width: int, height: int) -> np.ndarray:
    if fmt == "xyxy":
        return boxes
    if fmt == "cxcywh_norm":
        cx, cy, bw, bh = boxes.T
        return np.stack(
            [(cx - bw / 2) * width, (cy - bh / 2) * height, (cx + bw / 2) * width, (cy + bh / 2) * height], axis=1
        )
    raise ValueError(f"gt_box_format 只能是 'xyxy'（像素）或 'cxcywh_norm'（归一化中心点），收到 {fmt!r}。")


def show_grid(
    images: Any,
    predictions: Sequence[Any] | None = None,
    ground_truths: Sequence[Any] | None = None,
    names: Sequence[str] | Mapping[int, str] | None = None,
    ncols: int = 4,
    score_threshold: float = 0.3,
    gt_box_format: str = "xyxy",
    titles: Sequence[str] | None = None,
    cell_size: float = 4.0,
):
    """A matplotlib Figure with a grid of images, predicted boxes and (optionally) ground truth.

    images: a list of images (PIL / numpy HWC / torch CHW) or a BCHW tensor.
    predictions[i]: {'boxes', 'labels', 'scores'} (xyxy pixels) or None; boxes with
        score < score_threshold are not drawn (the official post-processor returns top-K boxes).
    ground_truths[i]: {'boxes', 'labels'}; drawn as dashed green boxes. gt_box_format is 'xyxy'
        (pixels) or 'cxcywh_norm' (normalized centre format, as in training targets).
    The figure is closed in pyplot so a notebook shows it once, as the returned value.
    """
    import matplotlib.pyplot as plt  # lazy: heavy, only needed for grids

    setup_matplotlib_cjk()
    images = _image_list(images)
    count = len(images)
    for what, seq in (("predictions", predictions), ("ground_truths", ground_truths), ("titles", titles)):
        if seq is not None and len(seq) != count:
            raise ValueError(f"{what} 的长度（{len(seq)}）必须等于图像数量（{count}）。")
    ncols = max(1, min(int(ncols), max(count, 1)))
    nrows = max(1, -(-count // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_size * ncols, cell_size * nrows), squeeze=False)
    plt.close(fig)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= count:
            continue
        img = as_rgb_image(images[k])
        if predictions is not None and predictions[k] is not None:
            img = _draw_prediction(img, predictions[k], names, score_threshold)
        ax.imshow(img)
        if ground_truths is not None and ground_truths[k] is not None:
            _plot_ground_truth(ax, ground_truths[k], gt_box_format, img.size, names)
        if titles is not None:
            ax.set_title(str(titles[k]))
    _grid_legend(fig, predictions is not None, ground_truths is not None)
    return fig


def _image_list(images: Any) -> list:
    """A list of single images from a list, one image, or a batch (``BCHW`` tensor / ``BHWC`` array)."""
    if (hasattr(images, "detach") or isinstance(images, np.ndarray)) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, (Image.Image, np.ndarray)) or hasattr(images, "detach"):
        images = [images]
    return list(images)


def _draw_prediction(img: Image.Image, pred: Any, names: Any, score_threshold: float) -> Image.Image:
    """The predicted boxes scoring at least ``score_threshold`` drawn on ``img``."""
    boxes, labels, scores = _prediction_parts(pred)
    boxes = _as_numpy(boxes, np.float64).reshape(-1, 4)
    labels = _as_numpy(labels, np.int64).reshape(-1)
    if scores is not None:
        scores = _as_numpy(scores, np.float64).reshape(-1)
        keep = scores >= score_threshold
        boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    return draw_detections(img, boxes, labels, scores, names=names)


def _plot_ground_truth(ax, gt: Mapping, gt_box_format: str, size: tuple[int, int], names: Any) -> None:
    """Ground-truth boxes as dashed green rectangles with their class names, on the axes."""
    from matplotlib.patches import Rectangle  # lazy: as in show_grid

    gt_boxes = _gt_to_xyxy(_as_numpy(gt["boxes"], np.float64).reshape(-1, 4), gt_box_format, *size)
    gt_labels = _as_numpy(gt["labels"], np.int64).reshape(-1)
    for (x1, y1, x2, y2), lab in zip(gt_boxes, gt_labels):
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=GT_COLOR, linestyle="--", linewidth=1.5)
        )
        ax.text(
            x1,
            y2,
            _class_name(int(lab), names),
            color=GT_COLOR,
            fontsize=8,
            va="top",
            ha="left",
            bbox=dict(facecolor="black", alpha=0.5, pad=1, lw=0),
        )


def _grid_legend(fig, has_predictions: bool, has_ground_truths: bool) -> None:
    """A legend of the two line styles when ground truth is shown, above the grid; then a tight layout."""
    from matplotlib.lines import Line2D  # lazy: as in show_grid

    if not has_ground_truths:
        fig.tight_layout()
        return
    handles = [Line2D([], [], color=GT_COLOR, lw=2, ls="--", label="真值 GT（虚线）")]
    if has_predictions:
        handles.insert(0, Line2D([], [], color=PALETTE[0], lw=2, label="预测（实线，颜色按类别）"))
    fig.legend(handles=handles, loc="upper center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
