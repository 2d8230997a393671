"""Eval/deploy latency: our ``deimv2`` package vs the official DEIMv2 code, same machine, same run.

Usage (see ``benchmarks/README.md``)::

    python benchmarks/latency.py --variants atto femto --threads 2 --official /path/to/DEIMv2 --json out.json

Every measurement runs in a fresh subprocess of this script (``--worker ours|official VARIANT``): the official
``YAMLConfig`` leaks one config into the next inside one process, and a fresh process gives both sides the
same allocator/thread state. Ours and official alternate per variant so both see the same machine load.

The official worker also checks fidelity: it loads the official (random) state_dict into our model with
``strict=True`` and reports max |Δ| of ``pred_logits`` / ``pred_boxes`` on the same input, plus per-stage
differences (backbone; encoder and decoder fed the official inputs) to locate a divergence.

This file also holds the helpers shared with ``train_step.py`` (subprocess protocol, official loader).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path

ALL_VARIANTS = ("atto", "femto", "pico", "n", "s", "m", "l", "x")
SMALL_VARIANTS = ("atto", "femto", "pico", "n")
MARK = "@@DEIMV2_BENCH@@"
FIDELITY_TOL = 1e-4


# --------------------------------------------------------------------------- shared helpers
def default_runs(variant: str) -> int:
    """Official anchors: median of 10 runs for atto..n, 7 for s..x."""
    return 10 if variant in SMALL_VARIANTS else 7


def speedup_pct(ours_ms: float, official_ms: float) -> float:
    """How much faster ours is, in percent of throughput: ``official / ours - 1`` (positive = ours faster)."""
    return (official_ms / ours_ms - 1.0) * 100.0


def max_abs_diff(a, b) -> float:
    """Max |a - b| over tensors or (nested) lists/tuples of tensors; ``inf`` on a shape mismatch."""
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return math.inf
        return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if a.shape != b.shape:
        return math.inf
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


def fill_nan_bias_masks(model) -> int:
    """Official DINOv3 (L/X) ``qkv.bias_mask`` buffers start as NaN; fill as the Meta checkpoint does.

    q and v biases are kept (1), the k bias is masked (0). Returns how many buffers were filled.
    """
    import torch

    n = 0
    for module in model.modules():
        mask = getattr(module, "bias_mask", None)
        if isinstance(mask, torch.Tensor) and torch.isnan(mask).any():
            d = mask.numel() // 3
            with torch.no_grad():
                mask.copy_(torch.cat([mask.new_ones(d), mask.new_zeros(d), mask.new_ones(d)]).view_as(mask))
            n += 1
    return n


def _stub_missing_modules() -> None:
    """The official package imports tensorboard / faster_coco_eval / calflops at import time, but its
    model, criterion and optimizer never use them. Put inert stand-ins in ``sys.modules`` when absent."""

    class _Inert(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {"__init__": lambda self, *a, **k: None})

    def stub(name: str) -> None:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub not in sys.modules:
                sys.modules[sub] = _Inert(sub)
            if i > 1:
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], sys.modules[sub])

    if importlib.util.find_spec("tensorboard") is None:
        sys.modules["torch.utils.tensorboard"] = _Inert("torch.utils.tensorboard")
    for name in ("faster_coco_eval.core.mask", "calflops"):
        if importlib.util.find_spec(name.split(".")[0]) is None:
            stub(name)


def load_official(official: str | Path, variant: str, **overrides):
    """Build the official ``YAMLConfig`` of ``variant`` (random weights, no downloads). Call once per process.

    ``overrides``: extra top-level YAML keys, e.g. ``eval_spatial_size=[160, 160]``.
    """
    from deimv2.config.loader import VARIANTS

    root = Path(official).expanduser().resolve()
    yml = root / "configs" / "deimv2" / f"{VARIANTS[variant]}.yml"
    if not yml.is_file():
        raise SystemExit(
            f"官方代码目录 {root} 中找不到 {yml.relative_to(root)}。请用 --official 指向 "
            f"`git clone https://github.com/Intellindust-AI-Lab/DEIMv2` 得到的目录。"
        )
    _stub_missing_modules()
    sys.path.insert(0, str(root))
    from engine.core import YAMLConfig

    # pretrained=False: the official HGNetv2 would otherwise try to download; weights_path=None: no DINOv3 file
    cfg = YAMLConfig(str(yml), HGNetv2={"pretrained": False}, DINOv3STAs={"weights_path": None}, **overrides)
    fill_nan_bias_masks(cfg.model)
    return cfg


def run_meta(threads: int, rounds: int, argv: Sequence[str]) -> dict:
    """What a results JSON must record besides the numbers: machine, threads, rounds, date, load, command line."""
    from deimv2.infer.bench import machine_meta

    return {**machine_meta(threads, rounds, runs=None), "argv": portable_argv(argv)}


def portable_argv(argv: Sequence[str]) -> list[str]:
    """The command line as a results JSON records it, without the measuring machine's folders: paths inside the
    repository relative to it, any other absolute path as ``<path>`` (e.g. the official checkout)."""
    root = Path(__file__).resolve().parents[1]

    def one(a: str) -> str:
        if not a.startswith("/"):
            return a
        p = Path(a)
        return str(p.relative_to(root)) if p.is_relative_to(root) else "<path>"

    return [one(str(a)) for a in argv]


def write_results(path: str | Path, meta: dict, rows: list[dict]) -> None:
    """``{"meta": ..., "rows": ...}`` with the load average at the end added to ``meta``."""
    import os

    meta = {**meta, "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    Path(path).write_text(json.dumps({"meta": meta, "rows": rows}, ensure_ascii=False, indent=2), encoding="utf-8")


def emit(result: dict) -> None:
    """Worker side: one marked JSON line on stdout (the official code prints its own lines too)."""
    print(MARK + json.dumps(result, ensure_ascii=False), flush=True)


def run_worker(script: str | Path, args: Sequence[str], timeout: float | None = None) -> dict:
    """Parent side: run ``script --worker *args`` with the same Python; return its JSON or ``{'error': ...}``."""
    cmd = [sys.executable, str(script), "--worker", *map(str, args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"超时（{timeout} s）：{' '.join(cmd)}"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    return {"error": f"子进程退出码 {proc.returncode}：{' '.join(cmd)}\n{tail}"}


def interleaved(
    variants: Sequence[str], rounds: int, official: str | None, measure: Callable[[str, str], dict]
) -> list[dict]:
    """For each variant run ``measure(side, variant)`` for ours and official, alternating the order each round.

    Returns one row per variant: ``{'variant', 'ours': [results], 'official': [results]}``.
    """
    rows = []
    for v in variants:
        row = {"variant": v, "ours": [], "official": []}
        for r in range(rounds):
            sides = ["ours", "official"] if r % 2 == 0 else ["official", "ours"]
            for side in sides:
                if side == "official" and not official:
                    continue
                res = measure(side, v)
                if "error" in res:
                    print(f"[{v} {side}] 失败：{res['error']}", file=sys.stderr)
                row[side].append(res)
        rows.append(row)
    return rows


def median_of(results: list[dict], key: str = "median_ms") -> float | None:
    vals = [r[key] for r in results if key in r]
    return statistics.median(vals) if vals else None


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


# --------------------------------------------------------------------------- workers
def ours_latency(variant: str, runs: int, warmup: int = 2, deploy: bool = False, threads: int = 2) -> dict:
    """Our model: :func:`deimv2.infer.bench.bench_variant` (eval + PostProcessor, batch 1, inference_mode)."""
    import torch

    from deimv2.infer.bench import bench_variant

    torch.set_num_threads(threads)
    return bench_variant(variant, runs=runs, warmup=warmup, deploy=deploy)


def _stage_diffs(off, ours, x) -> dict:
    """Per-stage max |Δ|: backbone on ``x``; encoder and decoder each fed the official stage input."""
    import torch

    with torch.inference_mode():
        f_off, f_ours = off.backbone(x), ours.backbone(x)
        e_off, e_ours = off.encoder(f_off), ours.encoder(f_off)
        d_off, d_ours = off.decoder(e_off), ours.decoder(e_off)
    return {
        "backbone": max_abs_diff(f_ours, f_off),
        "encoder": max_abs_diff(e_ours, e_off),
        "decoder_logits": max_abs_diff(d_ours["pred_logits"], d_off["pred_logits"]),
        "decoder_boxes": max_abs_diff(d_ours["pred_boxes"], d_off["pred_boxes"]),
    }


def _output_diffs(off, ours, x) -> dict:
    import torch

    with torch.inference_mode():
        o_off, o_ours = off(x), ours(x)
    d = {k: max_abs_diff(o_ours[k], o_off[k]) for k in ("pred_logits", "pred_boxes")}
    d["max"] = max(d.values())
    return d


def fidelity(off_model, off_post, variant: str, deploy: bool, seed: int = 0) -> dict:
    """Load the official state_dict into ours (strict) and compare outputs on one random image.

    Deploys both models when ``deploy``. Keys: ``fp32`` / ``fp64`` (end-to-end max |Δ| of pred_logits /
    pred_boxes; fp64 runs on float64 copies), ``stages_fp32`` (eval only), ``postprocess`` (both
    post-processors fed the same official output) and ``ok``.

    Why fp64: with random weights many query scores are near-ties, so a 1e-7 rounding difference (e.g.
    SDPA vs explicit attention) can swap the decoder's top-k query selection and change pred_boxes by
    O(1) in fp32. In float64 such swaps vanish, so a real implementation difference stays visible.
    """
    import copy

    import torch

    from deimv2.models.build import build_model
    from deimv2.models.postprocess import PostProcessor

    ours = build_model(variant)
    ours.load_state_dict(off_model.state_dict(), strict=True)
    ours.eval()
    off_model.eval()
    # our configs keep contiguous labels by default; compare with the official COCO id remap switched on
    post = PostProcessor(
        num_classes=off_post.num_classes,
        use_focal_loss=off_post.use_focal_loss,
        num_top_queries=off_post.num_top_queries,
        remap_mscoco_category=off_post.remap_mscoco_category,
    )
    # float64 copies before deploy(): deploy-time constants are created in the current dtype
    off64, ours64 = copy.deepcopy(off_model).double(), copy.deepcopy(ours).double()
    if deploy:
        for m in (ours, post, off_model, off_post, off64, ours64):
            m.deploy()
    h, w = ours.config.eval_spatial_size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))
    sizes = torch.tensor([[w, h]])
    out = {"fp32": _output_diffs(off_model, ours, x)}
    if not deploy:  # deploy() changes module structure; stage checks are meaningful in eval mode
        out["stages_fp32"] = _stage_diffs(off_model, ours, x)
    with torch.inference_mode():
        o_off = off_model(x)
        p_off, p_ours = off_post(o_off, sizes), post(o_off, sizes)
    if not deploy:
        p_off = [p_off[0][k] for k in ("labels", "boxes", "scores")]
        p_ours = [p_ours[0][k] for k in ("labels", "boxes", "scores")]
    out["postprocess"] = max_abs_diff(list(p_ours), list(p_off))
    out["fp64"] = _output_diffs(off64, ours64, x.double())
    stages_ok = all(v < FIDELITY_TOL for v in out.get("stages_fp32", {}).values())
    out["ok"] = out["fp64"]["max"] < FIDELITY_TOL and stages_ok and out["postprocess"] < FIDELITY_TOL
    return out


def official_latency(
    official: str, variant: str, runs: int, warmup: int = 2, deploy: bool = False, threads: int = 2, check: bool = True
) -> dict:
    """The official model + PostProcessor, timed like :func:`ours_latency`; fidelity checked first."""
    import gc

    import torch

    from deimv2.utils.runtime import time_fn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_official(official, variant)
    model, post = cfg.model.eval(), cfg.postprocessor
    fid = fidelity(model, post, variant, deploy) if check else None  # deploys both models when deploy
    gc.collect()
    if deploy and not check:
        model.deploy()
        post.deploy()
    h, w = cfg.yaml_cfg["eval_spatial_size"]
    x = torch.rand(1, 3, h, w)
    sizes = torch.tensor([[w, h]])

    def run():
        with torch.inference_mode():
            post(model(x), sizes)

    res = time_fn(run, runs=runs, warmup=warmup)
    res.update(
        variant=variant,
        input=f"{h}x{w}",
        threads=torch.get_num_threads(),
        deploy=deploy,
        params=sum(p.numel() for p in model.parameters()),
        fidelity=fid,
    )
    return res


# --------------------------------------------------------------------------- parent
def compare(
    variants: Sequence[str],
    threads: int = 2,
    runs: int | None = None,
    warmup: int = 2,
    deploy: bool = False,
    official: str | None = None,
    rounds: int = 1,
    check: bool = True,
) -> list[dict]:
    """Run all workers, print the table, return one summary dict per variant."""
    script = Path(__file__).resolve()

    def measure(side: str, v: str) -> dict:
        n = runs or default_runs(v)
        args = [side, v, "--threads", threads, "--runs", n, "--warmup", warmup]
        args += (["--deploy"] if deploy else []) + (["--official", official] if side == "official" else [])
        args += [] if check else ["--no-check"]
        return run_worker(script, args)

    mode = "deploy（model.deploy() + postprocessor.deploy()）" if deploy else "eval（model.eval() + PostProcessor）"
    print(
        f"模式 {mode}；线程数 {threads}；batch 1；预热 {warmup} 次；每个进程取中位数；"
        f"{rounds} 轮（ours/官方交替）；随机权重"
    )
    rows = interleaved(variants, rounds, official, measure)
    summary = []
    print(f"{'变体':<6}{'输入':>9}{'ours ms':>10}{'官方 ms':>10}{'提速 %':>9}{'|Δ| fp32':>11}{'|Δ| fp64':>11}  一致")
    for row in rows:
        ours_ms, off_ms = median_of(row["ours"]), median_of(row["official"])
        fids = [r["fidelity"] for r in row["official"] if r.get("fidelity")]
        d32 = max((f["fp32"]["max"] for f in fids), default=None)
        d64 = max((f["fp64"]["max"] for f in fids), default=None)
        ok = all(f["ok"] for f in fids) if fids else None
        sp = speedup_pct(ours_ms, off_ms) if ours_ms and off_ms else None
        src = (row["ours"] or row["official"] or [{}])[0]
        print(
            f"{row['variant']:<6}{src.get('input', '?'):>9}{fmt(ours_ms):>10}{fmt(off_ms):>10}"
            f"{fmt(sp, '+.1f'):>9}{fmt(d32, '.2e'):>11}{fmt(d64, '.2e'):>11}  {_verdict(ok)}"
        )
        if ok is False:
            print(
                f"  ⚠ {row['variant']} 与官方输出不一致（≥ {FIDELITY_TOL:g}）：{json.dumps(fids[0], ensure_ascii=False)}"
            )
        ratio = ours_ms / off_ms if ours_ms and off_ms else None
        summary.append(
            {
                "variant": row["variant"],
                "input": src.get("input"),
                "ours_ms": ours_ms,
                "official_ms": off_ms,
                "speedup_pct": sp,
                "ours_over_official": ratio,
                "ours_ms_per_round": [r.get("median_ms") for r in row["ours"]],
                "official_ms_per_round": [r.get("median_ms") for r in row["official"]],
                "max_abs_diff_fp32": d32,
                "max_abs_diff_fp64": d64,
                "fidelity_ok": ok,
                "fidelity": fids[0] if fids else None,
                "ours_runs": row["ours"],
                "official_runs": row["official"],
            }
        )
    print(
        "提速 % = 官方耗时 / ours 耗时 − 1；|Δ| = 同一权重、同一输入下 pred_logits / pred_boxes 的最大绝对差"
        "（fp64 = 两个模型都转成 float64 再比；随机权重下 fp32 的 top-k 近似并列可能让 fp32 的 |Δ| 变大，见 README）"
    )
    return summary


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("是" if ok else "否")


def _worker_main(argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("side", choices=["ours", "official"])
    p.add_argument("variant", choices=ALL_VARIANTS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--deploy", action="store_true")
    p.add_argument("--official")
    p.add_argument("--no-check", action="store_true")
    a = p.parse_args(argv)
    if a.side == "ours":
        emit(ours_latency(a.variant, a.runs, a.warmup, a.deploy, a.threads))
    else:
        emit(official_latency(a.official, a.variant, a.runs, a.warmup, a.deploy, a.threads, not a.no_check))


def main(argv: Sequence[str] | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        _worker_main(argv[1:])
        return []
    p = argparse.ArgumentParser(description="DEIMv2 推理延迟：deimv2 包 vs 官方代码（同一台机器、同一次运行）")
    p.add_argument("--variants", nargs="+", default=list(ALL_VARIANTS), choices=ALL_VARIANTS)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads（默认 2）")
    p.add_argument("--runs", type=int, default=None, help="计时次数（默认 atto..n 为 10，s..x 为 7）")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="每个变体重复几轮（ours/官方交替先后）")
    p.add_argument("--deploy", action="store_true", help="测 deploy 形式（导出用）而不是 eval 形式")
    p.add_argument("--official", default=None, help="官方 DEIMv2 代码目录；不给则只测 deimv2 包")
    p.add_argument("--no-check", action="store_true", help="跳过与官方输出的一致性检查")
    p.add_argument("--json", default=None, help="把结果写入这个 JSON 文件")
    a = p.parse_args(argv)
    meta = run_meta(a.threads, a.rounds, argv)
    summary = compare(a.variants, a.threads, a.runs, a.warmup, a.deploy, a.official, a.rounds, not a.no_check)
    if a.json:
        write_results(a.json, meta, summary)
        print(f"结果已写入 {a.json}")
    return summary


if __name__ == "__main__":
    main()
