"""Tracking: ByteTrack keeps the identities of moving objects (ground truth known), drawing, MOT file, CLI."""

from __future__ import annotations

import numpy as np
import pytest

sv = pytest.importorskip("supervision")
trackers = pytest.importorskip("trackers")
from deimv2.infer.tracking import draw_tracks, mot_lines, track_frames  # noqa: E402

FRAMES, W, H = 40, 320, 240
#: allowed identity switches over the whole synthetic clip (3 objects, two of them passing each other)
MAX_ID_SWITCHES = 1


def ground_truth(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (xyxy), GT ids and classes at frame ``t``: A moves right, B moves left just below A's row
    (they pass each other half-way), C moves down; B is not detected in frames 18 and 19."""
    objs = [
        (1, 0, (10 + 6 * t, 60)),
        (2, 1, (290 - 6 * t, 90)),
        (3, 2, (150, 10 + 4 * t)),
    ]
    boxes, ids, cls = [], [], []
    for gid, c, (x, y) in objs:
        if gid == 2 and t in (18, 19):
            continue
        boxes.append([x, y, x + 24, y + 24])
        ids.append(gid)
        cls.append(c)
    return np.array(boxes, np.float32), np.array(ids), np.array(cls)


class NoisyStub:
    """Detector stub: the ground-truth boxes of the current frame with 1-px Gaussian noise, score 0.9."""

    conf = 0.5
    names = ["飞机", "船", "车辆"]

    def __init__(self):
        self.t = -1
        self.rng = np.random.default_rng(0)

    def detections(self, frame, conf=None, **kwargs):
        self.t += 1
        boxes, _, cls = ground_truth(self.t)
        boxes = boxes + self.rng.normal(0, 1.0, boxes.shape).astype(np.float32)
        return sv.Detections(
            xyxy=boxes,
            confidence=np.full(len(boxes), 0.9, np.float32),
            class_id=cls,
            data={"class_name": np.array([self.names[c] for c in cls], dtype=object)},
        )


def test_bytetrack_keeps_identities():
    from trackers.eval import compute_clear_metrics

    frames = [np.zeros((H, W, 3), np.uint8)] * FRAMES
    out = list(track_frames(NoisyStub(), frames, frame_rate=10))
    assert len(out) == FRAMES
    gt_ids, tr_ids, sims = [], [], []
    for t, tracked in enumerate(out):
        boxes, ids, _ = ground_truth(t)
        gt_ids.append(ids)
        tr_ids.append(tracked.tracker_id.astype(int))
        sims.append(sv.box_iou_batch(boxes, tracked.xyxy) if len(tracked) else np.zeros((len(ids), 0)))
    m = compute_clear_metrics(gt_ids, tr_ids, sims, threshold=0.5)
    assert m["IDSW"] <= MAX_ID_SWITCHES, m
    assert m["MOTA"] > 0.9, m
    assert {i for t in tr_ids for i in t.tolist()} == {1, 2, 3}  # three tracks, B kept through its 2 missed frames
    last = out[-1]
    assert sorted(last.data["class_name"].tolist()) == ["船", "车辆", "飞机"]


def test_mot_rows_and_drawing(tmp_path):
    tracked = sv.Detections(
        xyxy=np.array([[10.0, 20.0, 40.0, 60.0]], np.float32),
        confidence=np.array([0.75], np.float32),
        class_id=np.array([1]),
        tracker_id=np.array([7]),
        data={"class_name": np.array(["船"], dtype=object)},
    )
    assert mot_lines(3, tracked) == ["3,7,10.00,20.00,30.00,40.00,0.7500,-1,-1,-1"]
    path = tmp_path / "轨迹.txt"
    path.write_text("\n".join(mot_lines(3, tracked)) + "\n", encoding="utf-8")
    frame = trackers.load_mot_file(path)[3]  # the trackers package reads it back
    assert frame.ids.tolist() == [7] and frame.boxes.tolist() == [[10, 20, 30, 40]]
    img = draw_tracks(np.zeros((80, 80, 3), np.uint8), tracked)
    assert np.asarray(img)[20:60, 10].any()  # the box's left edge is drawn
    assert np.asarray(draw_tracks(np.zeros((8, 8, 3), np.uint8), sv.Detections.empty())).max() == 0


def _moving_video(path, n=12, w=160, h=120):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for t in range(n):
        img = np.full((h, w, 3), 128, np.uint8)
        img[40:70, 10 + 5 * t : 40 + 5 * t] = (40, 40, 220)
        writer.write(img)
    writer.release()


def test_cli_track_writes_video_and_mot(tmp_path):
    import cv2
    from helpers.badfiles import random_checkpoint

    from deimv2.cli import main

    ckpt = random_checkpoint(tmp_path / "模型" / "best.pth")
    video = tmp_path / "输入 视频.mp4"
    _moving_video(video)
    out = tmp_path / "跟踪 结果" / "out.mp4"
    assert main(["track", "-r", str(ckpt), "-i", str(video), "-o", str(out), "--conf", "0.0"]) == 0
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12
    rows = [line.split(",") for line in out.with_suffix(".txt").read_text(encoding="utf-8").splitlines()]
    assert rows and all(len(r) == 10 and 1 <= int(r[0]) <= 12 and int(r[1]) >= 1 for r in rows)
    assert main(["track", "-r", str(ckpt), "-i", str(tmp_path / "没有.mp4"), "-o", str(out)]) == 2
