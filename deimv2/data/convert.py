"""YOLO <-> COCO dataset conversion.

Supported YOLO inputs (detected automatically):

* ``roboflow``: ``train/images``, ``train/labels``, ``valid/...``, ``test/...`` + ``data.yaml``;
* ``ultralytics``: ``images/train``, ``labels/train`` ... + ``data.yaml`` (``path``/``train``/``val``/``test``/``names``);
* ``flat``: one folder of images, labels beside them or in ``labels/``, class names in ``classes.txt``.

Label lines are ``cls cx cy w h`` (normalised). Segmentation lines ``cls x1 y1 x2 y2 ...`` (at least 3
points) are converted to the bounding box of the polygon; the polygon itself is kept in ``segmentation``.
COCO ``area`` is always the (clipped) box area. The output is the Roboflow COCO layout that the
official loader reads: ``DST/{train,valid,test}/_annotations.coco.json`` with the images beside it.
Nothing partial is ever written: everything is validated first, then written into a temporary folder
that is renamed to ``DST`` at the end. Source files are copied or linked, never moved.
Explained in notebook 02_convert.ipynb.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from PIL import Image

from ..errors import DatasetError
from .validate import bbox_problem, yolo_coordinate_problem

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
COCO_JSON = "_annotations.coco.json"
SPLITS = ("train", "valid", "test")
_ALIAS = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
    "testing": "test",
}
_MAX_LISTED = 20


def split_alias(name: str) -> str | None:
    """Map a folder/file name such as ``val``, ``train2017`` or ``instances_val2017`` to a split."""
    m = re.match(r"^(?:instances_)?(training|train|validation|valid|val|testing|test)(?:\d*)$", name.lower())
    return _ALIAS[m.group(1)] if m else None


# ---------------------------------------------------------------------------------------------- images
def image_size(path: str | Path) -> tuple[int, int]:
    """Return (width, height) as displayed, i.e. with EXIF orientation applied. Reads the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception as e:  # PIL raises many types for bad files
        raise DatasetError(f"无法读取图像 {path}：{e}。请确认文件是完整的图片（可用看图软件打开），或删除它。") from e
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def label_path_for(image: Path) -> Path | None:
    """YOLO label file for an image: ``.../images/x.jpg`` -> ``.../labels/x.txt``, else beside the image
    or in a ``labels/`` subfolder. None when no label file exists (a negative image)."""
    parts = image.parts
    candidates = []
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        candidates.append(Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt"))
    candidates += [image.with_suffix(".txt"), image.parent / "labels" / (image.stem + ".txt")]
    return next((c for c in candidates if c.is_file()), None)


# ---------------------------------------------------------------------------------------------- YOLO reading
@dataclass
class YoloDataset:
    """A discovered YOLO dataset: class names and, per split, the image files."""

    root: Path
    layout: str  # roboflow | ultralytics | flat
    names: list[str]
    splits: dict[str, list[Path]]
    names_file: Path | None = None


def _read_text(path: Path) -> str:
    """UTF-8 (with or without BOM); also UTF-16 with a BOM and GBK, the encodings Windows editors save in."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        err = e
    try:
        return data.decode("gbk")
    except UnicodeDecodeError:
        raise DatasetError(
            f"{path} 不是 UTF-8 编码（也不是 UTF-16 或 GBK）：{err}。请用文本编辑器另存为 UTF-8 后重试。"
        ) from None


def _parse_names(raw, nc, source: Path) -> list[str]:
    if isinstance(raw, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in raw.items())
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{source} 中 names 的键必须是整数类别索引：{e}") from e
        if [k for k, _ in items] != list(range(len(items))):
            raise DatasetError(f"{source} 中 names 的类别索引必须是 0..N-1 连续整数，实际为 {[k for k, _ in items]}。")
        names = [v for _, v in items]
    elif isinstance(raw, (list, tuple)):
        names = [str(v) for v in raw]
    else:
        raise DatasetError(f"{source} 缺少 names（类别名列表），请添加例如 names: ['猫', '狗']。")
    if not names:
        raise DatasetError(f"{source} 中 names 为空，请列出至少一个类别名。")
    if nc is not None and int(nc) != len(names):
        raise DatasetError(f"{source} 中 nc={nc} 与 names 的个数 {len(names)} 不一致，请改成一致。")
    return names


def _find_yaml(root: Path) -> Path | None:
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (root / name).is_file():
            return root / name
    found = sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml"))
    return found[0] if len(found) == 1 else None


def _yaml_split_images(cfg: dict, yaml_path: Path) -> dict[str, list[Path]] | None:
    """Images of each split named in data.yaml, or None when a path cannot be resolved."""
    base = yaml_path.parent
    if cfg.get("path"):
        p = Path(str(cfg["path"]))
        base = (
            p if p.is_absolute() and p.is_dir() else (yaml_path.parent / p if (yaml_path.parent / p).is_dir() else base)
        )
    out: dict[str, list[Path]] = {}
    for key, split in (("train", "train"), ("val", "valid"), ("test", "test")):
        entries = cfg.get(key)
        if not entries:
            continue
        images: list[Path] = []
        for entry in entries if isinstance(entries, list) else [entries]:
            rel = Path(str(entry))
            stripped = Path(*[s for s in rel.parts if s not in ("..", ".")]) if not rel.is_absolute() else rel
            target = next(
                (
                    c
                    for c in (base / rel, yaml_path.parent / rel, base / stripped, yaml_path.parent / stripped, rel)
                    if c.exists()
                ),
                None,
            )
            if target is None:
                return None
            if target.is_dir():
                images += list_images(target, recursive=True)
            else:  # a .txt list of image paths, relative to base
                for line in _read_text(target).splitlines():
                    if line.strip():
                        q = Path(line.strip())
                        images.append(q if q.is_absolute() else (base / q))
        out[split] = images
    return out or None


def find_yolo_dataset(src: str | Path) -> YoloDataset:
    """Discover a YOLO dataset in any supported layout (see module docstring)."""
    root = Path(src)
    if not root.is_dir():
        raise DatasetError(f"找不到数据集文件夹 {root}，请检查路径。")
    yaml_path = _find_yaml(root)
    cfg = {}
    if yaml_path is not None:
        try:
            cfg = yaml.safe_load(_read_text(yaml_path)) or {}
        except yaml.YAMLError as e:
            raise DatasetError(f"{yaml_path} 不是合法的 YAML：{e}") from e
    splits: dict[str, list[Path]] = {}
    layout = "roboflow"
    for d in sorted(root.iterdir()):
        s = split_alias(d.name)
        if d.is_dir() and s and (d / "images").is_dir() and s not in splits:
            splits[s] = list_images(d / "images", recursive=True)
    if not splits and (root / "images").is_dir():
        layout = "ultralytics"
        for d in sorted((root / "images").iterdir()):
            s = split_alias(d.name)
            if d.is_dir() and s and s not in splits:
                splits[s] = list_images(d, recursive=True)
    if not splits and isinstance(cfg, dict) and cfg.get("train"):
        layout = "ultralytics"
        splits = _yaml_split_images(cfg, yaml_path) or {}
        if not splits:
            raise DatasetError(
                f"{yaml_path} 中的 train/val 路径在磁盘上找不到，请改成相对 data.yaml 所在文件夹的路径。"
            )
    names_file = yaml_path if isinstance(cfg, dict) and "names" in cfg else None
    if not splits:
        layout = "flat"
        folder = root / "images" if (root / "images").is_dir() else root
        splits = {"train": list_images(folder)}
    if not any(splits.values()):
        raise DatasetError(f"在 {root} 中没有找到图像文件（支持 {', '.join(sorted(IMAGE_EXTS))}）。")
    if names_file is not None:
        names = _parse_names(cfg["names"], cfg.get("nc"), names_file)
    else:
        names_file = next(
            (c for c in (root / "classes.txt", root / "labels" / "classes.txt", root / "obj.names") if c.is_file()),
            None,
        )
        if names_file is None:
            raise DatasetError(
                f"在 {root} 中找不到类别名：请提供 data.yaml（含 names）或 classes.txt（每行一个类别名）。"
            )
        names = [ln.strip() for ln in _read_text(names_file).splitlines() if ln.strip()]
        if not names:
            raise DatasetError(f"{names_file} 是空的，请每行写一个类别名。")
    return YoloDataset(root, layout, names, splits, names_file)


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
    for i, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            try:
                yield i, parse_label_line(line, num_classes)
            except LabelLineError as e:
                yield i, e


# ---------------------------------------------------------------------------------------------- report
@dataclass
class SplitCounts:
    images: int = 0
    boxes: int = 0
    negatives: int = 0  # images without boxes (empty or missing label file)
    polygons: int = 0  # segmentation lines converted to boxes


@dataclass
class ConvertReport:
    src: str
    dst: str
    layout: str
    class_names: list[str]
    category_ids: list[int]
    splits: dict[str, SplitCounts] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"转换完成：{self.src} → {self.dst}（输入布局：{self.layout}）",
            f"类别（{len(self.class_names)} 个）："
            + "，".join(f"{i}={n}" for i, n in zip(self.category_ids, self.class_names)),
        ]
        for s, c in self.splits.items():
            lines.append(
                f"  {s}: {c.images} 张图像，{c.boxes} 个框，{c.negatives} 张无目标（负样本）"
                + (f"，{c.polygons} 个多边形已转为外接框" if c.polygons else "")
            )
        lines += [f"注意：{n}" for n in self.notes]
        if self.skipped:
            lines.append(f"跳过了 {len(self.skipped)} 处无效内容：")
            lines += [f"  {s}" for s in self.skipped]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- writing
def _check_dst(src: Path, dst: Path, overwrite: bool) -> None:
    s, d = src.resolve(), dst.resolve()
    if s == d or d in s.parents:
        raise DatasetError(f"输出文件夹 {dst} 不能与输入 {src} 相同或互相包含，请换一个输出路径。")
    if dst.exists() and not dst.is_dir():
        raise DatasetError(
            f"输出路径 {dst} 是一个已存在的文件，不是文件夹（即使 --overwrite 也不会删除文件）。"
            "请换一个输出路径，或先把这个文件移走。"
        )
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise DatasetError(f"输出文件夹 {dst} 已存在且非空。请换一个路径，或使用 overwrite=True 覆盖。")
    from ..outputs import ensure_output_dir

    ensure_output_dir(dst.parent, "输出文件夹的上一级")


def _place_file(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not link:
        shutil.copy2(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:  # other file system / not permitted: fall back to a symlink
        os.symlink(src.resolve(), dst)


def _atomic_write(dst: Path, write) -> None:
    """Run ``write(tmp)`` on a fresh temp folder beside dst, then replace dst by it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = (dst.with_name(f".{dst.name}.{tag}-{os.getpid()}") for tag in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if dst.exists():
            dst.rename(old)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not dst.exists():
            old.rename(dst)
        raise
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _unique_name(name: str, used: set[str]) -> str:
    stem, suffix, k = Path(name).stem, Path(name).suffix, 1
    out = name
    while out.lower() in used:
        out, k = f"{stem}_{k}{suffix}", k + 1
    used.add(out.lower())
    return out


def _raise_problems(problems: list[str], what: str) -> None:
    shown = "\n".join(f"  {p}" for p in problems[:_MAX_LISTED])
    more = f"\n  ……另有 {len(problems) - _MAX_LISTED} 处" if len(problems) > _MAX_LISTED else ""
    raise DatasetError(
        f"{what}中发现 {len(problems)} 处错误，未写出任何文件：\n{shown}{more}\n"
        "修复方法：改正上述文件中的对应行，或跳过它们：命令行加 --skip-invalid，Python 里传 skip_invalid=True"
        "（跳过的内容会逐条列在报告中）。"
    )


# ---------------------------------------------------------------------------------------------- YOLO -> COCO
def _split_flat(images: list[Path], ratio: float, seed: int) -> dict[str, list[Path]]:
    if not 0 < ratio < 1:
        raise DatasetError(f"split_ratio={ratio} 无效：它是验证集所占比例，应在 0 和 1 之间，例如 0.2。")
    order = sorted(images)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(ratio * len(order)))) if len(order) > 1 else 0
    val = set(order[:n_val])
    return {"train": [p for p in images if p not in val], "valid": [p for p in images if p in val]}


