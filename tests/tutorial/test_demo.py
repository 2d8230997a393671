"""`deimv2 demo` in fast mode: convert → check → train → evaluate → predict, every output where it says."""

from deimv2.cli import main


def test_demo_runs_end_to_end_in_fast_mode(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEIMV2_FAST", "1")
    out = tmp_path / "演示 输出"
    assert main(["demo", "--output-dir", str(out)]) == 0
    text = capsys.readouterr().out
    for step in ("【1/5】", "【2/5】", "【3/5】", "【4/5】", "【5/5】", "最终 mAP", "训练配方 recipe=small"):
        assert step in text
    assert (out / "dataset" / "train" / "_annotations.coco.json").is_file()
    assert (out / "train" / "best.pth").is_file() and (out / "train" / "eval.json").is_file()
    assert len(list((out / "predictions").glob("*.jpg"))) == 8
