"""Drawing detections with Chinese labels, and CJK font discovery for PIL and matplotlib.

Font search order (first font that really has Chinese glyphs wins, result cached):
  1. the ``DEIMV2_FONT`` environment variable (a path to a .ttf/.otf/.ttc file);
  2. well-known font files on Linux / macOS / Windows;
  3. ``fc-list :lang=zh`` (fontconfig);
  4. CJK-looking fonts in matplotlib's font list;
  5. fonts shipped by pip packages (``pylopdf-fonts-zh-cn`` is a dependency of deimv2).
Explained in notebook 02_convert.ipynb and 05_inference.ipynb.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from .errors import DEIMv2Error

__all__ = [
    "PALETTE",
    "color_for",
    "find_cjk_font",
    "to_pil",
    "load_cjk_font",
    "setup_matplotlib_cjk",
    "draw_detections",
    "show_grid",
]

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


# --------------------------------------------------------------------------- fonts
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
    try:
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
    import matplotlib
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


def to_pil(image: Any) -> Image.Image:
    """PIL RGB copy of a PIL image, an HWC/HW numpy array, or a CHW torch tensor (float in [0,1] or uint8)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image.copy()
    if hasattr(image, "detach"):  # torch tensor, CHW
        t = image.detach().cpu()
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        arr = t.numpy()
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
            arr = arr.transpose(1, 2, 0)  # CHW numpy
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"无法识别的图像形状 {tuple(arr.shape)}：需要 HWC/HW 的 numpy 数组或 CHW 的 torch 张量。")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(
                f"浮点图像的取值范围是 [{lo:.3f}, {hi:.3f}]，应在 [0, 1] 内。"
                "如果图像经过了 Normalize（减均值除方差），请先反归一化；uint8 图像请保持 uint8 类型。"
            )
        arr = np.round(arr * 255.0).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


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

    image: PIL image, numpy HWC uint8 (or float in [0,1]), or torch CHW tensor in [0,1].
    boxes: (N, 4) xyxy in pixels; labels: (N,) class ids; scores: (N,) or None (name only).
    names: class names, a list indexed by class id or a dict {id: name}; missing ids print the id.
    colors: None (fixed palette per class), one colour, a list indexed by class id, or a dict.
    line_width / font_size: pixels; by default scaled with the image size.
    """
    img = to_pil(image)
    w, h = img.size
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
    auto_lw, auto_fs = _default_sizes(w, h)
    lw = int(line_width or auto_lw)
    font = load_cjk_font(int(font_size or auto_fs))
    draw = ImageDraw.Draw(img)

    drawn = []
    for i in range(n):
        x1, y1, x2, y2 = box_arr[i]
        x1, x2 = sorted((min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)))
        y1, y2 = sorted((min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)))
        color = _resolve_color(int(label_arr[i]), colors)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=lw)
        drawn.append((x1, y1, color, i))

    # Labels after all boxes, so that no box line crosses a label.
    _, top, _, bottom = font.getbbox("国Ag0", anchor="ls")
    pad = max(1, round(font.size * 0.12))
    label_h = (bottom - top) + 2 * pad
    for x1, y1, color, i in drawn:
        text = _class_name(int(label_arr[i]), names)
        if score_arr is not None:
            text = f"{text} {score_arr[i]:.2f}"
        label_w = round(draw.textlength(text, font=font)) + 2 * pad
        lx = min(max(x1, 0), max(w - label_w, 0))
        ly = y1 - label_h if y1 - label_h >= 0 else y1  # above the box, else inside at the top edge
        draw.rectangle((lx, ly, lx + label_w, ly + label_h), fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        text_color = (0, 0, 0) if luminance > 150 else (255, 255, 255)
        draw.text((lx + pad, ly + pad - top), text, font=font, fill=text_color, anchor="ls")
    return img


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
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    setup_matplotlib_cjk()
    if (hasattr(images, "detach") or isinstance(images, np.ndarray)) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, (Image.Image, np.ndarray)) or hasattr(images, "detach"):
        images = [images]
    images = list(images)
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
        img = to_pil(images[k])
        if predictions is not None and predictions[k] is not None:
            boxes, labels, scores = _prediction_parts(predictions[k])
            boxes = _as_numpy(boxes, np.float64).reshape(-1, 4)
            labels = _as_numpy(labels, np.int64).reshape(-1)
            if scores is not None:
                scores = _as_numpy(scores, np.float64).reshape(-1)
                keep = scores >= score_threshold
                boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
            img = draw_detections(img, boxes, labels, scores, names=names)
        ax.imshow(img)
        if ground_truths is not None and ground_truths[k] is not None:
            gt = ground_truths[k]
            gt_boxes = _gt_to_xyxy(_as_numpy(gt["boxes"], np.float64).reshape(-1, 4), gt_box_format, *img.size)
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
        if titles is not None:
            ax.set_title(str(titles[k]))
    if ground_truths is not None:
        handles = [Line2D([], [], color=GT_COLOR, lw=2, ls="--", label="真值 GT（虚线）")]
        if predictions is not None:
            handles.insert(0, Line2D([], [], color=PALETTE[0], lw=2, label="预测（实线，颜色按类别）"))
        fig.legend(handles=handles, loc="upper center", ncol=2, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    else:
        fig.tight_layout()
    return fig
