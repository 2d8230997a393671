"""Box conversions and IoU/GIoU on hand-drawn boxes (exact fractions)."""

import math

import pytest
import torch

from deimv2.utils.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    elementwise_box_iou,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    inverse_sigmoid,
)

A = [0.0, 0.0, 2.0, 2.0]  # 2x2 square at origin
B = [1.0, 1.0, 3.0, 3.0]  # shifted by (1, 1): overlap is the unit square [1,2]x[1,2]
C = [0.0, 0.0, 1.0, 1.0]
D = [2.0, 2.0, 3.0, 3.0]  # touches nothing of C


def test_conversions():
    xyxy = box_cxcywh_to_xyxy(torch.tensor([[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, -2.0, 2.0]]))
    # second box: negative width is clamped to 0 -> x1 = x2 = cx
    assert xyxy.tolist() == [[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 1.0, 2.0]]
    assert box_xyxy_to_cxcywh(torch.tensor([B])).tolist() == [[2.0, 2.0, 2.0, 2.0]]
    assert box_area(torch.tensor([A, [0.0, 0.0, 3.0, 0.5]])).tolist() == [4.0, 1.5]


def test_pairwise_iou_and_giou():
    b1, b2 = torch.tensor([A, C], dtype=torch.float64), torch.tensor([B, D, A], dtype=torch.float64)
    iou, union = box_iou(b1, b2)
    # A,B: inter 1, union 4+4-1=7. A,D: inter 0 (corner touch), union 5. A,A: 1.
    # C,B: inter 0, union 5. C,D: 0, union 2. C,A: inter 1, union 4.
    assert union.tolist() == [[7, 5, 4], [5, 2, 4]]
    assert torch.allclose(iou, torch.tensor([[1 / 7, 0, 1], [0, 0, 1 / 4]], dtype=torch.float64))
    giou = generalized_box_iou(b1, b2)
    # hulls: A,B -> [0,3]^2 = 9; A,D -> 9; A,A -> 4; C,B -> 9; C,D -> 9; C,A -> 4
    expected = [[1 / 7 - 2 / 9, 0 - 4 / 9, 1.0], [0 - 4 / 9, 0 - 7 / 9, 1 / 4 - 0]]
    assert torch.allclose(giou, torch.tensor(expected, dtype=torch.float64))
    assert math.isclose(giou[0, 0].item(), -5 / 63, rel_tol=1e-12)


def test_elementwise_matches_diagonal():
    b1 = torch.tensor([A, C, A], dtype=torch.float64)
    b2 = torch.tensor([B, D, A], dtype=torch.float64)
    iou, union = elementwise_box_iou(b1, b2)
    assert torch.allclose(iou, torch.tensor([1 / 7, 0.0, 1.0], dtype=torch.float64))
    assert union.tolist() == [7.0, 2.0, 4.0]
    giou = elementwise_generalized_box_iou(b1, b2)
    assert torch.allclose(giou, torch.tensor([-5 / 63, -7 / 9, 1.0], dtype=torch.float64))
    assert torch.allclose(giou, torch.diag(generalized_box_iou(b1, b2)))


def test_giou_rejects_degenerate_boxes():
    bad = torch.tensor([[2.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError):
        generalized_box_iou(bad, torch.tensor([A]))
    with pytest.raises(ValueError):
        elementwise_generalized_box_iou(torch.tensor([A]), bad)


def test_inverse_sigmoid():
    x = torch.tensor([0.5, 0.75, 0.0, 1.0, 1.5], dtype=torch.float64)
    out = inverse_sigmoid(x)
    # log(0.75/0.25) = log 3; 0 -> log(1e-5 / 1); 1 and 1.5 (clipped to 1) -> log(1 / 1e-5)
    expected = [0.0, math.log(3), math.log(1e-5), -math.log(1e-5), -math.log(1e-5)]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64))
    y = torch.tensor([0.1, 0.3, 0.9])
    assert torch.allclose(torch.sigmoid(inverse_sigmoid(y)), y, atol=1e-6)
