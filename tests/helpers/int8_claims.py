"""docs/benchmarks.md's INT8 table for several variants, rendered from ``benchmarks/int8_variants.py``'s JSON."""

from __future__ import annotations

from helpers.speed_claims import NAMES, load


def int8_variants_claim() -> str:
    """INT8 against float32 per variant (each trained briefly on the demo): AP50 / AP and file-to-boxes latency."""
    r = load("int8_variants_cpu2.json")
    t, m = r["training"], r["meta"]
    head = (
        f"- **INT8，按变体**（`python benchmarks/int8_variants.py --epochs {t['epochs']} --threads {t['threads']}`：每个变体"
        f"先在示例数据集的训练集上从头训练 {t['epochs']} 轮（{t['size']}×{t['size']}，`--recipe small`，没有预训练权重，"
        f"S 的 ViT 也从随机初始化开始；这样的 AP 远低于充分训练的模型，只用来比较 INT8 与 float32），用训练集图片校准，在验证集上评分；"
        f"耗时是一张验证集图片从文件到检测框，float32 与 INT8 交替 {m['rounds']} 轮、每轮 {m['runs']} 次取中位数）：\n\n"
        "| 变体 | 校准图 | float32 mAP@0.5 / mAP@0.5:0.95 | INT8 mAP@0.5 / mAP@0.5:0.95 | 1 线程 float32 / INT8 | "
        "2 线程 float32 / INT8 |\n|---|---|---|---|---|---|\n"
    )
    rows = []
    for v, x in r["variants"].items():
        a = x["accuracy"]

        def ms(n: int, k: str, lat: dict = x["latency"]) -> str:
            return f"{lat[f'threads_{n}'][k]['median_ms']:.1f}"

        rows.append(
            f"| {NAMES[v]} | {x['quantization']['calibration_images']} | {a['float32']['AP50']:.3f} / "
            f"{a['float32']['AP']:.3f} | {a['int8']['AP50']:.3f} / {a['int8']['AP']:.3f} | "
            f"{ms(1, 'float32')} / {ms(1, 'int8')} ms | {ms(2, 'float32')} / {ms(2, 'int8')} ms |"
        )
    return head + "\n".join(rows) + "\n\n  （[JSON](../benchmarks/results/int8_variants_cpu2.json)）"
