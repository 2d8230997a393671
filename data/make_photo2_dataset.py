"""Build "photo2", a second small composite real-photo detection dataset (2 classes, YOLO format) for benchmarks.

How to run (needs scikit-image, matplotlib and ultralytics installed: only the photos inside their wheels are used;
none of them is a dependency of deimv2):

    python data/make_photo2_dataset.py --out outputs/photo2_yolo

Not shipped with deimv2: ``benchmarks/recipes.py --dataset photo2`` generates it (and a held-out split with another
seed) into its work folder. Same compositing as the bundled demo (``make_demo_dataset.py``: random scale, aspect,
flip, rotation, colour jitter, at most 30% overlap, boxes = exact bounding boxes of the pasted alpha masks), but
other objects and other backgrounds: motorcycles (cut out of the Middlebury stereo pair with its ground-truth
disparity map) and people (hand-traced outlines), on street, garage, sky, tissue, lunar and handwriting crops.
See data/README.md for the sources and licences. The output is deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import data as skdata
from skimage import draw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_demo_dataset as demo  # noqa: E402  (the demo's compositing machinery, next to this file)

CLASS_NAMES = ["摩托车", "人"]
HEADER = "# photo2：第二个合成实拍数据集（由 data/make_photo2_dataset.py 生成，只用于基准测试）"


def _wheel_file(package: str, *parts: str) -> Path:
    """A file shipped inside an installed package (found without importing the package)."""
    spec = importlib.util.find_spec(package)
    path = (
        Path(spec.submodule_search_locations[0]).joinpath(*parts) if spec and spec.submodule_search_locations else None
    )
    if path is None or not path.is_file():
        raise SystemExit(f"找不到 {'/'.join(parts)}：请先 pip install {package}（只用它的 wheel 里自带的照片）。")
    return path


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _polygon(shape: tuple[int, int], xy: list[tuple[int, int]]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    rr, cc = draw.polygon([p[1] for p in xy], [p[0] for p in xy], shape)
    m[rr, cc] = True
    return m


def _cut(img: np.ndarray, mask: np.ndarray, radius: float = 1.5, pad: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``img``/``mask`` to the mask's bounding box (+pad) and feather the mask."""
    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + 1 + pad, mask.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + 1 + pad, mask.shape[1])
    return img[y0:y1, x0:x1], demo._feather(mask[y0:y1, x0:x1], radius)


# ------------------------------------------------------------------ 摩托车: the Middlebury "Motorcycle" stereo pair
def _motorcycle_masks() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, left mask, right mask). The motorcycle is what stands in front of the wall and above the floor:
    disparity > 38 px and > 1.5 px above a plane fitted to the floor, largest component, closed, holes filled.
    The right view's mask: those pixels moved by their ground-truth disparity (x_right = x_left - d), then the same."""
    left, right, disp = skdata.stereo_motorcycle()
    d = np.where(np.isfinite(disp), disp, 0.0)
    h, w = d.shape
    yy, xx = np.mgrid[0:h, 0:w]
    floor = np.zeros((h, w), dtype=bool)
    floor[455:, :], floor[330:, :90], floor[330:, 700:] = True, True, True
    a = np.c_[yy[floor], xx[floor], np.ones(int(floor.sum()))]
    coef = np.linalg.lstsq(a, d[floor], rcond=None)[0]
    above_floor = d - (coef[0] * yy + coef[1] * xx + coef[2]) > 1.5
    seen = above_floor & (d > 38)
    lab, _ = ndi.label(seen)
    seen = lab == 1 + int(np.argmax(np.bincount(lab[seen])[1:]))  # largest component, holes not filled yet
    m_left = demo._largest(ndi.binary_closing(seen, iterations=3))
    ys, xs = np.nonzero(seen)  # only pixels whose own disparity is measured
    xr = np.round(xs - d[ys, xs]).astype(int)
    keep = (xr >= 0) & (xr < w)
    m_right = np.zeros_like(m_left)
    m_right[ys[keep], xr[keep]] = True
    m_right = demo._largest(ndi.binary_closing(m_right, iterations=3))
    return left, right, m_left, m_right


