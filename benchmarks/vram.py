"""Training memory per variant and batch size (measured), and the GPU-size guide derived from it.

Usage (see ``benchmarks/README.md``)::

    python benchmarks/vram.py measure --threads 1 --json benchmarks/results/vram_cpu.json
    python benchmarks/vram.py guide --json benchmarks/results/vram_cpu.json --readme docs/training.md

``measure``: for each variant at its largest TRAINING input size (S/M/L/X train multi-scale up to
``int(1.25 * 640 / 32) * 32 = 800``; Atto/Femto/Pico/N have no multi-scale and train at their eval size), one
train-mode forward (denoising on, one box per image) + DEIM loss at batch 1 and 2, fp32 and under autocast
(bf16 on CPU, the AMP dtype on CUDA), counting the bytes autograd saves for backward with saved-tensor hooks
(:func:`deimv2.engine.setup.measure_activation_bytes`). The counts are exact byte counts (deterministic), so one
round is enough; on CUDA the script also records ``torch.cuda.max_memory_allocated`` of a full step.
Activations are fitted as ``act(b) = intercept + b * per_image`` from b = 1, 2. Static memory = parameters × 16
bytes (fp32 weights, gradients and AdamW's two moments).

``guide``: for each GPU size, the largest variant whose estimated peak (static + activations of a micro-batch,
times ``1 + MARGIN`` for the allocator, CUDA context and transient buffers that saved-tensor hooks do not see)
fits with a micro-batch of at least ``MIN_MICRO_BATCH`` (BatchNorm statistics come from the micro-batch),
``accumulate`` chosen so that micro-batch × accumulate = the recipe's batch (no LR scaling needed).
It writes the table into docs/training.md (``--readme``) between ``<!-- vram-guide:start -->`` and ``<!-- vram-guide:end -->``;
``tests/bench/test_vram_guide.py`` checks that the page's table is what this function makes from the JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

VARIANTS = ("atto", "femto", "pico", "n", "s", "m", "l", "x")
GPU_SIZES_GB = (4, 6, 8, 12, 16, 24)
#: extra share of the estimate kept free (allocator, CUDA context, transient buffers and gradients of activations
#: during backward: not measured here, not verified on a GPU; a deliberately generous guess)
MARGIN = 0.5
#: smallest micro-batch we recommend (BatchNorm in the encoder normalises over the micro-batch)
MIN_MICRO_BATCH = 4
START, END = "<!-- vram-guide:start -->", "<!-- vram-guide:end -->"


def train_size(cfg) -> int:
    """Largest training input side: the multi-scale maximum when the collate has a scale list, else eval size."""
    collate = cfg.data.collate
    base = int(collate.get("base_size", max(cfg.eval_spatial_size)))
    if cfg.data.multiscale and collate.get("base_size_repeat") is not None:
        from deimv2.data.collate import generate_scales

        return max(generate_scales(base, int(collate["base_size_repeat"])))
    return max(cfg.eval_spatial_size)


def measure_variant(variant: str, batches=(1, 2)) -> dict:
    import torch

    from deimv2 import load_config
    from deimv2.engine.setup import measure_activation_bytes
    from deimv2.loss import build_criterion
    from deimv2.models.build import build_model_from_config

    cfg = load_config(variant)
    size = train_size(cfg)
    torch.manual_seed(0)
    model, criterion = build_model_from_config(cfg), build_criterion(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, criterion = model.to(device), criterion.to(device)
    amp_dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    n_params = sum(p.numel() for p in model.parameters())
    out = {
        "variant": variant,
        "train_size": size,
        "params": n_params,
        "static_bytes": n_params * 16,
        "recipe_batch": int(cfg.raw.get("reference_batch_size") or cfg.data.batch_size),
        "amp_dtype": str(amp_dtype).replace("torch.", ""),
        "act_bytes": {"fp32": {}, "amp": {}},
        "seconds": {},
    }
    for mode, dtype in (("fp32", None), ("amp", amp_dtype)):
        for b in batches:
            t0 = time.perf_counter()
            out["act_bytes"][mode][str(b)] = int(
                measure_activation_bytes(model, criterion, [size, size], device, batch_size=b, autocast_dtype=dtype)
            )
            out["seconds"][f"{mode}_b{b}"] = round(time.perf_counter() - t0, 2)
    for mode in ("fp32", "amp"):
        acts = out["act_bytes"][mode]
        if "2" in acts:
            a1, a2 = acts["1"], acts["2"]
            out.setdefault("fit", {})[mode] = {"per_image": a2 - a1, "intercept": 2 * a1 - a2, "from": "batch 1, 2"}
        else:  # batch 1 only: count everything per image (an upper bound, the intercept is >= 0 elsewhere)
            out.setdefault("fit", {})[mode] = {"per_image": acts["1"], "intercept": 0, "from": "batch 1 only"}
    if device.type == "cuda":  # a real peak of one fp32 step at batch 2 for reference
        torch.cuda.reset_peak_memory_stats()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        x = torch.rand(2, 3, size, size, device=device)
        tg = [
            {
                "labels": torch.zeros(1, dtype=torch.long, device=device),
                "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]], device=device),
            }
            for _ in range(2)
        ]
        sum(criterion(model(x, targets=tg), tg, epoch=0).values()).backward()
        opt.step()
        out["cuda_max_memory_allocated_b2_fp32"] = int(torch.cuda.max_memory_allocated())
    return out


def machine_info(threads: int) -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "threads": threads,
    }


def cmd_measure(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    result = {
        "benchmark": "vram",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(a.threads),
        "rounds": 1,
        "loadavg_start": list(os.getloadavg()),
        "method": "saved-tensor hooks, train forward + DEIM loss, 1 box/image, batch 1 and 2, fp32 and autocast",
        "variants": {},
    }
    if a.merge and a.json and Path(a.json).is_file():  # add variants to an earlier run (kept: its date, machine)
        old = json.loads(Path(a.json).read_text(encoding="utf-8"))
        old.setdefault("runs", []).append({k: result[k] for k in ("date", "machine", "loadavg_start")})
        result = old
        for v in result["variants"].values():
            for mode, fit in v["fit"].items():
                fit.setdefault("from", "batch 1, 2" if "2" in v["act_bytes"][mode] else "batch 1 only")
    for v in a.variants:
        print(f"测量 {v} ……", flush=True)
        result["variants"][v] = measure_variant(v, tuple(a.batches))
        result["variants"][v]["measured_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        r = result["variants"][v]
        print(
            f"  {v} {r['train_size']}²：每张图激活 fp32 {r['fit']['fp32']['per_image'] / 2**30:.2f} GB，"
            f"AMP {r['fit']['amp']['per_image'] / 2**30:.2f} GB",
            flush=True,
        )
        if a.json:  # write after each variant so a long run keeps what it measured
            result["loadavg_end"] = list(os.getloadavg())
            Path(a.json).write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return result


# ---------------------------------------------------------------------- guide (pure: JSON -> table)
def peak_gb(v: dict, micro: int, amp: bool) -> float:
    """Estimated training peak in GB (decimal GiB, 2**30) for a micro-batch, margin included."""
    fit = v["fit"]["amp" if amp else "fp32"]
    return (v["static_bytes"] + fit["intercept"] + micro * fit["per_image"]) * (1 + MARGIN) / 2**30


def max_micro_batch(v: dict, gpu_gb: float, amp: bool) -> int:
    """Largest power-of-two micro-batch (≤ the recipe batch) whose estimated peak fits ``gpu_gb``; 0 if none."""
    best, b = 0, 1
    while b <= v["recipe_batch"] and peak_gb(v, b, amp) <= gpu_gb:
        best, b = b, b * 2
    return best


def recommend(data: dict, gpu_gb: float) -> dict | None:
    """The largest variant that fits ``gpu_gb`` with AMP and a micro-batch ≥ MIN_MICRO_BATCH."""
    variants = data["variants"]
    for name in reversed([v for v in VARIANTS if v in variants]):
        v = variants[name]
        micro = max_micro_batch(v, gpu_gb, amp=True)
        if micro >= MIN_MICRO_BATCH:
            return {
                "gpu_gb": gpu_gb,
                "variant": name,
                "micro_batch": micro,
                "accumulate": max(1, v["recipe_batch"] // micro),
                "recipe_batch": v["recipe_batch"],
                "amp": True,
                "size": v["train_size"],
                "peak_gb": round(peak_gb(v, micro, True), 1),
            }
    return None


def guide_markdown(data: dict) -> str:
    """README block: measured memory per variant, then the recommendation per GPU size."""
    m = data["machine"]
    only1 = [
        n for n in VARIANTS if n in data["variants"] and data["variants"][n]["fit"]["fp32"]["from"] != "batch 1, 2"
    ]
    note = (
        (
            f"；{'、'.join(only1)} 只测了 batch 1（batch 2 超出测量机器的内存），把 batch 1 的激活全部算作每张图的量，"
            f"偏保守"
        )
        if only1
        else ""
    )
    intro = (
        f"测量：`benchmarks/vram.py`（{data['date'][:10]}，{m['device']}，{m['threads']} 线程），"
        f"结果 `benchmarks/results/vram_cpu.json`。显存估算 = 参数 × 16 字节（权重、梯度、AdamW 两份动量）"
        f"+ 激活（用 saved-tensor hooks 实测 batch 1、2 的训练前向 + 损失，线性拟合{note}），"
        f"再留 {int(MARGIN * 100)}% 余量给分配器、CUDA 上下文和临时缓冲。"
        f"AMP 列在 CPU 上用 bf16 autocast 测得；GPU 上的算子选择不同，数值只作参考。"
    )
    lines = [
        intro,
        "",
        "| 变体 | 训练输入（最大） | 参数量 | 每张图激活 fp32 | 每张图激活 AMP | batch 8 + AMP 估算 |",
        "|---|---|---|---|---|---|",
    ]
    for name in [v for v in VARIANTS if v in data["variants"]]:
        v = data["variants"][name]
        lines.append(
            f"| {name} | {v['train_size']}² | {v['params'] / 1e6:.1f}M | "
            f"{v['fit']['fp32']['per_image'] / 2**30:.2f} GB | {v['fit']['amp']['per_image'] / 2**30:.2f} GB | "
            f"{peak_gb(v, 8, True):.1f} GB |"
        )
    lines += [
        "",
        "| 显存 | 推荐变体 | 每步 batch | accumulate | 有效 batch | AMP | 输入尺寸 | 估算峰值 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for gb in GPU_SIZES_GB:
        r = recommend(data, gb)
        if r is None:
            lines.append(f"| {gb} GB | （都放不下 batch {MIN_MICRO_BATCH}：减小输入尺寸） | | | | | | |")
            continue
        lines.append(
            f"| {gb} GB | {r['variant']} | {r['micro_batch']} | {r['accumulate']} | "
            f"{r['micro_batch'] * r['accumulate']} | 开 | {r['size']}² | {r['peak_gb']} GB |"
        )
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"文件里缺少标记 {START} … {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def readme_block(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def cmd_guide(a) -> str:
    data = json.loads(Path(a.json).read_text(encoding="utf-8"))
    block = guide_markdown(data)
    print(block)
    if a.readme:
        p = Path(a.readme)
        p.write_text(replace_block(p.read_text(encoding="utf-8"), block), encoding="utf-8")
        print(f"已更新 {p}")
    return block


def main(argv=None):
    p = argparse.ArgumentParser(description="训练显存：实测各变体的激活内存，并生成按显存大小的推荐设置表")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument(
        "--batches",
        nargs="+",
        type=int,
        default=[1, 2],
        choices=[1, 2],
        help="测哪些 batch（默认 1 2；内存不够时只测 1）",
    )
    m.add_argument("--merge", action="store_true", help="把结果并入已有的 JSON（只替换这次测的变体）")
    m.add_argument("--json", default="benchmarks/results/vram_cpu.json")
    g = sub.add_parser("guide")
    g.add_argument("--json", default="benchmarks/results/vram_cpu.json")
    g.add_argument("--readme", default=None, help="把表格写进这个 Markdown 文件（两个标记之间，如 docs/training.md）")
    a = p.parse_args(argv)
    return cmd_measure(a) if a.cmd == "measure" else cmd_guide(a)


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
