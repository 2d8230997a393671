"""GPU check for ``-u batch_size=auto`` (needs CUDA; not run by the CPU test suite).

Runs the real search (:func:`deimv2.engine.autobatch.resolve_auto_batch`) for the given variants on the
first GPU, then trains one real step at the chosen per-step batch to show that it fits, and writes
``benchmarks/results/autobatch_<gpu>.json`` (machine, date, chosen batches, measured peaks).

    python benchmarks/gpu_autobatch.py --variants atto s --size 640
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deimv2.config.loader import load_config
from deimv2.engine.autobatch import (
    AUTO_BATCH_FRACTION,
    cuda_peak_memory_fn,
    resolve_auto_batch,
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["atto", "s"])
    ap.add_argument("--size", type=int, default=None, help="eval_spatial_size (default: the variant's)")
    ap.add_argument("--amp", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("这个检查需要 CUDA GPU。")
        return 2
    dev = torch.device("cuda", 0)
    rows = []
    for v in args.variants:
        ov = {"HGNetv2.pretrained": False, "num_classes": 80, "use_amp": bool(args.amp)}
        if args.size:
            ov["eval_spatial_size"] = [args.size, args.size]
        cfg = load_config(v, ov)
        seen: dict = {}
        measure = cuda_peak_memory_fn(cfg, dev)

        def recording(b, measure=measure, seen=seen):
            seen[b] = measure(b)
            return seen[b]

        lines: list[str] = []
        chosen = resolve_auto_batch(cfg, dev, measure=recording, say=lines.append)
        again = measure(chosen)  # the chosen batch, measured once more: it must fit
        rows.append(
            {
                "variant": v,
                "size": list(cfg.eval_spatial_size),
                "amp": bool(args.amp),
                "chosen_batch": chosen,
                "peak_gb_at_chosen": None if again is None else again / 2**30,
                "measured_gb": {str(b): (None if p is None else p / 2**30) for b, p in sorted(seen.items())},
                "message": lines,
            }
        )
        print(json.dumps(rows[-1], ensure_ascii=False))
    props = torch.cuda.get_device_properties(dev)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "gpu": props.name,
        "gpu_total_gb": props.total_memory / 2**30,
        "fraction": AUTO_BATCH_FRACTION,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "rows": rows,
    }
    name = re.sub(r"[^A-Za-z0-9]+", "_", props.name).strip("_").lower()
    path = Path(__file__).resolve().parent / "results" / f"autobatch_{name}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"写入 {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
