"""YOLO <-> COCO dataset conversion.

Supported YOLO inputs (detected automatically):

* ``roboflow``: ``train/images``, ``train/labels``, ``valid/...``, ``test/...`` + ``data.yaml``;
* ``ultralytics``: ``images/train``, ``labels/train`` ... + ``data.yaml`` (``path``/``train``/``val``/``test``/``names``);
* ``flat``: one folder of images, labels beside them or in ``labels/``, class names in ``classes.txt``.

(the layouts are found by :func:`deimv2.data.layout.find_yolo_dataset`; COCO inputs of ``coco_to_yolo`` by
:func:`deimv2.data.layout.find_dataset`.)

Label lines are ``cls cx cy w h`` (normalised). Segmentation lines ``cls x1 y1 x2 y2 ...`` (at least 3
points) are converted to the bounding box of the polygon; the polygon itself is kept in ``segmentation``.
COCO ``area`` is always the (clipped) box area. The output is the Roboflow COCO layout that the
official loader reads: ``DST/{train,valid,test}/_annotations.coco.json`` with the images beside it.
Nothing partial is ever written: everything is validated first, then written into a temporary folder
that is renamed to ``DST`` at the end (:mod:`deimv2.data.writing`). Source files are copied or linked, never moved.
Explained in notebook 02_convert.ipynb.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from deimv2.data.images import image_size
from deimv2.data.layout import COCO_JSON, SPLITS, find_dataset, find_yolo_dataset, label_path_for, read_coco_json
from deimv2.data.validate import bbox_problem, coco_image_path, empty_split_problem, shared_images_problem
from deimv2.data.writing import check_output_folder, place_file, unique_name, unique_stem, write_all_at_once
from deimv2.data.yolo_labels import LabelLineError, read_label_file
from deimv2.errors import DatasetError

#: output folder of each split (the Roboflow layout: ``valid/``, which :func:`~deimv2.data.layout.find_dataset` reads)
SPLIT_FOLDERS = {"train": "train", "val": "valid", "test": "test"}
_MAX_LISTED = 20


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


# ---------------------------------------------------------------------------------------------- problems
def _note_empty_splits(report: ConvertReport, crowd: dict[str, int]) -> None:
    """The trainer's rule for empty or crowd-only train/valid splits, as a note (converting them is not an error)."""
    for folder, c in report.splits.items():
        if folder in ("train", "valid"):
            problem = empty_split_problem(
                "train" if folder == "train" else "val", c.boxes, crowd.get(folder, 0), f"{report.dst}/{folder}"
            )
            if problem:
                report.notes.append(problem.split("修复")[0] + "这样的数据集不能直接训练。")


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
    return {"train": [p for p in images if p not in val], "val": [p for p in images if p in val]}


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
    """Convert a YOLO dataset to the COCO layout ``dst/{train,valid,test}/_annotations.coco.json`` (images beside).

    Every label line is checked first; nothing is written unless all is well (or ``skip_invalid``), and the
    output appears at once (written to a temporary folder, then renamed). Source files are copied or linked,
    never moved.

    Args:
        src: the dataset folder (any layout of :func:`~deimv2.data.layout.find_yolo_dataset`: Roboflow,
            Ultralytics or one flat folder) or its ``data.yaml``.
        dst: the output folder; it must not exist yet or be empty (see ``overwrite``).
        split_ratio: the share of the images that goes to ``valid``; only for inputs without a validation split.
        seed: the random seed of that split.
        one_based: category ids from 1 (``category_id`` = class index + 1) instead of the class index.
        link: hard-link (else symlink) the images instead of copying them.
        skip_invalid: skip malformed label lines and unreadable images (each listed in the report's
            ``skipped``) instead of raising.
        overwrite: replace a non-empty ``dst``.

    Returns:
        A :class:`ConvertReport`: class names, category ids, counts per output split (keyed by the folder
        names ``train`` / ``valid`` / ``test``), what was skipped, and notes; ``report.format()`` is the Chinese
        summary the command line prints.

    Raises:
        DatasetError: no YOLO dataset at ``src``, a bad ``dst``, or problems in the labels (without
            ``skip_invalid``); the message names the files and the fix.
        OutputError: the output folder cannot be written.

    Example:
        The demo dataset bundled with deimv2 (YOLO, Roboflow layout), into a folder whose name has a space:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from deimv2 import yolo_to_coco
        >>> from deimv2.data.demo import demo_dataset_dir
        >>> report = yolo_to_coco(demo_dataset_dir(), Path(tempfile.mkdtemp()) / "我的 数据")
        >>> report.class_names, report.category_ids
        (['猫', '咖啡杯', '硬币', '火箭'], [0, 1, 2, 3])
        >>> {split: counts.images for split, counts in report.splits.items()}
        {'train': 160, 'valid': 48}
        >>> sorted(p.name for p in Path(report.dst).iterdir())
        ['train', 'valid']
    """
    src, dst = Path(src), Path(dst)
    ds = find_yolo_dataset(src)
    check_output_folder(ds.root, dst, overwrite)
    splits = _yolo_splits(ds, src, split_ratio, seed)
    read = _YoloRead(len(ds.names), 1 if one_based else 0)
    report = ConvertReport(
        str(src), str(dst), ds.layout, list(ds.names), [i + read.offset for i in range(len(ds.names))]
    )
    plans: dict[str, tuple[dict, list[tuple[Path, str]]]] = {}
    ann_id = 1
    for split in (s for s in SPLITS if s in splits):
        counts = report.splits.setdefault(SPLIT_FOLDERS[split], SplitCounts())
        images, anns, files = _yolo_split_to_coco(splits[split], read, counts)
        for a in anns:  # numbered on through all splits
            a["id"], ann_id = ann_id, ann_id + 1
        plans[SPLIT_FOLDERS[split]] = (_coco_document(src, ds.names, read.offset, images, anns), files)
    if read.problems and not skip_invalid:
        _raise_problems(read.problems, f"YOLO 数据集 {src} ")
    report.skipped = read.problems
    _note_empty_splits(report, {})
    _note_orphan_labels(report, read.claimed, ds.root)
    write_all_at_once(dst, lambda tmp: _write_coco_splits(tmp, plans, link))
    return report


