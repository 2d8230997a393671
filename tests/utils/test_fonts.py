"""CJK font discovery: real Chinese glyphs (not tofu), caching, clear errors, matplotlib set-up."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from deimv2.errors import DEIMv2Error
from deimv2.utils import fonts


def _render(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    img = Image.new("L", (160, 64))
    ImageDraw.Draw(img).text((4, 4), text, font=font, fill=255)
    return np.asarray(img)


def _latin_only_font() -> Path:
    return Path(font_manager.findfont("DejaVu Sans", fallback_to_default=False))


def test_cjk_glyphs_differ_from_notdef_and_each_other():
    font = fonts.load_cjk_font(32)
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
    assert fonts._check_font_file(latin) is None
    assert fonts._check_font_file(fonts.find_cjk_font()) is not None


def test_find_cjk_font_is_cached():
    first = fonts.find_cjk_font()
    hits = fonts._find_font_face.cache_info().hits
    assert fonts.find_cjk_font() == first and first.is_file()
    assert fonts._find_font_face.cache_info().hits == hits + 1


def test_bad_env_font_gives_chinese_error(monkeypatch):
    monkeypatch.setenv("DEIMV2_FONT", str(_latin_only_font()))
    fonts._find_font_face.cache_clear()
    try:
        with pytest.raises(DEIMv2Error, match="DEIMV2_FONT"):
            fonts.find_cjk_font()
    finally:
        monkeypatch.delenv("DEIMV2_FONT")
        fonts._find_font_face.cache_clear()
        fonts.load_cjk_font.cache_clear()


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
        family = fonts.setup_matplotlib_cjk()
        assert matplotlib.rcParams["font.sans-serif"][0] == family
        assert matplotlib.rcParams["axes.unicode_minus"] is False
        assert _missing_glyph_warnings("训练损失") == []


def test_no_cjk_font_anywhere_gives_install_hint(monkeypatch):
    monkeypatch.delenv("DEIMV2_FONT", raising=False)
    monkeypatch.setattr(fonts, "_candidates", lambda: [_latin_only_font()])
    fonts._find_font_face.cache_clear()
    try:
        with pytest.raises(DEIMv2Error, match="未找到可以显示中文的字体") as err:
            fonts.find_cjk_font()
        assert "pip install pylopdf-fonts-zh-cn" in str(err.value)
        assert "apt install fonts-noto-cjk" in str(err.value)
    finally:
        monkeypatch.undo()
        fonts._find_font_face.cache_clear()
        fonts.load_cjk_font.cache_clear()
