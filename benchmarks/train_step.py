"""One training step: our ``deimv2`` package vs the official DEIMv2 code, same machine, same run.

Usage (see ``benchmarks/README.md``)::

    python benchmarks/train_step.py --variants atto s --threads 2 --official /path/to/DEIMv2

A step = ``model.train()`` forward with targets (denoising on) + criterion + backward +
``clip_grad_norm_(0.1)`` + AdamW step over the config's parameter groups; fp32, no AMP, no EMA, epoch 0.
Batch 4 at the variant's eval size (atto 320², s 640²), 3–5 random boxes per image, the same batch on
both sides. Each side runs in a fresh subprocess (see ``latency.py``), ours and official alternating.

The official worker also compares, for the same weights and the same random seed, the loss terms and the
gradients of ours and the official code (one forward + backward each, before timing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import (
    ALL_VARIANTS,
    emit,
    fmt,
    interleaved,
    load_official,
    max_abs_diff,  # noqa: E402
    median_of,
    run_meta,
    run_worker,
    speedup_pct,
    write_results,
)

BATCH = 4


def default_runs(variant: str) -> int:
    """Official anchors: 7 runs for atto, 5 for s; 5 for the larger ones too."""
    return 7 if variant in ("atto", "femto", "pico", "n") else 5


def make_batch(h: int, w: int, batch: int = BATCH, num_classes: int = 80, seed: int = 0):
    """Random images [B,3,h,w] and targets with 3–5 boxes each (normalised cxcywh, int64 labels)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, h, w, generator=g)
    targets = []
    for _ in range(batch):
        n = int(torch.randint(3, 6, (1,), generator=g))
        centre = 0.2 + 0.6 * torch.rand(n, 2, generator=g)
        size = 0.05 + 0.35 * torch.rand(n, 2, generator=g)
        targets.append(
            {"boxes": torch.cat([centre, size], 1), "labels": torch.randint(0, num_classes, (n,), generator=g)}
        )
    return images, targets


def forward_loss(model, criterion, images, targets) -> dict:
    """Train-mode forward with targets + criterion (epoch 0), as the official ``train_one_epoch`` calls it."""
    outputs = model(images, targets=targets)
    return criterion(outputs, targets, epoch=0, step=0, global_step=0, epoch_step=1)


def train_step(model, criterion, optimizer, images, targets, clip_max_norm: float) -> float:
    """One optimisation step; returns the total loss."""
    import torch

    loss = sum(forward_loss(model, criterion, images, targets).values())
    optimizer.zero_grad()
    loss.backward()
    if clip_max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_max_norm)
    optimizer.step()
    return loss.item()


def _time_steps(
    model, criterion, optimizer, clip: float, variant: str, h: int, w: int, runs: int, warmup: int, plan=None
) -> dict:
    """Time :func:`train_step` on one fixed batch (``plan``: our SpeedPlan, which lays out the images)."""
    import torch

    from deimv2.utils.runtime import time_fn

    model.train()
    criterion.train()
    images, targets = make_batch(h, w)
    if plan is not None:
        images = plan.prepare_images(images)
    losses = []
    res = time_fn(
        lambda: losses.append(train_step(model, criterion, optimizer, images, targets, clip)), runs=runs, warmup=warmup
    )
    res.update(
        variant=variant,
        input=f"{BATCH}x3x{h}x{w}",
        threads=torch.get_num_threads(),
        boxes=[len(t["labels"]) for t in targets],
        first_loss=losses[0],
        last_loss=losses[-1],
    )
    return res


def ours_train_step(variant: str, runs: int, warmup: int = 2, threads: int = 2) -> dict:
    """Our model, criterion and AdamW param groups (``deimv2.models.build`` + ``deimv2.engine.optim``), with the
    speed options the variant's config turns on by default (``deimv2.engine.speed``; HGNetv2: channels-last), as
    ``deimv2 train`` runs them; ``speed`` in the result names them."""
    import torch

    from deimv2.engine.optim import build_optimizer
    from deimv2.engine.speed import SpeedOptions, SpeedPlan
    from deimv2.loss import build_criterion
    from deimv2.models.build import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(variant)
    cfg = model.config
    options = SpeedOptions.from_config(cfg.train)
    plan = SpeedPlan(options, torch.device("cpu"))
    model = plan.prepare_model(model)
    criterion = build_criterion(cfg)
    o = cfg.optimizer
    optimizer = build_optimizer(model, o.param_groups, o.lr, o.betas, o.weight_decay)
    h, w = cfg.eval_spatial_size
    res = _time_steps(model, criterion, optimizer, cfg.train.clip_max_norm, variant, h, w, runs, warmup, plan)
    res["speed"] = [name for name in ("channels_last", "compile", "cpu_amp") if getattr(options, name)]
    return res


def train_fidelity(off_model, off_criterion, variant: str, h: int, w: int, seed: int = 0) -> dict:
    """Same weights and RNG seed: loss terms and gradients of ours vs official (one forward + backward)."""
    import torch

    from deimv2.loss import build_criterion
    from deimv2.models.build import build_model

    ours = build_model(variant)
    ours.load_state_dict(off_model.state_dict(), strict=True)
    crit = build_criterion(ours.config)
    losses, grads = [], []
    for model, criterion in ((off_model, off_criterion), (ours, crit)):
        images, targets = make_batch(h, w)  # a fresh copy each: a criterion may add keys to targets
        model.train()
        criterion.train()
        model.zero_grad()
        torch.manual_seed(seed)  # denoising queries are drawn from the global RNG
        ld = forward_loss(model, criterion, images, targets)
        sum(ld.values()).backward()
        losses.append({k: v.detach() for k, v in ld.items()})
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    off_model.zero_grad()
    (lo, lu), (go, gu) = losses, grads
    common = sorted(set(lo) & set(lu))
    grad_names = sorted(set(go) & set(gu))
    return {
        "loss_terms": len(lo),
        "loss_keys_equal": set(lo) == set(lu),
        "total_loss_official": float(sum(lo.values())),
        "total_loss_ours": float(sum(lu.values())),
        "loss_max_abs_diff": max((max_abs_diff(lu[k], lo[k]) for k in common), default=None),
        "grad_params_equal": set(go) == set(gu),
        "grad_max_abs_diff": max((max_abs_diff(gu[n], go[n]) for n in grad_names), default=None),
        "grad_max_abs": max((go[n].abs().max().item() for n in grad_names), default=None),
    }


