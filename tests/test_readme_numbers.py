"""README's measured section ("实测数据"): every figure is read from a results JSON under benchmarks/results/.

Each claim below is rendered from its JSON and must appear verbatim in the section; after removing the claims,
no measured-looking figure (decimals, percentages, durations) may remain. Change a number in README and this
test fails; re-run the benchmark script instead.
"""

import json
import re
from pathlib import Path

from golden import TOL, VARIANTS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NAMES = {"atto": "Atto", "femto": "Femto", "pico": "Pico", "n": "N", "s": "S", "m": "M", "l": "L", "x": "X"}
#: figures that look measured: decimals, percentages, e-notation, numbers with a time unit
FIGURE = re.compile(r"\d+\.\d+|\d+(?:\.\d+)?\s*%|\d(?:\.\d+)?e-\d+|\d+\s*(?:ms|s\b|秒|分钟|小时)")


def _load(name):
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def measured_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## 实测数据")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


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
    ort = "，".join(f"{NAMES[k]} {v[k]['onnxruntime_over_deploy']:.2f}×" for k in ("atto", "n", "s"))
    return (
        f"- **CPU 推理后端**（`Detector.from_checkpoint` 默认后端，{m['threads']} 线程，batch 1，各方式逐次轮流调用 "
        f"{m['rounds']}×{m['runs']} 次取中位数，测量时机器负载 {m['loadavg_start'][0]:.1f}；官方模型取 NCHW 与 channels-last "
        f"两种输入中较快的；比值是各轮比值的中位数）：从 640×480 JPEG 文件到检测框 "
        f"{parts}；前 10 个检测与官方模型一致。onnxruntime 与 PyTorch deploy 图的耗时比：{ort}"
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
        f"- **Notebook 慢速测试**（`pytest -m slow_notebooks tests/test_notebooks_run.py`，`.ci/run` 在 README 的测试命令之后运行，"
        f"`python benchmarks/notebooks_run.py` 测量）：默认模式（不设置 `DEIMV2_FAST`）下把全部 {len(default)} 个 notebook "
        f"复制到空文件夹、按顺序“全部运行”，用时约 {full['seconds'] / 60:.0f} 分钟，其中 04（含示例训练）"
        f"约 {default['04_train.ipynb'] / 60:.0f} 分钟；从 wheel 安装到全新虚拟环境（非 editable）后在带中文和空格的空文件夹里"
        f"按顺序运行全部 notebook（快速模式）用时约 {wheel['seconds'] / 60:.1f} 分钟。notebook 内核 {nr['threads']} 个线程，"
        f"1 分钟平均负载 {nr['loadavg_before'][0]:.1f}（开始）/ {nr['loadavg_after'][0]:.1f}（结束）"
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
    out.append(backends_claim(_load("predict_backends_cpu2.json")))
    out.append(speedups_claim(_load("torch_speedups_cpu2.json")))
    demo = _load("train_demo_atto_cpu.json")
    out += [
        f"{demo['epochs']} 轮（{demo['size']}×{demo['size']}，batch {demo['batch_size']}）",
        f"约 {demo['wall_s'] / 60:.1f} 分钟（{demo['threads']} 线程）",
        f"mAP@0.5 = {demo['final_AP50']:.2f}",
        f"mAP@0.5:0.95 = {demo['final_AP']:.2f}",
    ]
    out.append(notebooks_claim(_load("notebooks_run_cpu2.json")))
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
