"""Detector, Prediction, predict_cli and show_predictions on a small Atto (160x160, random weights)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from helpers.tinydata import calibrated_atto
from PIL import Image

from deimv2.config.loader import load_config
from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint
from deimv2.errors import ConfigError, DatasetError, DEIMv2Error
from deimv2.infer import Detector, Prediction, predict_cli, show_predictions
from deimv2.infer.graph import DetectionGraph

SIZE = 160


@pytest.fixture(scope="module")
def model80():
    torch.set_num_threads(1)
    return calibrated_atto(80)


@pytest.fixture(scope="module")
def detector(model80):
    return Detector(model80, conf=0.0, max_det=300)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (90, 200, 3), dtype=np.uint8)  # w=200, h=90: not square
    path = tmp_path_factory.mktemp("图片 dir") / "测试 图片.png"
    Image.fromarray(arr).save(path)
    return path


def _same(a: Prediction, b: Prediction) -> None:
    assert torch.equal(a.labels, b.labels)
    assert torch.allclose(a.boxes, b.boxes, atol=1e-4)
    assert torch.allclose(a.scores, b.scores, atol=1e-6)


def test_input_types_give_identical_results(detector, image_file):
    by_path = detector(image_file)
    by_str = detector(str(image_file))
    pil = Image.open(image_file)
    by_pil = detector(pil)
    by_np = detector(np.asarray(pil.convert("RGB")))
    arr = np.asarray(pil.convert("RGB"))
    by_float = detector(arr / 255.0)  # the rules of deimv2.data.images.as_rgb_image: float in [0, 1]
    by_tensor = detector(torch.from_numpy(arr.copy()).permute(2, 0, 1))  # torch (3, H, W)
    listed = detector.predict([image_file, pil, arr])
    assert by_path.path == str(image_file) and by_np.path is None
    assert by_path.image_size == (200, 90)
    for p in (by_str, by_pil, by_np, by_float, by_tensor, *listed):
        _same(by_path, p)
    assert len(listed) == 3 and isinstance(listed, list)


def test_boxes_are_in_original_pixels(model80, detector, image_file):
    pred = detector(image_file)
    # by hand: resize (PIL bilinear) -> /255 -> model -> cxcywh in [0,1] -> xyxy * (w, h, w, h)
    img = Image.open(image_file).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        out = model80(x)
    probs = out["pred_logits"].sigmoid()[0]
    q, c = divmod(int(probs.flatten().argmax()), probs.shape[1])
    cx, cy, w, h = out["pred_boxes"][0, q].tolist()
    want = torch.tensor([(cx - w / 2) * 200, (cy - h / 2) * 90, (cx + w / 2) * 200, (cy + h / 2) * 90])
    assert int(pred.labels[0]) == c
    assert torch.allclose(pred.boxes[0], want, atol=1e-3)
    assert pred.scores[0] == pytest.approx(float(probs[q, c]), abs=1e-6)
    assert (pred.boxes[:, 0::2].max() < 200 * 1.5) and (pred.boxes[:, 1::2].max() < 90 * 1.5)


def test_conf_max_det_and_class_filter(detector, image_file):
    full = detector(image_file)
    assert len(full) == 300 and torch.all(full.scores[:-1] >= full.scores[1:])
    conf = float(full.scores[20])
    kept = detector(image_file, conf=conf)
    assert len(kept) == int((full.scores >= conf).sum()) and torch.all(kept.scores >= conf)
    top5 = detector(image_file, max_det=5)
    assert torch.equal(top5.labels, full.labels[:5]) and torch.equal(top5.boxes, full.boxes[:5])
    wanted = sorted(set(full.labels[:10].tolist()))[:2]
    names = [detector.class_names[i] for i in wanted]
    by_name = detector(image_file, classes=names)
    by_id = detector(image_file, classes=wanted)
    mask = torch.isin(full.labels, torch.tensor(wanted))
    assert torch.equal(by_name.labels, full.labels[mask]) and torch.equal(by_id.boxes, full.boxes[mask])
    assert set(by_name.names) == set(names)
    with pytest.raises(ConfigError):
        detector(image_file, classes=["不存在的类别"])


class _Probe(torch.nn.Module):
    """Records the tensor the detector feeds to the model; returns one fixed detection."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x):
        self.seen = x.clone()
        logits = torch.full((x.shape[0], 2, 3), -9.0)
        logits[:, 0, 1] = 9.0
        boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]]).expand(x.shape[0], 2, 4)
        return {"pred_logits": logits, "pred_boxes": boxes}