def yolo_to_coco(
    src: str | Path,
    dst: str | Path,
    *,
    split_ratio: float | None = None,
    seed: int = 0,
    one_based: bool = False,
    link: bool = False,
    skip_invalid: bool = False,
    overwrite: bool = False,
) -> ConvertReport:
    """Convert a YOLO dataset to the COCO layout ``dst/{train,valid,test}/_annotations.coco.json``.

    category_id = YOLO class index (0-based), or +1 with ``one_based=True``. ``split_ratio`` (fraction
    that goes to ``valid``, split with ``seed``) is only allowed for inputs without a validation split.
    Malformed label lines raise DatasetError before anything is written, unless ``skip_invalid``.
    """
    src, dst = Path(src), Path(dst)
    ds = find_yolo_dataset(src)
    _check_dst(src, dst, overwrite)
    splits = {k: v for k, v in ds.splits.items() if v or k == "train"}
    if split_ratio is not None:
        if "valid" in splits:
            raise DatasetError(f"{src} 已经有验证集划分（valid/val），不能再使用 split_ratio；请去掉该参数。")
        splits["train"], splits["valid"] = _split_flat(splits["train"], split_ratio, seed).values()
    offset = 1 if one_based else 0
    report = ConvertReport(str(src), str(dst), ds.layout, list(ds.names), [i + offset for i in range(len(ds.names))])
    problems: list[str] = []
    plans: dict[str, tuple[dict, list[tuple[Path, str]]]] = {}
    ann_id, claimed = 1, {}
    for split in SPLITS:
        if split not in splits:
            continue
        counts = report.splits.setdefault(split, SplitCounts())
        images, anns, files, used = [], [], [], set()
        for img_path in splits[split]:
            if not img_path.is_file():
                problems.append(f"{img_path}：图像文件不存在（data.yaml 或列表文件中列出）")
                continue
            try:
                w, h = image_size(img_path)
            except DatasetError as e:
                problems.append(f"{img_path}：{e}")
                continue
            label = label_path_for(img_path)
            if label is not None and label in claimed:
                problems.append(
                    f"{label}：同时对应图像 {claimed[label].name} 和 {img_path.name}（同名不同扩展名），请重命名其中一张"
                )
                continue
            if label is not None:
                claimed[label] = img_path
            img_anns = []
            for line_no, parsed in read_label_file(label, len(ds.names)):
                if isinstance(parsed, LabelLineError):
                    problems.append(f"{label} 第 {line_no} 行：{parsed}")
                    continue
                cls, (cx, cy, bw, bh), poly = parsed
                x0, y0 = min(max((cx - bw / 2) * w, 0.0), w), min(max((cy - bh / 2) * h, 0.0), h)
                x1, y1 = min(max((cx + bw / 2) * w, 0.0), w), min(max((cy + bh / 2) * h, 0.0), h)
                box = [round(x0, 4), round(y0, 4), round(x1 - x0, 4), round(y1 - y0, 4)]
                seg = []
                if poly is not None:
                    counts.polygons += 1
                    seg = [[round(v * (w if i % 2 == 0 else h), 4) for i, v in enumerate(poly)]]
                img_anns.append(
                    {
                        "id": 0,
                        "image_id": 0,
                        "category_id": cls + offset,
                        "bbox": box,
                        "area": round(box[2] * box[3], 4),
                        "iscrowd": 0,
                        "segmentation": seg,
                    }
                )
            image_id = len(images) + 1
            name = _unique_name(img_path.name, used)
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
            for a in img_anns:
                a["id"], a["image_id"], ann_id = ann_id, image_id, ann_id + 1
            anns += img_anns
            files.append((img_path, name))
            counts.images += 1
            counts.boxes += len(img_anns)
            counts.negatives += not img_anns
        categories = [{"id": i + offset, "name": n, "supercategory": "none"} for i, n in enumerate(ds.names)]
        coco = {
            "info": {"description": f"converted from YOLO dataset {src.name} by deimv2"},
            "licenses": [],
            "categories": categories,
            "images": images,
            "annotations": anns,
        }
        plans[split] = (coco, files)
    if problems and not skip_invalid:
        _raise_problems(problems, f"YOLO 数据集 {src} ")
    report.skipped = problems
    orphans = sorted(
        {t for d in {lab.parent for lab in claimed} for t in d.glob("*.txt")}
        - set(claimed)
        - {d / "classes.txt" for d in {lab.parent for lab in claimed}}
    )
    if orphans:
        shown = "、".join(str(t.relative_to(src)) for t in orphans[:_MAX_LISTED])
        report.notes.append(
            f"{len(orphans)} 个标签文件没有对应的图像，没有转换：{shown}" + ("……" if len(orphans) > _MAX_LISTED else "")
        )

    def write(tmp: Path) -> None:
        for split, (coco, files) in plans.items():
            out = tmp / split
            out.mkdir(parents=True, exist_ok=True)
            for path, name in files:
                _place_file(path, out / name, link)
            (out / COCO_JSON).write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")

    _atomic_write(dst, write)
    return report


