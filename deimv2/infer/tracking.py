"""Video tracking: detections of every frame linked into tracks by ByteTrack (the ``trackers`` package).

ByteTrack (Zhang et al., 2022) matches boxes frame to frame by IoU with a Kalman-filter motion model, in two
stages: confident detections first, then the low-confidence ones (which keeps a track alive through a frame where
the object is partly hidden). So the detector runs at a low threshold (:data:`LOW_CONF`), and the detector's own
threshold decides which detections may start or confirm a track. Outputs: the video with "#ID 名称 0.87" labels
(:func:`draw_tracks`) and a MOT-format text file (:func:`mot_lines`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deimv2.errors import DatasetError
from deimv2.infer.draw import color_for, draw_detections
from deimv2.infer.interop import require

__all__ = ["LOW_CONF", "draw_tracks", "make_tracker", "mot_lines", "read_video", "track_frames", "track_video"]

#: detections down to this score reach ByteTrack's second (low-confidence) association stage
LOW_CONF = 0.1


def make_tracker(conf: float, frame_rate: float = 30.0, **kwargs: Any) -> Any:
    """A ``trackers.ByteTrackTracker``: detections scoring >= ``conf`` start and confirm tracks."""
    trackers = require("trackers", "视频跟踪")
    opts = {"frame_rate": frame_rate, "track_activation_threshold": conf, "high_conf_det_threshold": conf, **kwargs}
    return trackers.ByteTrackTracker(**opts)


def read_video(path: str | Path) -> tuple[Iterator[np.ndarray], float, tuple[int, int]]:
    """RGB frames of a video file (a generator), its fps and ``(w, h)``; OpenCV decodes it."""
    cv2 = require("cv2", "读取视频")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DatasetError(f"OpenCV 无法打开视频 {path}：文件可能损坏，或缺少解码器。请先用播放器确认视频可以播放。")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def frames():
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield np.ascontiguousarray(bgr[:, :, ::-1])
        finally:
            cap.release()

    return frames(), float(fps), size


def track_frames(
    detector: Any,
    frames: Iterable[Any] | str | Path,
    tracker: Any = None,
    conf: float | None = None,
    frame_rate: float | None = None,
    **predict_kwargs: Any,
) -> Iterator[Any]:
    """Yield, per frame, the tracked ``sv.Detections`` (``tracker_id`` >= 1, ``data["class_name"]``).

    ``detector``: anything with ``detections(image, conf=...)`` (a :class:`~deimv2.infer.detector.Detector`);
    ``frames``: images or a video file; ``conf``: the score that starts a track (default: the detector's);
    ``predict_kwargs`` (``classes``, ``tile`` …) go to the detector. Detections not (yet) in a track are left out.
    """
    if isinstance(frames, (str, Path)):
        frames, fps, _ = read_video(frames)
        frame_rate = frame_rate or fps
    conf = float(detector.conf if conf is None else conf)
    tracker = tracker if tracker is not None else make_tracker(conf, frame_rate or 30.0)
    for frame in frames:
        dets = detector.detections(frame, conf=min(LOW_CONF, conf), **predict_kwargs)
        tracked = tracker.update(dets)
        if len(tracked):
            tracked = tracked[tracked.tracker_id >= 0]
            tracked.tracker_id = tracked.tracker_id + 1  # trackers counts from 0; MOT files count from 1
        yield tracked


def draw_tracks(image: Any, tracked: Any) -> Any:
    """``image`` with each track's box and a "#ID 名称 0.87" label, coloured by track ID (a PIL image)."""
    n = len(tracked)
    ids = tracked.tracker_id.tolist() if n else []
    names = tracked.data.get("class_name", [str(c) for c in tracked.class_id]) if n else []
    return draw_detections(
        image,
        tracked.xyxy if n else np.zeros((0, 4)),
        np.arange(n),
        tracked.confidence if n else None,
        names=[f"#{t} {name}" for t, name in zip(ids, names)],
        colors=[color_for(t) for t in ids],
    )


def mot_lines(frame: int, tracked: Any) -> list[str]:
    """MOT Challenge rows ``frame,id,x,y,w,h,score,-1,-1,-1`` (``frame`` 1-based, box in pixels)."""
    rows = []
    for (x1, y1, x2, y2), tid, s in zip(
        tracked.xyxy.tolist(), tracked.tracker_id.tolist(), tracked.confidence.tolist()
    ):
        rows.append(f"{frame},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1")
    return rows


def track_video(detector: Any, source: str | Path, output: str | Path, **kwargs: Any) -> dict:
    """Track ``source`` into the video ``output`` (mp4) and ``output`` with ``.txt`` (MOT format); returns counts."""
    cv2 = require("cv2", "写视频")
    source, output = Path(source), Path(output)
    frames, fps, (w, h) = read_video(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    mot = output.with_suffix(".txt")
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n_frames, ids, lines = 0, set(), []
    shown = []

    def remember(gen):
        for frame in gen:
            shown.append(frame)
            yield frame

    try:
        for i, tracked in enumerate(track_frames(detector, remember(frames), frame_rate=fps, **kwargs), 1):
            writer.write(np.asarray(draw_tracks(shown.pop(), tracked))[:, :, ::-1].copy())
            lines += mot_lines(i, tracked)
            ids.update(tracked.tracker_id.tolist())
            n_frames = i
    finally:
        writer.release()
    mot.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return {"frames": n_frames, "tracks": len(ids), "boxes": len(lines), "output": output, "mot": mot}
