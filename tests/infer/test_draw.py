"""Detection drawing (Chinese labels, every input type) and the notebook grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from deimv2.infer import draw

NAMES = ["飞机", "船"]


@pytest.mark.parametrize("size", [(160, 120), (4000, 3000)])
def test_draw_detections_box_edges_and_labels(size):
    w, h = size
    img = np.full((h, w, 3), 100, np.uint8)
    boxes = np.array(
        [
            [0.1 * w, 0.4 * h, 0.5 * w, 0.9 * h],  # label above the box
            [0.6 * w, 0.0, 0.95 * w, 0.5 * h],
        ]
    )  # box at the top edge: label inside
    out = draw.draw_detections(img, boxes, [0, 1], [0.87, 0.5], names=NAMES)
    assert isinstance(out, Image.Image) and out.size == (w, h)
    arr = np.asarray(out)
    lw, fs = draw._default_sizes(w, h)
    assert (lw, fs) == ((2, 12) if w == 160 else (10, 105))
    for (x1, y1, x2, y2), label in zip(boxes.astype(int), (0, 1)):
        color = draw.color_for(label)
        ym = (y1 + y2) // 2
        for x, y in [(x1, ym), (x1 + lw - 1, ym), (x2, ym), ((x1 + x2) // 2, y2)]:
            assert tuple(arr[y, x]) == color, (x, y)
        assert tuple(arr[ym, x1 + lw + 1]) == (100, 100, 100)  # inside the box: untouched
    # Label of box 0 sits above it: its background colour and text pixels appear there.
    x1, y1 = int(boxes[0, 0]), int(boxes[0, 1])
    strip = arr[max(0, y1 - fs) : y1, x1 : x1 + 2 * fs]
    assert (strip == draw.color_for(0)).all(axis=-1).any()
    assert (strip.min(axis=-1) > 180).any()  # light text pixels on the dark red background
    # Label of box 1 is inside the box, under its top edge.
    x1 = int(boxes[1, 0])
    inside = arr[lw : lw + fs, x1 + lw : x1 + 2 * fs]
    assert (inside == draw.color_for(1)).all(axis=-1).mean() > 0.3


def test_input_types_give_the_same_image():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    chw = torch.from_numpy(hwc).permute(2, 0, 1).float() / 255
    args = ([[10, 20, 90, 80]], [1], [0.5])
    ref = np.asarray(draw.draw_detections(hwc, *args, names=NAMES))
    for image in (Image.fromarray(hwc), chw, torch.from_numpy(hwc).permute(2, 0, 1)):
        assert np.array_equal(np.asarray(draw.draw_detections(image, *args, names=NAMES)), ref)
    assert np.array_equal(np.asarray(draw.draw_detections(hwc, [], [], [])), hwc)  # no boxes


def test_colors_names_and_errors():
    img = np.zeros((64, 64, 3), np.uint8)
    out = np.asarray(
        draw.draw_detections(img, [[5, 30, 40, 60]], [7], None, colors={7: "#00FF00"}, line_width=3, font_size=10)
    )
    assert tuple(out[45, 5]) == (0, 255, 0) and tuple(out[45, 7]) == (0, 255, 0)
    out = np.asarray(draw.draw_detections(img, [[5, 30, 40, 60]], [7], None, colors=[255, 0, 0]))
    assert tuple(out[45, 5]) == (255, 0, 0)
    assert draw._class_name(5, {5: "船"}) == "船" and draw._class_name(9, NAMES) == "9"
    with pytest.raises(ValueError, match="数量必须一致"):
        draw.draw_detections(img, [[0, 0, 1, 1]], [0, 1], None)
    with pytest.raises(ValueError, match="Normalize"):
        draw.draw_detections(torch.randn(3, 8, 8) * 3, [], [], None)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        draw.draw_detections(img, [[0, 0, 1]], [0], None)


def test_show_grid_returns_figure():
    images = torch.rand(3, 3, 48, 64)
    preds = [
        {
            "boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0], [1.0, 1.0, 5.0, 5.0]]),
            "labels": torch.tensor([0, 1]),
            "scores": torch.tensor([0.9, 0.1]),
        },
        None,
        ([[2, 2, 20, 20]], [1], [0.8]),
    ]
    gts = [{"boxes": [[0.5, 0.5, 0.5, 0.5]], "labels": [1]}, None, {"boxes": [], "labels": []}]
    fig = draw.show_grid(
        images, preds, gts, names=NAMES, ncols=2, gt_box_format="cxcywh_norm", titles=["图一", "图二", "图三"]
    )
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 4 and not axes[3].images  # 3 images in a 2x2 grid
    dashed = [p for p in axes[0].patches if p.get_linestyle() == "--"]
    assert len(dashed) == 1
    assert dashed[0].get_xy() == pytest.approx((16.0, 12.0)) and dashed[0].get_width() == pytest.approx(32.0)
    assert axes[0].get_title() == "图一"
    fig.canvas.draw()
    with pytest.raises(ValueError, match="长度"):
        draw.show_grid(images, preds[:1])
