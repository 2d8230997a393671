"""Dataset doctor: find problems in a COCO or YOLO detection dataset before training.

Severity: ``error`` = training would crash or silently learn wrong things (missing/corrupt image,
unknown category id, duplicate ids, image size mismatch, ``num_classes`` too small, malformed YOLO
line, invalid box: NaN/inf, width or height <= 0, entirely outside the image -- the policy of
:mod:`deimv2.data.validate`); ``warning`` = the training pipeline copes (box partly outside the image, 1-based or
gapped category ids); ``info`` = facts worth knowing. Image checks read headers only (plus a cheap
end-of-file marker check for truncation) unless ``deep=True``, which fully decodes every image.
Explained in notebook 02_convert.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from deimv2.data.convert import roboflow_placeholders
from deimv2.data.doctor_report import DoctorReport, IssueCollector
from deimv2.data.images import displayed_size
from deimv2.data.layout import find_dataset, find_yolo_dataset, label_path_for, read_coco_json
from deimv2.data.validate import bbox_problem, coco_image_path, empty_split_problem, shared_images_problem
from deimv2.data.yolo_labels import LabelLineError, read_label_file
from deimv2.errors import DatasetError

SMALL, LARGE = 32**2, 96**2  # COCO area thresholds


def probe_image(path: Path, deep: bool = False) -> tuple[tuple[int, int] | None, tuple[int, int] | None, str | None]:
    """Return (displayed size with EXIF applied, raw stored size, problem). Header read unless ``deep``."""
    try:
        with Image.open(path) as im:
            raw, size = im.size, displayed_size(im)
            fmt = im.format
        if deep:  # verify() must come right after open (PNG chunks), so it gets a handle of its own
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                im.load()
        elif fmt in ("JPEG", "PNG"):
            with open(path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 512))
                tail = f.read()
            marker = b"\xff\xd9" if fmt == "JPEG" else b"IEND"
            if marker not in tail:
                return None, raw, "文件被截断（缺少结束标记）"
    except Exception as e:  # PIL raises many types for bad files
        return None, None, f"无法读取（{type(e).__name__}: {e}）"
    return size, raw, None


def _box_size(rep: DoctorReport, area: float) -> None:
    rep.box_sizes["small" if area < SMALL else "large" if area >= LARGE else "medium"] += 1


# ---------------------------------------------------------------------------------------------- COCO
@dataclass
class _CocoSeen:
    """What the COCO checks gather across splits: categories declared (first name wins) and their dicts, the
    boxes per category id, each split's category ids and image paths."""

    declared: dict = field(default_factory=dict)
    cat_dicts: list = field(default_factory=list)
    used: dict = field(default_factory=dict)
    split_ids: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)


def _check_coco(rep: DoctorReport, col: IssueCollector, splits: dict, deep: bool) -> None:
    seen = _CocoSeen()
    for split, (img_dir, json_path) in splits.items():
        try:
            data = read_coco_json(json_path, check_categories=False)
        except DatasetError as e:
            col.add("error", "bad_json", f"{split}: 标注文件无法读取", str(e))
            continue
        _check_coco_categories(col, split, data, seen)
        stats = rep.splits.setdefault(split, {"images": 0, "boxes": 0, "negatives": 0})
        sizes = _check_coco_images(col, split, data, img_dir, stats, seen, deep)
        has_box, crowd = _check_coco_annotations(rep, col, split, data, sizes, stats, seen, json_path)
        stats["negatives"] = stats["images"] - len(has_box & set(sizes))
        _check_split_boxes(col, split, stats["boxes"], crowd, json_path)
    split_ids = seen.split_ids
    if "train" in split_ids and "val" in split_ids and split_ids["train"] != split_ids["val"]:
        col.add(  # the loader refuses this too (build_data)
            "error",
            "categories_disagree",
            "训练集和验证集的 categories 不一致，请让各划分使用同一份 categories",
            f"train: {sorted(split_ids['train'])}，val: {sorted(split_ids['val'])}",
        )
    shared = shared_images_problem(seen.paths)
    if shared:
        col.add("error", "shared_images", shared)
    _check_categories_coco(rep, col, seen.declared, seen.used, seen.cat_dicts)


