"""Tiled inference: tile grid, boxes moved back to image pixels, per-class merge, Detector/CLI wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tinydata import calibrated_atto
from PIL import Image

from deimv2.errors import ConfigError
from deimv2.infer.detector import Detector

sv = pytest.importorskip("supervision")
from deimv2.infer.tiling import TILE_IOU, tile_offsets, tiled_detections  # noqa: E402


def test_tile_grid_is_full_size_and_reaches_the_border():
    # 100 x 60 image, 40-px tiles, overlap 0.25 -> 10 px -> stride 30: x starts 0, 30, 60; y starts 0, 20
    off = tile_offsets(100, 60, 40, 0.25)
    assert sorted({int(x) for x in off[:, 0]}) == [0, 30, 60]
    assert sorted({int(y) for y in off[:, 1]}) == [0, 20]
    assert ((off[:, 2] - off[:, 0]) == 40).all() and ((off[:, 3] - off[:, 1]) == 40).all()


def _white_boxes(arrays):
    """Stub model: one box (class 1) around the white pixels of each array, in the array's own pixels."""
    out = []
    for a in arrays:
        ys, xs = np.nonzero(a[..., 0] == 255)
        if len(xs) == 0:
            out.append(sv.Detections.empty())
            continue
        box = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
        out.append(
            sv.Detections(
                xyxy=np.array(box, dtype=np.float32),
                confidence=np.array([0.9], dtype=np.float32),
                class_id=np.array([1]),
                data={"class_name": np.array(["船"], dtype=object)},
            )
        )
    return out


def test_boxes_move_back_and_merge_across_tiles():
    img = np.zeros((60, 100, 3), dtype=np.uint8)
    img[22:28, 32:38] = 255  # a 6x6 square inside the overlaps of 4 tiles (x 30..40, y 20..40)
    calls = []
    det = tiled_detections(img, lambda a: calls.append(len(a)) or _white_boxes(a), tile=40, overlap=0.25)
    assert sum(calls) == 6 + 1  # 6 tiles + the whole image
    assert len(det) == 1  # found in 4 tiles and the whole image: one box after NMS
    np.testing.assert_array_equal(det.xyxy, [[32, 22, 38, 28]])
    assert det.data["class_name"].tolist() == ["船"]
    none = tiled_detections(img, lambda a: calls.append(len(a)) or _white_boxes(a), tile=40, overlap=0.25, iou=1.0)
    assert len(none) == 5  # IoU threshold 1.0 merges nothing: 4 tiles + the whole image


def test_nms_keeps_separate_classes_and_nmm_joins():
    def run(arrays):
        out = []
        for a in arrays:
            if a.shape[:2] == (40, 40):  # tiles: nothing
                out.append(sv.Detections.empty())
                continue
            out.append(
                sv.Detections(
                    xyxy=np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]], dtype=np.float32),
                    confidence=np.array([0.9, 0.8, 0.7], dtype=np.float32),
                    class_id=np.array([0, 0, 1]),
                )
            )
        return out

    img = np.zeros((60, 100, 3), dtype=np.uint8)
    nms = tiled_detections(img, run, tile=40, overlap=0.25)  # IoU of the two class-0 boxes: 90/110 > 0.5
    assert nms.class_id.tolist() == [0, 1] and nms.confidence.tolist() == pytest.approx([0.9, 0.7])
    nmm = tiled_detections(img, run, tile=40, overlap=0.25, merge="nmm")
    assert sorted(nmm.class_id.tolist()) == [0, 1]
    np.testing.assert_allclose(nmm.xyxy[nmm.class_id == 0], [[0, 0, 11, 10]])  # merged box spans both
    assert TILE_IOU == 0.5


@pytest.mark.parametrize("tile,overlap", [(8, 0.2), (640, 0.95), ("大", 0.2)])
def test_bad_tiling_options(tile, overlap):
    with pytest.raises(ConfigError, match="分块"):
        tiled_detections(np.zeros((10, 10, 3), np.uint8), _white_boxes, tile=tile, overlap=overlap)


def test_detector_tiles_find_both_copies():
    torch.set_num_threads(1)
    det = Detector(calibrated_atto(3, size=160), class_names=["飞机", "船", "车辆"], conf=0.0, max_det=300)
    half = np.random.default_rng(2).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    top = det(half, max_det=1)
    scene = np.concatenate([half, half], axis=1)  # 320 x 160: two copies side by side
    tiled = det(scene, tile=160, overlap=0.0, conf=float(top.scores[0]) - 1e-4)
    assert tiled.image_size == (320, 160) and tiled.names == [det.class_names[i] for i in tiled.labels.tolist()]
    for dx in (0, 160):  # the best box of one copy is found in both tiles, moved by the tile's offset
        want = top.boxes[0] + torch.tensor([dx, 0, dx, 0])
        hit = (tiled.labels == top.labels[0]) & (tiled.boxes - want).abs().amax(1).lt(1e-2)
        assert hit.any(), (dx, tiled.boxes[:4], want)
    assert (tiled.scores[:-1] >= tiled.scores[1:]).all()
    plain = det(Image.fromarray(scene), conf=0.0)
    assert plain.image_size == tiled.image_size


def test_cli_predict_tile_flags(tmp_path):
    from helpers.badfiles import random_checkpoint

    from deimv2.cli import main

    ckpt = random_checkpoint(tmp_path / "模型" / "best.pth")
    src = tmp_path / "大 图.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "输出"
    argv = ["predict", "-r", str(ckpt), "-i", str(src), "-o", str(out), "--conf", "0", "--backend", "torch"]
    assert main([*argv, "--tile", "80", "--overlap", "0.25", "--save-json"]) == 0
    assert (out / "大 图.png").is_file() and (out / "predictions.json").is_file()
    assert main([*argv, "--tile", "80", "--overlap", "1.5"]) == 2  # a clear error, nothing run
