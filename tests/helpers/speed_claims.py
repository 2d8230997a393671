"""docs/benchmarks.md's section 训练速度, rendered from its results JSONs (issue 30's measurements).

Each function returns one bullet; ``tests/docs/test_readme_numbers.py::claims`` checks that every bullet appears
verbatim in docs/benchmarks.md and that no other measured-looking figure is there.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
NAMES = {"atto": "Atto", "n": "N", "s": "S"}
KIND_NAMES = {
    "attention": "注意力",
    "convolution": "卷积",
    "elementwise/other": "逐元素运算等",
    "batch_norm": "BatchNorm",
}


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def profile_rows(result: dict, speed: list[str]) -> dict:
    """Medians over the rounds of ``benchmarks/profile_step.py`` rows with the speed options ``speed``: the plain
    step time, each kind's share of the step and the share outside every operator."""
    rows = [r for r in result["rows"] if r["speed"] == speed and "error" not in r]
    kinds = {k: statistics.median(r["kinds"].get(k, 0.0) for r in rows) for k in rows[0]["kinds"]}
    return {
        "step_ms": statistics.median(r["plain_step_ms"] for r in rows),
        "kinds": kinds,
        "python": statistics.median(r["python_overhead_share"] for r in rows),
        "criterion": statistics.median(r["phases"]["criterion"]["share"] for r in rows),
        "input": rows[0]["input"],
    }


def profile_claim() -> str:
    """Where a training step's time goes, Atto (channels-first and -last) and S."""
    atto, s = load("profile_step_atto_cpu1.json"), load("profile_step_s_cpu1.json")
    cf, cl = profile_rows(atto, []), profile_rows(atto, ["channels_last"])
    s_cf, s_cl = profile_rows(s, []), profile_rows(s, ["channels_last"])
    top = "、".join(f"{KIND_NAMES[k]} {pct(cl['kinds'][k])}" for k in ("convolution", "elementwise/other", "attention"))
    return (
        f"- **训练一步的时间花在哪里**（`python benchmarks/profile_step.py`，{atto['meta']['threads']} 线程，"
        f"{atto['meta']['rounds']} 轮交替、取中位数；一步 = 前向、匹配和损失、反向、梯度裁剪、AdamW、EMA）："
        f"Atto（{cl['input']}）channels-first {cf['step_ms']:.0f} ms，channels-last {cl['step_ms']:.0f} ms"
        f"（{cl['step_ms'] / cf['step_ms']:.2f}×）；channels-last 下{top}，算子之外（Python 等）{pct(cl['python'])}，"
        f"匹配和损失（含匈牙利匹配）{pct(cl['criterion'])}。"
        f"S（{s_cl['input']}）channels-first {s_cf['step_ms'] / 1000:.1f} 秒，channels-last {s_cl['step_ms'] / 1000:.1f} 秒，"
        f"注意力占 {pct(s_cf['kinds']['attention'])}"
        f"（[Atto](../benchmarks/results/profile_step_atto_cpu1.json)、[S](../benchmarks/results/profile_step_s_cpu1.json)）。"
    )


def train_step_claim() -> str:
    """One training step, ours (the variant's default speed options) against the official trainer."""
    r = load("train_step_cpu2.json")
    m = r["meta"]
    parts = "，".join(
        f"{NAMES[row['variant']]} "
        f"{row['ours_ms']:.0f} / {row['official_ms']:.0f} ms（{row['ours_ms'] / row['official_ms']:.2f}×）"
        for row in r["rows"]
    )
    return (
        f"- **训练一步：我们与官方代码**（`python benchmarks/train_step.py --official 官方代码目录`，{m['threads']} 线程，"
        f"{m['rounds']} 轮交替，batch 4，各变体的评估尺寸，deimv2 用各变体默认的提速选项）：{parts}"
        f"（[JSON](../benchmarks/results/train_step_cpu2.json)）。"
    )


MODE_NAMES = {"channels_last": "channels-last", "compile": "`torch.compile`", "cpu_amp": "CPU bf16（`cpu_amp`）"}


def train_speed_claim() -> str:
    """Each speed option's Atto step against eager channels-first float32, and the loader workers' epochs."""
    r = load("train_speed_atto_cpu1.json")
    m, summary = r["meta"], r["rows"][0]["summary"]
    steps = {s["mode"]: s for s in summary if s["kind"] == "step"}
    epochs = {s["workers"]: s for s in summary if s["kind"] == "epoch" and s["mode"] == "eager"}
    modes = "，".join(
        f"{MODE_NAMES[k]} {steps[k]['vs_eager']:.2f}×" for k in ("channels_last", "compile", "cpu_amp") if k in steps
    )
    compile_first = steps["compile"]["first_step_s"] if "compile" in steps else None
    workers = "、".join(f"{w} 个 {epochs[w]['epoch_s']:.1f} 秒" for w in sorted(epochs))
    return (
        f"- **提速选项各自的效果**（`python benchmarks/train_speed.py`，{m['threads']} 线程，{m['rounds']} 轮交替）："
        f"Atto 训练一步（{steps['eager']['median_ms']:.0f} ms，eager channels-first float32 为 1×）：{modes}"
        + (
            f"；`torch.compile` 的第一步（编译）{compile_first:.0f} 秒，按每步省下的时间约 "
            f"{steps['compile']['break_even_steps']:.0f} 步才能赚回来"
            if compile_first is not None
            else ""
        )
        + f"。示例数据集的一轮按数据加载进程数：{workers}"
        f"（[JSON](../benchmarks/results/train_speed_atto_cpu1.json)）。"
    )


