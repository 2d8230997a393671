"""`deimv2 demo` itself, end to end, in its default (full) mode: wall time and the final mAP it reports.

Runs ``python -m deimv2 demo`` in a fresh folder (Chinese name with a space), with ``DEIMV2_FAST=0`` and
``OMP_NUM_THREADS`` = ``--threads``, then reads what the demo wrote: the evaluation file it names (the best
checkpoint scored on the demo's validation set, as the demo prints it; not training's ``eval.json``) and
``log.jsonl`` (the per-epoch curve). Writes
``benchmarks/results/demo_run_cpu2.json``; README's demo line is rendered from it (tests/docs/test_readme_numbers.py).

    python benchmarks/demo_run.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deimv2.infer.bench import machine_meta

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict:
    from deimv2.tutorial.demo import DEMO_RECIPE, FAST_SCHEDULE, FULL_SCHEDULE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(RESULTS / "demo_run_cpu2.json"))
    ap.add_argument("--fast", action="store_true", help="DEIMV2_FAST=1：只检查脚本本身（几步训练，结果没有意义）")
    a = ap.parse_args(argv)

    meta = machine_meta(a.threads, rounds=1, runs=1)
    env = {
        **os.environ,
        "DEIMV2_FAST": "1" if a.fast else "0",
        "OMP_NUM_THREADS": str(a.threads),
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "演示 输出"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "deimv2", "demo", "--output-dir", str(out)],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            raise SystemExit(f"deimv2 demo 运行失败（退出码 {proc.returncode}），输出的最后部分：\n{tail}")
        run_dir = out / "train"
        # the evaluation of the best checkpoint the demo reports (eval-2.json beside training's eval.json, which holds
        # the last epoch's evaluation); the demo names it on its "评估结果：" line
        reported = [line.split("评估结果：", 1)[1].strip() for line in proc.stdout.splitlines() if "评估结果：" in line]
        if not reported:
            raise SystemExit("deimv2 demo 的输出里没有“评估结果：”一行，找不到它评估最佳权重的结果文件。")
        ev = json.loads(Path(reported[-1]).read_text(encoding="utf-8"))
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines() if line]
    meta["loadavg_end"] = list(os.getloadavg())
    result = {
        "what": f"python -m deimv2 demo ({'FAST mode, a smoke run' if a.fast else 'default mode: DEIMV2_FAST=0'}), end to end",
        "fast": a.fast,
        "meta": meta,
        "schedule": FAST_SCHEDULE if a.fast else FULL_SCHEDULE,
        "recipe": DEMO_RECIPE,
        "wall_s": round(wall, 1),
        "final": {"AP": ev["AP"], "AP50": ev["AP50"]},
        "best_epoch": log[-1].get("best_epoch"),  # as the trainer's log.jsonl records it: 0-based
        "curve": [{"epoch": r["epoch"] + 1, "AP": r.get("AP"), "AP50": r.get("AP50")} for r in log],
        "stdout_tail": proc.stdout[-1500:].replace(tmp, "<临时文件夹>"),  # no folder of the measuring machine
    }
    Path(a.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"deimv2 demo：{wall / 60:.1f} 分钟，mAP@0.5 = {ev['AP50']:.3f}，mAP = {ev['AP']:.3f} -> {a.json}")
    return result


if __name__ == "__main__":
    main()
