"""zoo.nn.centerpoint: Gaussian targets, the losses and the target -> decode round trip."""

from __future__ import annotations

import math

import torch

from zoo.nn.centerpoint import (
    HEAD_ORDER,
    CenterHead,
    centerpoint_targets,
    draw_gaussian,
    focal_loss_centernet,
    gaussian_radius,
)

RANGE = (-25.6, -25.6, -5.0, 25.6, 25.6, 3.0)
VOX = (0.2, 0.2, 8.0)
BOXES = torch.tensor(
    [
        [3.3, -7.1, -0.9, 4.5, 1.9, 1.6, 0.4],
        [-12.05, 10.37, -1.2, 4.1, 1.8, 1.5, -2.9],
        [15.2, 15.9, -0.7, 10.0, 2.6, 3.2, 1.57],
    ]
)


def test_gaussian_radius_and_drawing():
    r = gaussian_radius(torch.tensor([10.0]), torch.tensor([4.0]), 0.1)
    # the CenterNet formula's three roots; the smallest is the answer
    h, w, o = 10.0, 4.0, 0.1
    r1 = (h + w + math.sqrt((h + w) ** 2 - 4 * w * h * (1 - o) / (1 + o))) / 2
    r2 = (2 * (h + w) + math.sqrt(4 * (h + w) ** 2 - 16 * (1 - o) * w * h)) / 2
    r3 = (-2 * o * (h + w) + math.sqrt(4 * o**2 * (h + w) ** 2 - 16 * o * (o - 1) * w * h)) / 2
    assert abs(float(r) - min(r1, r2, r3)) < 1e-5
    hm = torch.zeros(9, 9)
    draw_gaussian(hm, 1, 4, 2)  # clipped at the left border
    assert hm[4, 1] == 1 and hm.argmax() == 4 * 9 + 1
    sigma = 5 / 6
    assert abs(float(hm[4, 3]) - math.exp(-4 / (2 * sigma**2))) < 1e-6
    assert hm[:, 4:].sum() == 0 and hm[:2].sum() == 0


def test_focal_loss_hand_computation():
    pred = torch.tensor([[0.9, 0.2], [0.3, 0.6]])
    gt = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    pos = -math.log(0.9) * 0.1**2 - math.log(0.6) * 0.4**2
    neg = -math.log(0.8) * 0.2**2 * 0.5**4 - math.log(0.7) * 0.3**2 * 1.0
    assert abs(float(focal_loss_centernet(pred, gt)) - (pos + neg) / 2) < 1e-6


def _head(score_threshold=0.1):
    return CenterHead(
        16, 1, 8, point_cloud_range=RANGE, voxel_size=VOX, stride=4, score_threshold=score_threshold, nms_threshold=0.2
    ).eval()


def test_targets_decode_round_trip_recovers_the_boxes():
    head = _head(0.9)  # the peaks only (their Gaussian neighbours score up to 0.49 with all-zero regression maps)
    size = (64, 64)  # 51.2 m / (0.2 m x 4)
    heat, target, index, mask = centerpoint_targets(
        BOXES, torch.zeros(3, dtype=torch.long), 1, size, RANGE, VOX, 4, max_objs=8
    )
    assert mask.sum() == 3 and heat.max() == 1 and int((heat == 1).sum()) == 3
    maps = {n: torch.zeros(1, c, *size) for n, c in zip(HEAD_ORDER, (2, 1, 3, 2))}
    reg = torch.cat([maps[n] for n in HEAD_ORDER], 1).view(8, -1)
    reg[:, index[mask]] = target[mask].T
    split = torch.split(reg.view(1, 8, *size), [2, 1, 3, 2], 1)
    maps = dict(zip(HEAD_ORDER, split))
    maps["hm"] = torch.logit(heat.clamp(1e-4, 1 - 1e-4))[None]
    det = head.decode(maps)[0]
    assert len(det["boxes"]) == 3 and (det["scores"] > 0.99).all() and (det["labels"] == 0).all()
    order = det["boxes"][:, 0].argsort()
    want = BOXES[BOXES[:, 0].argsort()]
    got = det["boxes"][order]
    torch.testing.assert_close(got[:, :6], want[:, :6], atol=1e-4, rtol=1e-5)
    dyaw = torch.remainder(got[:, 6] - want[:, 6] + math.pi, 2 * math.pi) - math.pi
    assert dyaw.abs().max() < 1e-4
    # and the loss of these perfect maps is the focal loss of the clamped peaks only: regression is exact
    out = head.loss({**maps, "hm": torch.logit(heat.clamp(1e-4, 1 - 1e-4))[None]}, [BOXES], [torch.zeros(3).long()])
    assert float(out["loc_loss"]) < 1e-5


def test_loss_decreases_on_one_frame():
    torch.manual_seed(0)
    head = _head().train()
    feat = torch.randn(1, 16, 64, 64)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = head.loss(head(feat), [BOXES], [torch.zeros(3, dtype=torch.long)])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
