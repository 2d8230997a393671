"""deimv2.tutorial.notebook.explain_setup: the shared setup of notebooks 08/09 (a small Atto trained with GO-LSD and one
validation image), and explain.teacher_gap, the quantity 08 §6 plots."""

import json
import math
from pathlib import Path

import matplotlib
import nbformat
import pytest
import torch

from deimv2.config.loader import load_config
from deimv2.tutorial.explain import decoder_layers, teacher_gap
from deimv2.tutorial.notebook import EXPLAIN_FAST_SCHEDULE, explain_setup

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """explain_setup in fast mode, as nbval runs 08/09 (the notebooks' workspace is a fresh folder)."""
    work = tmp_path_factory.mktemp("工作 目录")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEIMV2_FAST", "1")
        yield work, explain_setup(work)


def test_model_of_08_09_was_trained_with_go_lsd(setup):
    _, s = setup
    run = s.checkpoint.parent
    saved = load_config(run / "config.yaml")  # the config the trainer wrote for this run
    assert "local" in saved.criterion.losses and saved.criterion.use_uni_set
    assert s.cfg.criterion.losses == saved.criterion.losses
    first = json.loads((run / "log.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["train_loss_fgl"] > 0 and first["train_loss_fgl_aux_0"] > 0  # FGL was in the trained loss
    assert any(k.startswith("train_loss_ddf") for k in first)  # and DDF


def test_image_is_the_validation_image_with_most_objects(setup):
    _, s = setup
    doc = json.loads((s.image.parent / "_annotations.coco.json").read_text(encoding="utf-8"))
    counts = {im["id"]: sum(a["image_id"] == im["id"] for a in doc["annotations"]) for im in doc["images"]}
    best = next(im for im in doc["images"] if im["id"] == max(counts, key=counts.get))
    assert s.image.name == best["file_name"]
    size = EXPLAIN_FAST_SCHEDULE["size"]
    assert tuple(s.x.shape) == (1, 3, size, size) and 0 <= float(s.x.min()) and float(s.x.max()) <= 1
    assert s.shown.shape == (size, size, 3)
    # boxes as the loss takes them: COCO [x, y, w, h] in pixels -> cxcywh divided by the image size
    anns = [a for a in doc["annotations"] if a["image_id"] == best["id"]]
    expected = torch.tensor(
        [
            [
                (a["bbox"][0] + a["bbox"][2] / 2) / best["width"],
                (a["bbox"][1] + a["bbox"][3] / 2) / best["height"],
                a["bbox"][2] / best["width"],
                a["bbox"][3] / best["height"],
            ]
            for a in anns
        ]
    )
    assert torch.allclose(s.target["boxes"], expected, atol=1e-5)
    assert [s.names[i] for i in s.target["labels"]] == [
        next(c["name"] for c in doc["categories"] if c["id"] == a["category_id"]) for a in anns
    ]


def test_later_layers_are_closer_to_the_teacher(setup):
    """What 08 §6 states: after training with DDF, each layer's distributions are nearer the last layer's
    than the layer before it was (for the best query and for the ten best)."""
    _, s = setup
    layers = decoder_layers(s.model, s.x)["layers"]
    scores = layers[-1]["logits"][0].sigmoid().max(-1).values
    for k in (1, 10):
        gap = teacher_gap(layers, scores.argsort(descending=True)[:k])
        assert len(gap) == len(layers) - 1
        assert (gap > 0).all() and (gap[1:] < gap[:-1]).all(), gap


def test_setup_is_trained_once_and_again_after_an_interruption(setup):
    work, s = setup
    stamp = s.checkpoint.stat().st_mtime_ns
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEIMV2_FAST", "1")
        again = explain_setup(work)
        assert again.checkpoint == s.checkpoint and again.checkpoint.stat().st_mtime_ns == stamp
        (s.checkpoint.parent / "finished.txt").unlink()  # as if the training had been stopped
        retrained = explain_setup(work)
    assert retrained.checkpoint.parent.name == s.checkpoint.parent.name + "-2"
    assert (retrained.checkpoint.parent / "finished.txt").is_file()


def test_teacher_gap_by_hand():
    """Two bins, T = 1: teacher logits (0, 0) -> p = (1/2, 1/2); student (ln 3, 0) -> q = (3/4, 1/4);
    KL(p || q) = 1/2·ln(2/3) + 1/2·ln 2 = 1/2·ln(4/3) on each edge; a layer equal to the teacher gives 0."""
    teacher = {"corners": torch.zeros(1, 1, 8)}
    student = {"corners": torch.tensor([[[math.log(3), 0.0] * 4]])}
    gap = teacher_gap([student, teacher, teacher], torch.tensor([0]), temperature=1.0)
    assert torch.allclose(gap, torch.tensor([0.5 * math.log(4 / 3), 0.0]), atol=1e-6)
    # with T = 5 the logits are divided by 5 and the KL multiplied by 25
    q = torch.tensor([3 ** (1 / 5), 1.0])
    q = q / q.sum()
    by_hand = 25 * (0.5 * math.log(0.5 / float(q[0])) + 0.5 * math.log(0.5 / float(q[1])))
    assert torch.allclose(teacher_gap([student, teacher], torch.tensor([0])), torch.tensor([by_hand]), atol=1e-5)


def test_08_and_09_share_one_setup_cell():
    """The setup of 08 and 09 is the same short cell around one public call (it works after ``pip install``)."""
    nb_dir = Path(__file__).resolve().parents[2] / "notebooks"
    cells = []
    for name in ("08_decoder.ipynb", "09_loss.ipynb"):
        (cell,) = [c for c in nbformat.read(nb_dir / name, as_version=4).cells if "explain_setup(" in c.source]
        cells.append(cell.source)
    assert cells[0] == cells[1]
    assert (
        "S = explain_setup(WORKSPACE)" in cells[0] and "from deimv2.tutorial.notebook import explain_setup" in cells[0]
    )
    assert len(cells[0].splitlines()) <= 12
