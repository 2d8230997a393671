"""COCO dataset, image loading, layout discovery, collate and loader."""

import json
import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from deimv2.data import (
    BatchImageCollateFunction,
    CocoDetection,
    batch_image_collate_fn,
    build_dataloader,
    build_train_transforms,
    build_val_transforms,
    dataset_class_names,
    dataset_num_classes,
    find_dataset,
    generate_scales,
    image_size,
    load_image,
)
from deimv2.errors import DatasetError

torch.set_num_threads(1)


def make_coco(folder, cat_ids=(1, 2), n_images=4, boxes=None, extra_anns=(), negatives=(), write_images=True):
    """Tiny COCO set: image i is 64x48 with one box per entry of boxes[i] (default one box)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        name = f"图片 {i}.jpg"
        if write_images:
            Image.new("RGB", (64, 48), (40 * i, 80, 120)).save(folder / name)
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 48})
        if i in negatives:
            continue
        for j, box in enumerate((boxes or {}).get(i, [[4, 6, 20, 10]])):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat_ids[(i + j) % len(cat_ids)],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    anns += [dict(a, id=len(anns) + k + 1) for k, a in enumerate(extra_anns)]
    cats = [{"id": c, "name": f"类{k}"} for k, c in enumerate(cat_ids)]
    ann_file = folder / "_annotations.coco.json"
    ann_file.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}, ensure_ascii=False), encoding="utf-8"
    )
    return folder, ann_file


@pytest.fixture
def root(tmp_path):
    return tmp_path / "我的 数据集"


# ------------------------------------------------------------------------------ dataset
def test_zero_and_one_based_categories_give_same_labels(root):
    ds0 = CocoDetection(*make_coco(root / "a", cat_ids=(0, 1)))
    ds1 = CocoDetection(*make_coco(root / "b", cat_ids=(1, 2)))
    labels0 = [ds0.load_item(i)[1]["labels"].tolist() for i in range(len(ds0))]
    labels1 = [ds1.load_item(i)[1]["labels"].tolist() for i in range(len(ds1))]
    assert labels0 == labels1 == [[0], [1], [0], [1]]
    assert ds0.category_names == ds1.category_names == ["类0", "类1"]
    assert ds1.label_to_category_id == [1, 2] and ds0.label_to_category_id == [0, 1]
    assert ds1.category_to_label == {1: 0, 2: 1}
    assert ds1.num_classes == 2


def test_sparse_category_ids_sorted(root):
    folder, ann = make_coco(root, cat_ids=(30, 7, 12))
    ds = CocoDetection(folder, ann)
    assert ds.label_to_category_id == [7, 12, 30]
    assert ds.category_names == ["类1", "类2", "类0"]
    assert dataset_num_classes(ann) == 3 and dataset_class_names(ann) == ["类1", "类2", "类0"]


def test_target_format(root):
    ds = CocoDetection(*make_coco(root))
    img, t = ds[1]
    assert img.mode == "RGB" and img.size == (64, 48)
    assert t["boxes"].format.name == "XYXY" and t["boxes"].canvas_size == (48, 64)
    assert t["boxes"].as_subclass(torch.Tensor).tolist() == [[4.0, 6.0, 24.0, 16.0]]
    assert t["image_id"].tolist() == [2] and t["idx"].tolist() == [1]
    assert t["orig_size"].tolist() == [64, 48] and t["area"].tolist() == [200.0] and t["iscrowd"].tolist() == [0]


def test_negatives_kept(root):
    ds = CocoDetection(*make_coco(root, negatives=(0, 2)))
    assert len(ds) == 4
    _, t = ds[0]
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)


def test_unknown_category_raises(root):
    bad = {"image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
    folder, ann = make_coco(root, extra_anns=[bad])
    with pytest.raises(DatasetError) as err:
        CocoDetection(folder, ann)
    assert "_annotations.coco.json" in str(err.value) and "9" in str(err.value)


def test_zero_size_and_negative_boxes_are_errors_named_by_annotation_id(root):
    folder, ann = make_coco(root, boxes={0: [[4, 6, 0, 10], [4, 6, 20, 10]], 1: [[1, 1, 5, -2]]})
    with pytest.raises(DatasetError) as err:  # policy of deimv2.data.validate (docs/errors.md)
        CocoDetection(folder, ann)
    msg = str(err.value)
    assert "2 个无效的框" in msg and "_annotations.coco.json" in msg and "标注 id=" in msg


def test_crowd_excluded_and_boxes_clamped(root):
    folder, ann = make_coco(
        root,
        boxes={0: [[50, 40, 30, 30]]},
        extra_anns=[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "iscrowd": 1}],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = CocoDetection(folder, ann)
    _, t = ds[0]
    assert t["boxes"].as_subclass(torch.Tensor).tolist() == [[50.0, 40.0, 64.0, 48.0]]


def test_missing_images_listed(root):
    folder, ann = make_coco(root)
    (folder / "图片 1.jpg").unlink()
    (folder / "图片 3.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        CocoDetection(folder, ann)
    msg = str(err.value)
    assert "2 张图片" in msg and "图片 1.jpg" in msg and "图片 3.jpg" in msg and "图片 0.jpg" not in msg


def test_bad_json_and_remap(root):
    bad = root / "bad.json"
    root.mkdir(parents=True)
    bad.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(DatasetError, match="JSON"):
        CocoDetection(root, bad)
    folder, ann = make_coco(root / "coco", cat_ids=(1, 90))
    ds = CocoDetection(folder, ann, remap_mscoco_category=True)
    assert ds.num_classes == 80 and ds.label_to_category_id[79] == 90
    assert [ds[i][1]["labels"].item() for i in range(2)] == [0, 79]
    folder, ann = make_coco(root / "custom", cat_ids=(1, 12))  # 12 is not a COCO-80 id
    with pytest.raises(DatasetError, match="remap_mscoco_category"):
        CocoDetection(folder, ann, remap_mscoco_category=True)


def test_corrupt_image_raises_naming_file(root):
    folder, ann = make_coco(root)
    data = (folder / "图片 2.jpg").read_bytes()
    (folder / "图片 2.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    (folder / "图片 3.jpg").write_bytes(b"not an image at all")
    ds = CocoDetection(folder, ann)
    for idx, name in ((2, "图片 2.jpg"), (3, "图片 3.jpg")):
        with pytest.raises(DatasetError, match=name):
            ds[idx]
    with pytest.raises(DatasetError, match="图片 3.jpg"):
        image_size(folder / "图片 3.jpg")


# ------------------------------------------------------------------------------ image modes
def test_image_modes_load_as_rgb(tmp_path):
    gray = tmp_path / "灰度.png"
    Image.new("L", (5, 3), 77).save(gray)
    assert load_image(gray).getpixel((0, 0)) == (77, 77, 77)

    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (5, 3), (10, 20, 30, 0)).save(rgba)  # alpha is dropped, RGB kept
    out = load_image(rgba)
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (10, 20, 30)

    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.info["transparency"] = 1
    pal.save(tmp_path / "pal.png", transparency=1)
    out = load_image(tmp_path / "pal.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (200, 100, 50)

    deep = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "16bit.png")
    assert Image.open(tmp_path / "16bit.png").mode.startswith("I")
    out = load_image(tmp_path / "16bit.png")
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]

    Image.new("CMYK", (3, 2), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    r, g, b = load_image(tmp_path / "cmyk.jpg").getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = tmp_path / "旋转 图.jpg"
    img.save(path, exif=exif, quality=95)
    assert image_size(path) == (20, 40)
    out = load_image(path)
    assert out.size == (20, 40)
    assert out.getpixel((10, 2))[2] > 200  # the left strip is now at the top
    # annotation file recorded the stored (unrotated) size -> annotations match stored pixels
    assert load_image(path, expected_size=(40, 20)).size == (40, 20)
    assert load_image(path, expected_size=(20, 40)).size == (20, 40)


# ------------------------------------------------------------------------------ layouts
def test_find_dataset_layouts(tmp_path):
    seed = tmp_path / "seed 布局"
    make_coco(seed / "train", write_images=False)
    make_coco(seed / "valid", write_images=False)
    found = find_dataset(seed)
    assert set(found) == {"train", "val"}
    assert found["train"] == (seed / "train", seed / "train" / "_annotations.coco.json")

    classic = tmp_path / "classic"
    (classic / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (classic / split).mkdir()
        (classic / "annotations" / f"instances_{split}.json").write_text("{}", encoding="utf-8")
    found = find_dataset(classic)
    assert found["train"] == (classic / "train2017", classic / "annotations" / "instances_train2017.json")
    assert found["val"][0] == classic / "val2017" and "test" not in found

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as err:
        find_dataset(tmp_path / "empty")
    assert "_annotations.coco.json" in str(err.value) and "instances_train" in str(err.value)


# ------------------------------------------------------------------------------ collate
def _items(n=4, size=32, boxes_per=1):
    items = []
    for i in range(n):
        boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5]] * boxes_per) * (i + 1) / n
        target = {
            "boxes": boxes,
            "labels": torch.full((boxes_per,), i),
            "area": torch.full((boxes_per,), 500.0),
            "iscrowd": torch.zeros(boxes_per, dtype=torch.int64),
            "image_id": torch.tensor([i]),
        }
        items.append((torch.full((3, size, size), float(i)), target))
    return items


def test_generate_scales_official_list():
    assert generate_scales(640, 3) == [480, 512, 544, 576, 608, 640, 640, 640, 800, 768, 736, 704, 672]
    assert generate_scales(320, 1) == [224, 256, 288, 320, 384, 352, 320]


def test_multiscale_until_stop_epoch():
    col = BatchImageCollateFunction(stop_epoch=5, base_size=640, base_size_repeat=3)
    random.seed(0)
    seen = set()
    col.set_epoch(4)
    for _ in range(30):
        images, _ = col(_items(2, size=64))
        assert images.shape[-1] == images.shape[-2]
        seen.add(images.shape[-1])
    assert seen <= set(generate_scales(640, 3)) and len(seen) > 3
    col.set_epoch(5)
    assert col(_items(2, size=64))[0].shape[-1] == 64
    off = BatchImageCollateFunction(stop_epoch=5, base_size=640, base_size_repeat=3, multiscale=False)
    off.set_epoch(0)
    assert off(_items(2, size=64))[0].shape[-1] == 64
    assert BatchImageCollateFunction(stop_epoch=5, base_size_repeat=None)(_items(2, size=64))[0].shape[-1] == 64


def test_mixup_concatenates_targets():
    col = BatchImageCollateFunction(stop_epoch=0, mixup_prob=1.0, mixup_epochs=[2, 4])
    col.set_epoch(2)
    random.seed(3)
    items = _items(3, size=8, boxes_per=2)
    images, targets = col(items)
    for i, t in enumerate(targets):
        prev = (i - 1) % 3
        beta = t["mixup"][0].item()
        assert 0.45 <= beta <= 0.55
        assert t["labels"].tolist() == [i, i, prev, prev]
        assert torch.equal(t["boxes"], torch.cat([items[i][1]["boxes"], items[prev][1]["boxes"]]))
        assert torch.allclose(t["mixup"], torch.tensor([beta, beta, 1 - beta, 1 - beta]))
        assert torch.allclose(images[i], torch.full((3, 8, 8), beta * i + (1 - beta) * prev), atol=1e-5)
        assert len(t["area"]) == len(t["iscrowd"]) == 4
    col.set_epoch(4)  # outside mixup_epochs
    _, targets = col(_items(3, size=8))
    assert "mixup" not in targets[0] and len(targets[0]["labels"]) == 1


def test_copyblend_adds_objects():
    col = BatchImageCollateFunction(
        stop_epoch=0, copyblend_prob=1.0, copyblend_epochs=[0, 9], num_objects=2, area_threshold=100, with_expand=True
    )
    col.set_epoch(1)
    random.seed(0)
    images, targets = col(_items(3, size=32))
    for t in targets:
        n = len(t["labels"])
        assert n == 3 and len(t["boxes"]) == len(t["area"]) == len(t["mixup"]) == n
        assert (t["boxes"] >= 0).all() and (t["boxes"] <= 1).all()


# ------------------------------------------------------------------------------ loader
def test_loader_iteration_normalized_boxes(root):
    folder, ann = make_coco(root, n_images=5, negatives=(4,), boxes={1: [[4, 6, 20, 10], [30, 20, 30, 25]]})
    ds = CocoDetection(folder, ann, transforms=build_train_transforms(64, 32, 1, True, [1, 2, 3], 1.0))
    col = BatchImageCollateFunction(stop_epoch=2, base_size=64, base_size_repeat=1)
    loader = build_dataloader(
        ds, batch_size=2, shuffle=True, num_workers=0, collate_fn=col, drop_last=False, distributed=False, seed=0
    )
    for epoch in range(4):
        loader.set_epoch(epoch)
        assert ds.epoch == epoch and col.epoch == epoch
        total = 0
        for images, targets in loader:
            assert images.dtype == torch.float32 and images.shape[:2] == (len(targets), 3)
            for t in targets:
                assert (t["boxes"] >= 0).all() and (t["boxes"] <= 1).all() and t["boxes"].shape[1] == 4
                assert type(t["boxes"]) is torch.Tensor
            total += len(targets)
        assert total == 5

    val = CocoDetection(folder, ann, transforms=build_val_transforms(32, normalize=False))
    images, targets = next(iter(build_dataloader(val, 3, False, 0, batch_image_collate_fn, False, False, 0)))
    assert images.shape == (3, 3, 32, 32) and [t["image_id"].item() for t in targets] == [1, 2, 3]
    assert targets[1]["orig_size"].tolist() == [64, 48]


class _EpochProbeCollate(BatchImageCollateFunction):
    def __call__(self, items):
        return self.epoch, [x[1]["epoch"] for x in items]


class _EpochProbeDataset(CocoDetection):
    def __getitem__(self, idx):
        return None, {"epoch": self.epoch}


def test_workers_see_new_epoch(root):
    folder, ann = make_coco(root, n_images=2)
    ds = _EpochProbeDataset(folder, ann, transforms=build_val_transforms(32, normalize=False))
    loader = build_dataloader(ds, 2, False, 1, _EpochProbeCollate(), False, False, 0)
    assert not loader.persistent_workers  # restarted each epoch: seeds come from the saved generator alone
    for epoch in (0, 3, 7):
        loader.set_epoch(epoch)
        assert list(loader) == [(epoch, [epoch, epoch])]
