"""Augmentation ops keep boxes consistent; epoch policy; YAML ops building."""

import random

import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from deimv2.data import (
    Compose,
    ConvertBoxes,
    ConvertPILImage,
    Mosaic,
    RandomHorizontalFlip,
    RandomIoUCrop,
    RandomPhotometricDistort,
    RandomZoomOut,
    Resize,
    SanitizeBoundingBoxes,
    build_train_transforms,
    build_transforms_from_ops,
    build_val_transforms,
)
from deimv2.errors import ConfigError

torch.set_num_threads(1)


def _sample(w=100, h=80, boxes=((10, 20, 30, 50),), fill_boxes=True):
    """Black image with white rectangles at the boxes; target like CocoDetection.load_item."""
    img = Image.new("RGB", (w, h), 0)
    if fill_boxes:
        for x1, y1, x2, y2 in boxes:
            img.paste((255, 255, 255), (x1, y1, x2, y2))
    n = len(boxes)
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(h, w)
        ),
        "labels": torch.arange(n, dtype=torch.int64),
        "image_id": torch.tensor([7]),
        "area": torch.tensor([float((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]),
        "iscrowd": torch.zeros(n, dtype=torch.int64),
        "orig_size": torch.tensor([w, h]),
        "idx": torch.tensor([0]),
    }
    return img, target


def _boxes(t):
    return t["boxes"].as_subclass(torch.Tensor)


def _white_inside(img, boxes, shrink=2):
    """Mean brightness inside each box (shrunk a little against resampling at the edges)."""
    import numpy as np

    arr = np.asarray(img).astype(float).mean(axis=2)
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        region = arr[int(y1) + shrink : int(y2) - shrink, int(x1) + shrink : int(x2) - shrink]
        out.append(region.mean())
    return out


def test_flip_resize_convert_hand_values():
    img, t = _sample()
    img, t = RandomHorizontalFlip(p=1.0)(img, t)
    assert _boxes(t).tolist() == [[70.0, 20.0, 90.0, 50.0]]  # x -> 100 - x
    img, t = Resize(size=[40, 50])(img, t)  # (h, w): x * 0.5, y * 0.5
    assert img.size == (50, 40)
    assert _boxes(t).tolist() == [[35.0, 10.0, 45.0, 25.0]]
    img, t = ConvertPILImage(dtype="float32", scale=True)(img, t)
    assert isinstance(img, tv_tensors.Image) and img.dtype == torch.float32 and img.shape == (3, 40, 50)
    assert 0.0 <= img.min() and img.max() <= 1.0
    _, t = ConvertBoxes(fmt="cxcywh", normalize=True)(img, t)
    # cx = 40/50, cy = 17.5/40, w = 10/50, h = 15/40
    assert torch.allclose(t["boxes"], torch.tensor([[0.8, 0.4375, 0.2, 0.375]]))
    assert type(t["boxes"]) is torch.Tensor


def test_convert_pil_image_exact_scale():
    img = Image.new("RGB", (2, 1), (51, 102, 255))
    out = ConvertPILImage()(img)
    assert torch.equal(out[:, 0, 0], torch.tensor([51, 102, 255]) / 255.0)
    assert ConvertPILImage(dtype="uint8", scale=False)(img).dtype == torch.uint8


def test_sanitize_keeps_per_object_entries_aligned():
    img, t = _sample(boxes=((0, 0, 5, 5), (10, 10, 40, 40), (50, 50, 52, 70)))
    _, out = SanitizeBoundingBoxes(min_size=8)(img, t)
    assert _boxes(out).tolist() == [[10.0, 10.0, 40.0, 40.0]]
    assert out["labels"].tolist() == [1]
    assert out["area"].tolist() == [900.0]
    assert out["iscrowd"].tolist() == [0]
    assert out["image_id"].tolist() == [7]  # not a per-object entry


@pytest.mark.parametrize("op", [RandomZoomOut(fill=0, p=1.0), RandomIoUCrop(p=1.0)])
def test_geometric_ops_move_boxes_with_pixels(op):
    torch.manual_seed(0)
    for _ in range(5):
        img, t = _sample(w=120, h=90, boxes=((10, 20, 40, 60), (70, 30, 110, 80)))
        img, t = op(img, t)
        img, t = SanitizeBoundingBoxes(min_size=6)(img, t)
        for v in _white_inside(img, _boxes(t)):
            assert v > 250


def test_iou_crop_probability_zero_is_identity():
    img, t = _sample()
    out_img, out_t = RandomIoUCrop(p=0.0)(img, t)
    assert out_img is img and out_t is t


def test_mosaic_layout_hand_checked():
    # identity affine: rotation 0, no translation, scale 1 -> boxes are the grid offsets
    mosaic = Mosaic(
        output_size=20,
        rotation_range=0,
        translation_range=(0, 0),
        scaling_range=(1, 1),
        fill_value=0,
        use_cache=True,
        max_cached_images=50,
    )
    img, t = _sample(w=40, h=20, boxes=((2, 4, 12, 14),))  # shorter side already 20
    out_img, out_t, ds = mosaic(img, t, None)
    assert ds is None
    assert out_img.size == (80, 40)  # 2x2 cells of 40x20; first call: the cache holds only this image
    expected = [[2, 4, 12, 14], [42, 4, 52, 14], [2, 24, 12, 34], [42, 24, 52, 34]]
    assert _boxes(out_t).tolist() == expected
    assert out_t["labels"].tolist() == [0, 0, 0, 0] and len(out_t["area"]) == 4
    assert out_t["image_id"].tolist() == [7] and out_t["orig_size"].tolist() == [40, 20]
    assert min(_white_inside(out_img, _boxes(out_t), shrink=1)) > 250


def test_mosaic_resizes_shorter_side_and_caps_cache():
    mosaic = Mosaic(output_size=16, rotation_range=10, fill_value=0, max_cached_images=3)
    random.seed(0)
    torch.manual_seed(0)
    for k in range(6):
        img, t = _sample(w=64 + 8 * k, h=32, boxes=((4, 4, 30, 28),))
        out_img, out_t, _ = mosaic(img, t, None)
        assert out_img.size[1] == 32  # 2 x 16 (shorter side of every image is 16)
        assert len(mosaic.mosaic_cache) == min(k + 1, 3)
        assert out_t["boxes"].canvas_size == (out_img.size[1], out_img.size[0])


class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, *inputs):
        self.calls += 1
        return inputs if len(inputs) > 1 else inputs[0]