# ---------------------------------------------------------------------------------------------- COCO reading
def find_coco_splits(path: str | Path) -> dict[str, tuple[Path, Path]]:
    """Find COCO annotation files: ``{split: (json file, image folder)}``.

    Accepts ``root/{train,valid,test}/_annotations.coco.json`` (images beside the json),
    ``root/annotations/instances_<split>.json`` (images in ``root/<split>`` or ``root/images/<split>``),
    a folder holding one json, or a json file. Returns {} when nothing is found.
    """
    p = Path(path)
    if p.is_file():
        return {split_alias(p.parent.name) or split_alias(p.stem) or "train": (p, _coco_image_dir(p))}
    if not p.is_dir():
        return {}
    out = {}
    for d in sorted(p.iterdir()):
        s = split_alias(d.name)
        if s and (d / COCO_JSON).is_file() and s not in out:
            out[s] = (d / COCO_JSON, d)
    ann_dir = p / "annotations"
    if not out and ann_dir.is_dir():
        for j in sorted(ann_dir.glob("*.json")):
            s = split_alias(j.stem)
            if s and s not in out:
                out[s] = (j, _coco_image_dir(j))
    if not out:
        found = sorted(p.glob("*.json"))
        if (p / COCO_JSON).is_file() or len(found) == 1:
            j = p / COCO_JSON if (p / COCO_JSON).is_file() else found[0]
            out[split_alias(p.name) or "train"] = (j, p)
    return out


