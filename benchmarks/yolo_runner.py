"""Ultralytics YOLO side of ``benchmarks/recipes.py`` (run with a separate Python that has ``ultralytics``).

Not part of deimv2 and never imported by it: ``benchmarks/recipes.py`` starts this file with ``--yolo-python``.
Trains YOLO from scratch with its defaults (``yolo11n.yaml``, offline, no AMP, no plots, CPU, no workers),
keeps every epoch's weights, then writes raw predictions (conf ≥ 0.001, ≤ 300 per image) for every epoch on the
validation images and for ``last``/``best`` on the test images, so that the caller scores them with the same
pycocotools evaluator as DEIMv2.

    python yolo_runner.py '{"data": ".../data.yaml", "out": "...", "epochs": 40, "imgsz": 256, "threads": 1, ...}'
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")


def _predict(model, images: list[str], imgsz: int) -> list[dict]:
    out = []
    for k in range(0, len(images), 16):
        for path, r in zip(
            images[k : k + 16],
            model.predict(
                images[k : k + 16], imgsz=imgsz, conf=0.001, iou=0.7, max_det=300, device="cpu", verbose=False
            ),
        ):
            b = r.boxes
            rows = [
                [*map(float, xyxy), float(s), int(c)]
                for xyxy, s, c in zip(b.xyxy.tolist(), b.conf.tolist(), b.cls.tolist())
            ]
            out.append({"file": Path(path).name, "dets": rows})
    return out


def main() -> None:
    a = json.loads(sys.argv[1])
    import torch

    torch.set_num_threads(int(a["threads"]))
    import ultralytics
    from ultralytics import YOLO

    out = Path(a["out"])
    model = YOLO(a.get("model", "yolo11n.yaml"))
    train_args = dict(
        data=a["data"],
        epochs=int(a["epochs"]),
        imgsz=int(a["imgsz"]),
        batch=int(a.get("batch", 16)),
        device="cpu",
        workers=0,
        pretrained=False,
        amp=False,
        plots=False,
        project=str(out),
        name="train",
        exist_ok=True,
        save_period=1,
        seed=int(a.get("seed", 0)),
        verbose=False,
        **a.get("extra", {}),
    )
    t0 = time.time()
    model.train(**train_args)
    wall = time.time() - t0
    run = out / "train"
    own = []
    with open(run / "results.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            row = {k.strip(): v for k, v in row.items()}
            own.append(
                {
                    "epoch": int(float(row["epoch"])),
                    "AP50": float(row["metrics/mAP50(B)"]),
                    "AP": float(row["metrics/mAP50-95(B)"]),
                }
            )
    val_images = sorted(str(p) for p in Path(a["val_images"]).glob("*.jpg"))
    test_images = sorted(str(p) for p in Path(a["test_images"]).glob("*.jpg")) if a.get("test_images") else []
    preds = {"val": {}, "test": {}}
    # Ultralytics names the per-epoch files epoch<k>.pt (k counted from 0 or 1 by version): order them
    saved = sorted((run / "weights").glob("epoch*.pt"), key=lambda p: int(p.stem[5:]))
    for i, w in enumerate(saved, 1):
        preds["val"][str(i)] = _predict(YOLO(str(w)), val_images, int(a["imgsz"]))
        w.unlink()  # ~16 MB each
    for tag in ("last", "best"):
        w = run / "weights" / f"{tag}.pt"
        if w.is_file():
            preds["val"][tag] = _predict(YOLO(str(w)), val_images, int(a["imgsz"]))
            if test_images:
                preds["test"][tag] = _predict(YOLO(str(w)), test_images, int(a["imgsz"]))
    result = {
        "train_args": train_args,
        "wall_s": round(wall, 1),
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "own_metrics": own,
        "predictions": preds,
    }
    (out / "yolo_result.json").write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
