"""The picture in README: an image of the bundled demo dataset with boxes drawn by deimv2, as a small PNG.

By default: the validation image of the demo dataset with the most objects (first by name on a tie), its
annotated boxes, drawn by
:func:`deimv2.draw_detections` (the function behind ``Prediction.plot()``, which ``deimv2 demo`` uses for its
predictions). With ``--from`` a finished ``deimv2 demo --output-dir`` folder: the first prediction the demo drew.

    python benchmarks/demo_picture.py                      # -> docs/images/demo_example.png (annotations)
    python benchmarks/demo_picture.py --from outputs/demo  # the demo's own first drawn prediction
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "demo_example.png"


def annotated_picture(out: Path = OUT) -> Path:
    """The demo validation image with the most objects (first by file name on a tie), its annotations drawn."""
    from deimv2 import draw_detections
    from deimv2.data.demo import prepare_demo_coco

    with tempfile.TemporaryDirectory() as tmp:
        coco = prepare_demo_coco(Path(tmp) / "demo")
        ann = json.loads((coco / "valid" / "_annotations.coco.json").read_text(encoding="utf-8"))
        per_image = {im["id"]: [a for a in ann["annotations"] if a["image_id"] == im["id"]] for im in ann["images"]}
        image = min(ann["images"], key=lambda im: (-len(per_image[im["id"]]), im["file_name"]))
        names = {c["id"]: c["name"] for c in ann["categories"]}
        objs = per_image[image["id"]]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in objs)]
        drawn = draw_detections(
            coco / "valid" / image["file_name"], boxes, [a["category_id"] for a in objs], names=names
        )
    return _save(drawn, out)


def demo_prediction_picture(demo_dir: Path, out: Path = OUT) -> Path:
    """The first image (by name) that ``deimv2 demo`` drew into ``demo_dir/predictions``."""
    from PIL import Image

    drawn = sorted((demo_dir / "predictions").glob("*.jpg"))
    if not drawn:
        raise SystemExit(f"{demo_dir / 'predictions'} 里没有 deimv2 demo 画的图片：请先完整运行 deimv2 demo。")
    return _save(Image.open(drawn[0]), out)


def _save(image, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--from", dest="src", help="a finished `deimv2 demo --output-dir` folder: use its first prediction")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    out = demo_prediction_picture(Path(a.src), Path(a.out)) if a.src else annotated_picture(Path(a.out))
    print(f"已写出 {out}")
    return out


if __name__ == "__main__":
    main()