def _coco_image_dir(json_path: Path) -> Path:
    """Guess the image folder of a json: beside it, its images/ folder, or root/<split> for classic COCO."""
    d = json_path.parent
    candidates = [d, d / "images"]
    if d.name == "annotations":
        suffix = json_path.stem.split("instances_", 1)[-1]
        candidates = [d.parent / suffix, d.parent / "images" / suffix, d.parent / "images", d.parent]
    try:
        data = json.loads(json_path.read_text(encoding="utf-8-sig"))
        first = [im["file_name"] for im in data.get("images", [])[:5] if isinstance(im, dict) and "file_name" in im]
    except (OSError, ValueError, TypeError, AttributeError):
        first = []
    for c in candidates:
        if first and all((c / f).is_file() for f in first):
            return c
    return candidates[0]


def load_coco_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DatasetError(f"无法解析 COCO 标注文件 {path}：{e}。请确认它是完整的 UTF-8 JSON 文件。") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path} 不是 COCO 格式：缺少 images 列表。")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise DatasetError(f"{path} 中 {key} 应为列表。")
    return data


def roboflow_placeholders(categories: list[dict], used_ids: set) -> set:
    """Ids of Roboflow's unused dataset-name category (the supercategory of the real classes)."""
    supers = {c.get("supercategory") for c in categories}
    return {
        c["id"]
        for c in categories
        if c["id"] not in used_ids
        and c.get("name") in supers
        and all(o.get("supercategory") == c.get("name") for o in categories if o["id"] != c["id"])
        and len(categories) > 1
    }


