"""Images, the one home: file extensions, listing, sizes, loading, and any input -> RGB.

* :data:`IMAGE_EXTS` / :func:`list_images`: which files are images (training data, ``deimv2 predict`` folders,
  YOLO conversion all use these).
* :func:`image_size`: (w, h) as displayed (EXIF orientation applied), from the file header only.
* :func:`load_image`: any file -> 8-bit RGB PIL image, EXIF orientation applied.
* :func:`as_rgb_image`: any input (path, PIL image, numpy array, torch tensor) -> a new RGB PIL image; its
  docstring states the rules. Prediction, drawing and ONNX checks all go through it.

Alpha channels (RGBA, LA, PA, palette with transparency) are DROPPED, not composited:
the RGB values under the alpha are kept, exactly like the official loader
(``Image.open(...).convert("RGB")``), so pixels match the official pipeline.
Explained in notebook 02_convert.ipynb (data) and 05_inference.ipynb (inputs of a Detector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deimv2.errors import DatasetError, ImageInputError

__all__ = [
    "IMAGE_EXTS",
    "list_images",
    "load_image",
    "image_size",
    "displayed_size",
    "to_rgb",
    "as_rgb_image",
    "exif_orientation",
]

#: file extensions read as images (lower case; matching ignores case)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

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


def displayed_size(img: Image.Image) -> tuple[int, int]:
    """(w, h) of an opened image as displayed: width and height swapped when EXIF rotates by 90/270 degrees."""
    w, h = img.size
    return (h, w) if exif_orientation(img) in _SWAPS_SIDES else (w, h)


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Image files (extension in :data:`IMAGE_EXTS`, any case) in ``folder``, sorted; with subfolders if ``recursive``."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_EXTS and p.is_file())


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
    raw = rgb = None
    try:
        raw = Image.open(path)
        raw.load()  # a single-frame file is read whole and closed here
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
        if rgb is raw and getattr(raw, "fp", None) is not None:  # multi-frame: the file is still open
            rgb = raw.copy()
        # an RGB file is returned as decoded, without a copy: one image copy less on every predicted file
    except FileNotFoundError:
        raise DatasetError(
            f"找不到图片文件 {path}。\n修复：检查路径是否正确（中文和空格都可以）；训练数据请检查图片目录 (img_folder) "
            "和标注里的 file_name 是否对应。"
        ) from None
    except UnidentifiedImageError:
        raise _fail(path, "不是可识别的图片格式（文件可能为空、损坏，或扩展名与内容不符）") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _fail(path, f"解码失败（{exc}），文件可能被截断或损坏") from None
    finally:
        if raw is not None and rgb is not raw:
            raw.close()  # the file and the decoded frame we do not return
    return rgb


def image_size(path) -> tuple[int, int]:
    """(w, h) after EXIF orientation, read from the file header only (no full decode)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = displayed_size(img)
    except FileNotFoundError:
        raise DatasetError(f"找不到图片文件 {path}。\n修复：检查路径是否正确、文件是否存在。") from None
    except UnidentifiedImageError:
        raise _fail(path, "不是可识别的图片格式（文件可能为空、损坏，或扩展名与内容不符）") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _fail(path, f"读取文件头失败（{exc}）") from None
    return int(w), int(h)


# ----------------------------------------------------------------------------- any input -> RGB
def _bad_input(problem: str) -> ImageInputError:
    return ImageInputError(
        f"无法把输入当作图片：{problem}。\n"
        "支持的输入：图片路径（str / Path）、PIL 图片、numpy 数组（HWC 或 HW，RGB 顺序，uint8 0-255 或浮点 0-1）、"
        "torch 张量（CHW 或 HW，uint8 或浮点 0-1）。"
    )


def _array_to_rgb(arr: np.ndarray, chw: bool) -> Image.Image:
    if chw:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise _bad_input(
            f"形状 {tuple(arr.shape)} 不是图片（numpy 应为 (H, W, 3)、(H, W, 4)、(H, W, 1) 或 (H, W)；"
            "torch 张量应为 (3, H, W) 等）。修复：批量图片请拆成列表；OpenCV 读出的 BGR 图片请先 img[:, :, ::-1]"
        )
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise _bad_input("浮点图像中有 NaN 或 inf。修复：检查产生这张图像的代码")
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise _bad_input(
                f"浮点图像的取值范围是 [{lo:.3f}, {hi:.3f}]，应在 [0, 1] 内。修复：如果图像经过了 Normalize"
                "（减均值除方差），请先反归一化；0-255 的图像请转成 uint8：arr.astype(np.uint8)"
            )
        arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise _bad_input(
            f"数据类型 {arr.dtype} 不受支持（只接受 uint8 的 0-255 或浮点的 0-1）。"
            "修复：0-255 的整数图像请 arr.astype(np.uint8)，16 位图像请先保存成文件再传路径"
        )
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # alpha dropped, as for RGBA files
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


def as_rgb_image(image: Any) -> Image.Image:
    """Any image input -> a NEW 8-bit RGB PIL image (the input itself is never modified).

    Rules (the same for ``Detector.predict``, ``draw_detections``/``show_grid`` and ``check_onnx``):

    * ``str`` / ``Path``: the file is read by :func:`load_image` (EXIF orientation applied, any mode -> RGB);
      a missing or broken file is a :class:`~deimv2.errors.DatasetError` naming it.
    * PIL image: any mode is converted by :func:`to_rgb` (alpha dropped, 16-bit scaled to 8-bit); the pixels are
      taken as they are (no EXIF rotation: an opened file is already the caller's choice).
    * numpy array: ``(H, W, C)`` with C = 3 (RGB), 4 (RGBA, alpha dropped) or 1, or ``(H, W)`` grey. The channel
      order is RGB: an OpenCV (BGR) image must be reversed first, ``img[:, :, ::-1]``. A 3-D array whose first
      axis is 1/3/4 and whose last axis is not is read as ``(C, H, W)`` (a tensor turned into numpy).
    * torch tensor: ``(C, H, W)`` with C = 1, 3 or 4, or ``(H, W)``; moved to the CPU.
    * values: ``uint8`` is 0-255; a float dtype is 0-1 (scaled by 255 and rounded), a float outside [0, 1]
      (e.g. after Normalize) or with NaN/inf is an error; any other dtype is an error.

    Anything else raises :class:`~deimv2.errors.ImageInputError` (both a ``DatasetError`` and a ``ValueError``)
    with a Chinese message that names the problem and the fix.
    """
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        rgb = to_rgb(image)
        return rgb.copy() if rgb is image else rgb
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor, without importing torch here
        t = image.detach().cpu()
        if t.is_floating_point():
            t = t.float()  # bfloat16/float16 -> float32, which numpy understands
        arr = t.numpy()
        return _array_to_rgb(arr, chw=arr.ndim == 3)
    if isinstance(image, np.ndarray):
        chw = image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4)
        return _array_to_rgb(image, chw=chw)
    raise _bad_input(f"不支持的类型 {type(image).__name__}")
