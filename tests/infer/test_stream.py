"""deimv2.infer.stream: folders decoded in a DataLoader (with workers) and video frames in a background thread give
the same images, in the same order, as decoding one by one; ``deimv2 predict`` gives the same results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.tinydata import calibrated_atto
from PIL import Image

from deimv2.data.images import as_rgb_image
from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint
from deimv2.errors import DatasetError
from deimv2.infer import Detector, predict_cli
from deimv2.infer.stream import DecodedImages, decoded_batches, video_batches


@pytest.fixture(autouse=True)
def _threads(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIMV2_CACHE_DIR", str(tmp_path / "用户 缓存"))
    torch.set_num_threads(1)


def _folder(root, n=7, bad=(3,)):
    """``n`` images of different sizes (JPEG/PNG, in subfolders); indices in ``bad`` are broken files."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        p = root / ("子 目录" if i % 2 else "") / f"图 {i:02d}.{'png' if i % 3 == 0 else 'jpg'}"
        p.parent.mkdir(parents=True, exist_ok=True)
        if i in bad:
            p.write_bytes(b"not an image")
        else:
            Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 60 + 5 * i, 3), dtype=np.uint8)).save(p)
        files.append(p)
    return sorted(files)


@pytest.mark.parametrize("workers", [0, 2])
def test_decoded_batches_equal_sequential_decoding_in_order(tmp_path, workers):
    files = _folder(tmp_path)
    seen = []
    for batch in decoded_batches(files, as_rgb_image, batch_size=3, num_workers=workers):
        assert 1 <= len(batch) <= 3
        seen.extend(batch)
    assert [i for i, _, _ in seen] == list(range(len(files)))  # every file once, input order
    for i, im, err in seen:
        try:
            want = as_rgb_image(files[i])
        except DatasetError as e:
            assert im is None and err == str(e).split("\n")[0] and str(files[i]) in err
            continue
        assert err is None and im.size == want.size and np.array_equal(np.asarray(im), np.asarray(want))
    assert sum(err is not None for _, _, err in seen) == 1


def test_no_workers_by_default(tmp_path):
    files = _folder(tmp_path, n=3, bad=())
    import inspect

    assert inspect.signature(decoded_batches).parameters["num_workers"].default == 0
    assert inspect.signature(predict_cli).parameters["num_workers"].default == 0
    assert [i for b in decoded_batches(files, as_rgb_image, 2) for i, _, _ in b] == [0, 1, 2]
    assert len(DecodedImages(["a.jpg", "b.jpg"], as_rgb_image)) == 2


def _checkpoint(tmp_path):
    model = calibrated_atto(3, seed=3)
    ckpt = make_checkpoint(
        model=model,
        epoch=1,
        global_step=1,
        best_ap=0.1,
        config=model.config.raw,
        class_names=["甲", "乙", "丙"],
        category_ids=[1, 2, 3],
    )
    return save_checkpoint(ckpt, tmp_path / "权重 目录" / "best.pth")


def test_predict_cli_folder_with_workers_equals_without_and_one_by_one(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    src = tmp_path / "输入 图片"
    files = _folder(src, n=10, bad=(4,))
    bad = next(i for i, f in enumerate(files) if f.read_bytes() == b"not an image")
    infos, rows = {}, {}
    for w in (0, 2):
        infos[w] = predict_cli(
            checkpoint=ckpt, source=src, output=tmp_path / f"输出{w}", conf=0.0, save_json=True, num_workers=w
        )
        rows[w] = json.loads(infos[w]["json"].read_text(encoding="utf-8"))
    assert rows[0] == rows[2] and infos[0]["images"] == infos[2]["images"] == 9
    assert infos[0]["failed"] == infos[2]["failed"] == [files[bad].relative_to(src).as_posix()]
    for w in (0, 2):
        for f in files[:bad] + files[bad + 1 :]:
            rel = f.relative_to(src)
            assert np.array_equal(
                np.asarray(Image.open(tmp_path / f"输出{w}" / rel)), np.asarray(Image.open(tmp_path / "输出0" / rel))
            )
    # image_id = position in the sorted input (the broken file keeps its number), same as one by one
    det = Detector.from_checkpoint(ckpt, conf=0.0)
    by_id = {}
    for r in rows[0]:
        by_id.setdefault(r["image_id"], []).append(r)
    assert sorted(by_id) == [i for i in range(len(files)) if i != bad]
    for i, got in by_id.items():
        want = det(files[i])
        assert got[0]["file_name"] == files[i].relative_to(src).as_posix()
        assert [r["category_id"] for r in got[:10]] == want.category_ids[:10]
        assert np.allclose([r["score"] for r in got], want.scores.numpy(), atol=2e-5)
        assert np.allclose([r["bbox"] for r in got[:10]], [c["bbox"] for c in want.to_coco()[:10]], atol=0.02)


def _video(path, frames=11, size=(96, 64)):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def _read_all(path, batch, threaded):
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return list(video_batches(cap, batch, threaded=threaded))
    finally:
        cap.release()


def test_video_thread_gives_the_same_frames_in_order(tmp_path):
    video = _video(tmp_path / "测试 视频.mp4")
    seq, thr = _read_all(video, 4, threaded=False), _read_all(video, 4, threaded=True)
    assert [len(b) for b in seq] == [len(b) for b in thr] == [4, 4, 3]
    for a, b in zip(seq, thr):
        for fa, fb in zip(a, b):
            assert fa.flags["C_CONTIGUOUS"] and fa.shape == (64, 96, 3) and np.array_equal(fa, fb)
    assert len({f.tobytes() for b in thr for f in b}) == 11  # distinct frames: a reordering would show


class _BrokenCapture:
    """Two frames, then a decoder error (what a damaged file can do mid-stream)."""

    def __init__(self):
        self.n = 0

    def read(self):
        self.n += 1
        if self.n > 2:
            raise RuntimeError("模拟的解码错误")
        return True, np.full((4, 4, 3), self.n, dtype=np.uint8)


def test_video_thread_raises_decoder_errors_and_stops_early():
    with pytest.raises(RuntimeError, match="模拟的解码错误"):
        list(video_batches(_BrokenCapture(), 5))
    gen = video_batches(_BrokenCapture(), 1)
    first = next(gen)
    gen.close()  # the consumer stops: the thread is told to stop and joined
    assert first[0][0, 0, 2] == 1


def test_predict_cli_video_equals_frame_by_frame(tmp_path):
    ckpt = _checkpoint(tmp_path)
    video = _video(tmp_path / "测试 视频.mp4", frames=10)
    info = predict_cli(checkpoint=ckpt, source=video, output=tmp_path / "out", conf=0.0, max_det=3, save_json=True)
    rows = json.loads(info["json"].read_text(encoding="utf-8"))
    det = Detector.from_checkpoint(ckpt, conf=0.0, max_det=3)
    want, frame = [], 0
    for batch in _read_all(video, det.batch_size, threaded=False):  # the loop before the thread, same batches
        for pred in det.predict(batch):
            want += [{"file_name": video.name, "frame": frame, **r} for r in pred.to_coco(image_id=frame)]
            frame += 1
    assert info["frames"] == frame == 10 and rows == want
