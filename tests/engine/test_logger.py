"""The training logger: JSON-lines log, smoothed meters, optional TensorBoard, training curves."""

import io
import json

import pytest
import torch

from deimv2.engine.logger import (
    JsonlLogger,
    MetricMeter,
    SmoothedValue,
    make_tensorboard_writer,
    plot_training_curves,
    read_log,
)
from deimv2.errors import DEIMv2Error


def test_jsonl_log_roundtrip(tmp_path):
    path = tmp_path / "训练 日志" / "log.jsonl"
    log = JsonlLogger(path)
    log.log({"epoch": 0, "train_loss": torch.tensor(2.5), "AP": 0.1, "note": "第一轮"})
    log.log({"epoch": 1, "train_loss": 1.5, "AP": 0.2})
    assert read_log(path) == [
        {"epoch": 0, "train_loss": 2.5, "AP": 0.1, "note": "第一轮"},
        {"epoch": 1, "train_loss": 1.5, "AP": 0.2},
    ]
    assert "第一轮" in path.read_text(encoding="utf-8")  # not \\u-escaped


def test_read_log_cut_line_and_errors(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_text('{"epoch": 0}\n{"epoch": 1, "tr', encoding="utf-8")
    assert read_log(path) == [{"epoch": 0}]
    assert "不完整" in capsys.readouterr().out
    path.write_text('{"epoch": 0}\nnot json\n{"epoch": 2}\n', encoding="utf-8")
    with pytest.raises(DEIMv2Error, match="第 2 行"):
        read_log(path)
    with pytest.raises(DEIMv2Error, match="找不到"):
        read_log(tmp_path / "missing.jsonl")


def test_smoothed_value_and_meter():
    v = SmoothedValue(window_size=2)
    for x in (1.0, 2.0, 6.0):
        v.update(x)
    assert (v.value, v.median, v.avg, v.global_avg) == (6.0, 4.0, 4.0, 3.0)
    v.update(4.0, n=3)  # batch of 3 with mean 4: global avg (1 + 2 + 6 + 12) / 6
    assert v.global_avg == pytest.approx(21 / 6)
    m = MetricMeter(window_size=2)
    m.update(loss=torch.tensor(3.0), lr=1e-3)
    m.update(loss=1.0, lr=1e-3)
    assert m.postfix(["loss", "missing"]) == {"loss": "2"}
    assert m.global_averages() == {"loss": 2.0, "lr": 1e-3}
    m.synchronize_between_processes()  # no-op without torch.distributed
    assert m["loss"].count == 2


def test_tensorboard_optional(tmp_path, capsys):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert make_tensorboard_writer(tmp_path) is None
        assert "tensorboard" in capsys.readouterr().out
    else:
        w = make_tensorboard_writer(tmp_path)
        w.add_scalar("x", 1.0, 0)
        w.close()


def test_plot_training_curves(tmp_path):
    records = [
        {
            "epoch": e,
            "train_loss": 10.0 - e,
            "train_loss_mal": 1.0 / (e + 1),
            "train_loss_mal_aux_0": 1.0,
            "AP": 0.1 * e,
            "AP50": 0.2 * e,
        }
        for e in range(4)
    ]
    fig = plot_training_curves(records)
    ax_loss, ax_ap = fig.axes
    assert [ln.get_label() for ln in ax_loss.lines] == ["loss", "loss_mal"]  # aux terms left out
    assert [ln.get_label() for ln in ax_ap.lines] == ["AP", "AP50"]
    assert list(ax_ap.lines[1].get_ydata()) == pytest.approx([0.0, 0.2, 0.4, 0.6])
    # the official log.txt format, read from a file
    path = tmp_path / "log.txt"
    path.write_text(
        "\n".join(
            json.dumps({"epoch": e, "train_loss": 5.0 - e, "test_coco_eval_bbox": [0.3 + e / 10, 0.5] + [0.0] * 10})
            for e in range(3)
        )
        + "\n",
        encoding="utf-8",
    )
    fig = plot_training_curves(path)
    assert list(fig.axes[1].lines[0].get_ydata()) == pytest.approx([0.3, 0.4, 0.5])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    assert buf.getvalue()[:4] == b"\x89PNG"