def _yolo_splits(ds, src: Path, split_ratio: float | None, seed: int) -> dict[str, list[Path]]:
    """The images of each split to convert; ``split_ratio`` cuts ``val`` out of ``train`` when there is none."""
    splits = {k: v for k, v in ds.splits.items() if v or k == "train"}
    if split_ratio is not None:
        if "val" in splits:
            raise DatasetError(f"{src} 已经有验证集划分（valid/val），不能再使用 split_ratio；请去掉该参数。")
        splits["train"], splits["val"] = _split_flat(splits["train"], split_ratio, seed).values()
    shared = shared_images_problem(splits)  # the doctor's and the trainer's rule
    if shared:
        raise DatasetError(f"YOLO 数据集 {src}：{shared}未写出任何文件。")
    return splits


@dataclass
class _YoloRead:
    """One YOLO → COCO conversion: the class count, the category id offset, which image claimed each label file,
    and the problems found (collected, then raised or skipped all at once)."""

    num_classes: int
    offset: int
    claimed: dict[Path, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _yolo_split_to_coco(paths: list[Path], read: _YoloRead, counts: SplitCounts) -> tuple[list, list, list]:
    """One split's COCO ``images`` (ids from 1, unique file names) and ``annotations`` (ids not yet given), and
    the files to place as ``(source, name)``."""
    images, anns, files, used = [], [], [], set()
    for img_path in paths:
        found = _read_yolo_image(img_path, read, counts)
        if found is None:
            continue
        (w, h), img_anns = found
        image_id = len(images) + 1
        name = unique_name(img_path.name, used)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for a in img_anns:
            a["image_id"] = image_id
        anns += img_anns
        files.append((img_path, name))
        counts.images += 1
        counts.boxes += len(img_anns)
        counts.negatives += not img_anns
    return images, anns, files


def _read_yolo_image(img_path: Path, read: _YoloRead, counts: SplitCounts) -> tuple[tuple[int, int], list] | None:
    """``((width, height), annotations)`` of one image and its label file; None (a problem noted) when it cannot
    be used: missing or unreadable, or its label file already claimed by an image with the same stem."""
    if not img_path.is_file():
        read.problems.append(f"{img_path}：图像文件不存在（data.yaml 或列表文件中列出）")
        return None
    try:
        w, h = image_size(img_path)
    except DatasetError as e:
        read.problems.append(str(e).splitlines()[0])  # the first line names the file and the problem
        return None
    label = label_path_for(img_path)
    if label is not None and label in read.claimed:
        read.problems.append(
            f"{label}：同时对应图像 {read.claimed[label].name} 和 {img_path.name}（同名不同扩展名），请重命名其中一张"
        )
        return None
    if label is not None:
        read.claimed[label] = img_path
    return (w, h), _yolo_annotations(label, w, h, read, counts)


def _yolo_annotations(label: Path | None, w: int, h: int, read: _YoloRead, counts: SplitCounts) -> list[dict]:
    """The COCO annotations of one label file: boxes in pixels, clipped to the image; polygons kept."""
    anns = []
    for line_no, parsed in read_label_file(label, read.num_classes):
        if isinstance(parsed, LabelLineError):
            read.problems.append(f"{label} 第 {line_no} 行：{parsed}")
            continue
        cls, (cx, cy, bw, bh), poly = parsed
        x0, y0 = min(max((cx - bw / 2) * w, 0.0), w), min(max((cy - bh / 2) * h, 0.0), h)
        x1, y1 = min(max((cx + bw / 2) * w, 0.0), w), min(max((cy + bh / 2) * h, 0.0), h)
        box = [round(x0, 4), round(y0, 4), round(x1 - x0, 4), round(y1 - y0, 4)]
        seg = []
        if poly is not None:
            counts.polygons += 1
            seg = [[round(v * (w if i % 2 == 0 else h), 4) for i, v in enumerate(poly)]]
        anns.append(
            {
                "id": 0,
                "image_id": 0,
                "category_id": cls + read.offset,
                "bbox": box,
                "area": round(box[2] * box[3], 4),
                "iscrowd": 0,
                "segmentation": seg,
            }
        )
    return anns


def _coco_document(src: Path, names: list[str], offset: int, images: list, anns: list) -> dict:
    categories = [{"id": i + offset, "name": n, "supercategory": "none"} for i, n in enumerate(names)]
    return {
        "info": {"description": f"converted from YOLO dataset {src.name} by deimv2"},
        "licenses": [],
        "categories": categories,
        "images": images,
        "annotations": anns,
    }


def _note_orphan_labels(report: ConvertReport, claimed: dict[Path, Path], root: Path) -> None:
    """Label files in the label folders that no image claimed (not converted) go into the report's notes."""
    folders = {lab.parent for lab in claimed}
    orphans = sorted(
        {t for d in folders for t in d.glob("*.txt")} - set(claimed) - {d / "classes.txt" for d in folders}
    )
    if orphans:
        shown = "、".join(str(t.relative_to(root)) for t in orphans[:_MAX_LISTED])
        report.notes.append(
            f"{len(orphans)} 个标签文件没有对应的图像，没有转换：{shown}" + ("……" if len(orphans) > _MAX_LISTED else "")
        )


def _write_coco_splits(tmp: Path, plans: dict, link: bool) -> None:
    for split, (coco, files) in plans.items():
        out = tmp / split
        out.mkdir(parents=True, exist_ok=True)
        for path, name in files:
            place_file(path, out / name, link)
        (out / COCO_JSON).write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")


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
    """Convert a COCO dataset (layouts of :func:`~deimv2.data.layout.find_dataset`) to an Ultralytics dataset:
    ``dst/{train,valid,test}/{images,labels}`` + ``data.yaml`` (the report's ``splits`` are keyed by these folders).
    Classes are remapped to 0..C-1 in sorted category-id order; crowd annotations (iscrowd=1) are skipped and
    listed in the report."""
    src, dst = Path(src), Path(dst)
    found = find_dataset(src)
    check_output_folder(src if src.is_dir() else src.parent, dst, overwrite)
    datas = {s: read_coco_json(f.ann_file, check_categories=False) for s, f in found.items()}
    cats = _coco_categories(found, datas)
    used = {a.get("category_id") for d in datas.values() for a in d.get("annotations", []) if isinstance(a, dict)}
    notes = []
    for cid in roboflow_placeholders(list(cats.values()), used):
        notes.append(f"类别 id {cid}（{cats[cid]['name']!r}）是 Roboflow 的占位类别（未被使用），已忽略。")
        del cats[cid]
    ids = sorted(cats)
    remap = {cid: i for i, cid in enumerate(ids)}
    report = ConvertReport(
        str(src), str(dst), "coco", [str(cats[i].get("name", i)) for i in ids], list(range(len(ids))), notes=notes
    )
    problems: list[str] = []
    plans, crowd = {}, {}
    for split in (s for s in SPLITS if s in datas):
        folder = SPLIT_FOLDERS[split]
        plans[folder], crowd[folder] = _coco_split_to_yolo(split, found[split], datas[split], remap, report, problems)
    shared = shared_images_problem({s: [f[0] for f in files] for s, files in plans.items()})
    if shared:
        raise DatasetError(f"COCO 数据集 {src}：{shared}未写出任何文件。")
    _note_empty_splits(report, crowd)
    crowd_only = [p for p in problems if "iscrowd=1" in p]
    if len(crowd_only) != len(problems) and not skip_invalid:
        _raise_problems([p for p in problems if p not in crowd_only], f"COCO 数据集 {src} ")
    report.skipped = problems
    write_all_at_once(dst, lambda tmp: _write_yolo_splits(tmp, plans, link, report.class_names))
    return report


def _coco_categories(found: dict, datas: dict) -> dict:
    """category id -> category dict over all splits; an id twice in one file, or with two names, is an error."""
    cats: dict = {}
    for s, data in datas.items():
        own: dict = {}
        for c in data.get("categories", []):
            if not isinstance(c, dict) or "id" not in c:
                raise DatasetError(f"{found[s].ann_file} 中有缺少 id 的类别：{c}")
            if c["id"] in own:
                raise DatasetError(
                    f"{found[s].ann_file} 中类别 id {c['id']} 出现了多次（{own[c['id']].get('name')!r} 和 "
                    f"{c.get('name')!r}），不知道这个 id 的框属于哪一类，没有写出任何文件。修复：每个类别的 id 必须唯一。"
                )
            own[c["id"]] = c
            if c["id"] in cats and cats[c["id"]]["name"] != c.get("name"):
                raise DatasetError(
                    f"不同划分中类别 id {c['id']} 的名字不一致：{cats[c['id']]['name']!r} 与 {c.get('name')!r}"
                    f"（{found[s].ann_file}）。修复：让各划分的 categories 完全相同。"
                )
            cats.setdefault(c["id"], c)
    return cats


def _coco_split_to_yolo(split, split_files, data, remap, report, problems) -> tuple[list, int]:
    """``([(image, name, label lines)], crowd boxes)`` of one split; problems are collected, not raised."""
    img_dir, json_path = split_files
    counts = report.splits.setdefault(SPLIT_FOLDERS[split], SplitCounts())
    by_image: dict = {}
    for a in data.get("annotations", []):
        by_image.setdefault(a.get("image_id") if isinstance(a, dict) else None, []).append(a)
    files, used_names, crowd = [], set(), 0
    for im in data["images"]:
        try:
            file_name, w, h = im["file_name"], float(im["width"]), float(im["height"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{json_path}：图像条目缺少 file_name/width/height：{im}")
            continue
        img_path = coco_image_path(img_dir, str(file_name))  # the loader's rule (Windows backslashes …)
        if not img_path.is_file():
            problems.append(f"{json_path}：图像 {file_name} 在 {img_dir} 中不存在")
            continue
        lines, n_crowd = _yolo_lines(by_image.get(im.get("id"), []), remap, w, h, json_path, file_name, problems)
        crowd += n_crowd
        name = unique_stem(img_path.name, used_names)  # the label is named by the stem
        if name != img_path.name:
            report.notes.append(
                f"{split}：{file_name} 与另一张图片同名（只差扩展名或文件夹，YOLO 标签会写到同一个 .txt），"
                f"改名为 {name}（标签 {Path(name).stem}.txt）"
            )
        files.append((img_path, name, lines))
        counts.images += 1
        counts.boxes += len(lines)
        counts.negatives += not lines
    return files, crowd


def _yolo_lines(anns: list, remap: dict, w: float, h: float, json_path: Path, file_name, problems: list) -> tuple:
    """``(YOLO label lines, crowd boxes)`` of one image's annotations: boxes clipped to the image, normalised;
    crowd boxes, unknown categories and invalid boxes are skipped and noted in ``problems``."""
    lines, crowd = [], 0
    for a in anns:
        bbox = a.get("bbox")
        if a.get("iscrowd", 0):
            crowd += 1
            problems.append(f"{json_path}：标注 id {a.get('id')}（图像 {file_name}）为 iscrowd=1，YOLO 不支持，已跳过")
            continue
        if a.get("category_id") not in remap:
            problems.append(
                f"{json_path}：标注 id {a.get('id')} 的 category_id={a.get('category_id')} 不在 categories 中"
            )
            continue
        problem = bbox_problem(bbox, (w, h))
        if problem:
            problems.append(f"{json_path}：标注 id {a.get('id')}（图像 {file_name}）的框无效：{problem}：bbox={bbox}")
            continue
        x0, y0 = min(max(bbox[0], 0.0), w), min(max(bbox[1], 0.0), h)
        x1, y1 = min(max(bbox[0] + bbox[2], 0.0), w), min(max(bbox[1] + bbox[3], 0.0), h)
        lines.append(
            f"{remap[a['category_id']]} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
            f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
        )
    return lines, crowd


def _write_yolo_splits(tmp: Path, plans: dict, link: bool, class_names: list[str]) -> None:
    for split, files in plans.items():
        (tmp / split / "labels").mkdir(parents=True, exist_ok=True)
        for path, name, lines in files:
            place_file(path, tmp / split / "images" / name, link)
            text = "\n".join(lines) + ("\n" if lines else "")
            (tmp / split / "labels" / (Path(name).stem + ".txt")).write_text(text, encoding="utf-8")
    cfg = {f"{'val' if s == 'valid' else s}": f"{s}/images" for s in plans}
    cfg.update(nc=len(class_names), names=class_names)
    (tmp / "data.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
