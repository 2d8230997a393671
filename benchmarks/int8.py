"""INT8 (NNCF post-training quantization, OpenVINO) against float32 (OpenVINO), side by side in one run.

The model is the Atto that ``benchmarks/tiling.py`` trained on generated small-object scenes (a real, briefly
trained model: random weights would give meaningless AP). Calibration: up to 300 training crops. Accuracy: COCO
AP / AP50 / APs on the generated evaluation scenes, tiled as in ``benchmarks/tiling.py``. Latency: file → boxes
(decode a JPEG, preprocess, model, boxes) of one scene crop, 1 and 2 threads, median of ``--runs`` per round,
float32 and INT8 alternating over ``--rounds`` rounds (the order swaps each round).

Writes ``benchmarks/results/int8_cpu2.json``. The same comparison for Atto, N and S, each trained on the bundled
demo first: ``benchmarks/int8_variants.py`` (it reuses the functions below).

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


def timed_quantization(ckpt: Path, calib: str | Path, output: Path, limit: int | None = None) -> tuple[Path, dict]:
    """Quantize ``ckpt`` to INT8 at ``output`` (``.xml``) with up to ``limit`` calibration images from ``calib``;
    returns the file and the JSON's ``quantization`` block (calibration count, wall time)."""
    from deimv2.apps.quantize import CALIB_IMAGES, calibration_images, quantize_int8

    limit = limit or CALIB_IMAGES
    t0 = time.perf_counter()
    xml = quantize_int8(ckpt, calib, output=output, limit=limit)
    wall = time.perf_counter() - t0
    return xml, {
        "tool": "nncf.quantize",
        "model_type": "TRANSFORMER",
        "calibration_images": len(calibration_images(calib, limit)),
        "wall_s": round(wall, 1),
    }


def detector_pair(ckpt: Path, xml: Path, conf: float, threads: int | None = None) -> dict:
    """``{"float32": OpenVINO Detector, "int8": INT8 Detector}`` of the same checkpoint."""
    from deimv2.apps.quantize import int8_detector
    from deimv2.infer.detector import Detector

    return {
        "float32": Detector.from_checkpoint(ckpt, conf=conf, backend="openvino"),
        "int8": int8_detector(ckpt, xml, conf=conf, threads=threads),
    }


def score_pair(dets: dict, folder: Path, **predict_kwargs) -> dict:
    """COCO scores of each detector of :func:`detector_pair` on a COCO folder (``evaluate_scenes``); its time per
    image is dropped: :func:`alternating_latency` times both models fairly."""
    out = {}
    for name, det in dets.items():
        out[name] = evaluate_scenes(det, folder, **predict_kwargs)
        out[name].pop("ms_per_image")
    return out


def alternating_latency(ckpt: Path, xml: Path, image: Path, rounds: int, runs: int) -> dict:
    """File → boxes of ``image``, 1 and 2 threads: median of ``runs`` per round, float32 and INT8 alternating over
    ``rounds`` rounds (the order swaps each round); per thread count the medians and float32 / INT8."""
    latency, before = {}, torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        dets = detector_pair(ckpt, xml, conf=0.3, threads=threads)
        times = {k: [] for k in dets}
        for r in range(rounds):
            for name in sorted(dets, reverse=bool(r % 2)):
                det = dets[name]
                times[name].append(
                    time_fn(lambda det=det: det.predict(image, keep_images=False), runs=runs)["median_ms"]
                )
        row = {k: {"median_ms": statistics.median(v), "rounds_ms": v} for k, v in times.items()}
        row["speedup"] = row["float32"]["median_ms"] / row["int8"]["median_ms"]
        latency[f"threads_{threads}"] = row
    torch.set_num_threads(before)
    return latency


def main(argv: list[str] | None = None) -> dict:
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
    xml, quantization = timed_quantization(ckpt, a.calib, Path(tempfile.mkdtemp()) / "best_int8.xml")

    torch.set_num_threads(2)
    dets = detector_pair(ckpt, xml, conf=0.01)
    tile = int(dets["float32"].size_hw[0])
    accuracy = score_pair(dets, scenes, tile=tile, overlap=0.2)

    first = sorted(scenes.glob("*.jpg"))[0]
    image = Path(tempfile.mkdtemp()) / "crop.jpg"
    Image.open(first).crop((0, 0, 640, 480)).save(image, quality=95)
    latency = alternating_latency(ckpt, xml, image, a.rounds, a.runs)
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
        "quantization": quantization,
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