# ------------------------------------------------------------------ 人: outlines (x, y) traced by hand
_GRACE_HOPPER = [  # matplotlib sample_data/grace_hopper.jpg (512x600): head, cap and shoulders
    (200, 33), (240, 25), (320, 53), (360, 80), (370, 107), (370, 153), (377, 187), (373, 220), (363, 280),
    (347, 307), (330, 320), (373, 347), (467, 387), (500, 427), (511, 467), (511, 599), (27, 599), (30, 413),
    (73, 380), (140, 353), (197, 327), (167, 287), (157, 220), (153, 180), (150, 133), (157, 100), (177, 60),
]  # fmt: skip
_ASTRONAUT = [  # skimage astronaut.png (512x512): Eileen Collins, without the helmet she holds
    (173, 33), (220, 17), (287, 53), (300, 80), (298, 103), (287, 123), (277, 130), (267, 150), (262, 168),
    (270, 176), (292, 193), (303, 217), (307, 237), (333, 253), (353, 280), (363, 320), (360, 343), (320, 373),
    (293, 413), (280, 467), (277, 511), (27, 511), (20, 400), (30, 320), (47, 280), (73, 253), (105, 225),
    (113, 190), (123, 177), (140, 160), (170, 148), (185, 147), (180, 130), (172, 127), (158, 110), (153, 80),
    (157, 63),
]  # fmt: skip
_BUS_LEFT = [  # ultralytics assets/bus.jpg (810x1080): the man in the beige coat
    (107, 407), (125, 402), (159, 405), (157, 433), (150, 460), (177, 487), (197, 540), (200, 560), (199, 600),
    (193, 627), (190, 680), (181, 700), (180, 705), (188, 784), (200, 847), (207, 855), (240, 876), (223, 897),
    (178, 897), (178, 859), (173, 826), (157, 763), (146, 701), (98, 701), (98, 743), (88, 805), (84, 855),
    (86, 863), (107, 884), (102, 897), (57, 892), (52, 880), (57, 859), (59, 847), (61, 805), (65, 763), (71, 701),
    (60, 693), (59, 580), (63, 507), (80, 487), (103, 467), (103, 447), (101, 420),
]  # fmt: skip
_BUS_MIDDLE = [  # ultralytics assets/bus.jpg: the man in the dark coat and sunglasses
    (263, 417), (283, 410), (300, 417), (307, 447), (297, 470), (320, 487), (337, 513), (343, 553), (340, 600),
    (339, 693), (340, 705), (332, 730), (307, 755), (290, 790), (298, 805), (298, 820), (292, 845), (290, 853),
    (273, 855), (261, 847), (257, 826), (255, 817), (248, 763), (244, 705), (223, 700), (227, 647), (230, 580),
    (233, 547), (243, 507), (260, 480), (263, 453),
]  # fmt: skip


def sources() -> dict[str, Path]:
    """The photos used that are not loaded through ``skimage.data``."""
    return {
        "grace_hopper": _wheel_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"),
        "bus": _wheel_file("ultralytics", "assets", "bus.jpg"),
    }


def templates(src: dict[str, Path] | None = None) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Per class: a list of (RGB uint8 image, alpha float mask) cut-outs."""
    src = src or sources()
    left, right, m_left, m_right = _motorcycle_masks()
    out: dict[int, list] = {0: [_cut(left, m_left), _cut(right, m_right)], 1: []}
    hopper, bus, astro = _rgb(src["grace_hopper"]), _rgb(src["bus"]), skdata.astronaut()
    for img, outline in ((hopper, _GRACE_HOPPER), (astro, _ASTRONAUT), (bus, _BUS_LEFT), (bus, _BUS_MIDDLE)):
        out[1].append(_cut(img, _polygon(img.shape[:2], outline), radius=2))
    return out


def backgrounds(src: dict[str, Path] | None = None) -> list[np.ndarray]:
    """Real photos without motorcycles or people (grey ones get a colour tint at sampling time)."""
    src = src or sources()
    bus, hopper = _rgb(src["bus"]), _rgb(src["grace_hopper"])
    left = skdata.stereo_motorcycle()[0]
    gray = [skdata.moon(), skdata.text()]
    return (
        [np.repeat(g[..., None], 3, axis=2) for g in gray]
        + [
            bus[0:230, 0:810],  # façade with balconies and trees
            bus[915:1080, 0:810],  # pavement in sun and shade
            left[0:95, 560:741],  # garage shelves
            hopper[0:250, 385:512],  # blue studio backdrop
            skdata.immunohistochemistry(),  # stained tissue
            skdata.retina()[350:1050, 350:1050],  # fundus photo, vessels
        ]
    )


def build(out: Path, n_train: int, n_valid: int, seed: int) -> None:
    src = sources()
    demo.build(
        out, n_train, n_valid, seed, templates=templates(src), bgs=backgrounds(src), class_names=CLASS_NAMES,
        prefix="photo2", header=HEADER,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("outputs") / "photo2_yolo")
    ap.add_argument("--train", type=int, default=160)
    ap.add_argument("--valid", type=int, default=48)
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args(argv)
    build(args.out, args.train, args.valid, args.seed)
    print(f"已生成 {args.out}：train {args.train} 张，valid {args.valid} 张，类别 {CLASS_NAMES}")


if __name__ == "__main__":
    main()
