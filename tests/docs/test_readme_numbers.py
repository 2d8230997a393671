"""Measured figures in docs/benchmarks.md and README.md: every one is read from a results JSON under benchmarks/results/.

Each claim below is rendered from its JSON and must appear verbatim in its page; after removing the claims (and,
in README, the official model-zoo table, checked against deimv2/config/variants.py), no measured-looking figure
(decimals, percentages, durations) may remain. Change a number by hand and this test fails; re-run the
benchmark script instead.
"""

import json
import re
from pathlib import Path

from helpers.golden import TOL, VARIANTS
from helpers.int8_claims import int8_variants_claim
from helpers.speed_claims import readme_speed, speed_claims

from deimv2.config.recipes import recipe_overrides

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
NAMES = {"atto": "Atto", "femto": "Femto", "pico": "Pico", "n": "N", "s": "S", "m": "M", "l": "L", "x": "X"}
#: figures that look measured: decimals, percentages, e-notation, numbers with a time unit
FIGURE = re.compile(r"\d+\.\d+|\d+(?:\.\d+)?\s*%|\d(?:\.\d+)?e-\d+|\d+\s*(?:ms|s\b|秒|分钟|小时)")


def _load(name):
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def measured_section() -> str:
    """docs/benchmarks.md: every measured table (README keeps a few sentences, :func:`readme_claims`)."""
    return (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")


def backends_claim(pb: dict) -> str:
    """The README line of ``benchmarks/predict_latency.py`` (Detector default backend vs official eager)."""
    m, v = pb["meta"], pb["variants"]

    def f(x):
        return f"{x:.0f}" if x >= 100 else f"{x:.1f}"

    parts = "，".join(
        f"{NAMES[k]} {f(v[k]['file_to_boxes_ms'])} ms（官方 {f(v[k]['official_best_ms'])} ms，"
        f"{v[k]['file_to_boxes_over_official']:.2f}×，后端 {v[k]['default_backend']}）"
        for k in ("atto", "n", "s")
    )
    runtimes = "；".join(
        f"{name} " + "，".join(f"{NAMES[k]} {v[k][f'{rt}_over_deploy']:.2f}×" for k in ("atto", "n", "s"))
        for rt, name in (("openvino", "OpenVINO"), ("onnxruntime", "onnxruntime"))
    )
    return (
        f"- **CPU 推理后端**（`Detector.from_checkpoint` 默认后端，{m['threads']} 线程，batch 1，各方式逐次轮流调用 "
        f"{m['rounds']}×{m['runs']} 次取中位数，测量时机器负载 {m['loadavg_start'][0]:.1f}；官方模型取 NCHW 与 channels-last "
        f"两种输入中较快的；比值是各轮比值的中位数）：从 640×480 JPEG 文件到检测框 "
        f"{parts}；前 10 个检测与官方模型一致。各引擎与 PyTorch deploy 图的耗时比：{runtimes}"
    )


def compute_bound_claim(pb: dict) -> str:
    """The README sentence on the float32 work N and S must do, against the machine's matrix-multiply speed."""
    v = pb["variants"]

    def need(k):  # GFLOP/s needed to finish within half the official time
        return v[k]["gflop"] / (0.5 * v[k]["official_best_ms"]) * 1e3

    def got(k):
        return v[k]["gflop"] / v[k][f"{v[k]['default_backend']}_ms"] * 1e3

    return (
        f"N 一次前向 {v['n']['gflop']:.1f} GFLOP、S {v['s']['gflop']:.1f} GFLOP（torch.utils.flop_counter，乘加算 2 次）；"
        f"要在官方耗时的一半内算完（还不算读图和缩放），需要每秒 {need('n'):.0f} / {need('s'):.0f} GFLOP，"
        f"即同一进程、同样线程数下 float32 大矩阵乘速度（{v['n']['sgemm_gflops']:.0f} / {v['s']['sgemm_gflops']:.0f} GFLOP/s）"
        f"的 {need('n') / v['n']['sgemm_gflops']:.0%} / {need('s') / v['s']['sgemm_gflops']:.0%}；"
        f"默认后端实际达到 {got('n'):.0f} / {got('s'):.0f} GFLOP/s"
    )


def speedups_claim(ts: dict) -> str:
    """The README sentence of ``benchmarks/torch_speedups.py``: what bounds the exact speed-up of S."""
    share = ts["variants"]["s"]["torch_time_share"]
    return (
        f"S 的 PyTorch deploy 图里注意力占 {share['attention']:.0%}、矩阵乘占 {share['matmul']:.0%}，"
        f"合计 {share['attention'] + share['matmul']:.0%}（torch profiler，{ts['meta']['threads']} 线程）"
    )


def notebooks_claim(nr: dict) -> str:
    """The README lines of ``benchmarks/notebooks_run.py`` (both slow notebook tests, one run)."""
    t = nr["tests"]
    default = nr["notebooks"]["default_mode"]
    wheel = t["test_notebooks_run_from_installed_wheel_in_an_empty_folder"]
    full = t["test_all_notebooks_run_all_in_default_mode"]
    assert full["passed"] and wheel["passed"], "notebooks_run JSON records a failed run"
    return (
        "- **Notebook 慢速测试**（`pytest -m slow_notebooks tests/notebooks/test_notebooks_run.py`，"
        "`.ci/run` 在 README 的测试命令之后运行，"
        f"`python benchmarks/notebooks_run.py` 测量）：默认模式（不设置 `DEIMV2_FAST`）下把全部 {len(default)} 个 notebook "
        f"复制到空文件夹、按顺序“全部运行”，用时约 {full['seconds'] / 60:.0f} 分钟，其中 04（含示例训练）"
        f"约 {default['04_train.ipynb'] / 60:.0f} 分钟；从 wheel 安装到全新虚拟环境（非 editable）后在带中文和空格的空文件夹里"
        f"按顺序运行全部 notebook（快速模式）用时约 {wheel['seconds'] / 60:.1f} 分钟。notebook 内核 {nr['threads']} 个线程，"
        f"1 分钟平均负载 {nr['loadavg_before'][0]:.1f}（开始）/ {nr['loadavg_after'][0]:.1f}（结束）"
    )


def recipes_claim(table: dict, results: Path = RESULTS / "recipes") -> str:
    """README lines of one ``benchmarks/recipes.py`` comparison: DEIMv2-Atto schedules vs YOLO11n, same epochs.

    ``table``: ``rows`` (trial -> label), ``together`` (the trials run concurrently, one command), ``ours`` and
    ``yolo`` (the pair whose ratios are given; both in ``together``)."""
    rows_ = table["rows"]
    prefix = table.get("prefix", "")  # "photo2_": the trials on the second dataset
    runs = {n: json.loads((results / f"{prefix}{n}.json").read_text(encoding="utf-8")) for n in rows_}
    ours, yolo = runs[table["ours"]], runs[table["yolo"]]
    rows = []
    for name, label in rows_.items():
        r = runs[name]
        own = (
            f"（YOLO 自己的评估 {r['curve'][-1]['yolo_AP50']:.2f} / {r['curve'][-1]['yolo_AP']:.2f}）"
            if r["kind"] == "yolo"
            else ""
        )
        wall = f"{r['wall_s'] / 60:.1f} 分钟" if name in table["together"] else "—（单独运行，不可比）"
        rows.append(
            f"| {label} | {r['final']['AP50']:.2f} / {r['final']['AP']:.2f}{own} | {r['best']['AP50']:.2f} / "
            f"{r['best']['AP']:.2f}（第 {r['best']['epoch']} 轮） | {r['test']['last']['AP50']:.2f} / "
            f"{r['test']['last']['AP']:.2f} | {wall} |"
        )
    loads = [s[1] for n in table["together"] for s in runs[n]["loadavg"]]
    ratio = {k: ours["final"][k] / max(yolo["final"][k], 1e-9) for k in ("AP50", "AP")}
    held = {k: ours["test"]["last"][k] / max(yolo["test"]["last"][k], 1e-9) for k in ("AP50", "AP")}
    wall = ours["wall_s"] / yolo["wall_s"]
    demo = ours.get("dataset", "demo") == "demo"  # the 0.85 floor is the demo's (issue 14); elsewhere: vs YOLO11n
    met = (
        min(ratio.values()) >= 1
        and min(held.values()) >= 1
        and wall <= 1
        and (ours["final"]["AP50"] >= 0.85 or not demo)
    )
    goal = "不低于 YOLO11n、用时不多于它" + ("、验证集 mAP@0.5 ≥ 0.85" if demo else "")
    e, size = ours["epochs"], ours["image_size"]
    if demo:
        data, flag = "示例数据集", ""
    else:
        data, flag = (
            f"第二个数据集 {ours['dataset']}（{len(ours['classes'])} 类：{'、'.join(ours['classes'])}）",
            (f" --dataset {ours['dataset']}"),
        )
    return "\n".join(
        [
            f"- **从头训练 {e} 轮：DEIMv2-Atto 的日程与 YOLO11n**（`python benchmarks/recipes.py {' '.join(table['together'])}{flag}`，"
            f"{len(table['together'])} 个训练同时运行、各 {ours['threads']} 线程，运行期间 1 分钟平均负载 "
            f"{min(loads):.1f}–{max(loads):.1f}）：{data}的 160 张训练图，{size}×{size}，"
            "验证集 48 张每轮评估，另用数据生成器换一个种子做了 96 张从未用来调参的 held-out 测试集；"
            "所有 mAP 都由同一个 pycocotools COCOeval 计算（mAP@0.5 / mAP@0.5:0.95）：",
            "",
            "  | 训练 | 验证集，最后一轮 | 验证集，最佳一轮 | held-out，最后的权重 | 用时 |",
            "  |---|---|---|---|---|",
            *[f"  {r}" for r in rows],
            "",
            f"  {rows_[table['ours']]} / YOLO11n：验证集 mAP@0.5 {ratio['AP50']:.2f}×、mAP {ratio['AP']:.2f}×，"
            f"held-out mAP@0.5 {held['AP50']:.2f}×、mAP {held['AP']:.2f}×，用时 {wall:.2f}×。"
            + f"目标（{goal}）{'达到了' if met else '没有达到'}。",
        ]
    )


def quarter_claim() -> str:
    """README sentence on the recipe's quarter without strong augmentation (small_na10_e40, on both datasets)."""

    def r(name):
        d = json.loads((RESULTS / "recipes" / f"{name}.json").read_text(encoding="utf-8"))
        test = d["test"]["last"]
        return f"{d['final']['AP50']:.2f} / {d['final']['AP']:.2f}，held-out {test['AP50']:.2f} / {test['AP']:.2f}"

    return (
        f"示例数据集：{r('small_na10_e40')}（官方轮次规则 {r('official_rule_e40')}，YOLO11n {r('yolo11n_e40')}）；"
        f"photo2：{r('photo2_small_na10_e40')}（官方轮次规则 {r('photo2_small_e40')}，按比例缩放 "
        f"{r('photo2_today_e40')}，YOLO11n {r('photo2_yolo11n_e40')}）"
    )


def seed_file(prefix: str, trial: str, seed: int) -> Path:
    """The results JSON of ``trial`` run with ``seed`` (seed 0: the first trial's file, without a suffix)."""
    return RESULTS / "recipes" / f"{prefix}{trial}{f'_seed{seed}' if seed else ''}.json"


def seed_study(table: dict) -> dict:
    """One seed study read from its JSONs: ``runs`` (trial -> one result per seed), ``avg`` (trial -> mean val AP50,
    val AP, held-out AP50, held-out AP), ``spread`` (the largest val AP50 range over seeds of one trial) and
    ``walls`` (ours / YOLO wall time, for each seed where the pair ran together); ``spread`` is taken over the
    trials in ``table["spread_of"]`` (the settings compared, not a failed experiment).

    ``table``: ``prefix`` ("" demo, "photo2_"), ``rows`` (trial -> label), ``seeds``, ``paired`` (ours, YOLO: the
    pair whose wall times are compared where the two ran together), ``short`` (trial -> short name)."""
    prefix, seeds = table["prefix"], table["seeds"]
    runs = {n: [json.loads(seed_file(prefix, n, k).read_text(encoding="utf-8")) for k in seeds] for n in table["rows"]}
    assert all(r["seed"] == k for rs in runs.values() for r, k in zip(rs, seeds) if "seed" in r)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    avg = {
        n: [mean([r[part]["last"][k] if part == "test" else r[part][k] for r in rs]) for part in ("final", "test")
            for k in ("AP50", "AP")]
        for n, rs in runs.items()
    }  # fmt: skip
    ours, yolo = table["paired"]
    walls = [
        a["wall_s"] / b["wall_s"]
        for a, b in zip(runs[ours], runs[yolo])
        if yolo in a["concurrent_with"] and ours in b["concurrent_with"]
    ]
    spread = max(
        max(r["final"]["AP50"] for r in runs[n]) - min(r["final"]["AP50"] for r in runs[n]) for n in table["spread_of"]
    )
    return {"runs": runs, "avg": avg, "spread": spread, "walls": walls}


def seeds_claim(table: dict) -> str:
    """README lines of one seed study (:func:`seed_study`): each seed's values, the means and their differences."""
    st = seed_study(table)
    runs, avg, ours = st["runs"], st["avg"], table["paired"][0]
    rows = []
    for name, label in table["rows"].items():
        val = " · ".join(f"{r['final']['AP50']:.2f} / {r['final']['AP']:.2f}" for r in runs[name])
        held = " · ".join(f"{r['test']['last']['AP50']:.2f} / {r['test']['last']['AP']:.2f}" for r in runs[name])
        a = avg[name]
        rows.append(f"  | {label} | {val} | **{a[0]:.3f} / {a[1]:.3f}** | {held} | **{a[2]:.3f} / {a[3]:.3f}** |")
    diffs = [
        f"比{table['short'][n]}：验证集 {avg[ours][0] - avg[n][0]:+.3f} / {avg[ours][1] - avg[n][1]:+.3f}，"
        f"held-out {avg[ours][2] - avg[n][2]:+.3f} / {avg[ours][3] - avg[n][3]:+.3f}"
        for n in table["rows"]
        if n != ours
    ]
    wall = "、".join(f"{w:.2f}×" for w in st["walls"])
    prefix = table["prefix"]
    data = "示例数据集" if not prefix else f"第二个数据集 {prefix.rstrip('_')}"
    cmd = f"python benchmarks/recipes.py 名字 --seed N{'' if not prefix else ' --dataset ' + prefix.rstrip('_')}"
    return "\n".join(
        [
            f"- **随机种子：{data}，40 轮，种子 {'、'.join(map(str, table['seeds']))}**（`{cmd}`，种子 0 是上面各表的那次运行）："
            "每格依次是各个种子的 mAP@0.5 / mAP@0.5:0.95，粗体是平均：",
            "",
            "  | 训练 | 验证集，最后一轮 | 平均 | held-out，最后的权重 | 平均 |",
            "  |---|---|---|---|---|",
            *rows,
            "",
            f"  {'、'.join(table['short'][n] for n in table['spread_of'])} 各自只换种子，"
            f"验证集 mAP@0.5 最多相差 {st['spread']:.2f}。{table['short'][ours]} 的平均（mAP@0.5 / mAP）"
            + "；".join(diffs)
            + "。",
            f"  两者同时运行（各 1 线程）的 {len(st['walls'])} 次里，{table['short'][ours]} 的用时是 YOLO11n 的 {wall}。"
            if st["walls"]
            else "",
        ]
    ).rstrip()


def _four(prefix: str, trial: str, seed: int) -> list[float]:
    """val AP50, val AP, held-out AP50, held-out AP of one recipe trial."""
    r = json.loads(seed_file(prefix, trial, seed).read_text(encoding="utf-8"))
    return [r["final"]["AP50"], r["final"]["AP"], r["test"]["last"]["AP50"], r["test"]["last"]["AP"]]


def single_seed_claim(table: dict) -> str:
    """README lines of trials run once (seed 0) on both datasets, set against the range of ``base`` over ``seeds``.

    ``table``: ``rows`` (trial -> label), ``base`` (the recipe's trial), ``seeds``, ``short`` (trial -> short name)."""
    prefixes, base = ("", "photo2_"), table["base"]
    ranges = {p: list(zip(*(_four(p, base, k) for k in table["seeds"]))) for p in prefixes}
    pair = lambda v: f"{v[0]:.2f} / {v[1]:.2f}"  # noqa: E731
    span = lambda v: f"{min(v[0]):.2f}–{max(v[0]):.2f} / {min(v[1]):.2f}–{max(v[1]):.2f}"  # noqa: E731
    rows = [
        f"  | {table['label']}，种子 {'、'.join(map(str, table['seeds']))} 的范围 | "
        + " | ".join(span(ranges[p][i : i + 2]) for p in prefixes for i in (0, 2))
        + " |"
    ]
    words, how = [], set()
    for name, label in table["rows"].items():
        v = {p: _four(p, name, 0) for p in prefixes}
        for p in prefixes:
            r = json.loads(seed_file(p, name, 0).read_text(encoding="utf-8"))
            how.add((len(r["concurrent_with"]) + 1, r["threads"]))
        rows.append(f"  | {label} | " + " | ".join(pair(v[p][i : i + 2]) for p in prefixes for i in (0, 2)) + " |")
        below = sum(x < min(rg) for p in prefixes for x, rg in zip(v[p], ranges[p]))
        above = sum(x > max(rg) for p in prefixes for x, rg in zip(v[p], ranges[p]))
        words.append(
            f"{table['short'][name]}的 8 个数里 {below} 个低于 {table['label']} 各种子中最低的一次、"
            f"{above} 个高于最高的一次、{8 - below - above} 个在范围之内"
        )
    (together, threads), *_ = how
    assert len(how) == 1, f"trials run in different ways: {how}"
    return "\n".join(
        [
            "- **只跑了种子 0 的尝试**（`python benchmarks/recipes.py 名字` 和 `... --dataset photo2`，"
            f"{together} 个训练同时运行、各 {threads} 线程）："
            "每格是 mAP@0.5 / mAP@0.5:0.95，第一行是对照的范围：",
            "",
            "  | 训练 | 示例数据集，验证集 | 示例数据集，held-out | photo2，验证集 | photo2，held-out |",
            "  |---|---|---|---|---|",
            *rows,
            "",
            "  " + "；".join(words) + "。",
        ]
    )


PART_NAMES = {
    "data": "读图和数据增强",
    "forward": "前向",
    "criterion": "匹配和损失",
    "backward": "反向",
    "step": "梯度裁剪 + 优化器 + EMA",
    "eval": "每轮的验证集评估",
}


def epoch_cost_claim(r: dict) -> str:
    """README line of ``benchmarks/epoch_cost.py``: where an Atto epoch's time goes, and YOLO11n's training compute."""
    m, s = r["meta"], r["summary"]
    a8, cf, a16, y = s["atto_b8"], s["atto_b8_cf"], s["atto_b16"], s["yolo11n_b16"]
    parts = "、".join(f"{PART_NAMES[k]} {v:.1f} 秒" for k, v in a8["median_parts_s"].items())
    return (
        f"- **一轮的时间花在哪里**（`python benchmarks/epoch_cost.py`，{m['threads']} 线程，{m['rounds']} 轮交替、取中位数，"
        f"开始时 1 分钟平均负载 {m['loadavg_start'][0]:.1f}）：`--recipe small` 在示例数据集上的一轮（{a8['images']} 张，"
        f"batch 8，默认的 channels-last）共 {a8['epoch_s']:.1f} 秒：{parts}。训练计算（前向到优化器）每张图 "
        f"{a8['train_compute_ms_per_image']:.0f} ms（channels-first 时 {cf['train_compute_ms_per_image']:.0f} ms，"
        f"batch 16 时 {a16['train_compute_ms_per_image']:.0f} ms），YOLO11n（batch 16，同样大小的随机图片）"
        f"{y['train_compute_ms_per_image']:.0f} ms：Atto 的训练计算是 YOLO11n 的 {a8['train_compute_vs_yolo11n']:.2f}×"
        f"（channels-first 时 {cf['train_compute_vs_yolo11n']:.2f}×，batch 16 时 {a16['train_compute_vs_yolo11n']:.2f}×）"
        f"（[JSON](../benchmarks/results/recipes/epoch_cost.json)）。"
    )


def demo_claim(name: str) -> str:
    """The README line of `deimv2 demo`: its training is trial ``name`` (same overrides, same recipe)."""
    r = json.loads((RESULTS / "recipes" / f"{name}.json").read_text(encoding="utf-8"))
    ov = r["config"]["overrides"]
    batch = (
        ov.get("batch_size")
        or recipe_overrides(r["config"]["recipe"], r["epochs"])["train_dataloader.total_batch_size"]
    )
    return (
        f"- **`deimv2 demo` 的训练**（`--recipe small`，与 `python benchmarks/recipes.py {name}` 的训练配置完全相同）："
        f"Atto 从头训练 {r['epochs']} 轮（{r['image_size']}×{r['image_size']}，batch {batch}），"
        f"最后一轮验证集 mAP@0.5 = {r['final']['AP50']:.2f}、mAP@0.5:0.95 = {r['final']['AP']:.2f}，"
        f"held-out 测试集 mAP@0.5 = {r['test']['last']['AP50']:.2f}"
        f"（[JSON](../benchmarks/results/recipes/{name}.json)，每轮的曲线也在里面）。"
    )


def demo_run_claim(r: dict) -> str:
    """The README line of ``benchmarks/demo_run.py``: `deimv2 demo` itself, end to end, in default mode."""
    assert not r["fast"], "demo_run JSON records a fast-mode smoke run"
    m = r["meta"]
    best = max(r["curve"], key=lambda c: c["AP"])  # the checkpoint the demo evaluates: best.pth, chosen by AP
    assert best["epoch"] == r["best_epoch"] + 1 and abs(best["AP"] - r["final"]["AP"]) < 1e-9
    return (
        f"- **`deimv2 demo` 本身**（`python benchmarks/demo_run.py`：默认模式、从空文件夹运行整条流程，"
        f"{m['threads']} 线程，开始时 1 分钟平均负载 {m['loadavg_start'][0]:.1f}）：用时 {r['wall_s'] / 60:.1f} 分钟，"
        f"它评估的最佳权重（按 mAP 选出，第 {best['epoch']} 轮）在验证集上 mAP@0.5 = {r['final']['AP50']:.2f}、"
        f"mAP@0.5:0.95 = {r['final']['AP']:.2f}（[JSON](../benchmarks/results/demo_run_cpu2.json)）。"
    )


#: the recorded comparisons (benchmarks/results/recipes/<trial>.json), rendered into README by recipes_claim;
#: SMALL: the trial family whose schedule `--recipe small` is
SMALL = "small_na10"
#: one name per schedule: official_rule_e* and small_e* (and photo2_small_e40) are the same schedule
R4 = "Atto，batch 8，官方轮次规则（官方 Customizing Epoch 规则，无强增强阶段按官方值）"
LABELS = {
    "today": "Atto，batch 8，按比例缩放轮次节点",
    "official_rule": R4,
    "small_na10": "Atto，`--recipe small`（最后四分之一的轮数无强增强）",
    "yolo11n": "YOLO11n（Ultralytics 默认设置，batch 16）",
    "small_v1": "Atto，batch 4、EMA 0.995、学习率降到 0.1× 的日程",
    "small_lr2": "Atto，`--recipe small` 加两倍的学习率（0.004，骨干 0.002）",
    "small_lrhalf": "Atto，`--recipe small` 加一半的学习率（0.001，骨干 0.0005）",
    "small_ms": "Atto，`--recipe small` 加多尺度训练（每个 batch 随机取 192–320）",
}
RECIPE_TABLES = [
    {
        "rows": {f"{k}_e20": LABELS[k] for k in ("today", "official_rule", "yolo11n", "small_v1")},
        "together": ("today_e20", "yolo11n_e20", "small_v1_e20"),
        "ours": "today_e20",
        "yolo": "yolo11n_e20",
    },
    {
        "rows": {f"{k}_e40": LABELS[k] for k in ("today", "official_rule", "small_na10", "yolo11n")},
        "together": ("today_e40", "yolo11n_e40", "official_rule_e40"),
        "ours": "official_rule_e40",
        "yolo": "yolo11n_e40",
    },
    {  # twice the demo's epochs: is either still climbing?
        "rows": {"small_e80": R4, "small_na20_e80": LABELS["small_na10"], "yolo11n_e80": LABELS["yolo11n"]},
        "together": ("small_e80", "yolo11n_e80"),
        "ours": "small_e80",
        "yolo": "yolo11n_e80",
    },
    {  # the second dataset (data/make_photo2_dataset.py, 2 classes): the same three schedules at 40 epochs
        "prefix": "photo2_",
        "rows": {
            "today_e40": LABELS["today"],
            "small_e40": R4,
            "small_na10_e40": LABELS["small_na10"],
            "yolo11n_e40": LABELS["yolo11n"],
        },
        "together": ("small_e40", "today_e40", "yolo11n_e40"),
        "ours": "small_e40",
        "yolo": "yolo11n_e40",
    },
    {  # the demo's native image size: the same recipe, both at 320x320
        "rows": {
            "small_s320_e40": R4 + "，320×320",
            "yolo11n_s320_e40": "YOLO11n（Ultralytics 默认设置，batch 16），320×320",
        },
        "together": ("small_s320_e40", "yolo11n_s320_e40"),
        "ours": "small_s320_e40",
        "yolo": "yolo11n_s320_e40",
    },
]

#: seed studies (benchmarks/recipes.py --seed N): the small recipe, the old demo schedule and YOLO11n at 40 epochs
SEED_TABLES = [
    {
        "prefix": prefix,
        "rows": {f"{k}_e40": LABELS[k] for k in (SMALL, "today", "yolo11n", "small_lr2", "small_ms")},
        "seeds": (0, 1, 2),
        "paired": (f"{SMALL}_e40", "yolo11n_e40"),
        "spread_of": (f"{SMALL}_e40", "today_e40", "yolo11n_e40"),
        "short": {
            f"{SMALL}_e40": "`--recipe small`",
            "today_e40": "按比例缩放",
            "yolo11n_e40": "YOLO11n",
            "small_lr2_e40": "两倍学习率",
            "small_ms_e40": "多尺度训练",
        },
    }
    for prefix in ("", "photo2_")
]

#: trials run with seed 0 only (benchmarks/recipes.py NAME, and --dataset photo2), against the recipe's seed range
SINGLE_SEED_TABLE = {
    "rows": {"small_lrhalf_e40": LABELS["small_lrhalf"]},
    "base": f"{SMALL}_e40",
    "seeds": (0, 1, 2),
    "label": "`--recipe small`",
    "short": {"small_lrhalf_e40": "一半的学习率"},
}


def tiling_claim(t: dict) -> str:
    """docs/benchmarks.md's sentence of ``benchmarks/tiling.py``: resized vs tiled on generated large scenes."""
    d, g, r, k = t["data"], t["tiling"], t["resized"], t["tiled"]
    return (
        f"{d['scenes']} 张 {d['scene_size']}×{d['scene_size']} 的生成大图（{d['objects']} 个 {d['object_length_px'][0]}–"
        f"{d['object_length_px'][1]} 像素的小目标），tile {g['tile']}、overlap {g['overlap']}：整图缩小后 AP50 {r['AP50']:.2f}、"
        f"APs {r['APs']:.2f}，每张 {r['ms_per_image']:.0f} ms；分块推理 AP50 {k['AP50']:.2f}、APs {k['APs']:.2f}，"
        f"每张 {k['ms_per_image']:.0f} ms"
    )


def int8_claim(q: dict) -> str:
    """docs/benchmarks.md's sentence of ``benchmarks/int8.py``: INT8 vs float32 (AP and file-to-boxes latency)."""
    a, lat = q["accuracy"], q["latency"]
    return (
        f"INT8（{q['quantization']['calibration_images']} 张校准图）与 float32：AP50 {a['int8']['AP50']:.3f} / "
        f"{a['float32']['AP50']:.3f}，AP {a['int8']['AP']:.3f} / {a['float32']['AP']:.3f}；文件到检测框 1 线程 "
        f"{lat['threads_1']['int8']['median_ms']:.1f} / {lat['threads_1']['float32']['median_ms']:.1f} ms，2 线程 "
        f"{lat['threads_2']['int8']['median_ms']:.1f} / {lat['threads_2']['float32']['median_ms']:.1f} ms"
    )


def claims() -> list[str]:
    out = [f"{len(VARIANTS)} 个变体", "|Δ| < " + f"{TOL:.0e}".replace("e-0", "e-")]
    lat = _load("latency_eval_cpu_interleaved.json")
    meta = lat["meta"]
    out += [f"{meta['threads']} 线程", f"{meta['rounds']} 轮"]
    out.append(f"1 分钟平均负载 {meta['loadavg_start'][0]:.1f}（开始）/ {meta['loadavg_end'][0]:.1f}（结束）")
    for r in lat["rows"]:
        ratios = [o / f for o, f in zip(r["ours_ms_per_round"], r["official_ms_per_round"])]
        out.append(
            f"{NAMES[r['variant']]} {r['ours_ms']:.1f} / {r['official_ms']:.1f} ms"
            f"（{r['ours_over_official']:.2f}×，各轮 {min(ratios):.2f}–{max(ratios):.2f}×）"
        )
    for name in ("predict_backends_cpu2.json", "predict_backends_cpu2_t2.json"):  # 1 and 2 threads
        out.append(backends_claim(_load(name)))
        out.append(compute_bound_claim(_load(name)))
    out.append(speedups_claim(_load("torch_speedups_cpu2.json")))
    out.append(demo_claim(f"{SMALL}_e40"))
    out.append(quarter_claim())
    out.append(demo_run_claim(_load("demo_run_cpu2.json")))
    out += [recipes_claim(t) for t in RECIPE_TABLES]
    out += [seeds_claim(t) for t in SEED_TABLES]
    out.append(single_seed_claim(SINGLE_SEED_TABLE))
    out.append(epoch_cost_claim(_load("recipes/epoch_cost.json")))
    out.append(notebooks_claim(_load("notebooks_run_cpu2.json")))
    out += [tiling_claim(_load("tiling_cpu2.json")), int8_claim(_load("int8_cpu2.json"))]
    out += speed_claims()
    out.append(int8_variants_claim())
    browser = _load("browser_test.json")
    run = browser["runs"][0]
    out += [
        f"全部 {len(run['notebook_seconds'])} 个 notebook",
        f"1 分钟负载约 {run['loadavg_before'][0]:.0f}",
        f"共约 {browser['median_wall_min']:.1f} 分钟",
    ]
    return out


def test_every_claim_is_in_readme_as_recorded():
    section = measured_section()
    missing = [c for c in claims() if c not in section]
    assert not missing, f"README 的实测数据与 benchmarks/results/ 不一致，缺少：{missing}"


def test_no_figure_without_a_results_json():
    section = measured_section()
    for c in sorted(claims(), key=len, reverse=True):
        section = section.replace(c, "")
    stray = FIGURE.findall(section)
    assert not stray, f"README 实测数据里这些数字没有对应的结果 JSON：{stray}"


def test_results_json_record_how_they_were_measured():
    meta = _load("latency_eval_cpu_interleaved.json")["meta"]
    assert {"date", "machine", "cpu_count", "threads", "rounds", "loadavg_start", "loadavg_end", "torch"} <= set(meta)
    rows = _load("latency_eval_cpu_interleaved.json")["rows"]
    assert all(len(r["ours_ms_per_round"]) == len(r["official_ms_per_round"]) == meta["rounds"] for r in rows)


def test_seed_study_sentences_follow_the_means():
    """README's words on the seed study (不低于原来的日程、与 YOLO11n 持平、用时更长) hold for the recorded means."""
    demo, photo2 = (seed_study(t) for t in SEED_TABLES)
    small, today, yolo = (f"{SMALL}_e40", "today_e40", "yolo11n_e40")
    d = lambda st, other: [a - b for a, b in zip(st["avg"][small], st["avg"][other])]  # noqa: E731
    assert min(d(demo, today)) > 0  # 示例数据集上四项都更高
    assert min(d(photo2, today)[:3]) > 0 and abs(d(photo2, today)[3]) < photo2["spread"] / 10  # 三项更高，一项持平
    assert max(d(demo, yolo)) < 0 and max(abs(x) for x in d(demo, yolo)) < demo["spread"]  # 略低，小于种子波动
    assert d(photo2, yolo)[0] < 0 and d(photo2, yolo)[2] < 0 and d(photo2, yolo)[1] > 0 and d(photo2, yolo)[3] > 0
    assert demo["walls"] and min(demo["walls"]) > 1  # 用时更长
    lr2 = "small_lr2_e40"  # 两倍学习率：两个数据集上四项平均都更低，示例数据集上有一个种子崩了
    assert min(d(demo, lr2)) > 0 and min(d(photo2, lr2)) > 0
    assert min(r["final"]["AP50"] for r in demo["runs"][lr2]) < 0.5 * min(
        r["final"]["AP50"] for r in demo["runs"][small]
    )
    ms = "small_ms_e40"  # 多尺度训练：两个数据集上四项平均都低于 small
    assert min(d(demo, ms)) > 0 and min(d(photo2, ms)) > 0
    assert all(a < b for a, b in zip(demo["avg"][ms], demo["avg"][today]))  # 示例数据集上还低于原来的 demo 日程


def test_single_seed_sentences_follow_the_runs():
    """README: 一半的学习率在两个数据集上的每个数都低于 `small` 各种子中最低的一次."""
    base, seeds = SINGLE_SEED_TABLE["base"], SINGLE_SEED_TABLE["seeds"]
    for prefix in ("", "photo2_"):
        lows = [min(v) for v in zip(*(_four(prefix, base, k) for k in seeds))]
        assert all(x < low for x, low in zip(_four(prefix, "small_lrhalf_e40", 0), lows))


def test_epoch_cost_sentences_follow_the_measurement():
    """docs: 大部分时间在前向和反向；读图增强、评估较小；Atto 的训练计算比 YOLO11n 多，batch 16 也只省一点."""
    s = _load("recipes/epoch_cost.json")["summary"]
    a8, a16 = s["atto_b8"], s["atto_b16"]
    assert a8["share"]["forward"] + a8["share"]["backward"] > 0.5
    assert max(a8["share"]["data"], a8["share"]["eval"]) < a8["share"]["forward"]
    assert a8["train_compute_vs_yolo11n"] > 1 and a16["train_compute_vs_yolo11n"] > 1
    assert (
        0.9 * a8["train_compute_ms_per_image"] < a16["train_compute_ms_per_image"] <= a8["train_compute_ms_per_image"]
    )


def test_eighty_epoch_sentence_follows_the_runs():
    """README: 现在的 `--recipe small` 在 80 轮时四项都比第四轮的配方高，但仍然每项都低于 YOLO11n."""
    now, r4, yolo = (_four("", n, 0) for n in ("small_na20_e80", "small_e80", "yolo11n_e80"))
    assert all(a > b for a, b in zip(now, r4)) and all(a < y for a, y in zip(now, yolo))


# ---------------------------------------------------------------- README: a few sentences, the same JSONs
#: README's model table: official model-zoo facts (deimv2/config/variants.py), not measurements of ours
BACKBONES = {
    "atto": "HGNetv2-Atto",
    "femto": "HGNetv2-Femto",
    "pico": "HGNetv2-Pico",
    "n": "HGNetv2-B0",
    "s": "ViT-Tiny（DINOv3 蒸馏）+ STA",
    "m": "ViT-Tiny+ + STA",
    "l": "DINOv3 ViT-S/16 + STA",
    "x": "DINOv3 ViT-S+/16 + STA",
}


def model_rows() -> list[str]:
    """README's model table rows, from the official facts in VARIANT_TABLE and the shipped configs."""
    from deimv2.config.loader import load_config
    from deimv2.config.variants import VARIANT_TABLE

    rows = []
    for k, v in VARIANT_TABLE.items():
        size = load_config(k).raw["eval_spatial_size"][0]
        rows.append(
            f"| {NAMES[k]} | {BACKBONES[k]} | {size} | {v.ap:.1f} | {v.params} | {v.gflops:.1f} | {v.latency_ms:.2f} | "
            f"[{v.hf_repo}](https://huggingface.co/{v.hf_repo}) |"
        )
    return rows


def readme_demo_claim() -> str:
    """README's quick start: what `deimv2 demo` gave, end to end, in default mode (benchmarks/demo_run.py)."""
    r = _load("demo_run_cpu2.json")
    assert not r["fast"], "demo_run JSON records a fast-mode smoke run"
    return (
        f"在一台 {r['meta']['threads']} 线程的 CPU 上实测用时 {r['wall_s'] / 60:.1f} 分钟，"
        f"它评估的最佳权重在验证集上 mAP@0.5 = {r['final']['AP50']:.2f}、mAP@0.5:0.95 = {r['final']['AP']:.2f}"
    )


def readme_measured() -> str:
    """README's measured section: a few plain sentences from the JSONs behind docs/benchmarks.md."""
    pb = _load("predict_backends_cpu2_t2.json")
    v, threads = pb["variants"], pb["meta"]["threads"]

    def f(x):
        return f"{x:.0f}" if x >= 100 else f"{x:.1f}"

    speed = "、".join(
        f"{NAMES[k]} {f(v[k]['file_to_boxes_ms'])} ms（官方 {f(v[k]['official_best_ms'])} ms）"
        for k in ("atto", "n", "s")
    )
    demo = seed_study(SEED_TABLES[0])
    small, yolo = demo["avg"][f"{SMALL}_e40"], demo["avg"]["yolo11n_e40"]
    n_seeds = len(SEED_TABLES[0]["seeds"])
    tol = f"{TOL:.0e}".replace("e-0", "e-")
    rule = {r["rule"]: r for r in _load("recipes/batch_rule_demo.json")["rows"] if r["batch"] == 16 and r["seed"] == 0}
    nb, browser = _load("notebooks_run_cpu2.json"), _load("browser_test.json")
    return "\n".join(
        [
            f"- **与官方代码一致**：全部 {len(VARIANTS)} 个变体在同样的确定性权重下与官方代码逐值比较，输出相同（|Δ| < {tol}）。",
            f"- **CPU 推理**：`Detector.from_checkpoint` 的默认后端（OpenVINO，{threads} 线程，batch 1）从 JPEG 文件到检测框：{speed}。",
            f"- **小数据集从头训练**：示例数据集上 40 轮，`--recipe small` {n_seeds} 个随机种子的平均验证集 mAP@0.5 是 "
            f"{small[0]:.3f}，同样设置的 YOLO11n 是 {yolo[0]:.3f}：持平（差别小于只换随机种子的波动），但 Atto 每轮更慢。",
            readme_speed(),
            f"- **batch 规则**：示例数据集上 batch 16、{rule['none']['epochs']} 轮从头训练，默认（不按 batch 缩放）的验证集 "
            f"mAP@0.5 是 {rule['none']['AP50']:.2f}，官方的线性缩放是 {rule['linear']['AP50']:.2f}"
            f"（[docs/training.md](docs/training.md)）。",
            f"- **测试用时**：默认模式下按顺序运行全部 {len(nb['notebooks']['default_mode'])} 个 notebook 约 "
            f"{nb['tests']['test_all_notebooks_run_all_in_default_mode']['seconds'] / 60:.0f} 分钟，浏览器测试约 "
            f"{browser['median_wall_min']:.1f} 分钟（机器上同时有别的任务，负载见结果文件）。",
        ]
    )


def compat_rows() -> list[str]:
    """README's compatibility rows: the versions the recorded demo run used, and pyproject.toml's declared ranges."""

    meta = _load("demo_run_cpu2.json")["meta"]
    from setuptools.config.pyprojecttoml import read_configuration

    project = read_configuration(ROOT / "pyproject.toml")["project"]
    declared = {d.split(">=")[0].strip(): d.split(">=")[1].strip() for d in project["dependencies"] if ">=" in d}
    python = ".".join(meta["python"].split(".")[:2])
    return [
        f"| Python | {python} | {project['requires-python'].replace('>=', '≥ ')} |",
        f"| PyTorch | {meta['torch'].split('+')[0]}（CPU） | ≥ {declared['torch']} |",
        f"| torchvision | 与上面的 PyTorch 配套的版本 | ≥ {declared['torchvision']}（数据增强使用 transforms.v2 的新接口） |",
    ]


def readme_recorded() -> list[str]:
    return [readme_demo_claim(), readme_measured(), *model_rows(), *compat_rows()]


def test_readme_sentences_are_the_recorded_ones():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [c for c in readme_recorded() if c not in text]
    assert not missing, (
        f"README 的数字与 benchmarks/results/ 或官方模型库（deimv2/config/variants.py）不一致，缺少：{missing}"
    )


def test_readme_has_no_figure_of_its_own():
    """After the recorded sentences, the official model table and the versions, no measured-looking figure is left
    (URLs, inline code, the licence's name, the arXiv id and the BibTeX are not figures)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for c in readme_recorded():
        text = text.replace(c, "")
    text = re.sub(r"```bibtex.*?```", "", text, flags=re.S)
    text = re.sub(r"https?://[^\s)]+|`[^`\n]*`", "", text)
    text = text.replace("Apache-2.0", "").replace("arXiv 2509.20787", "").replace("Python ≥ 3.10", "")
    stray = FIGURE.findall(text)
    assert not stray, f"README 里这些数字没有对应的结果 JSON：{stray}"


def test_readme_measured_words_follow_the_means():
    """README: small 与 YOLO11n 持平（差别小于换种子的波动），Atto 每轮更慢."""
    demo = seed_study(SEED_TABLES[0])
    small, yolo = demo["avg"][f"{SMALL}_e40"], demo["avg"]["yolo11n_e40"]
    assert abs(small[0] - yolo[0]) < demo["spread"]
    assert _load("recipes/epoch_cost.json")["summary"]["atto_b8"]["train_compute_vs_yolo11n"] > 1