def _policy_pipeline(mosaic_prob, epochs=(2, 4, 6)):
    ops = [
        Mosaic(output_size=20, rotation_range=0, translation_range=(0, 0), scaling_range=(1, 1), fill_value=0),
        RandomPhotometricDistort(p=1.0),
        RandomZoomOut(fill=0, p=1.0),
        RandomIoUCrop(p=1.0),
        RandomHorizontalFlip(p=1.0),
        Resize(size=[32, 32]),
    ]
    return Compose(
        ops,
        policy={
            "name": "stop_epoch",
            "epoch": list(epochs),
            "ops": ["Mosaic", "RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop"],
        },
        mosaic_prob=mosaic_prob,
    )


def _names(ops):
    return [type(o).__name__ for o in ops]


def test_policy_stages_by_epoch():
    comp = _policy_pipeline(mosaic_prob=1.0)
    assert comp.epoch == -1
    stages = {
        -1: ["RandomHorizontalFlip", "Resize"],
        0: ["RandomHorizontalFlip", "Resize"],
        1: ["RandomHorizontalFlip", "Resize"],
        2: ["Mosaic", "RandomPhotometricDistort", "RandomHorizontalFlip", "Resize"],
        3: ["Mosaic", "RandomPhotometricDistort", "RandomHorizontalFlip", "Resize"],
        4: ["RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop", "RandomHorizontalFlip", "Resize"],
        5: ["RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop", "RandomHorizontalFlip", "Resize"],
        6: ["RandomHorizontalFlip", "Resize"],
        9: ["RandomHorizontalFlip", "Resize"],
    }
    for epoch, expected in stages.items():
        comp.set_epoch(epoch)
        assert _names(comp.active_ops()) == expected, epoch
    # without the Mosaic coin, the mosaic stage runs ZoomOut/IoUCrop instead
    comp = _policy_pipeline(mosaic_prob=0.0)
    comp.set_epoch(3)
    assert _names(comp.active_ops()) == [
        "RandomPhotometricDistort",
        "RandomZoomOut",
        "RandomIoUCrop",
        "RandomHorizontalFlip",
        "Resize",
    ]
    comp = _policy_pipeline(mosaic_prob=-0.1)  # official default: never Mosaic
    comp.set_epoch(2)
    assert "Mosaic" not in _names(comp.active_ops())


def test_policy_forward_applies_selected_ops():
    comp = _policy_pipeline(mosaic_prob=1.0)
    img, t = _sample(w=40, h=20, boxes=((2, 4, 12, 14),))
    comp.set_epoch(0)  # flip + resize only: box x -> 40 - x, then scale (32/40, 32/20)
    out_img, out_t = comp(img, t)
    assert out_img.size == (32, 32)
    assert torch.allclose(_boxes(out_t), torch.tensor([[22.4, 6.4, 30.4, 22.4]]))
    comp.set_epoch(2)  # Mosaic (identity affine) -> 4 boxes
    _, out_t = comp(img, t)
    assert len(out_t["labels"]) == 4


