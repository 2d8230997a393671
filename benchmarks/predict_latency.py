"""CPU inference latency per variant, every method interleaved in one process (``deimv2 bench`` writes the same).

For each variant one table: the official eager model (with ``--official``), our eager model, our deploy graph
in PyTorch, the same graph in ONNX Runtime, and ``Detector`` file→boxes (JPEG path in, Predictions out) with
its default backend and with ``backend="torch"``. Rounds alternate the order; medians over all runs. The
detections of the default backend are checked against PyTorch and (with ``--official``) the official model.

    python benchmarks/predict_latency.py --variants atto n s --official 官方代码目录 --rounds 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deimv2.infer.bench import run_backend_benchmark

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["atto", "n", "s"])
    ap.add_argument("--official", help="官方 DEIMv2 代码目录（不给则不测官方 eager）")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--image", help="文件→检测框用的图片（默认：示例数据做的 640x480 JPEG）")
    ap.add_argument("--json", default=str(RESULTS / "predict_backends_cpu2.json"))
    a = ap.parse_args(argv)
    return run_backend_benchmark(
        a.variants,
        official=a.official,
        rounds=a.rounds,
        runs=a.runs,
        warmup=a.warmup,
        threads=a.threads,
        image=a.image,
        json_path=a.json,
    )


if __name__ == "__main__":
    main()
