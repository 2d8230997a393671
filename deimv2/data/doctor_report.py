"""The dataset doctor's report (:func:`deimv2.data.doctor.check_dataset`): issues by severity and the facts
of the dataset, as data (``to_dict``) and as the Chinese text that ``deimv2 check`` prints (``format``).

Severity: ``error`` = training would crash or silently learn wrong things; ``warning`` = the training
pipeline copes; ``info`` = facts worth knowing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["DoctorReport", "Issue", "IssueCollector"]

_LEVELS = {"error": "错误", "warning": "警告", "info": "提示"}


@dataclass
class Issue:
    """One kind of problem: how grave, a code, the Chinese message, how often, and a few examples."""

    level: str  # error | warning | info
    code: str
    message: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class DoctorReport:
    """What :func:`~deimv2.data.doctor.check_dataset` found; ``format()`` is the Chinese report."""

    path: str
    format_name: str  # coco | yolo
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)
    box_sizes: dict[str, int] = field(default_factory=lambda: {"small": 0, "medium": 0, "large": 0})
    id_base: int | None = None
    num_classes_needed: int = 0
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing would stop training (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["categories"] = {str(k): v for k, v in self.categories.items()}
        return d

    def format(self) -> str:
        fmt = {"coco": "COCO", "yolo": "YOLO"}[self.format_name]
        out = [
            f"数据集体检报告：{self.path}（格式：{fmt}）",
            "结论：可以训练" + ("（但请看下面的警告）" if self.warnings else "")
            if self.ok
            else f"结论：发现 {len(self.errors)} 类错误，训练前必须修复",
        ]
        for s, c in self.splits.items():
            out.append(f"  {s}: {c['images']} 张图像，{c['boxes']} 个框，{c['negatives']} 张无目标（负样本）")
        cats = "，".join(f"{k}={v}" for k, v in self.categories.items())
        out.append(f"类别（{len(self.categories)} 个）：{cats}")
        base = {0: "从 0 开始", 1: "从 1 开始"}.get(self.id_base, f"从 {self.id_base} 开始")
        if self.format_name == "coco":
            out.append(f"category_id {base}；配置中需要 num_classes = {self.num_classes_needed}")
        else:
            out.append(f"转换为 COCO 后（yolo_to_coco）需要 num_classes = {self.num_classes_needed}")
        out.append("每类实例数：" + ("，".join(f"{k} {v}" for k, v in self.class_counts.items()) or "无"))
        b = self.box_sizes
        out.append(f"框尺寸分布（COCO 定义）：小(<32²) {b['small']}，中 {b['medium']}，大(≥96²) {b['large']}")
        for level in ("error", "warning", "info"):
            items = [i for i in self.issues if i.level == level]
            if items:
                out.append(f"{_LEVELS[level]}：")
                for i in items:
                    ex = f"  例如：{', '.join(i.examples)}" if i.examples else ""
                    out.append(f"  - {i.message}（{i.count} 处）{ex}")
        return "\n".join(out)


class IssueCollector:
    """Adds issues to a report: one :class:`Issue` per (level, code, message), counted, with a few examples."""

    def __init__(self, report: DoctorReport, max_examples: int):
        self.report, self.max_examples, self._by_key = report, max_examples, {}

    def add(self, level: str, code: str, message: str, example: str | None = None, n: int = 1) -> None:
        key = (level, code, message)
        if key not in self._by_key:
            self._by_key[key] = Issue(level, code, message)
            self.report.issues.append(self._by_key[key])
        issue = self._by_key[key]
        issue.count += n
        if example is not None and len(issue.examples) < self.max_examples:
            issue.examples.append(example)
