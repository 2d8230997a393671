"""Tiled vs resized inference on large scenes with small objects: COCO AP, AP50, APs and time per image.

1. ``data/make_large_scenes.py`` writes evaluation scenes (``--size``², 12–32-pixel objects of 4 classes) and a
   training set of ``--tile``² crops of other scenes.
2. DEIMv2-Atto is trained from scratch on the crops (input ``--tile``², recipe small, ``--epochs`` epochs; CPU
   minutes), unless ``--checkpoint`` gives a model.
3. The best checkpoint predicts every scene twice — resized to the model input (the default) and tiled
   (``tile = --tile``, overlap 0.2, per-class NMS at IoU 0.5, plus the whole image) — on the default backend;
   both are scored with pycocotools; time per image (file → boxes) is the median over the scenes, after a warm-up.

Writes ``benchmarks/results/tiling_cpu2.json``; the training run stays in ``--work`` (benchmarks/int8.py reuses it).

    python benchmarks/tiling.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from deimv2.infer.bench import machine_meta

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "data"))


def coco_scores(ann_file: Path, rows: list) -> dict:
    """COCO AP, AP50 and APs (area < 32²) of result ``rows`` against ``ann_file``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        if not rows:
            return {"AP": 0.0, "AP50": 0.0, "APs": 0.0}
        ev = COCOeval(gt, gt.loadRes(rows), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP": float(ev.stats[0]), "AP50": float(ev.stats[1]), "APs": float(ev.stats[3])}


def evaluate_scenes(det, scenes: Path, **predict_kwargs) -> dict:
    """Score and time ``det`` on every scene (file → boxes); ``predict_kwargs`` go to ``det.predict``."""
    data = json.loads((scenes / "_annotations.coco.json").read_text(encoding="utf-8"))
    det.predict(scenes / data["images"][0]["file_name"], **predict_kwargs)  # warm-up (compiles the backend)
    rows, times = [], []
    for im in data["images"]:
        t0 = time.perf_counter()
        pred = det.predict(scenes / im["file_name"], keep_images=False, **predict_kwargs)
        times.append(time.perf_counter() - t0)
        rows += pred.to_coco(image_id=im["id"])
    return {**coco_scores(scenes / "_annotations.coco.json", rows), "ms_per_image": 1000 * statistics.median(times)}


def run_log(ckpt: Path) -> dict:
    """What the training run that wrote ``ckpt`` logged (``log.jsonl`` next to it): epochs, wall time, best AP."""
    log = Path(ckpt).parent / "log.jsonl"
    if not log.is_file():
        return {}
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if isinstance(r.get("epoch"), int)]
    best = max(rows, key=lambda r: r.get("AP", 0.0), default={})
    return {
        "epochs": len(rows),
        "train_wall_s": round(sum(r.get("time_s", 0.0) for r in rows), 1),
        "best_epoch": best.get("epoch", -1) + 1,
        "tile_val_AP": best.get("AP"),
        "tile_val_AP50": best.get("AP50"),
    }


def train_model(tiles: Path, work: Path, tile: int, epochs: int) -> Path:
    from deimv2.engine.api import train
    from deimv2.tutorial.demo import demo_overrides

    result = train(
        "atto",
        data=tiles,
        output_dir=work / "train",
        epochs=epochs,
        check_data=False,
        overrides=demo_overrides(tile, 8, recipe="small"),
        recipe="small",
    )
    return Path(result["output_dir"]) / "best.pth"


def main(argv: list[str] | None = None) -> dict:
    from make_large_scenes import make_dataset

    from deimv2.infer.detector import Detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--tile", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--density", type=float, default=150.0, help="每 1000² 像素的目标数")
    ap.add_argument("--train-scenes", type=int, default=16)
    ap.add_argument("--checkpoint", help="跳过训练，评估这个权重文件（如本脚本先前在 --work 里训练出的 best.pth）")
    ap.add_argument("--work", default=str(ROOT / "outputs" / "tiling_bench"))
    ap.add_argument("--json", default=str(RESULTS / "tiling_cpu2.json"))
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    meta = machine_meta(a.threads, rounds=1, runs=a.scenes)
    work = Path(a.work)
    info = make_dataset(
        work / "data", size=a.size, scenes=a.scenes, tile=a.tile, train_scenes=a.train_scenes, density=a.density
    )
    ckpt = Path(a.checkpoint) if a.checkpoint else train_model(info["tiles"], work, a.tile, a.epochs)
    det = Detector.from_checkpoint(ckpt, conf=0.01, max_det=300)
    resized = evaluate_scenes(det, info["scenes"])
    tiled = evaluate_scenes(det, info["scenes"], tile=a.tile, overlap=0.2)
    meta["loadavg_end"] = list(os.getloadavg())
    result = {
        "what": "tiled vs resized inference on generated large scenes with small objects (COCO AP, AP50, APs)",
        "meta": meta,
        "data": {
            "generator": "data/make_large_scenes.py",
            "scene_size": a.size,
            "scenes": a.scenes,
            "objects": sum(
                1 for _ in json.loads((info["scenes"] / "_annotations.coco.json").read_text("utf-8"))["annotations"]
            ),
            "object_length_px": [12, 32],
            "objects_per_1000x1000": a.density,
        },
        "model": {
            "variant": "atto",
            "trained": "from scratch on the generated tile crops (train_model: recipe small, batch 8)",
            "input": a.tile,
            "train_scenes": a.train_scenes,
            "training_run": run_log(ckpt),  # from the run's log.jsonl; epochs counted from 1
            "backend": det.backend.name,
            "conf": 0.01,
        },
        "tiling": {"tile": a.tile, "overlap": 0.2, "merge": "per-class NMS", "iou": 0.5, "whole_image_too": True},
        "resized": resized,
        "tiled": tiled,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps({"resized": resized, "tiled": tiled}, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