def _check_coco_categories(col: IssueCollector, split: str, data: dict, seen: _CocoSeen) -> None:
    """One split's ``categories``: integer ids, and the same name for an id in every split."""
    declared = seen.declared
    for c in data.get("categories", []):
        if not (isinstance(c, dict) and isinstance(c.get("id"), int)):
            col.add("error", "bad_category", f"{split}: categories 中有缺少整数 id 的条目", str(c)[:80])
            continue
        if c["id"] in declared and declared[c["id"]] != str(c.get("name", c["id"])):
            col.add(  # the loader refuses this too (build_data: categories differ between splits)
                "error",
                "categories_disagree",
                "不同划分中同一个类别 id 的名字不一致，请让各划分使用同一份 categories",
                f"{split}: id {c['id']} = {c.get('name')!r}，之前是 {declared[c['id']]!r}",
            )
        seen.split_ids.setdefault(split, set()).add(c["id"])
        if c["id"] not in declared:
            seen.cat_dicts.append(c)
        declared.setdefault(c["id"], str(c.get("name", c["id"])))


def _check_coco_images(
    col: IssueCollector, split: str, data: dict, img_dir, stats: dict, seen: _CocoSeen, deep
) -> dict:
    """One split's ``images``: ids, file names, the files themselves; returns image id -> real size (None: unreadable)."""
    sizes, seen_names = {}, {}
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            col.add("error", "bad_image_entry", f"{split}: images 中有缺少 id/file_name 的条目", str(im)[:80])
            continue
        name = str(im["file_name"])
        if not isinstance(im["id"], int) or isinstance(im["id"], bool):
            col.add(
                "error",
                "bad_image_id",
                f"{split}: 图像 id 必须是整数（现在是文字或其他类型）",
                f"id={im['id']!r}: {name}",
            )
        if im["id"] in sizes:
            col.add("error", "duplicate_image_id", f"{split}: 重复的图像 id（标注会错配到别的图像）", f"id={im['id']}")
            continue
        if name in seen_names:
            col.add("error", "duplicate_file_name", f"{split}: 同一文件名出现在多个图像条目中", name)
        seen_names[name] = im["id"]
        stats["images"] += 1
        path = coco_image_path(img_dir, name)  # the loader's rule (Windows backslashes …)
        seen.paths.setdefault(split, []).append(path)
        if not path.is_file():
            col.add("error", "missing_image", f"{split}: 图像在磁盘上不存在（图像文件夹 {img_dir}）", name)
            sizes[im["id"]] = None
            continue
        sizes[im["id"]] = _check_coco_image_file(col, split, im, path, deep)
    return sizes


def _check_coco_image_file(col: IssueCollector, split: str, im: dict, path: Path, deep: bool) -> tuple[int, int] | None:
    """The image can be read and its size is the one in the json; returns its real size (None: unreadable)."""
    name = str(im["file_name"])
    size, raw, problem = probe_image(path, deep)
    if problem:
        col.add("error", "corrupt_image", f"{split}: 图像损坏或无法读取", f"{name}: {problem}")
        return None
    declared_size = (im.get("width"), im.get("height"))
    if None in declared_size:
        col.add("warning", "no_size", f"{split}: 图像条目缺少 width/height", name)
    elif tuple(declared_size) != size and tuple(declared_size) == raw:
        col.add(
            "warning",
            "exif_rotated",
            f"{split}: 图像带 EXIF 旋转，json 中的宽高是未旋转的尺寸，请确认标注是在哪个方向上画的",
            name,
        )
    elif tuple(declared_size) != size:
        col.add(
            "error",
            "size_mismatch",
            f"{split}: json 中的宽高与实际图像不一致（框的位置会错）",
            f"{name}: json {declared_size[0]}x{declared_size[1]} vs 实际 {size[0]}x{size[1]}",
        )
    return size


