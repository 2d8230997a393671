"""The ``deimv2`` command line (also ``python -m deimv2``).

A user's mistake never shows a traceback: a Chinese message and a non-zero exit; ``--debug`` shows it.

Each ``_cmd_*`` function imports the module of its command when it runs (the one deliberate exception to "our
imports at the top"): ``deimv2 --help`` and a mistyped option answer at once instead of importing torch, and a
command never loads another command's optional dependencies.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from deimv2.errors import ConfigError, DEIMv2Error
from deimv2.utils.inputs import MAX_DET


class ChineseArgumentParser(argparse.ArgumentParser):
    """argparse with the error line in Chinese (usage stays as argparse prints it)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"错误：命令行参数不对（{message}）。运行 {self.prog} -h 查看用法。\n")


def _add_common_train(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    p.add_argument(
        "-c",
        "--config",
        required=config_required,
        help="变体名（atto…x）、官方配置名或 YAML 路径"
        + ("" if config_required else "（checkpoint 里有配置时可省略）"),
    )
    p.add_argument(
        "--data",
        help="数据集：COCO 根目录（train/_annotations.coco.json + valid/ 或 annotations/instances_*.json），"
        "或 YOLO 数据集（data.yaml 或其文件夹，自动转换一次并缓存）",
    )
    p.add_argument("-d", "--device", help="设备，如 cpu、cuda、cuda:1（默认自动选择）")
    p.add_argument("--output-dir", help="输出目录")
    p.add_argument(
        "-u",
        "--update",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="覆盖配置，如 epoches=62 train_dataloader.total_batch_size=4 num_classes=4（可写多次，全部生效）",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ChineseArgumentParser(
        prog="deimv2", description="DEIMv2 中文教程命令行：训练、评估、推理、导出、数据集工具。"
    )
    parser.add_argument("--debug", action="store_true", help="出错时显示完整的 Python traceback")
    sub = parser.add_subparsers(dest="command", metavar="命令", parser_class=ChineseArgumentParser)

    p = sub.add_parser("train", help="训练（或 --test-only 只评估）")
    _add_common_train(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-t",
        "--tune",
        help="从这个 checkpoint 微调（只加载权重，类别数不同的分类头会被跳过）；-t coco：下载官方 COCO 权重并微调，离线时从头训练",
    )
    g.add_argument("-r", "--resume", help="从这个 checkpoint 继续训练（学习率、EMA、轮数都接着来）")
    p.add_argument("--use-amp", action="store_true", help="使用混合精度（只在 CUDA 上生效）")
    p.add_argument("--seed", type=int, help="随机种子")
    p.add_argument("--test-only", action="store_true", help="只在验证集上评估 -r 指定的 checkpoint")
    p.add_argument("--no-check", action="store_true", help="训练前不运行数据集检查")
    p.add_argument(
        "--recipe",
        default=None,
        help="训练配方：auto（默认：从头训练小数据集用 small，微调/大数据集用官方日程但学习率不按 batch 缩放）、"
        "official（官方日程和官方 batch 规则，复现 COCO 结果时用）或 small（小数据集从头训练）；见 docs/training.md",
    )

    p = sub.add_parser("eval", help="在验证集上评估 checkpoint（COCO mAP）")
    _add_common_train(p, config_required=False)
    p.add_argument("-r", "--resume", "--checkpoint", dest="resume", required=True, help="要评估的 checkpoint")

    p = sub.add_parser("predict", help="对图片、文件夹或视频做推理并画框")
    p.add_argument("-c", "--config", help="变体名或 YAML（checkpoint 里有配置时可省略）")
    p.add_argument("-r", "--resume", "--checkpoint", dest="resume", required=True, help="权重文件")
    p.add_argument("-i", "--input", required=True, help="图片、文件夹或视频")
    p.add_argument("-o", "--output", default="outputs/predict", help="输出图片/视频/文件夹")
    p.add_argument(
        "--names",
        help='全部类别名（按训练时的类别顺序），逗号分隔，如 "飞机,船,车辆,建筑"；'
        "我们训练的 checkpoint 里已有类别名，可省略",
    )
    p.add_argument(
        "--keep-classes",
        help='只保留这些类别的检测框：类别名或从 0 开始的编号，逗号分隔，如 "飞机,船" 或 "0,2"'
        "（Python API 里的 classes=）",
    )
    p.add_argument("--classes", help="seed 的旧写法，等同 --names（给出全部类别名）")
    p.add_argument("--conf", type=float, help="置信度阈值（默认：checkpoint 里保存的 F1 最佳阈值，没有则 0.45）")
    p.add_argument("--max-det", type=int, default=MAX_DET, help="每张图最多保留的检测框数")
    p.add_argument("-d", "--device", help="设备，如 cpu、cuda")
    p.add_argument("--save-json", action="store_true", help="另存 COCO 格式的结果 JSON")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnxruntime", "openvino"],
        help="推理后端：auto（默认：CPU 上依次用 openvino、onnxruntime 中已安装的，GPU 上用 torch）、torch、onnxruntime、openvino",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="文件夹推理时提前解码图片的进程数（默认 0：在主进程里解码；有空闲 CPU 核或用 GPU 推理时可设 2–4）",
    )
    p.add_argument(
        "--tile",
        type=int,
        help="分块推理：把大图切成 tile×tile 像素的重叠小块分别检测再合并（按类别 NMS，IoU 0.5），"
        '适合大图里的小目标，如 --tile 640；默认不分块（整图缩放到模型输入尺寸）。需要 pip install "deimv2[apps]"',
    )
    p.add_argument("--overlap", type=float, default=0.2, help="分块推理时相邻两块的重叠比例（默认 0.2）")

    p = sub.add_parser("export", help="导出 ONNX")
    p.add_argument("-c", "--config", help="变体名或 YAML（checkpoint 里有配置时可省略）")
    p.add_argument("-r", "--resume", "--checkpoint", dest="resume", help="权重文件（不给则用随机权重，只用于测试）")
    p.add_argument("-o", "--output", help="输出 .onnx 路径")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset（默认与官方导出脚本相同）")
    p.add_argument("--batch", type=int, default=1, help="导出时示例输入的 batch size（batch 维是动态的）")
    p.add_argument("--simplify", action="store_true", help="用 onnxsim 简化（L/X 会自动跳过）")
    p.add_argument("--check", action="store_true", help="用 onnxruntime 运行并与 PyTorch 比较")
    p.add_argument(
        "--int8",
        action="store_true",
        help="改为用 NNCF 训练后量化生成 OpenVINO INT8 模型（<权重名>_int8.xml，或 -o 给出的 .xml；CPU 上更快、检测结果略有不同；"
        '需要 --calib 和 pip install "deimv2[apps]"）',
    )
    p.add_argument("--calib", help="INT8 校准图片：训练集文件夹或数据集根目录（最多取 300 张，不需要标注）")

    # -- after training (deimv2/apps, notebook 10)
    p = sub.add_parser("track", help="视频目标跟踪（ByteTrack）：画出轨迹编号和中文类别名，另存 MOT 格式文本")
    p.add_argument("-r", "--resume", "--checkpoint", dest="resume", required=True, help="权重文件")
    p.add_argument("-i", "--input", required=True, help="视频文件（mp4/avi/mov/mkv）")
    p.add_argument("-o", "--output", default="outputs/track/track.mp4", help="输出视频（旁边另存同名 .txt，MOT 格式）")
    p.add_argument("--conf", type=float, help="开始/确认轨迹的置信度阈值（默认：checkpoint 里保存的 F1 最佳阈值）")
    p.add_argument("--tile", type=int, help="分块推理的块大小（大画面里的小目标），默认不分块")
    p.add_argument("--overlap", type=float, default=0.2, help="分块推理时相邻两块的重叠比例（默认 0.2）")
    p.add_argument("-d", "--device", help="设备，如 cpu、cuda")

    p = sub.add_parser("app", help="网页演示（Gradio）：上传图片、调置信度、选类别、分块推理")
    p.add_argument("-r", "--resume", "--checkpoint", dest="resume", required=True, help="权重文件")
    p.add_argument("--port", type=int, help="端口（默认 7860 起第一个空闲的）")
    p.add_argument("--share", action="store_true", help="申请 Gradio 临时公网链接（默认只在本机可访问）")
    p.add_argument("--conf", type=float, help="滑块的初始置信度阈值（默认：checkpoint 里保存的 F1 最佳阈值）")
    p.add_argument("-d", "--device", help="设备，如 cpu、cuda")

    p = sub.add_parser("demo", help="一条命令跑完整个教程流程：转换 → 检查 → 训练 → 评估 → 推理")
    p.add_argument("--output-dir", default="outputs/demo", help="输出目录（默认 outputs/demo）")
    p.add_argument("--epochs", type=int, help="训练轮数（默认按 DEIMV2_FAST 决定）")
    p.add_argument("-d", "--device", help="设备")

    p = sub.add_parser("yolo2coco", help="YOLO 格式数据集 → COCO 格式")
    p.add_argument("src", help="YOLO 数据集目录")
    p.add_argument("dst", help="输出目录")
    p.add_argument("--split-ratio", type=float, help="扁平目录按比例切分出验证集，如 0.2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--one-based", action="store_true", help="category_id 从 1 开始（默认与 YOLO 类别号一致，从 0 开始）"
    )
    p.add_argument("--link", action="store_true", help="用链接代替复制图片")
    p.add_argument("--skip-invalid", action="store_true", help="跳过格式错误的标注行（逐条列出），而不是报错停止")
    p.add_argument("--overwrite", action="store_true", help="输出目录已存在时覆盖")

    p = sub.add_parser("coco2yolo", help="COCO 格式数据集 → YOLO 格式")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--link", action="store_true")
    p.add_argument("--skip-invalid", action="store_true", help="跳过无效的标注（逐条列出），而不是报错停止")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser(
        "doctor", aliases=["check"], help="数据集体检：类别、缺失/损坏图片、异常框……（旧名 check 仍可用）"
    )
    p.add_argument("dir", help="数据集目录（COCO 或 YOLO）")
    p.add_argument("--num-classes", type=int, help="与配置中的 num_classes 对照")
    p.add_argument("--deep", action="store_true", help="完整解码每张图片（更慢，更严格）")

    p = sub.add_parser("info", help="查看权重文件：格式、变体、类别数")
    p.add_argument("path")

    sub.add_parser("checks", help="检查运行环境（版本、GPU、字体……）")

    p = sub.add_parser(
        "bench", help="推理延迟：官方 eager、我们的 eager / deploy / onnxruntime / OpenVINO、文件→检测框，并排交替测量"
    )
    p.add_argument("variants", nargs="*", default=["atto"], help="变体名，默认 atto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=10, help="每轮每种方式计时几次")
    p.add_argument("--rounds", type=int, default=3, help="交替测几轮（每轮换一种先后顺序）")
    p.add_argument("--official", help="官方 DEIMv2 代码目录（git clone 得到），给出时加一列官方 eager 并比对检测结果")
    p.add_argument("--image", help="文件→检测框用的图片（默认用示例数据做一张 640x480 JPEG）")
    p.add_argument("-r", "--checkpoint", help="测这个权重文件（如 best.pth），而不是随机权重的变体")
    p.add_argument("--json", help="把结果写入这个 JSON 文件")
    p.add_argument("-d", "--device", default="cpu", help="cpu（默认，上面的对比表）或 cuda（只测模型前向）")
    return parser


def _cmd_train(a: argparse.Namespace) -> int:
    from deimv2.engine.api import train

    train(
        a.config,
        data=a.data,
        tune=a.tune,
        resume=a.resume,
        use_amp=a.use_amp or None,
        seed=a.seed,
        device=a.device,
        output_dir=a.output_dir,
        overrides=a.update,
        test_only=a.test_only,
        check_data=not a.no_check,
        recipe=a.recipe,
    )
    return 0


def _cmd_eval(a: argparse.Namespace) -> int:
    from deimv2.engine.api import evaluate

    evaluate(a.config, a.resume, data=a.data, device=a.device, output_dir=a.output_dir, overrides=a.update)
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from deimv2.infer.run import predict_cli

    def split(text):
        return [c.strip() for c in text.replace("，", ",").split(",") if c.strip()] if text else None

    names = split(a.names)
    if a.classes:
        if names:
            raise ConfigError(
                "--names 和 --classes 都给了类别名。--classes 是 seed 的旧写法（等同 --names），只写 --names 即可。"
            )
        print(
            "提示：--classes 沿用 seed 的含义，表示全部类别名（等同 --names）。以后请写 --names；"
            "只保留部分类别请用 --keep-classes（与 Python API 的 classes= 含义相同）。",
            file=sys.stderr,
        )
        names = split(a.classes)
    keep = [int(c) if c.isdigit() else c for c in split(a.keep_classes)] if a.keep_classes else None
    predict_cli(
        config=a.config,
        checkpoint=a.resume,
        source=a.input,
        output=a.output,
        names=names,
        classes=keep,
        conf=a.conf,
        max_det=a.max_det,
        device=a.device,
        save_json=a.save_json,
        backend=a.backend,
        num_workers=a.workers,
        tile=a.tile,
        overlap=a.overlap,
    )
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from deimv2.infer.export import export_onnx

    if a.int8:
        if not a.resume or not a.calib:
            raise ConfigError(
                "--int8 需要训练好的权重 -r 和校准图片 --calib（如训练集文件夹），"
                "例如：deimv2 export -r best.pth --int8 --calib 数据集/train"
            )
        from deimv2.apps.quantize import quantize_int8

        out = quantize_int8(
            a.resume, a.calib, output=a.output if a.output and a.output.endswith(".xml") else None, config=a.config
        )
        print(
            f"已导出 OpenVINO INT8 模型：{out.resolve()}（及同名 .bin）。"
            f"Python 中加载：deimv2.apps.quantize.int8_detector({a.resume!r})"
        )
        return 0

    export_onnx(
        config=a.config,
        checkpoint=a.resume,
        output=a.output,
        opset=a.opset,
        batch_size=a.batch,
        simplify=a.simplify,
        check=a.check,
    )
    return 0


def _cmd_track(a: argparse.Namespace) -> int:
    from pathlib import Path

    from deimv2.errors import DatasetError
    from deimv2.infer.detector import Detector
    from deimv2.infer.tracking import track_video

    if not Path(a.input).is_file():
        raise DatasetError(f"输入视频 {a.input} 不存在。请用 -i 给出一个视频文件（mp4/avi/mov/mkv）。")
    tiling = {"tile": a.tile, "overlap": a.overlap} if a.tile else {}
    det = Detector.from_checkpoint(a.resume, device=a.device, conf=a.conf)
    info = track_video(det, a.input, a.output, **tiling)
    print(
        f"已跟踪 {info['frames']} 帧，共 {info['tracks']} 条轨迹；结果视频 {info['output'].resolve()}，"
        f"MOT 格式文本 {info['mot'].resolve()}（每行：帧号,轨迹编号,x,y,宽,高,置信度,-1,-1,-1）"
    )
    return 0


def _cmd_app(a: argparse.Namespace) -> int:
    from deimv2.apps.webapp import launch_app

    print("正在启动网页演示（按 Ctrl-C 停止）……" + ("已申请公网链接：任何拿到链接的人都能访问。" if a.share else ""))
    launch_app(a.resume, share=a.share, port=a.port, device=a.device, conf=a.conf)
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from deimv2.tutorial.demo import run_demo

    run_demo(output_dir=a.output_dir, epochs=a.epochs, device=a.device)
    return 0


def _cmd_yolo2coco(a: argparse.Namespace) -> int:
    from deimv2.data.convert import yolo_to_coco

    report = yolo_to_coco(
        a.src,
        a.dst,
        split_ratio=a.split_ratio,
        seed=a.seed,
        one_based=a.one_based,
        link=a.link,
        skip_invalid=a.skip_invalid,
        overwrite=a.overwrite,
    )
    print(report.format() if hasattr(report, "format") else report)
    return 0


def _cmd_coco2yolo(a: argparse.Namespace) -> int:
    from deimv2.data.convert import coco_to_yolo

    report = coco_to_yolo(a.src, a.dst, link=a.link, skip_invalid=a.skip_invalid, overwrite=a.overwrite)
    print(report.format() if hasattr(report, "format") else report)
    return 0


def _cmd_check(a: argparse.Namespace) -> int:
    from deimv2.data.doctor import check_dataset

    report = check_dataset(a.dir, num_classes=a.num_classes, deep=a.deep)
    print(report.format())
    return 0 if report.ok else 1


def _cmd_info(a: argparse.Namespace) -> int:
    from deimv2.weights import inspect_weights

    info = inspect_weights(a.path)
    kind = {"detector": "完整检测器", "backbone": "骨干网络", "unknown": "未知"}[info.kind]
    print(
        f"文件：{info.path}\n类型：{kind}\n格式：{info.format}\n变体：{info.variant or '未知'}\n"
        f"类别数：{info.num_classes if info.num_classes is not None else '-'}\n张量数：{info.num_tensors}\n大小：{info.size_mb:.1f} MB"
    )
    if info.extra.get("class_names"):
        print("类别名：" + "、".join(info.extra["class_names"]))
    return 0 if info.kind != "unknown" else 1


def _cmd_checks(a: argparse.Namespace) -> int:
    from deimv2.tutorial.environment import checks

    checks(verbose=True)
    return 0


def _cmd_bench(a: argparse.Namespace) -> int:
    from deimv2.infer.bench import run_backend_benchmark, run_latency_benchmark

    if a.device != "cpu":
        run_latency_benchmark(a.variants, threads=a.threads, runs=a.runs, device=a.device)
        return 0
    result = run_backend_benchmark(
        a.variants,
        official=a.official,
        rounds=a.rounds,
        runs=a.runs,
        threads=a.threads,
        image=a.image,
        json_path=a.json,
        checkpoint=a.checkpoint,
    )
    return 0 if len(result["variants"]) == (1 if a.checkpoint else len(a.variants)) else 1


COMMANDS = {
    "train": _cmd_train,
    "eval": _cmd_eval,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "track": _cmd_track,
    "app": _cmd_app,
    "demo": _cmd_demo,
    "yolo2coco": _cmd_yolo2coco,
    "coco2yolo": _cmd_coco2yolo,
    "doctor": _cmd_check,
    "check": _cmd_check,  # the old name of doctor
    "info": _cmd_info,
    "checks": _cmd_checks,
    "bench": _cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    try:
        return COMMANDS[args.command](args)
    except DEIMv2Error as e:
        if args.debug:
            traceback.print_exc()
        print(f"错误：{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "已中断（Ctrl-C）。已经保存的文件完好（checkpoint 总是整份写入）；训练可用 "
            "deimv2 train ... -r 输出目录/last.pth 从上一个完成的轮次继续。",
            file=sys.stderr,
        )
        return 130
    except ModuleNotFoundError as e:
        if args.debug:
            traceback.print_exc()
        print(
            f'错误：缺少 Python 包 {e.name}。请运行 pip install {e.name}（或 pip install -e ".[export]"）。',
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: nothing to report
        return 0
    except OSError as e:  # a file system refusal that reached us mid-run (disk full, permissions …)
        if args.debug:
            traceback.print_exc()
        from deimv2.utils.outputs import explain_os_error

        print(f"错误：{explain_os_error(e, verb='读写')}", file=sys.stderr)
        return 2
    except Exception as e:  # an internal bug: short message, traceback with --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(
                f"内部错误：{type(e).__name__}: {e}\n加 --debug 查看完整 traceback，并把它报告给我们。", file=sys.stderr
            )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
