"""Which training speed options pay off, measured side by side: each mode of :mod:`deimv2.engine.speed` against
eager float32, interleaved, in fresh subprocesses pinned to ``--threads``.

- ``step`` rows (per variant and mode): one training step as ``benchmarks/profile_step.py`` runs it (forward with
  targets, criterion, backward, clip, AdamW, EMA; batch 4 at the variant's eval size unless ``--size``/``--batch``),
  ``first_step_s`` (with ``compile``: the compilation; a warm cache makes it short, see ``--cold``), then the median
  of ``--steps`` steps. ``break_even_steps``: how many steps a mode needs before its first-step cost is paid back
  by its faster steps (what decides ``compile``'s default against the length of a run).
- ``epoch`` rows (``--epoch``): one Atto epoch of the demo's small recipe (``benchmarks/epoch_cost.py``: 160 images
  at 256², batch 8, timed per part) for each mode and for ``num_workers`` 0, 1 and 2 (data loading by free cores).

    python benchmarks/train_speed.py --variants atto s --rounds 3 --epoch --json benchmarks/results/train_speed_cpu1.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

MODES = ("eager", "channels_last", "compile", "channels_last+compile", "cpu_amp", "channels_last+cpu_amp")
WORKERS = (0, 1, 2)


def names_of(mode: str) -> list[str]:
    return [] if mode == "eager" else mode.split("+")


def step_worker(variant: str, mode: str, size: int, batch: int, threads: int, steps: int) -> dict:
    import torch
    from profile_step import DEFAULT_SHAPES, build_step

    torch.set_num_threads(threads)
    size = size or DEFAULT_SHAPES.get(variant, (320, 4))[0]
    batch = batch or DEFAULT_SHAPES.get(variant, (320, 4))[1]
    t0 = time.perf_counter()
    step = build_step(variant, size, batch, names_of(mode))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_loss = step()
    first = time.perf_counter() - t0
    step()  # a second step may still compile (e.g. a recompilation for the backward's shapes)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        last_loss = step()
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "kind": "step",
        "variant": variant,
        "mode": mode,
        "input": f"{batch}x3x{size}x{size}",
        "threads": threads,
        "build_s": build_s,
        "first_step_s": first,
        "median_ms": statistics.median(times),
        "times_ms": times,
        "first_loss": first_loss,
        "last_loss": last_loss,
    }


def epoch_worker(mode: str, workers: int, threads: int) -> dict:
    from epoch_cost import atto_epoch

    # every option named by the mode, and no other: "eager" is channels-first float32 (not the variant's default)
    extra = {n: n in names_of(mode) for n in ("channels_last", "compile", "cpu_amp")}
    extra["train_dataloader.num_workers"] = workers
    res = atto_epoch(8, threads, extra=extra)
    res.update(kind="epoch", variant="atto", mode=mode, workers=workers, epoch_s=sum(res["parts_s"].values()))
    return res


def run_side(args: list[str], threads: int, cache: str | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if cache:
        env["TORCHINDUCTOR_CACHE_DIR"] = cache
    r = subprocess.run([sys.executable, __file__, "--worker", *args], env=env, capture_output=True, text=True)
    if r.returncode:
        return {"args": args, "error": r.stderr[-3000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def summarize(rows: list[dict]) -> list[dict]:
    """Medians over rounds per (kind, variant, mode, workers), with the ratio to eager and the break-even step."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault((r["kind"], r["variant"], r["mode"], r.get("workers")), []).append(r)
    out = []
    for (kind, variant, mode, workers), rs in groups.items():
        key = "median_ms" if kind == "step" else "epoch_s"
        s = {
            "kind": kind,
            "variant": variant,
            "mode": mode,
            "workers": workers,
            key: statistics.median(r[key] for r in rs),
        }
        if kind == "step":
            s["first_step_s"] = statistics.median(r["first_step_s"] for r in rs)
        else:
            s["parts_s"] = {k: statistics.median(r["parts_s"][k] for r in rs) for k in rs[0]["parts_s"]}
        out.append(s)
    for s in out:
        base = next(
            (b for b in out if (b["kind"], b["variant"], b["mode"]) == (s["kind"], s["variant"], "eager")
             and (s["kind"] == "step" or b["workers"] == 0)),
            None,
        )  # fmt: skip
        key = "median_ms" if s["kind"] == "step" else "epoch_s"
        if base:
            s["vs_eager"] = s[key] / base[key]
            if s["kind"] == "step":
                saved_ms = base["median_ms"] - s["median_ms"]
                extra_s = s["first_step_s"] - base["first_step_s"]
                s["break_even_steps"] = max(0.0, 1000 * extra_s / saved_ms) if saved_ms > 0 else None
    return out


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="训练提速选项的并排测量（eager float32 为基准）")
    p.add_argument("--variants", nargs="+", default=["atto", "s"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epoch", action="store_true", help="另测 Atto 演示配方的一轮（各模式，以及 num_workers 0/1/2）")
    p.add_argument("--cold", action="store_true", help="每次 compile 都用空缓存（测首次编译的代价）")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        kind, *rest = a.worker
        if kind == "step":
            res = step_worker(rest[0], rest[1], a.size, a.batch, a.threads, a.steps)
        else:
            res = epoch_worker(rest[0], int(rest[1]), a.threads)
        print(json.dumps(res))
        return [res]
    from latency import run_meta, write_results

    meta = run_meta(a.threads, a.rounds, sys.argv[1:] if argv is None else list(argv))
    cache_root = Path(tempfile.mkdtemp(prefix="train_speed_cache_"))
    jobs = [["step", v, m] for v in a.variants for m in a.modes]
    if a.epoch:
        jobs += [["epoch", m, "0"] for m in a.modes if m != "eager"]
        jobs += [["epoch", "eager", str(w)] for w in WORKERS]
    common = ["--threads", str(a.threads), "--steps", str(a.steps)]
    common += (["--size", str(a.size)] if a.size else []) + (["--batch", str(a.batch)] if a.batch else [])
    rows = []
    try:
        for i in range(a.rounds):
            for job in jobs if i % 2 == 0 else jobs[::-1]:  # interleaved, alternating order
                cache = str(cache_root / (f"cold{i}_{len(rows)}" if a.cold else "warm"))
                res = run_side([*job, *common], a.threads, cache)
                rows.append({"round": i, **res})
                shown = res.get("median_ms") or res.get("epoch_s")
                print(
                    f"round {i + 1} {' '.join(job)}: {shown if 'error' not in res else '失败 ' + res['error'][-500:]}"
                )
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)
    summary = summarize(rows)
    for s in summary:
        print(json.dumps(s, ensure_ascii=False))
    if a.json:
        write_results(a.json, meta, [{"summary": summary}, *rows])
        print(f"结果已写入 {a.json}")
    return summary


if __name__ == "__main__":
    main()
