"""YOLO <-> COCO conversion: layouts, hand-checked boxes, round trips, errors, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from deimv2.data.convert import coco_to_yolo, yolo_to_coco
from deimv2.data.demo import demo_dataset_dir, prepare_demo_coco
from deimv2.data.images import image_size
from deimv2.errors import DatasetError

NAMES = ["猫", "咖啡杯", "硬币"]
LABELS = {  # image name -> (size w, h), label text
    "a.jpg": ((100, 50), "0 0.5 0.5 0.2 0.4\n2 0.1 0.9 0.1 0.2\n"),
    "b.png": ((64, 64), "1 0.25 0.75 0.5 0.5\n"),
    "c.jpg": ((80, 60), ""),  # empty label file -> negative
    "d.jpg": ((40, 40), None),  # no label file -> negative
}


def _img(path: Path, size, exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, (120, 80, 40))
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, exif=exif)
    else:
        im.save(path)


def _fill(img_dir: Path, lbl_dir: Path, prefix=""):
    for name, (size, text) in LABELS.items():
        _img(img_dir / (prefix + name), size)
        if text is not None:
            lbl_dir.mkdir(parents=True, exist_ok=True)
            (lbl_dir / (prefix + Path(name).stem + ".txt")).write_text(text, encoding="utf-8")


def make_roboflow(root: Path) -> Path:
    for s in ("train", "valid"):
        _fill(root / s / "images", root / s / "labels", prefix=s)
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {"train": "../train/images", "val": "../valid/images", "nc": 3, "names": NAMES}, allow_unicode=True
        ),
        encoding="utf-8",
    )
    return root


def make_ultralytics(root: Path) -> Path:
    for s in ("train", "val"):
        _fill(root / "images" / s, root / "labels" / s, prefix=s)
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(NAMES))},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    return root


def make_flat(root: Path) -> Path:
    _fill(root, root)
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return root


def _read_yolo(root: Path) -> dict:
    out = {}
    for txt in sorted(root.rglob("*.txt")):
        if txt.name != "classes.txt":
            rows = [list(map(float, ln.split())) for ln in txt.read_text(encoding="utf-8").splitlines() if ln.strip()]
            out[txt.stem] = sorted(rows)
    return out


@pytest.mark.parametrize("maker", [make_roboflow, make_ultralytics, make_flat])
def test_round_trip_each_layout(tmp_path, maker):
    src = maker(tmp_path / "中文 数据集" / "src")
    rep = yolo_to_coco(src, tmp_path / "coco out")
    assert rep.class_names == NAMES
    back = coco_to_yolo(tmp_path / "coco out", tmp_path / "yolo back")
    assert back.class_names == NAMES
    a, b = _read_yolo(src), _read_yolo(tmp_path / "yolo back")
    a = {k: v for k, v in a.items() if v}
    b = {k: v for k, v in b.items() if v}
    assert a.keys() == b.keys()
    for k in a:
        assert len(a[k]) == len(b[k])
        for ra, rb in zip(a[k], b[k]):
            assert ra[0] == rb[0] and max(abs(x - y) for x, y in zip(ra[1:], rb[1:])) < 1e-4
    cfg = yaml.safe_load((tmp_path / "yolo back" / "data.yaml").read_text(encoding="utf-8"))
    assert cfg["names"] == NAMES and cfg["nc"] == 3


def test_hand_checked_coco_content(tmp_path):
    src = make_flat(tmp_path / "flat")
    rep = yolo_to_coco(src, tmp_path / "out")
    assert set(rep.splits) == {"train"}
    c = rep.splits["train"]
    assert (c.images, c.boxes, c.negatives) == (4, 3, 2)
    text = (tmp_path / "out" / "train" / "_annotations.coco.json").read_text(encoding="utf-8")
    assert "咖啡杯" in text  # ensure_ascii=False
    coco = json.loads(text)
    assert [c["id"] for c in coco["categories"]] == [0, 1, 2]
    imgs = {i["file_name"]: i for i in coco["images"]}
    assert (imgs["a.jpg"]["width"], imgs["a.jpg"]["height"]) == (100, 50)
    anns = [a for a in coco["annotations"] if a["image_id"] == imgs["a.jpg"]["id"]]
    # 0 0.5 0.5 0.2 0.4 on 100x50 -> x 40..60, y 15..35
    assert anns[0]["bbox"] == [40.0, 15.0, 20.0, 20.0] and anns[0]["area"] == 400.0 and anns[0]["category_id"] == 0
    # 2 0.1 0.9 0.1 0.2 -> x 5..15, y 40..50
    assert anns[1]["bbox"] == [5.0, 40.0, 10.0, 10.0] and anns[1]["category_id"] == 2
    assert all(a["iscrowd"] == 0 and a["id"] >= 1 for a in coco["annotations"])
    assert (tmp_path / "out" / "train" / "a.jpg").is_file() and (src / "a.jpg").is_file()  # copied, not moved


def test_one_based_clip_polygon_and_exif(tmp_path):
    src = tmp_path / "s"
    _img(src / "r.jpg", (40, 20), exif_orientation=6)  # stored 40x20, displayed 20x40
    assert image_size(src / "r.jpg") == (20, 40)
    # box sticking out on the right; a triangle polygon
    (src / "r.txt").write_text("1 0.9 0.5 0.4 0.5\n0 0.1 0.1 0.5 0.2 0.3 0.6\n", encoding="utf-8")
    (src / "classes.txt").write_text("甲\n乙\n", encoding="utf-8")
    rep = yolo_to_coco(src, tmp_path / "o", one_based=True)
    assert rep.category_ids == [1, 2] and rep.splits["train"].polygons == 1
    coco = json.loads((tmp_path / "o" / "train" / "_annotations.coco.json").read_text(encoding="utf-8"))
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (20, 40)
    a0, a1 = coco["annotations"]
    # x 0.7..1.1 -> clipped to 0.7..1.0 of 20 px = 14..20; y 0.25..0.75 of 40 = 10..30
    assert a0["category_id"] == 2 and a0["bbox"] == [14.0, 10.0, 6.0, 20.0]
    # polygon bbox: x 0.1..0.5 -> 2..10 px, y 0.1..0.6 -> 4..24 px
    assert a1["category_id"] == 1 and a1["bbox"] == [2.0, 4.0, 8.0, 20.0]
    assert a1["segmentation"] == [[2.0, 4.0, 10.0, 8.0, 6.0, 24.0]]


@pytest.mark.parametrize(
    "line,needle",
    [
        ("0 0.5 0.5 0.2", "字段个数"),
        ("x 0.5 0.5 0.2 0.2", "非数字"),
        ("3 0.5 0.5 0.2 0.2", "超出范围"),
        ("-1 0.5 0.5 0.2 0.2", "超出范围"),
    ],
)
def test_bad_line_raises_and_writes_nothing(tmp_path, line, needle):
    src = make_flat(tmp_path / "f")
    (src / "b.txt").write_text("1 0.25 0.75 0.5 0.5\n" + line + "\n", encoding="utf-8")
    dst = tmp_path / "out"
    with pytest.raises(DatasetError) as e:
        yolo_to_coco(src, dst)
    msg = str(e.value)
    assert "b.txt" in msg and "第 2 行" in msg and needle in msg
    assert not dst.exists() and [p.name for p in tmp_path.iterdir()] == ["f"]
    rep = yolo_to_coco(src, dst, skip_invalid=True)
    assert len(rep.skipped) == 1 and "b.txt" in rep.skipped[0] and rep.splits["train"].boxes == 3


def test_split_ratio_seed_overwrite_and_link(tmp_path):
    src = tmp_path / "many"
    for i in range(10):
        _img(src / "images" / f"{i}.jpg", (16, 16))
        (src / "labels").mkdir(exist_ok=True)
        (src / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.5 0.5\n", encoding="utf-8")
    (src / "classes.txt").write_text("物体\n", encoding="utf-8")
    r1 = yolo_to_coco(src, tmp_path / "a", split_ratio=0.3, seed=1)
    assert (r1.splits["train"].images, r1.splits["valid"].images) == (7, 3)
    with pytest.raises(DatasetError, match="overwrite"):
        yolo_to_coco(src, tmp_path / "a", split_ratio=0.3, seed=1)
    r2 = yolo_to_coco(src, tmp_path / "a", split_ratio=0.3, seed=1, overwrite=True, link=True)
    assert r2.splits["valid"].images == 3

    def names(d):
        return sorted(
            i["file_name"]
            for i in json.loads(  # noqa: E731
                (d / "valid" / "_annotations.coco.json").read_text(encoding="utf-8")
            )["images"]
        )

    yolo_to_coco(src, tmp_path / "b", split_ratio=0.3, seed=1)
    assert names(tmp_path / "a") == names(tmp_path / "b")
    out = tmp_path / "a" / "train" / sorted((tmp_path / "a" / "train").glob("*.jpg"))[0].name
    assert out.stat().st_ino == (src / "images" / out.name).stat().st_ino or out.is_symlink()
    assert not list(tmp_path.glob(".*tmp*")) and not list(tmp_path.glob(".*old*"))


def test_coco_to_yolo_remaps_sorted_ids_and_roboflow_placeholder(tmp_path):
    d = tmp_path / "coco" / "train"
    _img(d / "x.jpg", (100, 100))
    coco = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 100}],
        "categories": [
            {"id": 0, "name": "my-set", "supercategory": "none"},
            {"id": 7, "name": "狗", "supercategory": "my-set"},
            {"id": 3, "name": "猫", "supercategory": "my-set"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
    }
    (d / "_annotations.coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    rep = coco_to_yolo(tmp_path / "coco", tmp_path / "y")
    assert rep.class_names == ["猫", "狗"] and rep.notes and len(rep.skipped) == 1
    lines = (tmp_path / "y" / "train" / "labels" / "x.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ["1 0.250000 0.400000 0.300000 0.400000", "0 0.050000 0.050000 0.100000 0.100000"]


def test_demo_dataset_prepare_is_idempotent(tmp_path):
    src = demo_dataset_dir()
    assert (src / "data.yaml").is_file()
    dst = prepare_demo_coco(tmp_path / "示例 coco")
    js = dst / "train" / "_annotations.coco.json"
    mtime = js.stat().st_mtime_ns
    assert prepare_demo_coco(dst) == dst and js.stat().st_mtime_ns == mtime
    coco = json.loads(js.read_text(encoding="utf-8"))
    assert len(coco["images"]) >= 150 and len(coco["categories"]) >= 3
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError):
        prepare_demo_coco(tmp_path / "other")
