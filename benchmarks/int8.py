"""INT8 (NNCF post-training quantization, OpenVINO) against float32 (OpenVINO), side by side in one run.

The model is the Atto that ``benchmarks/tiling.py`` trained on generated small-object scenes (a real, briefly
trained model: random weights would give meaningless AP). Calibration: up to 300 training crops. Accuracy: COCO
AP / AP50 / APs on the generated evaluation scenes, tiled as in ``benchmarks/tiling.py``. Latency: file → boxes
(decode a JPEG, preprocess, model, boxes) of one scene crop, 1 and 2 threads, median of ``--runs`` per round,
float32 and INT8 alternating over ``--rounds`` rounds (the order swaps each round).

Writes ``benchmarks/results/int8_cpu2.json``.

    python benchmarks/tiling.py && python benchmarks/int8.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from tiling import evaluate_scenes

from deimv2.infer.bench import machine_meta
from deimv2.utils.runtime import time_fn

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "outputs" / "tiling_bench"


def trained_epochs(ckpt: Path) -> int | None:
    """Epochs finished by the run that wrote ``ckpt`` (its ``log.jsonl``), or None."""
    log = ckpt.parent / "log.jsonl"
    if not log.is_file():
        return None
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    epochs = [r["epoch"] for r in rows if isinstance(r.get("epoch"), int)]
    return max(epochs) + 1 if epochs else None  # log.jsonl counts epochs from 0


def main(argv: list[str] | None = None) -> dict:
    from deimv2.apps.quantize import CALIB_IMAGES, calibration_images, int8_detector, quantize_int8
    from deimv2.infer.detector import Detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(WORK / "train" / "best.pth"))
    ap.add_argument("--calib", default=str(WORK / "data" / "tiles" / "train"))
    ap.add_argument("--scenes", default=str(WORK / "data" / "scenes"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "int8_cpu2.json"))
    a = ap.parse_args(argv)

    ckpt, scenes = Path(a.checkpoint), Path(a.scenes)
    meta = machine_meta(2, rounds=a.rounds, runs=a.runs)
    t0 = time.perf_counter()
    xml = quantize_int8(ckpt, a.calib, output=Path(tempfile.mkdtemp()) / "best_int8.xml")
    quant_s = time.perf_counter() - t0
    n_calib = len(calibration_images(a.calib, CALIB_IMAGES))

    torch.set_num_threads(2)
    f32 = Detector.from_checkpoint(ckpt, conf=0.01, backend="openvino")
    int8 = int8_detector(ckpt, xml, conf=0.01)
    tile = int(f32.size_hw[0])
    accuracy = {
        name: evaluate_scenes(det, scenes, tile=tile, overlap=0.2) for name, det in (("float32", f32), ("int8", int8))
    }
    for row in accuracy.values():
        row.pop("ms_per_image")  # timed below, alternating, per thread count

    first = sorted(scenes.glob("*.jpg"))[0]
    image = Path(tempfile.mkdtemp()) / "crop.jpg"
    Image.open(first).crop((0, 0, 640, 480)).save(image, quality=95)
    latency = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        dets = {
            "float32": Detector.from_checkpoint(ckpt, conf=0.3, backend="openvino"),
            "int8": int8_detector(ckpt, xml, conf=0.3, threads=threads),
        }
        times = {k: [] for k in dets}
        for r in range(a.rounds):
            for name in sorted(dets, reverse=bool(r % 2)):
                det = dets[name]
                times[name].append(
                    time_fn(lambda det=det: det.predict(image, keep_images=False), runs=a.runs)["median_ms"]
                )
        latency[f"threads_{threads}"] = {
            k: {"median_ms": statistics.median(v), "rounds_ms": v} for k, v in times.items()
        }
        latency[f"threads_{threads}"]["speedup"] = (
            latency[f"threads_{threads}"]["float32"]["median_ms"] / latency[f"threads_{threads}"]["int8"]["median_ms"]
        )
    meta["loadavg_end"] = list(os.getloadavg())
    result = {
        "what": "INT8 (NNCF PTQ) vs float32, both OpenVINO on CPU: COCO AP on generated small-object scenes, latency",
        "meta": meta,
        "model": {
            "variant": "atto",
            "checkpoint": "benchmarks/tiling.py training run (from scratch on generated crops)",
            "epochs_trained": trained_epochs(ckpt),
            "input": tile,
        },
        "quantization": {
            "tool": "nncf.quantize",
            "model_type": "TRANSFORMER",
            "calibration_images": n_calib,
            "wall_s": round(quant_s, 1),
        },
        "accuracy": {"set": "generated scenes (benchmarks/tiling.py), tiled, overlap 0.2", **accuracy},
        "latency": {"what": "file -> boxes, one 640x480 JPEG", **latency},
    }
    Path(a.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(
        json.dumps({"accuracy": accuracy, "latency": {k: v["speedup"] for k, v in latency.items()}}, ensure_ascii=False)
    )
    return result


if __name__ == "__main__":
    main()