def _check_coco_annotations(rep, col, split, data, sizes, stats, seen: _CocoSeen, json_path) -> tuple[set, int]:
    """One split's ``annotations``: ids, image ids, boxes; returns (ids of images with a box, crowd boxes)."""
    ann_ids, has_box, crowd = set(), set(), 0
    for a in data.get("annotations", []):
        if not isinstance(a, dict):
            col.add("error", "bad_annotation", f"{split}: annotations 中有非字典条目", str(a)[:80])
            continue
        aid = a.get("id")
        _check_annotation_id(col, split, a, ann_ids)
        ann_ids.add(aid)
        if a.get("image_id") not in sizes:
            col.add(
                "error",
                "unknown_image_id",
                f"{split}: 标注指向不存在的 image_id",
                f"ann id={aid}, image_id={a.get('image_id')}",
            )
            continue
        cid = a.get("category_id")
        seen.used[cid] = seen.used.get(cid, 0) + 1
        bbox, size = a.get("bbox"), sizes[a["image_id"]]
        problem = bbox_problem(bbox, size)
        if problem:  # one policy with the trainer (deimv2.data.validate): an error, named by annotation id
            col.add(
                "error",
                "invalid_box",
                f"{split}: 无效的框（NaN/inf、宽或高 ≤ 0、或完全在图像外），"
                f"训练会拒绝开始；请改正或删除这些标注（{json_path.name}）",
                f"ann id={aid}: {problem}: {bbox}",
            )
            continue
        if a.get("iscrowd", 0):
            crowd += 1
            continue
        stats["boxes"] += 1
        has_box.add(a["image_id"])
        x, y, w, h = bbox
        _box_size(rep, a.get("area") if isinstance(a.get("area"), (int, float)) else w * h)
        if size is not None and (x < -1 or y < -1 or x + w > size[0] + 1 or y + h > size[1] + 1):
            col.add(
                "warning", "box_clipped", f"{split}: 框部分超出图像（训练时会被裁剪到图像内）", f"ann id={aid}: {bbox}"
            )
    return has_box, crowd


def _check_annotation_id(col: IssueCollector, split: str, a: dict, ann_ids: set) -> None:
    """Annotation ids must be unique, and better not 0 (pycocotools)."""
    aid = a.get("id")
    if aid in ann_ids:
        col.add("error", "duplicate_ann_id", f"{split}: 重复的标注 id（pycocotools 会丢掉其中一个）", f"id={aid}")
    if aid == 0:
        col.add(
            "warning",
            "ann_id_zero",
            f"{split}: 标注 id 为 0，pycocotools 评估时会把它的匹配当成未匹配，"
            "mAP 略偏低；建议标注 id 从 1 开始（yolo_to_coco 会这样做）",
            f"image_id={a.get('image_id')}",
        )


def _check_split_boxes(col: IssueCollector, split: str, boxes: int, crowd: int, where) -> None:
    """The trainer's rule for empty and crowd-only splits (deimv2.data.validate), and a count of crowd boxes."""
    problem = empty_split_problem(split, boxes, crowd, where) if split in ("train", "val") else None
    if problem:
        col.add("error", "empty_split", problem)
    elif crowd:
        col.add("warning", "crowd_boxes", f"{split}: {crowd} 个 iscrowd=1 的标注训练时会被忽略（评估时也不计分）")


def _check_categories_coco(rep: DoctorReport, col: IssueCollector, declared: dict, used: dict, cat_dicts: list) -> None:
    """The categories of all splits together: placeholders, unknown and unused ids, numbering, duplicate names."""
    placeholders = roboflow_placeholders(cat_dicts, set(used))
    for cid in placeholders:
        col.add(
            "info",
            "roboflow_placeholder",
            f"类别 id {cid}（{declared[cid]}）是 Roboflow 导出的占位类别，没有标注，可以保留",
        )
    rep.categories = dict(sorted(declared.items()))
    unknown = sorted(set(used) - set(declared), key=str)
    for cid in unknown:
        col.add(
            "error",
            "unknown_category",
            "标注使用了 categories 中没有声明的 category_id",
            f"id={cid}（{used[cid]} 个框）",
            used[cid],
        )
    ids = sorted(set(declared) | {c for c in used if isinstance(c, int)})
    if not ids:
        col.add("error", "no_categories", "没有任何类别（categories 为空且无标注）")
        return
    rep.id_base = ids[0]
    # deimv2 maps the declared categories (sorted by id) to contiguous labels 0..C-1, so C is what a config needs
    rep.num_classes_needed = len(declared) or len(ids)  # unknown ids are errors of their own
    _check_id_numbering(col, ids)
    for cid in sorted(set(declared) - set(used) - placeholders):
        col.add("warning", "unused_category", "声明了但没有任何标注的类别", f"{cid}={declared[cid]}")
    twins = _check_duplicate_names(col, declared)

    def label(c) -> str:
        name = declared.get(c)
        if name is None:
            return f"未知 id {c}"
        return f"{name}（id {c}）" if name in twins else name

    rep.class_counts = {label(c): used[c] for c in sorted(used, key=str)}