def official_train_step(
    official: str, variant: str, runs: int, warmup: int = 2, threads: int = 2, check: bool = True
) -> dict:
    """The official model, DEIMCriterion and optimizer (``YAMLConfig.optimizer``), timed like ours."""
    import gc

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_official(official, variant)
    model, criterion, optimizer = cfg.model, cfg.criterion, cfg.optimizer
    h, w = cfg.yaml_cfg["eval_spatial_size"]
    fid = train_fidelity(model, criterion, variant, h, w) if check else None
    gc.collect()
    res = _time_steps(model, criterion, optimizer, float(cfg.yaml_cfg["clip_max_norm"]), variant, h, w, runs, warmup)
    res["fidelity"] = fid
    return res


def compare(
    variants: Sequence[str],
    threads: int = 2,
    runs: int | None = None,
    warmup: int = 2,
    official: str | None = None,
    rounds: int = 1,
    check: bool = True,
) -> list[dict]:
    script = Path(__file__).resolve()

    def measure(side: str, v: str) -> dict:
        args = [side, v, "--threads", threads, "--runs", runs or default_runs(v), "--warmup", warmup]
        args += ["--official", official] if side == "official" else []
        args += [] if check else ["--no-check"]
        return run_worker(script, args)

    print(
        f"训练一步（forward + loss + backward + clip_grad_norm + AdamW step），fp32，batch {BATCH}，"
        f"线程数 {threads}，预热 {warmup} 次后取中位数，{rounds} 轮（ours/官方交替），随机权重"
    )
    rows = interleaved(variants, rounds, official, measure)
    summary = []
    print(f"{'变体':<6}{'输入':>15}{'ours ms':>10}{'官方 ms':>10}{'提速 %':>9}{'loss |Δ|':>11}{'grad |Δ|':>11}")
    for row in rows:
        ours_ms, off_ms = median_of(row["ours"]), median_of(row["official"])
        fid = next((r["fidelity"] for r in row["official"] if r.get("fidelity")), None)
        sp = speedup_pct(ours_ms, off_ms) if ours_ms and off_ms else None
        src = (row["ours"] or row["official"] or [{}])[0]
        print(
            f"{row['variant']:<6}{src.get('input', '?'):>15}{fmt(ours_ms):>10}{fmt(off_ms):>10}{fmt(sp, '+.1f'):>9}"
            f"{fmt(fid and fid['loss_max_abs_diff'], '.2e'):>11}{fmt(fid and fid['grad_max_abs_diff'], '.2e'):>11}"
        )
        summary.append(
            {
                "variant": row["variant"],
                "input": src.get("input"),
                "ours_ms": ours_ms,
                "official_ms": off_ms,
                "speedup_pct": sp,
                "ours_over_official": ours_ms / off_ms if ours_ms and off_ms else None,
                "fidelity": fid,
                "ours_runs": row["ours"],
                "official_runs": row["official"],
            }
        )
    print("提速 % = 官方耗时 / ours 耗时 − 1；loss/grad |Δ| = 同一权重、同一随机种子下各损失项 / 梯度的最大绝对差")
    return summary


def _worker_main(argv: Sequence[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("side", choices=["ours", "official"])
    p.add_argument("variant", choices=ALL_VARIANTS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--official")
    p.add_argument("--no-check", action="store_true")
    a = p.parse_args(argv)
    if a.side == "ours":
        emit(ours_train_step(a.variant, a.runs, a.warmup, a.threads))
    else:
        emit(official_train_step(a.official, a.variant, a.runs, a.warmup, a.threads, not a.no_check))


def main(argv: Sequence[str] | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        _worker_main(argv[1:])
        return []
    p = argparse.ArgumentParser(description="DEIMv2 训练一步耗时：deimv2 包 vs 官方代码（同一台机器、同一次运行）")
    p.add_argument("--variants", nargs="+", default=["atto", "s"], choices=ALL_VARIANTS)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads（默认 2）")
    p.add_argument("--runs", type=int, default=None, help="计时次数（默认 atto..n 为 7，s..x 为 5）")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="每个变体重复几轮（ours/官方交替先后）")
    p.add_argument("--official", default=None, help="官方 DEIMv2 代码目录；不给则只测 deimv2 包")
    p.add_argument("--no-check", action="store_true", help="跳过与官方 loss / 梯度的一致性检查")
    p.add_argument("--json", default=None, help="把结果写入这个 JSON 文件")
    a = p.parse_args(argv)
    meta = run_meta(a.threads, a.rounds, argv)
    summary = compare(a.variants, a.threads, a.runs, a.warmup, a.official, a.rounds, not a.no_check)
    if a.json:
        write_results(a.json, meta, summary)
        print(f"结果已写入 {a.json}")
    return summary


if __name__ == "__main__":
    main()
