"""FDR math (weighting function, soft bin targets, box <-> edge offsets) with hand-worked values."""

import math

import torch

from deimv2.models.fdr import Integral, bbox2distance, distance2bbox, translate_gt, weighting_function

UP = torch.tensor([0.5])
RS = torch.tensor([4.0])


def test_weighting_function_reg_max_4():
    # a = |up|*|reg_scale| = 2; step = (a+1)^(2/(4-2)) = 3; k = 2 -> right = [3^1 - 1] = [2]
    # W = [-2a, -(3-1), 0, 3-1, 2a] = [-4, -2, 0, 2, 4]
    w = weighting_function(4, UP, RS)
    assert w.tolist() == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert weighting_function(4, UP, RS, deploy=True).tolist() == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert weighting_function(4, UP, 4.0).tolist() == [-4.0, -2.0, 0.0, 2.0, 4.0]  # float reg_scale


def test_weighting_function_reg_max_8():
    # a = 2; step = 3^(2/6) = 3^(1/3); right = [3^(1/3)-1, 3^(2/3)-1, 3-1]
    c1, c2 = 3 ** (1 / 3) - 1, 3 ** (2 / 3) - 1  # 0.44225, 1.08008
    expected = [-4.0, -2.0, -c2, -c1, 0.0, c1, c2, 2.0, 4.0]
    w = weighting_function(8, UP, RS)
    assert w.shape == (9,)
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    assert torch.allclose(weighting_function(8, UP, RS, deploy=True), torch.tensor(expected), atol=1e-6)
    # W(1) = -a and W(reg_max-1) = a for any reg_max; W is antisymmetric
    w32 = weighting_function(32, UP, torch.tensor([8.0]))
    assert math.isclose(w32[1].item(), -4.0, abs_tol=1e-5) and math.isclose(w32[31].item(), 4.0, abs_tol=1e-5)
    assert torch.equal(w32, -w32.flip(0))


def test_translate_gt_interpolation():
    # W = [-4, -2, 0, 2, 4] (reg_max 4)
    gt = torch.tensor([1.5, -3.0, 0.0, -5.0, 4.0, 7.0])
    idx, w_right, w_left = translate_gt(gt, 4, RS, UP)
    # 1.5 lies between W[2]=0 and W[3]=2: right weight (1.5-0)/2 = 0.75
    # -3 lies between W[0]=-4 and W[1]=-2: right weight 1/2
    # 0 equals W[2]: left bin 2 with full weight
    # -5 < W[0]: bin 0, left weight 1;  4 = W[4] and 7 > W[4]: index reg_max - 0.1, right weight 1
    assert torch.allclose(idx, torch.tensor([2.0, 0.0, 2.0, 0.0, 3.9, 3.9]))
    assert w_right.tolist() == [0.75, 0.5, 0.0, 0.0, 1.0, 1.0]
    assert w_left.tolist() == [0.25, 0.5, 1.0, 1.0, 0.0, 0.0]


def test_distance2bbox_hand_value():
    point = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    # zero offsets give the reference box back
    assert torch.allclose(distance2bbox(point, torch.zeros(1, 4), RS), point)
    # unit = wh / reg_scale = (0.05, 0.1); half = 2
    # x1 = 0.5 - (2+2)*0.05 = 0.3, y1 = 0.5 - 2*0.1 = 0.3, x2 = 0.5 + 2*0.05 = 0.6, y2 = 0.5 + (2-1)*0.1 = 0.6
    out = distance2bbox(point, torch.tensor([[2.0, 0.0, 0.0, -1.0]]), RS)
    assert torch.allclose(out, torch.tensor([[0.45, 0.45, 0.3, 0.3]]), atol=1e-6)
    # batched input keeps its shape
    assert distance2bbox(point[None].expand(2, 3, 4), torch.zeros(2, 3, 4), RS).shape == (2, 3, 4)


def test_bbox2distance_hand_value_and_round_trip():
    point = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    # unit = (0.05, 0.1), half = 2. Edge offsets (left, top, right, bottom) = (1, 1.5, 3, -1):
    # x1 = 0.5 - 3*0.05 = 0.35, y1 = 0.5 - 3.5*0.1 = 0.15, x2 = 0.5 + 5*0.05 = 0.75, y2 = 0.5 + 1*0.1 = 0.6
    bbox = torch.tensor([[0.35, 0.15, 0.75, 0.6]])
    idx, w_right, w_left = bbox2distance(point, bbox, 4, RS, UP)
    # with W = [-4, -2, 0, 2, 4]: 1 -> bin 2, right 0.5; 1.5 -> bin 2, right 0.75;
    # 3 -> bin 3, right 0.5; -1 -> bin 1, right 0.5
    assert torch.allclose(idx, torch.tensor([2.0, 2.0, 3.0, 1.0]))
    assert torch.allclose(w_right, torch.tensor([0.5, 0.75, 0.5, 0.5]), atol=1e-5)
    assert torch.allclose(w_left, 1 - w_right)
    # round trip on random in-range boxes: interpolated bins decode back to the same box
    torch.manual_seed(0)
    points = torch.rand(20, 4) * 0.4 + 0.3
    offsets = torch.rand(20, 4) * 6 - 3  # inside (W[0], W[4]) = (-4, 4)
    boxes_cxcywh = distance2bbox(points, offsets, RS)
    x1y1 = boxes_cxcywh[:, :2] - boxes_cxcywh[:, 2:] / 2
    boxes_xyxy = torch.cat([x1y1, x1y1 + boxes_cxcywh[:, 2:]], 1)
    idx, w_right, w_left = bbox2distance(points, boxes_xyxy, 4, RS, UP)
    w = weighting_function(4, UP, RS)
    left = idx.long()
    decoded = (w[left] * w_left + w[left + 1] * w_right).reshape(20, 4)
    assert torch.allclose(decoded, offsets, atol=1e-4)
    assert torch.allclose(distance2bbox(points, decoded, RS), boxes_cxcywh, atol=1e-5)


def test_integral():
    w = weighting_function(4, UP, RS)  # [-4, -2, 0, 2, 4]
    probs = torch.tensor([0.1, 0.2, 0.3, 0.3, 0.1])
    # expectation: -0.4 - 0.4 + 0 + 0.6 + 0.4 = 0.2; uniform -> 0; a peaked bin 3 -> 2
    logits = torch.stack([probs.log(), torch.zeros(5), torch.tensor([0, 0, 0, 50.0, 0]), probs.log()]).reshape(1, 1, 20)
    out = Integral(4)(logits.expand(2, 3, 20), w)
    assert out.shape == (2, 3, 4)
    assert torch.allclose(out[0, 0], torch.tensor([0.2, 0.0, 2.0, 0.2]), atol=1e-5)
