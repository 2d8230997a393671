"""Chinese (CJK) font discovery for PIL drawing and matplotlib plots.

Font search order (first font that really has Chinese glyphs wins, result cached):
  1. the ``DEIMV2_FONT`` environment variable (a path to a .ttf/.otf/.ttc file);
  2. well-known font files on Linux / macOS / Windows;
  3. ``fc-list :lang=zh`` (fontconfig);
  4. CJK-looking fonts in matplotlib's font list;
  5. fonts shipped by pip packages (``pylopdf-fonts-zh-cn`` is a dependency of deimv2).
Used by :mod:`deimv2.infer.draw` (labels on images) and by the plots of :mod:`deimv2.engine`.
Explained in notebook 00_environment.ipynb.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from deimv2.errors import DEIMv2Error

__all__ = ["INSTALL_HINT", "PROBE_CHARS", "cjk_figure", "find_cjk_font", "load_cjk_font", "setup_matplotlib_cjk"]

# Characters every candidate font must render (and not as the missing-glyph box).
PROBE_CHARS = "飞机船检测训练损失"
# A code point that no real font maps: it renders as the font's .notdef glyph.
_NOTDEF_CHAR = "\U0010fffd"
_PREFERRED_FACE = ("SC", "GB", "CN", "Hans", "YaHei", "Hei")

_SYSTEM_FONT_FILES = (
    # Linux (Debian/Ubuntu, Fedora, Arch)
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/adobe-source-han-sans/SourceHanSansCN-Regular.otf",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    # macOS
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/System/Library/Fonts/STHeiti Light.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "/System/Library/Fonts/Supplemental/Songti.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
    # Windows
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/msyh.ttf",
    "C:/Windows/Fonts/simhei.ttf",
    "C:/Windows/Fonts/Deng.ttf",
    "C:/Windows/Fonts/simsun.ttc",
)
_USER_FONT_DIRS = ("~/.local/share/fonts", "~/.fonts", "~/Library/Fonts")
_CJK_NAME_HINTS = (
    "cjk",
    "source han",
    "wenquanyi",
    "wqy",
    "yahei",
    "simhei",
    "simsun",
    "pingfang",
    "heiti",
    "hiragino sans gb",
    "droid sans fallback",
    "noto sans sc",
    "noto serif sc",
    "noto sans tc",
    "songti",
    "kaiti",
    "fangsong",
    "dengxian",
    "ar pl",
    "kurinto sans sc",
    "arial unicode",
)

INSTALL_HINT = (
    "请任选一种方式安装中文字体：\n"
    "  pip install pylopdf-fonts-zh-cn            （推荐，deimv2 的依赖，Noto Sans SC，SIL OFL 1.1）\n"
    "  sudo apt install fonts-noto-cjk            （Debian/Ubuntu）\n"
    "  或设置环境变量 DEIMV2_FONT=/path/to/字体.ttf（任意含简体中文的 .ttf/.otf/.ttc 字体）"
)


def _face_renders_cjk(font: ImageFont.FreeTypeFont) -> bool:
    """True if every probe char renders, differs from .notdef, and the glyphs differ from each other."""

    def render(ch: str) -> bytes:
        img = Image.new("L", (48, 48))
        ImageDraw.Draw(img).text((4, 4), ch, font=font, fill=255)
        return img.tobytes()

    notdef = render(_NOTDEF_CHAR)
    glyphs = [render(ch) for ch in PROBE_CHARS]
    if any(g == notdef or not any(g) for g in glyphs):
        return False
    return len(set(glyphs)) == len(glyphs)


def _check_font_file(path: Path) -> int | None:
    """Face index of a usable CJK face in ``path`` (preferring Simplified Chinese faces), or None."""
    usable: list[tuple[int, str]] = []
    for index in range(32):  # .ttc collections hold several faces
        try:
            font = ImageFont.truetype(str(path), 32, index=index)
        except OSError:
            break
        if _face_renders_cjk(font):
            usable.append((index, font.getname()[0] or ""))
    if not usable:
        return None
    for index, family in usable:
        if any(tag in family for tag in _PREFERRED_FACE):
            return index
    return usable[0][0]


def _fc_list_fonts() -> list[Path]:
    exe = shutil.which("fc-list")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "-f", "%{file}\n", ":lang=zh"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    files = sorted({line.strip() for line in out.splitlines() if line.strip()})
    # Regular weights and Simplified-Chinese fonts first.
    files.sort(key=lambda f: ("regular" not in f.lower(), "sc" not in Path(f).name.lower()))
    return [Path(f) for f in files]


def _matplotlib_fonts() -> list[Path]:
    try:  # lazy: matplotlib is heavy and optional for PIL drawing
        from matplotlib import font_manager
    except ImportError:
        return []
    return [
        Path(entry.fname)
        for entry in font_manager.fontManager.ttflist
        if any(hint in entry.name.lower() for hint in _CJK_NAME_HINTS)
    ]


def _package_fonts() -> list[Path]:
    """Font files shipped by pip packages (only looked at when the package is installed)."""
    relative = {
        "pylopdf_fonts_zh_cn": ("NotoSansSC-Regular.otf", "NotoSerifSC-Regular.otf"),
        "weblate_fonts": ("static/weblate_fonts/kurinto/ttf/KurintoSansSC-Rg.ttf",),
        "noto_cjk_sans_otc": ("NotoSansCJK-Regular.ttc",),
        "mplfonts": ("fonts/NotoSansCJKsc-Regular.otf", "fonts/SourceHanMonoSC-Regular.otf"),
    }
    found = []
    for module, files in relative.items():
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        found += [root / f for f in files]
    return found


def _candidates() -> list[Path]:
    paths = [Path(p) for p in _SYSTEM_FONT_FILES]
    for d in _USER_FONT_DIRS:
        d = Path(d).expanduser()
        if d.is_dir():
            paths += sorted(
                p
                for p in d.rglob("*")
                if p.suffix.lower() in (".ttf", ".otf", ".ttc")
                and any(h.replace(" ", "") in p.name.lower() for h in _CJK_NAME_HINTS)
            )
    return paths + _fc_list_fonts() + _matplotlib_fonts() + _package_fonts()


@functools.cache
def _find_font_face() -> tuple[Path, int]:
    env = os.environ.get("DEIMV2_FONT")
    if env:
        path = Path(env).expanduser()
        index = _check_font_file(path) if path.is_file() else None
        if index is None:
            raise DEIMv2Error(
                f"环境变量 DEIMV2_FONT 指向的字体不可用：{path}\n"
                f"（文件不存在，或字体里没有简体中文字形 “{PROBE_CHARS}”）。\n"
                "请改为一个含中文的 .ttf/.otf/.ttc 文件，或删除该环境变量让 deimv2 自动查找。"
            )
        return path, index
    seen: set[str] = set()
    for path in _candidates():
        key = os.path.normcase(str(path))
        if key in seen or not path.is_file():
            continue
        seen.add(key)
        index = _check_font_file(path)
        if index is not None:
            return path, index
    raise DEIMv2Error(
        "未找到可以显示中文的字体（已检查 DEIMV2_FONT、系统字体目录、fc-list、matplotlib 字体列表和 pip 字体包；"
        f"共 {len(seen)} 个字体文件，均不含 “{PROBE_CHARS}” 的字形）。\n" + INSTALL_HINT
    )


def find_cjk_font() -> Path:
    """Path of a font file that renders Simplified Chinese. Cached; raises DEIMv2Error if none exists."""
    return _find_font_face()[0]


@functools.lru_cache(maxsize=64)
def load_cjk_font(size: int) -> ImageFont.FreeTypeFont:
    """The CJK font as a PIL font of ``size`` pixels (cached per size)."""
    path, index = _find_font_face()
    return ImageFont.truetype(str(path), int(size), index=index)


def setup_matplotlib_cjk() -> str:
    """Register the CJK font with matplotlib and make it the default sans-serif font.

    Sets ``font.family`` to sans-serif, puts the font first in ``font.sans-serif`` and turns off
    ``axes.unicode_minus`` (the CJK font may lack U+2212). Returns the font's family name.
    """
    import matplotlib  # lazy: heavy, only needed for plots
    from matplotlib import font_manager

    path, index = _find_font_face()
    family = ImageFont.truetype(str(path), 12, index=index).getname()[0]
    registered = {e.name for e in font_manager.fontManager.ttflist}
    if family not in registered:
        font_manager.fontManager.addfont(str(path))
        registered = {e.name for e in font_manager.fontManager.ttflist}
        if family not in registered:  # older matplotlib registers only face 0 of a .ttc
            target = path.resolve()
            family = next(e.name for e in font_manager.fontManager.ttflist if Path(e.fname).resolve() == target)
    rc = matplotlib.rcParams
    rc["font.family"] = "sans-serif"
    rc["font.sans-serif"] = [family] + [f for f in rc["font.sans-serif"] if f != family]
    rc["axes.unicode_minus"] = False
    return family


def cjk_figure(figsize: tuple[float, float]):
    """A matplotlib Figure (constrained layout) with the CJK font set up, for the plots of :mod:`deimv2.engine`.

    The figure is closed in pyplot right away: a notebook shows it once, as the returned value (a pyplot figure
    renders in a fresh Jupyter kernel; a bare ``Figure`` would show as text).
    """
    import matplotlib.pyplot as plt  # lazy: heavy, only needed for plots

    setup_matplotlib_cjk()
    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig
