"""One prepared command for a CUDA machine: does the GPU path work? (about 8–12 minutes on one GPU)

    python benchmarks/gpu_check.py --json benchmarks/results/gpu_check.json

Steps, each recorded in the results JSON (machine, GPU, torch/CUDA versions, date, load) even when one fails:

1. ``golden``: every official-parity fixture of ``tests/fixtures/official`` on CUDA (fp32, TF32 off):
   max |Δ| of eval outputs vs the official fp32 CPU outputs (pass: < 1e-3; CPU tests use 1e-4).
2. ``train_bf16`` / ``train_fp16``: the demo dataset, Atto, a few epochs with ``--use-amp`` (bf16; then fp16
   with GradScaler), two data-loading workers; losses finite; the fp16 run is interrupted half-way and
   resumed with ``-r last.pth``.
3. ``export``: ONNX export of the trained checkpoint with the onnxruntime check.
4. ``latency``: eval latency (batch 1, CUDA, median) of every variant.
5. ``train_speed``: one Atto and one S training step (``benchmarks/profile_step.py``'s step: forward with targets,
   criterion, backward, clip, AdamW, EMA; batch 16 at the eval size) eager fp32, AMP (bf16; fp16 + GradScaler),
   ``torch.compile`` and compile + AMP bf16, and channels-last: first step (compile time) and median step time;
   each mode's first loss against eager fp32's (same weights and batch).

On a machine without CUDA it stops at once with a message saying so (exit code 2).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

GOLDEN_CUDA_TOL = 1e-3


def step_golden() -> dict:
    import numpy as np
    import torch
    from helpers.golden import (
        FIXTURES,
        GOLDEN_SIZE,
        VARIANTS,
        fill_golden,
        golden_input,
        summarize,
    )

    from deimv2.models.build import build_model

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = {}
    for v in VARIANTS:
        size = GOLDEN_SIZE[v]
        model = build_model(v, eval_spatial_size=[size, size])
        fill_golden(model)
        model = model.cuda().eval()
        npz = np.load(FIXTURES / f"{v}.npz")
        with torch.inference_mode():
            got = summarize({k: t.cpu() for k, t in model(golden_input(size, size).cuda()).items()})
        out[v] = max(float((got[k] - torch.from_numpy(npz[f"eval.{k}"])).abs().max()) for k in got)
    return {"max_abs_diff": out, "ok": all(d < GOLDEN_CUDA_TOL for d in out.values()), "tol": GOLDEN_CUDA_TOL}


def _train(data: Path, out: Path, amp_dtype: str, epochs: int, **kw) -> dict:
    from deimv2.engine.api import train
    from deimv2.engine.logger import read_log

    t0 = time.time()
    metrics = train(
        "atto",
        data=data,
        output_dir=out,
        use_amp=True,
        device="cuda",
        epochs=epochs,
        progress=False,
        check_data=False,
        overrides={"HGNetv2.pretrained": False, "num_workers": 2, "amp_dtype": amp_dtype, "batch_size": 16},
        **kw,
    )
    log = read_log(out / "log.jsonl")
    losses = [r.get("train_loss") for r in log]
    return {
        "wall_s": round(time.time() - t0, 1),
        "AP50": metrics.get("AP50"),
        "losses": losses,
        "ok": all(isinstance(x, float) and math.isfinite(x) for x in losses),
    }


def step_train(work: Path, epochs: int) -> dict:
    from deimv2.data.demo import prepare_demo_coco

    data = prepare_demo_coco(work / "dataset")
    res = {"bf16": _train(data, work / "bf16", "bfloat16", epochs)}

    class Interrupt(Exception):
        pass

    def stop(record):
        if record["epoch"] == epochs // 2 - 1:
            raise Interrupt

    try:
        _train(data, work / "fp16", "float16", epochs, callback=stop)
    except Interrupt:
        pass
    res["fp16_resumed"] = _train(data, work / "fp16", "float16", epochs, resume=work / "fp16" / "last.pth")
    res["ok"] = res["bf16"]["ok"] and res["fp16_resumed"]["ok"] and len(res["fp16_resumed"]["losses"]) == epochs
    return res


def step_export(work: Path) -> dict:
    from deimv2.infer.export import export_onnx

    path = export_onnx(checkpoint=work / "bf16" / "best.pth", output=work / "atto.onnx", check=True)
    return {"path": str(path), "ok": Path(path).is_file()}


def step_latency(runs: int) -> dict:
    from deimv2.infer.bench import bench_variant

    rows = {}
    for v in ("atto", "femto", "pico", "n", "s", "m", "l", "x"):
        r = bench_variant(v, device="cuda", runs=runs, warmup=5)
        rows[v] = {"median_ms": r["median_ms"], "input": r["input"]}
    return {"eval_batch1_ms": rows, "ok": True}


TRAIN_MODES = {  # name -> (speed options, autocast dtype name)
    "eager_fp32": ([], None),
    "amp_bf16": ([], "bfloat16"),
    "amp_fp16": ([], "float16"),
    "channels_last": (["channels_last"], None),
    "compile": (["compile"], None),
    "compile_amp_bf16": (["compile"], "bfloat16"),
}


def step_train_speed(steps: int, batch: int = 16) -> dict:
    import statistics

    import torch
    from profile_step import build_step

    out, ok = {}, True
    for variant in ("atto", "s"):
        size = 320 if variant == "atto" else 640
        rows = {}
        for mode, (speed, dtype) in TRAIN_MODES.items():
            torch.manual_seed(0)
            step = build_step(variant, size, batch, speed, "cuda", getattr(torch, dtype) if dtype else None)
            t0 = time.perf_counter()
            first_loss = step()
            first = time.perf_counter() - t0
            step()
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                step()  # returns float(loss): synchronises
                times.append((time.perf_counter() - t0) * 1000)
            rows[mode] = {
                "first_step_s": round(first, 2),
                "median_ms": statistics.median(times),
                "first_loss": first_loss,
            }
            torch.cuda.empty_cache()
        ref = rows["eager_fp32"]["first_loss"]
        for r in rows.values():
            r["first_loss_rel_diff"] = abs(r["first_loss"] - ref) / abs(ref)
            r["vs_eager"] = r["median_ms"] / rows["eager_fp32"]["median_ms"]
        ok = ok and all(math.isfinite(r["first_loss"]) for r in rows.values())
        out[variant] = {"input": f"{batch}x3x{size}x{size}", "modes": rows}
    return {**out, "ok": ok}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="GPU 路径检查（需要 CUDA）：golden 一致性、AMP 训练与继续、ONNX 导出、延迟")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    p.add_argument("--work", default="outputs/gpu_check", help="训练输出的临时目录")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--train-steps", type=int, default=20, help="train_speed：每种模式计时的步数")
    a = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_check.py 需要 CUDA GPU，但这台机器上 torch.cuda.is_available() 为 False（"
            f"torch {torch.__version__}）。请在有 NVIDIA GPU 且装了 CUDA 版 PyTorch 的机器上运行；"
            "CPU 上的检查请用 pytest。",
            file=sys.stderr,
        )
        return 2
    from latency import run_meta, write_results

    meta = run_meta(torch.get_num_threads(), 1, sys.argv[1:] if argv is None else list(argv))
    meta.update(
        gpu=torch.cuda.get_device_name(0),
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        bf16_supported=torch.cuda.is_bf16_supported(),
        node=platform.node(),
    )
    work = Path(a.work)
    steps = {
        "golden": step_golden,
        "train": lambda: step_train(work, a.epochs),
        "export": lambda: step_export(work),
        "latency": lambda: step_latency(a.runs),
        "train_speed": lambda: step_train_speed(a.train_steps),
    }
    results = {}
    for name, fn in steps.items():
        t0 = time.time()
        try:
            results[name] = fn()
        except Exception as e:  # record and go on: one failing step must not hide the others
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        results[name]["seconds"] = round(time.time() - t0, 1)
        print(f"{name}: {'通过' if results[name].get('ok') else '失败'}（{results[name]['seconds']} s）", flush=True)
    write_results(a.json, meta, [{"step": k, **v} for k, v in results.items()])
    print(f"结果已写入 {a.json}")
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
