"""YOLO label files: one box per line, ``cls cx cy w h`` (normalised to 0..1), or a segmentation polygon
``cls x1 y1 x2 y2 ...`` (at least 3 points), read as the bounding box of the polygon.

Read by :mod:`deimv2.data.convert` (YOLO → COCO) and :mod:`deimv2.data.doctor`, with the same rules
(:func:`deimv2.data.validate.yolo_coordinate_problem`).
"""

from __future__ import annotations

import math
from pathlib import Path

from deimv2.data.layout import read_text
from deimv2.data.validate import yolo_coordinate_problem

__all__ = ["LabelLineError", "parse_label_line", "read_label_file"]


class LabelLineError(ValueError):
    """One malformed label line (message in Chinese)."""


def parse_label_line(line: str, num_classes: int) -> tuple[int, tuple[float, float, float, float], list[float] | None]:
    """Parse ``cls cx cy w h`` or ``cls x1 y1 ... xn yn`` (n >= 3).

    Returns (class index, normalised box cx, cy, w, h, polygon or None). Raises LabelLineError.
    """
    fields = line.split()
    n = len(fields)
    if n != 5 and not (n >= 7 and (n - 1) % 2 == 0):
        raise LabelLineError(f"字段个数为 {n}，应为 5（类别 cx cy w h）或 1+2k（分割多边形，k≥3）")
    try:
        c = float(fields[0])
        vals = [float(v) for v in fields[1:]]
    except ValueError:
        raise LabelLineError(f"包含非数字内容：{line.strip()!r}") from None
    if not (math.isfinite(c) and c == int(c)):
        raise LabelLineError(f"类别索引 {fields[0]!r} 不是整数")
    cls = int(c)
    if cls < 0 or cls >= num_classes:
        raise LabelLineError(f"类别索引 {cls} 超出范围 0..{num_classes - 1}（共 {num_classes} 个类别名）")
    if not all(math.isfinite(v) for v in vals):
        raise LabelLineError("坐标中有 nan/inf")
    if n == 5 and (vals[2] < 0 or vals[3] < 0):
        raise LabelLineError(f"框的宽或高为负数（w={vals[2]:g}, h={vals[3]:g}）")
    problem = yolo_coordinate_problem(vals)
    if problem:
        raise LabelLineError(problem)
    if n == 5:
        cx, cy, w, h = vals
        if w == 0 or h == 0:
            raise LabelLineError(f"框的宽或高为 0（w={w:g}, h={h:g}），面积为 0")
        return cls, (cx, cy, w, h), None
    xs, ys = vals[0::2], vals[1::2]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return cls, ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), vals


def read_label_file(path: Path | None, num_classes: int):
    """Yield (line number, parsed line or LabelLineError) for each non-blank line."""
    if path is None:
        return
    for i, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            try:
                yield i, parse_label_line(line, num_classes)
            except LabelLineError as e:
                yield i, e