def seed_pairs(folder: str, a: str, b: str, seeds=(0, 1, 2)) -> list[tuple[dict, dict]]:
    """(trial a, trial b) result pairs of ``benchmarks/recipes.py`` runs in ``benchmarks/results/<folder>``."""
    name = lambda t, s: f"{folder}/{t}{f'_seed{s}' if s else ''}.json"  # noqa: E731
    return [(load(name(a, s)), load(name(b, s))) for s in seeds]


def channels_last_claim() -> str:
    """The demo's training in both memory orders, three seeds: final validation AP50 / AP and wall time."""
    pairs = seed_pairs("speed/cl_vs_cf", "small_na10_e40", "small_cf_e40")
    cell = lambda r: f"{r['final']['AP50']:.3f} / {r['final']['AP']:.3f}"  # noqa: E731
    mean = lambda rs, k: statistics.mean(r["final"][k] for r in rs)  # noqa: E731
    cl, cf = [p[0] for p in pairs], [p[1] for p in pairs]
    ratio = statistics.median(a["wall_s"] / b["wall_s"] for a, b in pairs)
    return (
        "- **channels-last 作为默认之前的验证**（`python benchmarks/recipes.py small_na10_e40 small_cf_e40 --seed N "
        "--results benchmarks/results/speed/cl_vs_cf`，两个训练同时运行、各 1 线程，`deimv2 demo` 的训练：40 轮，"
        "种子 0、1、2）：最后一轮验证集 mAP@0.5 / mAP@0.5:0.95，channels-last "
        + "、".join(cell(r) for r in cl)
        + f"（平均 {mean(cl, 'AP50'):.3f} / {mean(cl, 'AP'):.3f}），channels-first "
        + "、".join(cell(r) for r in cf)
        + f"（平均 {mean(cf, 'AP50'):.3f} / {mean(cf, 'AP'):.3f}）；用时之比（channels-last / channels-first）"
        f"各种子的中位数 {ratio:.2f}×（[JSON 文件夹](../benchmarks/results/speed/cl_vs_cf)）。"
    )


def vs_yolo_claim() -> str:
    """The demo's training and YOLO11n's, run side by side: wall time of the same 40 epochs."""
    atto, yolo = load("speed/vs_yolo/small_na10_e40.json"), load("speed/vs_yolo/yolo11n_e40.json")
    return (
        f"- **与 YOLO11n 同时训练 40 轮**（`python benchmarks/recipes.py small_na10_e40 yolo11n_e40 --results "
        f"benchmarks/results/speed/vs_yolo`，各 1 线程）：Atto（`deimv2 demo` 的训练）{atto['wall_s'] / 60:.1f} 分钟，"
        f"YOLO11n {yolo['wall_s'] / 60:.1f} 分钟（{atto['wall_s'] / yolo['wall_s']:.2f}×；两边都含每轮的验证集评估）"
        f"（[JSON 文件夹](../benchmarks/results/speed/vs_yolo)）。"
    )


def speed_claims() -> list[str]:
    return [profile_claim(), train_step_claim(), train_speed_claim(), channels_last_claim(), vs_yolo_claim()]


def readme_speed() -> str:
    """README's sentence on training speed: the new default and where Atto stands against YOLO11n."""
    atto = load("profile_step_atto_cpu1.json")
    cf, cl = profile_rows(atto, []), profile_rows(atto, ["channels_last"])
    epoch = load("recipes/epoch_cost.json")["summary"]["atto_b8"]
    return (
        f"- **训练速度**：Atto、Femto、Pico、N 默认用 channels-last 内存布局训练（数学不变），Atto 训练一步"
        f"（{atto['meta']['threads']} 线程，batch 8，256×256）从 {cf['step_ms']:.0f} ms 降到 {cl['step_ms']:.0f} ms；"
        f"每张图的训练计算仍是 YOLO11n 的 {epoch['train_compute_vs_yolo11n']:.2f}×，主要花在注意力和卷积上"
        f"（[docs/benchmarks.md](docs/benchmarks.md#训练速度)）。"
    )
