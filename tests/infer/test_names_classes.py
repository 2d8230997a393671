"""One meaning for ``classes``: a filter (Ultralytics' meaning) in the API and CLI; ``names`` / ``--names`` name them."""

import json

import numpy as np
import pytest
from helpers.tinydata import calibrated_atto
from PIL import Image

from deimv2.cli import main
from deimv2.engine.checkpoint import make_checkpoint, save_checkpoint
from deimv2.errors import ConfigError
from deimv2.infer import Detector, predict_cli


@pytest.fixture
def setup(tmp_path):
    model = calibrated_atto(3, seed=3)
    ckpt = make_checkpoint(
        model=model,
        epoch=1,
        global_step=10,
        best_ap=0.1,
        config=model.config.raw,
        class_names=["a", "b", "c"],
        category_ids=[1, 2, 3],
    )
    ckpt["ema"] = {"module": model.state_dict(), "updates": 10}
    path = save_checkpoint(ckpt, tmp_path / "训练 输出" / "best.pth")
    img = tmp_path / "输入 图.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(img)
    return path, img


def _rows(out):
    return json.loads((out / "predictions.json").read_text(encoding="utf-8"))


def test_api_names_rename_and_classes_filter(setup, tmp_path):
    ckpt, img = setup
    det = Detector.from_checkpoint(ckpt, conf=0.0, max_det=30, class_names=["飞机", "船", "车辆"])
    full = det(img)
    wanted = sorted(set(full.labels.tolist()))[:1]
    info = predict_cli(
        checkpoint=ckpt,
        source=img,
        output=tmp_path / "o",
        names=["飞机", "船", "车辆"],
        classes=[det.class_names[wanted[0]]],
        conf=0.0,
        max_det=30,
        save_json=True,
    )
    rows = _rows(info["output"])
    assert rows and {r["category_name"] for r in rows} == {det.class_names[wanted[0]]}
    ref = det(img, classes=wanted)  # the filter works before max_det, as in Detector.predict
    assert len(rows) == len(ref) and [r["score"] for r in rows] == [round(float(s), 5) for s in ref.scores]
    by_id = predict_cli(
        checkpoint=ckpt, source=img, output=tmp_path / "o2", classes=wanted, conf=0.0, max_det=30, save_json=True
    )
    assert [r["category_name"] for r in _rows(by_id["output"])] == [["a", "b", "c"][wanted[0]]] * len(rows)
    with pytest.raises(ConfigError, match="类别过滤"):
        predict_cli(checkpoint=ckpt, source=img, output=tmp_path / "o3", classes=["不存在"])


def test_cli_names_keep_classes_and_seed_alias(setup, tmp_path, capsys):
    ckpt, img = setup
    base = ["predict", "-r", str(ckpt), "-i", str(img), "--conf", "0", "--max-det", "30", "--save-json"]
    assert main([*base, "-o", str(tmp_path / "n"), "--names", "飞机,船，车辆"]) == 0
    all_rows = _rows(tmp_path / "n")
    assert {r["category_name"] for r in all_rows} <= {"飞机", "船", "车辆"}
    # --classes keeps the seed's meaning (all class names) and says so in Chinese
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "c"), "--classes", "飞机,船,车辆"]) == 0
    assert "--classes 沿用 seed 的含义" in capsys.readouterr().err
    assert _rows(tmp_path / "c") == all_rows
    # --keep-classes filters, by name or by 0-based id
    first = all_rows[0]["category_name"]
    assert main([*base, "-o", str(tmp_path / "k"), "--names", "飞机,船,车辆", "--keep-classes", first]) == 0
    kept = _rows(tmp_path / "k")
    same = [r for r in all_rows if r["category_name"] == first]  # filtering happens before max_det
    assert {r["category_name"] for r in kept} == {first} and kept[: len(same)] == same and len(kept) == 30
    cid = ["飞机", "船", "车辆"].index(first)
    assert main([*base, "-o", str(tmp_path / "i"), "--names", "飞机,船,车辆", "--keep-classes", str(cid)]) == 0
    assert _rows(tmp_path / "i") == kept
    code = main([*base, "-o", str(tmp_path / "x"), "--names", "a,b,c", "--classes", "a,b,c"])
    assert code == 2 and "--names 和 --classes" in capsys.readouterr().err