def test_policy_single_epoch_and_errors():
    rec_flip = RandomHorizontalFlip(p=1.0)
    comp = Compose(
        [RandomPhotometricDistort(p=1.0), rec_flip],
        policy={"name": "stop_epoch", "epoch": 3, "ops": ["RandomPhotometricDistort"]},
    )
    comp.set_epoch(2)
    assert _names(comp.active_ops()) == ["RandomPhotometricDistort", "RandomHorizontalFlip"]
    comp.set_epoch(3)
    assert _names(comp.active_ops()) == ["RandomHorizontalFlip"]
    with pytest.raises(ConfigError):
        Compose([rec_flip], policy={"epoch": [4, 2, 6]})
    with pytest.raises(ConfigError):
        Compose([rec_flip], policy={"epoch": [1, 2, 3], "ops": ["Resize"]})
    rec = _Recorder()
    Compose([rec])(*_sample())
    assert rec.calls == 1


ATTO_TRAIN_OPS = [
    {
        "type": "Mosaic",
        "output_size": 160,
        "rotation_range": 10,
        "translation_range": [0.1, 0.1],
        "scaling_range": [0.5, 1.5],
        "probability": 1.0,
        "fill_value": 0,
        "use_cache": True,
        "max_cached_images": 50,
        "random_pop": True,
    },
    {"type": "RandomPhotometricDistort", "p": 0.5},
    {"type": "RandomZoomOut", "fill": 0},
    {"type": "RandomIoUCrop", "p": 0.8},
    {"type": "SanitizeBoundingBoxes", "min_size": 12},
    {"type": "RandomHorizontalFlip"},
    {"type": "Resize", "size": [320, 320]},
    {"type": "SanitizeBoundingBoxes", "min_size": 12},
    {"type": "ConvertPILImage", "dtype": "float32", "scale": True},
    {"type": "ConvertBoxes", "fmt": "cxcywh", "normalize": True},
]


def test_build_from_official_ops_matches_build_train():
    policy = {
        "name": "stop_epoch",
        "epoch": [4, 250, 400],
        "ops": ["Mosaic", "RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop"],
    }
    from_yaml = build_transforms_from_ops(ATTO_TRAIN_OPS, policy=policy, mosaic_prob=0.3)
    built = build_train_transforms(320, 160, 12, False, [4, 250, 400], 0.3)
    assert _names(from_yaml.transforms) == _names(built.transforms)
    assert from_yaml.transforms[4].min_size == 12 and from_yaml.transforms[2].fill is not None
    assert from_yaml.mosaic_prob == built.mosaic_prob == 0.3
    assert ATTO_TRAIN_OPS[0]["type"] == "Mosaic"  # input list not modified
    with pytest.raises(ConfigError, match="不支持"):
        build_transforms_from_ops([{"type": "Cutout"}])
    with pytest.raises(ConfigError, match="Resize"):
        build_transforms_from_ops([{"type": "Resize", "sise": 3}])


def test_val_transforms_normalize_hand_values():
    img = Image.new("RGB", (8, 4), (255, 0, 128))
    plain = build_val_transforms(16, normalize=False)(img)
    assert plain.shape == (3, 16, 16)
    norm = build_val_transforms([16, 16], normalize=True)(img)
    expected = torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225])
    assert torch.allclose(norm[:, 5, 5], expected, atol=1e-5)
    dinov3 = build_train_transforms(64, 32, 1, True, [4, 64, 120], 0.5)
    assert "Normalize" in _names(dinov3.transforms)
    assert "Normalize" not in _names(build_train_transforms(64, 32, 1, False, [4, 64, 120], 0.5).transforms)


def test_full_train_pipeline_outputs_normalized_boxes():
    comp = build_train_transforms(64, 32, 1, False, [1, 2, 3], 1.0)
    random.seed(1)
    torch.manual_seed(1)
    for epoch in (0, 1, 2, 3):
        comp.set_epoch(epoch)
        for _ in range(3):
            img, t = _sample(w=90, h=70, boxes=((5, 5, 40, 30), (50, 20, 85, 65)))
            out_img, out_t = comp(img, t)
            assert out_img.shape == (3, 64, 64)
            b = out_t["boxes"]
            assert b.shape[1] == 4 and len(out_t["labels"]) == len(b) == len(out_t["area"])
            assert (b >= 0).all() and (b <= 1).all()