# ---------------------------------------------------------------------------------------------- COCO -> YOLO
def coco_to_yolo(
    src: str | Path, dst: str | Path, *, link: bool = False, skip_invalid: bool = False, overwrite: bool = False
) -> ConvertReport:
    """Convert a COCO dataset (layouts of :func:`find_coco_splits`) to an Ultralytics dataset:
    ``dst/{train,valid,test}/{images,labels}`` + ``data.yaml``. Classes are remapped to 0..C-1 in
    sorted category-id order; crowd annotations (iscrowd=1) are skipped and listed in the report."""
    src, dst = Path(src), Path(dst)
    found = find_coco_splits(src)
    if not found:
        raise DatasetError(f"在 {src} 中找不到 COCO 标注（{COCO_JSON} 或 annotations/instances_*.json）。")
    _check_dst(src if src.is_dir() else src.parent, dst, overwrite)
    datas = {s: load_coco_json(j) for s, (j, _) in found.items()}
    cats: dict = {}
    for s, data in datas.items():
        for c in data.get("categories", []):
            if not isinstance(c, dict) or "id" not in c:
                raise DatasetError(f"{found[s][0]} 中有缺少 id 的类别：{c}")
            if c["id"] in cats and cats[c["id"]]["name"] != c.get("name"):
                raise DatasetError(
                    f"不同划分中类别 id {c['id']} 的名字不一致：{cats[c['id']]['name']!r} 与 {c.get('name')!r}。"
                )
            cats.setdefault(c["id"], c)
    used = {a.get("category_id") for d in datas.values() for a in d.get("annotations", []) if isinstance(a, dict)}
    notes = []
    dropped = roboflow_placeholders(list(cats.values()), used)
    for cid in dropped:
        notes.append(f"类别 id {cid}（{cats[cid]['name']!r}）是 Roboflow 的占位类别（未被使用），已忽略。")
        del cats[cid]
    ids = sorted(cats)
    remap = {cid: i for i, cid in enumerate(ids)}
    report = ConvertReport(
        str(src), str(dst), "coco", [str(cats[i].get("name", i)) for i in ids], list(range(len(ids))), notes=notes
    )
    problems: list[str] = []
    plans = {}
    for split in SPLITS:
        if split not in datas:
            continue
        json_path, img_dir = found[split]
        data, counts = datas[split], report.splits.setdefault(split, SplitCounts())
        by_image: dict = {}
        for a in data.get("annotations", []):
            by_image.setdefault(a.get("image_id") if isinstance(a, dict) else None, []).append(a)
        files, used_names = [], set()
        for im in data["images"]:
            try:
                file_name, w, h = im["file_name"], float(im["width"]), float(im["height"])
            except (KeyError, TypeError, ValueError):
                problems.append(f"{json_path}：图像条目缺少 file_name/width/height：{im}")
                continue
            img_path = img_dir / file_name
            if not img_path.is_file():
                problems.append(f"{json_path}：图像 {file_name} 在 {img_dir} 中不存在")
                continue
            lines = []
            for a in by_image.get(im.get("id"), []):
                bbox = a.get("bbox")
                if a.get("iscrowd", 0):
                    problems.append(
                        f"{json_path}：标注 id {a.get('id')}（图像 {file_name}）为 iscrowd=1，YOLO 不支持，已跳过"
                    )
                    continue
                if a.get("category_id") not in remap:
                    problems.append(
                        f"{json_path}：标注 id {a.get('id')} 的 category_id={a.get('category_id')} 不在 categories 中"
                    )
                    continue
                problem = bbox_problem(bbox, (w, h))
                if problem:
                    problems.append(
                        f"{json_path}：标注 id {a.get('id')}（图像 {file_name}）的框无效：{problem}：bbox={bbox}"
                    )
                    continue
                x0, y0 = min(max(bbox[0], 0.0), w), min(max(bbox[1], 0.0), h)
                x1, y1 = min(max(bbox[0] + bbox[2], 0.0), w), min(max(bbox[1] + bbox[3], 0.0), h)
                lines.append(
                    f"{remap[a['category_id']]} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                    f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
                )
            name = _unique_name(Path(file_name).name, used_names)
            files.append((img_path, name, lines))
            counts.images += 1
            counts.boxes += len(lines)
            counts.negatives += not lines
        plans[split] = files
    crowd_only = [p for p in problems if "iscrowd=1" in p]
    if len(crowd_only) != len(problems) and not skip_invalid:
        _raise_problems([p for p in problems if p not in crowd_only], f"COCO 数据集 {src} ")
    report.skipped = problems

    def write(tmp: Path) -> None:
        for split, files in plans.items():
            (tmp / split / "labels").mkdir(parents=True, exist_ok=True)
            for path, name, lines in files:
                _place_file(path, tmp / split / "images" / name, link)
                text = "\n".join(lines) + ("\n" if lines else "")
                (tmp / split / "labels" / (Path(name).stem + ".txt")).write_text(text, encoding="utf-8")
        cfg = {f"{'val' if s == 'valid' else s}": f"{s}/images" for s in plans}
        cfg.update(nc=len(report.class_names), names=report.class_names)
        (tmp / "data.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")

    _atomic_write(dst, write)
    return report
