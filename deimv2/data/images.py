"""Robust image loading: any PIL mode -> 8-bit RGB, EXIF orientation applied.

Alpha channels (RGBA, LA, PA, palette with transparency) are DROPPED, not composited:
the RGB values under the alpha are kept, exactly like the official loader
(``Image.open(...).convert("RGB")``), so pixels match the official pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DatasetError

__all__ = ["load_image", "image_size", "to_rgb", "exif_orientation"]

# Same as the official dataset: very large images (aerial, pathology) must not be refused.
Image.MAX_IMAGE_PIXELS = None

_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = (5, 6, 7, 8)  # orientations that rotate by 90/270 degrees


def _fail(path, problem: str) -> DatasetError:
    return DatasetError(
        f"无法读取图片文件 {path}：{problem}。\n"
        "修复：确认该文件是完整的图片（JPEG/PNG/BMP/TIFF/WebP 等），可用看图软件打开检查；"
        "若已损坏，请重新导出/下载该图片，或从标注文件中删除这张图片及其标注。"
    )


def exif_orientation(img: Image.Image) -> int:
    """EXIF orientation tag (1..8); 1 when missing or unreadable."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF block: treat as "no rotation"
        return 1
    return value if 1 <= value <= 8 else 1


def _high_depth_to_uint8(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float grayscale to 8-bit grayscale ("L")."""
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64))
        peak = float(arr.max()) if arr.size else 0.0
        if peak <= 1.0:
            arr = arr * 255.0
        elif peak > 255.0:
            arr = arr * (255.0 / peak)
        out = np.clip(np.rint(arr), 0, 255)
    else:
        arr = arr.astype(np.int64)
        peak = int(arr.max()) if arr.size else 0
        if img.mode.startswith("I;16") or 255 < peak <= 65535:
            out = (arr * 255 + 32767) // 65535  # full 16-bit range -> 0..255, rounded
        elif peak > 65535:
            out = arr * 255 // peak
        else:
            out = arr
        out = np.clip(out, 0, 255)
    return Image.fromarray(out.astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha dropped, 16-bit scaled, CMYK converted)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        # Going through RGBA avoids PIL's "palette with transparency" warning; same RGB values.
        return img.convert("RGBA").convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_uint8(img).convert("RGB")
    return img.convert("RGB")  # L, 1, LA, PA, RGBA, RGBX, CMYK, YCbCr, LAB, HSV


def load_image(path, expected_size=None) -> Image.Image:
    """Read an image file as an RGB PIL image with its EXIF orientation applied.

    expected_size: (w, h) recorded in the annotation file, optional. If the EXIF orientation
    would swap width and height but ``expected_size`` equals the stored (unrotated) size,
    the annotations were drawn on the stored pixels and the orientation is NOT applied.
    Any decoding problem raises ``DatasetError`` naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as raw:
            raw.load()
            img = raw
            orientation = exif_orientation(img)
            if orientation != 1:
                w, h = img.size
                skip = (
                    orientation in _SWAPS_SIDES
                    and expected_size is not None
                    and w != h
                    and tuple(int(v) for v in expected_size) == (w, h)
                )
                if not skip:
                    img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
            if rgb is raw:  # detach from the file handle
                rgb = raw.copy()
    except FileNotFoundError:
        raise DatasetError(
            f"找不到图片文件 {path}。\n修复：检查图片目录 (img_folder) 和标注里的 file_name 是否对应。"
        ) from None
    except UnidentifiedImageError:
        raise _fail(path, "不是可识别的图片格式（文件可能为空、损坏，或扩展名与内容不符）") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _fail(path, f"解码失败（{exc}），文件可能被截断或损坏") from None
    return rgb


def image_size(path) -> tuple[int, int]:
    """(w, h) after EXIF orientation, read from the file header only (no full decode)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            if exif_orientation(img) in _SWAPS_SIDES:
                w, h = h, w
    except FileNotFoundError:
        raise DatasetError(f"找不到图片文件 {path}。\n修复：检查路径是否正确、文件是否存在。") from None
    except UnidentifiedImageError:
        raise _fail(path, "不是可识别的图片格式（文件可能为空、损坏，或扩展名与内容不符）") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _fail(path, f"读取文件头失败（{exc}）") from None
    return int(w), int(h)
