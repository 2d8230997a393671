"""The one "any input -> RGB image" rule (as_rgb_image) and the one image listing (IMAGE_EXTS, list_images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deimv2.data.images import IMAGE_EXTS, as_rgb_image, list_images
from deimv2.errors import DatasetError

RNG = np.random.default_rng(0)
HWC = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)


def _same(image) -> None:
    out = as_rgb_image(image)
    assert out.mode == "RGB" and out.size == (10, 6)
    assert np.array_equal(np.asarray(out), HWC)


def test_every_input_type_gives_the_same_pixels(tmp_path):
    path = tmp_path / "图 片.png"
    Image.fromarray(HWC).save(path)
    chw = torch.from_numpy(HWC).permute(2, 0, 1)
    for image in (
        path,
        str(path),
        Image.fromarray(HWC),
        HWC,
        HWC.astype(np.float64) / 255,  # float in [0, 1]
        np.dstack([HWC, np.full((6, 10), 7, np.uint8)]),  # RGBA: alpha dropped
        HWC.transpose(2, 0, 1),  # CHW numpy (first axis 3, last not 1/3/4)
        chw,
        chw.float() / 255,
    ):
        _same(image)
    assert as_rgb_image((chw.float() / 255).to(torch.bfloat16)).size == (10, 6)  # bfloat16 is read, not refused


def test_grey_and_pil_modes():
    grey = as_rgb_image(np.full((4, 5), 9, np.uint8))
    assert grey.size == (5, 4) and grey.getpixel((0, 0)) == (9, 9, 9)
    assert as_rgb_image(torch.full((1, 4, 5), 9, dtype=torch.uint8)).getpixel((2, 2)) == (9, 9, 9)
    rgba = Image.new("RGBA", (3, 2), (10, 20, 30, 0))
    assert as_rgb_image(rgba).getpixel((1, 1)) == (10, 20, 30)  # alpha dropped, like the training loader
    deep = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert [as_rgb_image(deep).getpixel((x, 0))[0] for x in range(2)] == [0, 255]  # 16-bit scaled, not clipped


def test_input_is_never_modified():
    pil = Image.fromarray(HWC)
    out = as_rgb_image(pil)
    assert out is not pil
    out.paste((0, 0, 0), (0, 0, 10, 6))
    assert np.array_equal(np.asarray(pil), HWC)
    arr = HWC.copy()
    as_rgb_image(arr).paste((0, 0, 0), (0, 0, 10, 6))
    assert np.array_equal(arr, HWC)


@pytest.mark.parametrize(
    "image, needle",
    [
        (np.zeros((6, 10, 2), np.uint8), "img[:, :, ::-1]"),
        (np.zeros((2, 6, 10, 3), np.uint8), "拆成列表"),
        (np.full((6, 10, 3), 2.5), "Normalize"),
        (torch.randn(3, 6, 10) * 3, "Normalize"),
        (np.full((6, 10, 3), np.nan), "NaN"),
        (np.zeros((6, 10, 3), np.int64), "astype(np.uint8)"),
        (12, "不支持的类型 int"),
    ],
)
def test_bad_inputs_are_clear_chinese_errors(image, needle):
    with pytest.raises(DatasetError, match="无法把输入当作图片") as err:
        as_rgb_image(image)
    assert needle in str(err.value)
    assert isinstance(err.value, ValueError)  # drawing code may catch ValueError


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DatasetError, match="没有 这张.jpg"):
        as_rgb_image(tmp_path / "没有 这张.jpg")


def test_list_images(tmp_path):
    (tmp_path / "子 目录").mkdir()
    for name in ("b.JPG", "a.png", "notes.txt", "子 目录/c.webp", "x.tiff"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.jpg").mkdir()  # a folder named like an image is not an image
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "x.tiff"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.png", "b.JPG", "x.tiff", "c.webp"]
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTS)


def test_load_image_returns_a_decoded_rgb_file_without_copying_and_leaves_no_file_open(tmp_path, monkeypatch):
    import gc
    import sys
    import warnings
    from pathlib import Path

    import psutil

    from deimv2.data.images import load_image

    folder = tmp_path / "图片 文件夹"
    folder.mkdir()
    rgb_jpeg, grey_png, gif = folder / "彩色.jpg", folder / "灰度.png", folder / "动图.gif"
    Image.new("RGB", (64, 48), (200, 10, 30)).save(rgb_jpeg, quality=95)
    Image.new("L", (40, 30), 77).save(grey_png)
    frames = [Image.new("P", (20, 10), i) for i in range(3)]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    unraisable = []  # a file closed only by the garbage collector warns inside __del__: it lands here
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        images = [load_image(p) for p in (rgb_jpeg, grey_png, gif)]
        gc.collect()
    assert not unraisable, [str(u.exc_value) for u in unraisable]
    open_now = {Path(f.path).name for f in psutil.Process().open_files()}
    assert not open_now & {rgb_jpeg.name, grey_png.name, gif.name}, open_now
    assert [im.mode for im in images] == ["RGB", "RGB", "RGB"]
    assert [im.size for im in images] == [(64, 48), (40, 30), (20, 10)]
    assert images[1].getpixel((0, 0)) == (77, 77, 77)
    with Image.open(rgb_jpeg) as ref:
        assert np.array_equal(np.asarray(images[0]), np.asarray(ref.convert("RGB")))  # the same pixels
    assert images[0].resize((8, 8)).size == (8, 8)  # usable after the file is closed
