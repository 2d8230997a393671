"""HungarianMatcher and the union ("GO") matching set, against hand-worked costs."""

import math

import pytest
import torch

from deimv2.loss import HungarianMatcher, union_match_indices

COSTS = {"cost_class": 2, "cost_bbox": 5, "cost_giou": 2}


def focal_cost(p, alpha=0.25, gamma=2.0):
    """alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p)) (the 1e-8 guards are negligible here)."""
    return alpha * (1 - p) ** gamma * -math.log(p) - (1 - alpha) * p**gamma * -math.log(1 - p)


def test_focal_cost_hand_values():
    # p = 0.5: 0.25*0.25*ln2 - 0.75*0.25*ln2 = -0.125*ln2 = -0.0866434
    assert focal_cost(0.5) == pytest.approx(-0.0866434, abs=1e-6)
    # p = 0.75: 0.25*0.0625*0.2876821 - 0.75*0.5625*1.3862944 = 0.0044950 - 0.5848429 = -0.5803479
    assert focal_cost(0.75) == pytest.approx(-0.5803479, abs=1e-6)


def test_two_by_two_cost_and_assignment():
    # q0 sits on t1, q1 sits on t0 (boxes 0.2 x 0.2 at (0.25, 0.25) and (0.75, 0.75)).
    # logits: q0 = [0, ln 3] -> p = [0.5, 0.75]; q1 = [0, 0] -> p = [0.5, 0.5]; t0 is class 0, t1 class 1.
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])
    boxes = torch.tensor([[[0.25, 0.25, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2]]])
    targets = [
        {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.75, 0.75, 0.2, 0.2], [0.25, 0.25, 0.2, 0.2]])}
    ]
    # Far pair: L1 = 0.5 + 0.5 = 1; IoU = 0, hull = 0.7^2 = 0.49, union = 0.08 -> GIoU = -(0.41 / 0.49) = -0.8367347.
    # C[q0,t0] = 5*1 + 2*fc(0.5) + 2*0.8367347 = 5 - 0.1732868 + 1.6734694 = 6.5001826
    # C[q0,t1] = 5*0 + 2*fc(0.75) - 2*1      = -1.1606958 - 2           = -3.1606958
    # C[q1,t0] = 0 + 2*fc(0.5) - 2           = -2.1732868
    # C[q1,t1] = 6.5001826 (same geometry as C[q0,t0])
    matcher = HungarianMatcher(COSTS, use_focal_loss=True, alpha=0.25, gamma=2.0)
    cost = matcher.cost_matrix(logits.flatten(0, 1), boxes.flatten(0, 1), targets[0]["labels"], targets[0]["boxes"])
    expected = torch.tensor([[6.5001826, -3.1606958], [-2.1732868, 6.5001826]])
    assert torch.allclose(cost, expected, atol=1e-5)

    rows, cols = matcher({"pred_logits": logits, "pred_boxes": boxes}, targets)["indices"][0]
    assert rows.dtype == torch.int64 and cols.dtype == torch.int64
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def _switch_case():
    # One target (0.5, 0.5, 0.2, 0.2), class 0.
    # q0: exact box, p = 0.5.          q1: box (0.5, 0.5, 0.2, 0.1), p = 0.9 (logit ln 9); IoU = 0.02/0.04 = 0.5,
    #                                  hull = target -> GIoU = 0.5; L1 = 0.1.
    # Original cost: q0 = 2*fc(0.5) + 0 - 2*1   = -2.1732868
    #                q1 = 2*fc(0.9) + 5*0.1 - 2*0.5 = -2.7971140 + 0.5 - 1 = -3.2971140  -> q1 wins
    # IoU-order cost (alpha 4): q0 = -0.5 * 1^4 = -0.5;  q1 = -0.9 * 0.5^4 = -0.05625         -> q0 wins
    outputs = {
        "pred_logits": torch.tensor([[[0.0], [math.log(9.0)]]]),
        "pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.1]]]),
    }
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    return outputs, targets


def test_iou_order_cost_switches_at_epoch_boundary():
    outputs, targets = _switch_case()
    matcher = HungarianMatcher(COSTS, change_matcher=True, iou_order_alpha=4.0, matcher_change_epoch=5)
    flat = (
        outputs["pred_logits"].flatten(0, 1),
        outputs["pred_boxes"].flatten(0, 1),
        targets[0]["labels"],
        targets[0]["boxes"],
    )
    assert torch.allclose(matcher.cost_matrix(*flat, epoch=4), torch.tensor([[-2.1732868], [-3.2971140]]), atol=1e-5)
    assert torch.allclose(matcher.cost_matrix(*flat, epoch=5), torch.tensor([[-0.5], [-0.05625]]), atol=1e-6)

    assert matcher(outputs, targets, epoch=4)["indices"][0][0].tolist() == [1]
    assert matcher(outputs, targets, epoch=5)["indices"][0][0].tolist() == [0]
    assert matcher(outputs, targets, epoch=300)["indices"][0][0].tolist() == [0]

    plain = HungarianMatcher(COSTS, change_matcher=False, matcher_change_epoch=5)
    assert plain(outputs, targets, epoch=300)["indices"][0][0].tolist() == [1]


def test_batch_with_empty_image_and_more_targets_than_queries():
    torch.manual_seed(0)
    outputs = {"pred_logits": torch.randn(3, 4, 5), "pred_boxes": torch.rand(3, 4, 4) * 0.5 + 0.1}
    targets = [
        {"labels": torch.tensor([1, 2]), "boxes": torch.rand(2, 4) * 0.5 + 0.1},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
        {"labels": torch.tensor([0, 1, 2, 3, 4, 0]), "boxes": torch.rand(6, 4) * 0.5 + 0.1},
    ]
    indices = HungarianMatcher(COSTS)(outputs, targets)["indices"]
    assert [len(r) for r, _ in indices] == [2, 0, 4]  # min(num_queries, num_targets)
    for rows, cols in indices:
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 3
    assert all(len(r) == 0 for r, _ in HungarianMatcher(COSTS)(outputs, empty)["indices"])


def test_all_zero_costs_rejected():
    with pytest.raises(ValueError):
        HungarianMatcher({"cost_class": 0, "cost_bbox": 0, "cost_giou": 0})


def t(*values):
    return torch.tensor(values, dtype=torch.int64)


def test_union_set_picks_most_frequent_target_per_query():
    # Pairs (query, target) over 4 matchings: (0,0) x2, (1,1) x2, (2,1) x2, (1,0) x1.
    # Query 1 keeps target 1 (2 votes beat 1); every query appears once.
    main = [(t(0, 1), t(0, 1))]
    extra = [
        [(t(0, 2), t(0, 1))],
        [(t(2, 1), t(1, 0))],
        [
            (
                t(
                    1,
                ),
                t(
                    1,
                ),
            )
        ],
    ]
    rows, cols = union_match_indices(main, extra)[0]
    assert rows.dtype == torch.int64
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1), (2, 1)]


def test_union_set_two_images_and_empty():
    main = [
        (
            t(
                3,
            ),
            t(
                0,
            ),
        ),
        (t(), t()),
    ]
    extra = [
        [
            (
                t(
                    3,
                ),
                t(
                    0,
                ),
            ),
            (t(), t()),
        ],
        [
            (
                t(
                    5,
                ),
                t(
                    0,
                ),
            ),
            (t(), t()),
        ],
    ]
    out = union_match_indices(main, extra)
    assert list(zip(out[0][0].tolist(), out[0][1].tolist())) == [(3, 0), (5, 0)]  # counts 2 then 1
    assert len(out[1][0]) == 0 and len(out[1][1]) == 0
