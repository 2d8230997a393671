"""CPU latency of inference, batch 1, random weights (latency does not depend on the weight values).

For each variant: the model forward alone (deploy form, preprocessed tensor in), the whole
``Detector`` (JPEG file -> decode -> resize -> model -> post-process -> Prediction), and the exported
ONNX graph in onnxruntime vs the same graph in PyTorch. Median of ``--runs`` after ``--warmup`` runs.

    python benchmarks/predict_latency.py --variants atto s --threads 2 --runs 10
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deimv2.bench import time_fn


def median_ms(fn, runs: int, warmup: int) -> float:
    return time_fn(fn, runs=runs, warmup=warmup)["median_ms"]


def bench_variant(name: str, image: Path, tmp: Path, runs: int, warmup: int, threads: int) -> dict:
    from deimv2.export import export_onnx
    from deimv2.predict import Detector

    det = Detector.from_config(name, conf=0.45, device="cpu")  # deploy form, like from_checkpoint
    pil = Image.open(image).convert("RGB")
    x, sizes = det.preprocess([pil])
    row = {"variant": name, "input": "x".join(map(str, det.size_hw))}
    with torch.inference_mode():
        row["forward_ms"] = median_ms(lambda: det.model(x), runs, warmup)
        row["graph_ms"] = median_ms(lambda: det.graph(x, sizes), runs, warmup)
    row["detector_file_ms"] = median_ms(lambda: det(image), runs, warmup)
    try:
        import onnxruntime as ort
    except ImportError:
        return row
    onnx_path = export_onnx(config=name, output=tmp / f"{name}.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feeds = {"images": x.numpy(), "orig_target_sizes": sizes.numpy()}
    row["onnxruntime_ms"] = median_ms(lambda: sess.run(None, feeds), runs, warmup)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["atto", "s"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        image = tmp / "frame 1280x720.jpg"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)).save(image, quality=90)
        rows = [bench_variant(v, image, tmp, args.runs, args.warmup, args.threads) for v in args.variants]
    print(f"\nCPU，torch {torch.__version__}，{args.threads} 线程，batch 1，{args.runs} 次中位数（预热 {args.warmup} 次），"
          f"输入图片 1280x720 JPEG")
    head = ("变体", "输入", "模型前向 ms", "前向+后处理 ms", "Detector(文件→结果) ms", "onnxruntime ms")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        print(" | ".join([r["variant"], r["input"], f"{r['forward_ms']:.1f}", f"{r['graph_ms']:.1f}",
                          f"{r['detector_file_ms']:.1f}",
                          f"{r['onnxruntime_ms']:.1f}" if "onnxruntime_ms" in r else "（未安装）"]))


if __name__ == "__main__":
    main()