def _check_id_numbering(col: IssueCollector, ids: list) -> None:
    """Category ids that start above 0 or have gaps: fine here, but the official code needs a larger num_classes."""
    if ids[0] >= 1:
        col.add(
            "info",
            "one_based" if ids[0] == 1 else "high_base",
            f"category_id 从 {ids[0]} 开始。deimv2 会按 categories 自动映射成从 0 开始的连续标签，num_classes = "
            f"{len(ids)} 即可；但官方 DEIMv2 代码直接用 category_id 当标签，那里必须设 num_classes ≥ {ids[-1] + 1}，"
            "否则 GPU 上会报 CUDA device-side assert",
        )
    gaps = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids))
    if gaps:
        col.add(
            "info",
            "id_gaps",
            f"category_id 不连续（缺少 {gaps[:10]}）。deimv2 会自动映射为连续标签，num_classes = {len(ids)}；"
            f"官方代码需要 num_classes ≥ 最大 id + 1 = {ids[-1] + 1}",
            n=len(gaps),
        )


def _check_duplicate_names(col: IssueCollector, declared: dict) -> dict:
    """Several category ids with one name (the model learns them apart, the predictions cannot tell them apart);
    returns name -> those ids."""
    by_name: dict[str, list] = {}
    for cid, name in declared.items():
        by_name.setdefault(name, []).append(cid)
    twins = {name: cids for name, cids in by_name.items() if len(cids) > 1}
    for name, cids in twins.items():
        col.add(
            "warning",
            "duplicate_category_name",
            "几个 category id 用了同一个类别名：模型会把它们当成不同的类别来学，预测结果里却分不出来。"
            "请把它们的标注合并到一个 id（或给它们起不同的名字）",
            f"{name}：id {'、'.join(map(str, sorted(cids, key=str)))}",
        )
    return twins


# ---------------------------------------------------------------------------------------------- YOLO
def _check_yolo(rep: DoctorReport, col: IssueCollector, deep: bool) -> None:
    ds = find_yolo_dataset(rep.path)
    rep.categories = dict(enumerate(ds.names))
    rep.id_base, rep.num_classes_needed = 0, len(ds.names)
    counts = [0] * len(ds.names)
    shared = shared_images_problem(ds.splits)
    if shared:
        col.add("error", "shared_images", shared)
    for split, images in ds.splits.items():
        stats = rep.splits.setdefault(split, {"images": 0, "boxes": 0, "negatives": 0})
        claimed: dict[Path, Path] = {}
        label_dirs = set()
        for img in images:
            stats["images"] += 1
            rel = img.name
            if not img.is_file():
                col.add("error", "missing_image", f"{split}: 列表中的图像在磁盘上不存在", str(img))
                continue
            size, _, problem = probe_image(img, deep)
            if problem:
                col.add("error", "corrupt_image", f"{split}: 图像损坏或无法读取", f"{rel}: {problem}")
            label = label_path_for(img)
            if label is None:
                stats["negatives"] += 1
                continue
            label_dirs.add(label.parent)
            if label in claimed:
                col.add(
                    "error",
                    "duplicate_stem",
                    f"{split}: 两张图像同名不同扩展名，共用一个标签文件",
                    f"{claimed[label].name} / {rel}",
                )
                continue
            claimed[label] = img
            n_boxes = _check_yolo_label(rep, col, split, label, counts, size)
            stats["boxes"] += n_boxes
            stats["negatives"] += n_boxes == 0
        _check_split_boxes(col, split, stats["boxes"], 0, f"{split}（{rep.path}）")
        for d in label_dirs:
            for txt in sorted(set(d.glob("*.txt")) - set(claimed)):
                if txt.name != "classes.txt":
                    col.add("warning", "orphan_label", f"{split}: 标签文件没有对应的图像（会被忽略）", txt.name)
    rep.class_counts = {n: c for n, c in zip(ds.names, counts)}
    for name, c in rep.class_counts.items():
        if c == 0:
            col.add("warning", "unused_category", "类别名列表中有类别没有任何标注", name)


