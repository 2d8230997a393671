"""Chinese labels, CJK font discovery, detection drawing and the notebook grid."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from deimv2 import draw
from deimv2.errors import DEIMv2Error

NAMES = ["飞机", "船"]


def _render(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    img = Image.new("L", (160, 64))
    ImageDraw.Draw(img).text((4, 4), text, font=font, fill=255)
    return np.asarray(img)


def _latin_only_font() -> Path:
    return Path(font_manager.findfont("DejaVu Sans", fallback_to_default=False))


def test_cjk_glyphs_differ_from_notdef_and_each_other():
    font = draw.load_cjk_font(32)
    notdef = _render(font, "\U0010fffd")
    plane, ship = _render(font, "飞机"), _render(font, "船")
    assert plane.any() and ship.any()
    assert not np.array_equal(plane, notdef)
    assert not np.array_equal(ship, notdef)
    assert not np.array_equal(plane, ship)
    # The two characters of "飞机" are different glyphs, not two identical tofu boxes.
    assert not np.array_equal(_render(font, "飞"), _render(font, "机"))


def test_latin_font_is_detected_as_tofu():
    """Negative control: the same comparison rejects a font without Chinese glyphs."""
    latin = _latin_only_font()
    font = ImageFont.truetype(str(latin), 32)
    assert np.array_equal(_render(font, "飞"), _render(font, "\U0010fffd"))
    assert draw._check_font_file(latin) is None
    assert draw._check_font_file(draw.find_cjk_font()) is not None


def test_find_cjk_font_is_cached():
    first = draw.find_cjk_font()
    hits = draw._find_font_face.cache_info().hits
    assert draw.find_cjk_font() == first and first.is_file()
    assert draw._find_font_face.cache_info().hits == hits + 1


def test_bad_env_font_gives_chinese_error(monkeypatch):
    monkeypatch.setenv("DEIMV2_FONT", str(_latin_only_font()))
    draw._find_font_face.cache_clear()
    try:
        with pytest.raises(DEIMv2Error, match="DEIMV2_FONT"):
            draw.find_cjk_font()
    finally:
        monkeypatch.delenv("DEIMV2_FONT")
        draw._find_font_face.cache_clear()
        draw.load_cjk_font.cache_clear()


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


def _missing_glyph_warnings(title: str) -> list[str]:
    fig = Figure(figsize=(2, 1))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_title(title)
    ax.plot([0, 1], [-1, 1], label="损失")
    ax.legend()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    return [str(w.message) for w in caught if "missing from" in str(w.message)]


def test_setup_matplotlib_cjk_renders_title_without_missing_glyphs():
    with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"]}):
        assert _missing_glyph_warnings("训练损失")  # control: the default font lacks these glyphs
    with matplotlib.rc_context():
        family = draw.setup_matplotlib_cjk()
        assert matplotlib.rcParams["font.sans-serif"][0] == family
        assert matplotlib.rcParams["axes.unicode_minus"] is False
        assert _missing_glyph_warnings("训练损失") == []


def test_no_cjk_font_anywhere_gives_install_hint(monkeypatch):
    monkeypatch.delenv("DEIMV2_FONT", raising=False)
    monkeypatch.setattr(draw, "_candidates", lambda: [_latin_only_font()])
    draw._find_font_face.cache_clear()
    try:
        with pytest.raises(DEIMv2Error, match="未找到可以显示中文的字体") as err:
            draw.find_cjk_font()
        assert "pip install pylopdf-fonts-zh-cn" in str(err.value)
        assert "apt install fonts-noto-cjk" in str(err.value)
    finally:
        monkeypatch.undo()
        draw._find_font_face.cache_clear()
        draw.load_cjk_font.cache_clear()