@pytest.mark.parametrize("variant", ["atto", "s"])
def test_normalisation_only_for_dinov3(variant):
    cfg = load_config(variant, num_classes=3, eval_spatial_size=[4, 6])
    det = Detector(_Probe(), cfg, conf=0.5)
    arr = np.zeros((8, 12, 3), dtype=np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2] = 255, 51, 0  # uniform, so resizing keeps the values
    pred = det(arr)
    seen = det.model.seen
    assert seen.shape == (1, 3, 4, 6)
    raw = torch.tensor([1.0, 0.2, 0.0])
    if variant == "s":
        want = (raw - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    else:
        want = raw
    assert torch.allclose(seen[0, :, 0, 0], want, atol=1e-6)
    # one detection: label 1, box (0.5, 0.5, 0.2, 0.4) of a 12x8 image
    assert pred.labels.tolist() == [1]
    assert torch.allclose(pred.boxes[0], torch.tensor([4.8, 2.4, 7.2, 5.6]), atol=1e-5)


class _First(torch.nn.Module):
    def forward(self, outputs, sizes):
        return outputs


def test_detection_graph_mean_is_buffer_not_state():
    g = DetectionGraph(_Probe(), _First(), [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert "mean" not in g.state_dict()
    g(torch.ones(1, 3, 2, 2), torch.tensor([[2, 2]]))
    assert torch.allclose(g.model.seen, torch.full((1, 3, 2, 2), 2.0))  # (1 - 0.5) / 0.25


def test_prediction_coco_dict_and_plot(detector, image_file):
    p = Prediction(
        boxes=torch.tensor([[10.0, 20.0, 50.0, 80.0]]),
        scores=torch.tensor([0.9]),
        labels=torch.tensor([2]),
        names=["船"],
        category_ids=[7],
        image_size=(200, 90),
    )
    coco = p.to_coco(image_id=3)
    assert coco == [
        {"image_id": 3, "category_id": 7, "category_name": "船", "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.9}
    ]
    assert p.to_dict()["names"] == ["船"]
    with pytest.raises(ValueError):
        p.plot()
    pred = detector(image_file, max_det=3)
    assert pred.plot().size == (200, 90)


def _our_checkpoint(tmp_path, names, ids):
    model = calibrated_atto(len(names), seed=3)
    ckpt = make_checkpoint(
        model=model, epoch=1, global_step=10, best_ap=0.1, config=model.config.raw, class_names=names, category_ids=ids
    )
    ckpt["ema"] = {"module": model.state_dict(), "updates": 10}
    return model, save_checkpoint(ckpt, tmp_path / "训练 输出" / "best.pth")


def test_from_checkpoint_our_format_keeps_class_names(tmp_path, image_file):
    names, ids = ["飞机", "船", "车辆"], [11, 12, 15]
    model, path = _our_checkpoint(tmp_path, names, ids)
    det = Detector.from_checkpoint(path, conf=0.0, max_det=20)
    assert det.class_names == names and det.category_ids == ids and det.size_hw == (SIZE, SIZE)
    ref = Detector(model, conf=0.0, max_det=20)(image_file)
    got = det(image_file)
    _same(ref, got)  # deploy (folded BN) vs plain eval: equal up to float rounding
    assert got.category_ids == [ids[i] for i in got.labels.tolist()]
    assert got.names == [names[i] for i in got.labels.tolist()]


def test_from_checkpoint_official_format(tmp_path, model80, image_file):
    sd = model80.state_dict()
    path = tmp_path / "deimv2_atto_official.pth"
    torch.save({"date": "2025-09-01", "last_epoch": 499, "model": sd, "ema": {"module": sd, "updates": 5}}, path)
    # backend="torch": all 300 random-weight detections compared exactly (onnxruntime: tests/infer/test_backends.py)
    det = Detector.from_checkpoint(path, config=model80.config, conf=0.0, backend="torch")
    _same(Detector(model80, conf=0.0)(image_file), det(image_file))
    auto = Detector.from_checkpoint(path, conf=0.0, backend="torch")  # variant, eval size (anchors), COCO names
    assert "atto" in auto.cfg.name and auto.num_classes == 80 and auto.size_hw == (SIZE, SIZE)
    _same(Detector(model80, conf=0.0)(image_file), auto(image_file))
    assert auto.class_names[0] == "person" and auto.category_ids[-1] == 90


def _write_images(root, rels):
    rng = np.random.default_rng(0)
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(p)


def test_predict_cli_folder_mirrors_and_writes_json(tmp_path, capsys):
    names = ["飞机", "船", "车辆"]
    _, ckpt = _our_checkpoint(tmp_path, ["a", "b", "c"], [1, 2, 3])
    src = tmp_path / "输入 图片"
    rels = ["a.jpg", "子文件夹 一/b.png", "子文件夹 一/深/c.jpg"]
    _write_images(src, rels)
    (src / "说明.txt").write_text("不是图片", encoding="utf-8")
    out = tmp_path / "输出"
    info = predict_cli(checkpoint=ckpt, source=src, output=out, names=names, conf=0.0, max_det=2, save_json=True)
    for rel in rels:
        assert (out / rel).is_file()
    assert not (out / "说明.txt").exists() and info["images"] == 3
    rows = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    assert len(rows) == 6 and {r["file_name"] for r in rows} == set(rels)
    assert {r["image_id"] for r in rows} == {0, 1, 2}
    assert all(r["category_name"] in names and len(r["bbox"]) == 4 for r in rows)
    assert str(out.resolve()) in capsys.readouterr().out


def test_predict_cli_single_image_and_errors(tmp_path):
    _, ckpt = _our_checkpoint(tmp_path, ["a", "b", "c"], [1, 2, 3])
    _write_images(tmp_path, ["单张 图.jpg"])
    predict_cli(checkpoint=ckpt, source=tmp_path / "单张 图.jpg", output=tmp_path / "out", conf=0.0, max_det=1)
    assert (tmp_path / "out" / "单张 图.jpg").is_file()
    with pytest.raises(ConfigError, match="2 个类别名.*3 个类别"):
        predict_cli(checkpoint=ckpt, source=tmp_path / "单张 图.jpg", output=tmp_path / "o2", names=["x", "y"])
    with pytest.raises(DatasetError, match="不存在"):
        predict_cli(checkpoint=ckpt, source=tmp_path / "没有这个.jpg", output=tmp_path / "o3")


def test_video_without_opencv_is_a_clear_error(tmp_path, monkeypatch):
    _, ckpt = _our_checkpoint(tmp_path, ["a", "b", "c"], [1, 2, 3])
    video = tmp_path / "视频.mp4"
    video.write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "cv2", None)  # "import cv2" now raises ImportError
    with pytest.raises(DEIMv2Error, match="pip install opencv-python"):
        predict_cli(checkpoint=ckpt, source=video, output=tmp_path / "out")


def test_show_predictions_grid(tmp_path, detector):
    _write_images(tmp_path, ["x.jpg", "y.jpg"])
    coco = {
        "images": [
            {"id": 1, "file_name": "x.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "y.jpg", "width": 64, "height": 48},
        ],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 10], "area": 200, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "person"}],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco), encoding="utf-8")
    fig = show_predictions(detector, ann, num_images=2, ncols=2, conf=0.5)
    assert len(fig.axes) >= 2


def test_video_with_opencv(tmp_path):
    import cv2  # in [dev] (opencv-python-headless)

    _, ckpt = _our_checkpoint(tmp_path, ["a", "b", "c"], [1, 2, 3])
    video = tmp_path / "测试 视频.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    rng = np.random.default_rng(0)
    for _ in range(5):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    info = predict_cli(checkpoint=ckpt, source=video, output=tmp_path / "out", conf=0.0, max_det=2, save_json=True)
    cap = cv2.VideoCapture(str(info["output"]))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert info["frames"] == frames == 5 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 96
    rows = json.loads(info["json"].read_text(encoding="utf-8"))
    assert len(rows) == 10 and {r["frame"] for r in rows} == set(range(5))