def _check_yolo_label(rep: DoctorReport, col: IssueCollector, split: str, label: Path, counts: list, size) -> int:
    """One label file: every line well formed, boxes inside the image; adds to ``counts`` (per class), returns the
    number of boxes."""
    n_boxes = 0
    for line_no, parsed in read_label_file(label, len(counts)):
        if isinstance(parsed, LabelLineError):
            col.add(
                "error", "bad_label_line", f"{split}: YOLO 标签行格式错误", f"{label.name} 第 {line_no} 行：{parsed}"
            )
            continue
        cls, (cx, cy, w, h), _ = parsed
        n_boxes += 1
        counts[cls] += 1
        if cx - w / 2 < -1e-3 or cy - h / 2 < -1e-3 or cx + w / 2 > 1 + 1e-3 or cy + h / 2 > 1 + 1e-3:
            col.add(
                "warning",
                "box_clipped",
                f"{split}: 框超出图像范围 [0, 1]（转换时会被裁剪）",
                f"{label.name} 第 {line_no} 行",
            )
        if size is not None:
            _box_size(rep, w * size[0] * h * size[1])
    return n_boxes


# ---------------------------------------------------------------------------------------------- entry
def check_dataset(
    path: str | Path, num_classes: int | None = None, *, deep: bool = False, max_examples: int = 5
) -> DoctorReport:
    """Find the problems of a detection dataset before training (``deimv2 check``).

    A COCO dataset is read as the trainer reads it (any layout of :func:`deimv2.data.layout.find_dataset`),
    anything else as a YOLO dataset (any layout of :func:`deimv2.data.layout.find_yolo_dataset`). Errors would
    stop or spoil training (missing or corrupt images, invalid boxes, unknown category ids …), warnings the
    training copes with, infos are facts worth knowing.

    Args:
        path: the dataset folder, a COCO json or a YOLO ``data.yaml``.
        num_classes: the value in your config, compared with the number of classes the dataset needs.
        deep: fully decode every image (slow); otherwise only headers and the end-of-file marker are read.
        max_examples: at most this many examples listed per kind of problem.

    Returns:
        A :class:`~deimv2.data.doctor_report.DoctorReport`: ``ok`` (nothing would stop training), the
        ``issues``, counts per split and per class, box sizes and ``num_classes_needed``; ``report.format()`` is
        the Chinese report.

    Raises:
        DatasetError: ``path`` does not exist, or is neither a COCO nor a YOLO dataset.

    Example:
        >>> from deimv2 import check_dataset
        >>> from deimv2.data.demo import demo_dataset_dir
        >>> report = check_dataset(demo_dataset_dir(), num_classes=4)
        >>> report.ok, report.format_name, report.num_classes_needed, report.errors
        (True, 'yolo', 4, [])
        >>> print(report.format())
        数据集体检报告：...demo_yolo（格式：YOLO）
        结论：可以训练
          train: 160 张图像，539 个框，0 张无目标（负样本）
          val: 48 张图像，178 个框，0 张无目标（负样本）
        类别（4 个）：0=猫，1=咖啡杯，2=硬币，3=火箭
        转换为 COCO 后（yolo_to_coco）需要 num_classes = 4
        每类实例数：猫 198，咖啡杯 200，硬币 164，火箭 155
        框尺寸分布（COCO 定义）：小(<32²) 213，中 333，大(≥96²) 171
    """
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"找不到数据集路径 {p}，请检查路径。")
    coco = find_dataset(p, required=False) if p.is_dir() or p.suffix.lower() == ".json" else {}
    rep = DoctorReport(str(p), "coco" if coco else "yolo")
    col = IssueCollector(rep, max_examples)
    if coco:
        _check_coco(rep, col, coco, deep)
    else:
        try:
            _check_yolo(rep, col, deep)
        except DatasetError as e:
            try:
                find_dataset(p)  # raises the message that lists every accepted COCO layout
            except DatasetError as coco_error:
                raise DatasetError(f"{p} 既不是 COCO 数据集，也无法按 YOLO 数据集读取：{e}\n{coco_error}") from e
            raise
    if num_classes is not None and rep.num_classes_needed:
        if num_classes < rep.num_classes_needed:
            col.add(
                "error",
                "num_classes_small",
                f"配置中的 num_classes={num_classes} 小于数据集需要的 "
                f"{rep.num_classes_needed}（类别数），训练会出错或丢掉类别；请把 num_classes 改为 {rep.num_classes_needed}",
            )
        elif num_classes > rep.num_classes_needed:
            col.add(
                "info",
                "num_classes_large",
                f"配置中的 num_classes={num_classes} 大于需要的 {rep.num_classes_needed}，"
                "可以训练，但多余的类别会浪费一点算力",
            )
    order = {"error": 0, "warning": 1, "info": 2}
    rep.issues.sort(key=lambda i: order[i.level])
    return rep
