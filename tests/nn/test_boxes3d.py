"""zoo.nn.boxes3d against shapely polygon intersection and direct loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Point, Polygon

from zoo.nn.boxes3d import (
    bev_corners,
    bev_iou,
    box_corners,
    iou3d,
    limit_period,
    points_in_boxes,
    rotated_nms,
)


def random_boxes(n: int, seed: int, extent: float = 8.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat(
        [
            torch.rand(n, 2, generator=g) * extent,
            torch.rand(n, 1, generator=g) * 2 - 1,
            torch.rand(n, 3, generator=g) * 3 + 0.3,
            (torch.rand(n, 1, generator=g) * 2 - 1) * math.pi,
        ],
        1,
    )


def shapely_ious(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(BEV IoU, 3D IoU) by exact polygon intersection."""
    pa = [Polygon(c) for c in bev_corners(a.double()).numpy()]
    pb = [Polygon(c) for c in bev_corners(b.double()).numpy()]
    bev, vol = np.zeros((len(a), len(b))), np.zeros((len(a), len(b)))
    a, b = a.double().numpy(), b.double().numpy()
    for i, p in enumerate(pa):
        for j, q in enumerate(pb):
            inter = p.intersection(q).area
            bev[i, j] = inter / (p.area + q.area - inter)
            dz = max(
                0.0,
                min(a[i, 2] + a[i, 5] / 2, b[j, 2] + b[j, 5] / 2) - max(a[i, 2] - a[i, 5] / 2, b[j, 2] - b[j, 5] / 2),
            )
            v = inter * dz
            vol[i, j] = v / (np.prod(a[i, 3:6]) + np.prod(b[j, 3:6]) - v)
    return bev, vol


def test_corners_geometry():
    box = torch.tensor([1.0, 2.0, 3.0, 4.0, 2.0, 1.0, math.pi / 2])
    c = box_corners(box)
    assert c.shape == (8, 3)
    # heading +y: the front-left corner is at (x - dy/2, y + dx/2)
    torch.testing.assert_close(c[0], torch.tensor([0.0, 4.0, 2.5]), atol=1e-6, rtol=0)
    torch.testing.assert_close(c[4, 2], torch.tensor(3.5))
    assert Polygon(bev_corners(box).numpy()).exterior.is_ccw
    assert box_corners(torch.zeros(2, 3, 7)).shape == (2, 3, 8, 3)
    with pytest.raises(ValueError, match="7 values"):
        box_corners(torch.zeros(3, 6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iou_matches_shapely_on_random_boxes(dtype):
    a, b = random_boxes(60, 0).to(dtype), random_boxes(50, 1).to(dtype)
    ref_bev, ref_3d = shapely_ious(a, b)
    assert (ref_bev > 0).sum() > 200  # the sample has many overlapping pairs
    got_bev, got_3d = bev_iou(a, b), iou3d(a, b)
    assert got_bev.dtype == dtype and got_bev.shape == (60, 50)
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(got_bev.double().numpy(), ref_bev, atol=tol)
    np.testing.assert_allclose(got_3d.double().numpy(), ref_3d, atol=tol)


def test_iou_hand_made_cases():
    box = torch.tensor([[3.0, -2.0, 0.5, 4.0, 1.8, 1.5, 0.7]])
    assert bev_iou(box, box).item() == pytest.approx(1.0, abs=1e-6)
    assert iou3d(box, box).item() == pytest.approx(1.0, abs=1e-6)
    far = box.clone()
    far[0, 0] += 10
    assert bev_iou(box, far).item() == 0.0 and iou3d(box, far).item() == 0.0
    square = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0]])
    turned = square.clone()
    turned[0, 6] = math.pi / 2
    assert bev_iou(square, turned).item() == pytest.approx(1.0, abs=1e-6)
    touching = square.clone()
    touching[0, 0] = 2.0  # shares the edge x = 1
    assert bev_iou(square, touching).item() == pytest.approx(0.0, abs=1e-7)
    corner = square.clone()
    corner[0, :2] = 2.0  # shares only the corner (1, 1)
    assert bev_iou(square, corner).item() == pytest.approx(0.0, abs=1e-7)
    # same footprint, stacked: BEV IoU 1, 3D IoU 0; half-overlapping in z: 1/3
    up = square.clone()
    up[0, 2] = 1.0
    assert bev_iou(square, up).item() == pytest.approx(1.0) and iou3d(square, up).item() == pytest.approx(0.0)
    up[0, 2] = 0.5
    assert iou3d(square, up).item() == pytest.approx(1 / 3)
    # 45° diamond in a 2x2 square: intersection = the diamond of area 2 (half diagonal 1) -> IoU 2 / 4
    diamond = torch.tensor([[0.0, 0.0, 0.0, math.sqrt(2), math.sqrt(2), 1.0, math.pi / 4]])
    assert bev_iou(square, diamond).item() == pytest.approx(0.5, abs=1e-6)
    assert bev_iou(square, torch.zeros(0, 7)).shape == (1, 0)


def test_points_in_boxes_vs_loop():
    boxes = random_boxes(5, 3, extent=4.0)
    g = torch.Generator().manual_seed(4)
    pts = torch.cat(
        [
            torch.rand(400, 2, generator=g) * 6 - 1,
            torch.rand(400, 1, generator=g) * 4 - 2,
            torch.rand(400, 1, generator=g),
        ],
        1,
    )
    got = points_in_boxes(pts, boxes)
    assert got.shape == (400, 5) and 20 < int(got.sum()) < 400 * 5
    checked = 0
    for m, b in enumerate(boxes.tolist()):
        poly = Polygon(bev_corners(torch.tensor(b)).numpy())
        for n, p in enumerate(pts.tolist()):
            pt, dz = Point(p[0], p[1]), abs(p[2] - b[2]) - b[5] / 2
            if poly.exterior.distance(pt) < 1e-5 or abs(dz) < 1e-5:
                continue  # on a face: either answer is fine
            assert bool(got[n, m]) == (poly.contains(pt) and dz < 0)
            checked += 1
    assert checked > 1900


def test_rotated_nms_matches_greedy_loop():
    boxes = random_boxes(80, 5, extent=10.0)
    scores = torch.rand(80, generator=torch.Generator().manual_seed(6))
    for thr in (0.0, 0.2, 0.5):
        keep = rotated_nms(boxes, scores, thr)
        ref_bev, _ = shapely_ious(boxes, boxes)
        order = np.argsort(-scores.numpy(), kind="stable")
        ref = []
        for i in order:
            if all(ref_bev[i, j] <= thr for j in ref):
                ref.append(int(i))
        assert keep.tolist() == ref
        assert keep.dtype == torch.long
        assert (scores[keep][1:] <= scores[keep][:-1]).all()
    assert rotated_nms(torch.zeros(0, 7), torch.zeros(0), 0.5).numel() == 0


def test_limit_period():
    a = torch.tensor([-3 * math.pi, -math.pi, 0.0, math.pi, 2.5 * math.pi])
    torch.testing.assert_close(limit_period(a), torch.tensor([-math.pi, -math.pi, 0.0, -math.pi, 0.5 * math.pi]))


def _dense_greedy_nms(boxes, scores, thr):
    """zoo's previous rotated_nms (before issue 26): the full bev_iou matrix, then the greedy loop."""
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = bev_iou(boxes[order], boxes[order]).numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed[i + 1 :] |= iou[i, i + 1 :] > thr
    return order[keep]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_nms_is_the_dense_nms(dtype):
    """Issue 26: the sparse NMS (sweep candidate pairs, IoU on pairs only, greedy over over-threshold pairs) keeps
    exactly what the dense-matrix greedy NMS keeps, in the same order, on detector-like boxes (10 jittered
    proposals per object), duplicates and a lone box included."""
    from zoo.bench.peers import scene_boxes
    from zoo.nn.boxes3d import _candidate_pairs, _self_candidate_pairs

    for n in (150, 800):  # up to 200 boxes: all-pairs candidates; more: spatial hashing
        boxes, scores = scene_boxes(n, seed=2)
        boxes = torch.cat([boxes, boxes[:5], torch.tensor([[500.0, 500.0, 0, 4, 2, 1.5, 0.3]])]).to(dtype)
        scores = torch.cat([scores, scores[:5], torch.tensor([0.5])]).to(dtype)
        for thr in (0.0, 0.1, 0.2, 0.5, 0.9):
            want = _dense_greedy_nms(boxes, scores, thr)
            for block in (1, 37, 256, 10**6):  # blocks of ranks: only the not-yet-suppressed rows get an IoU
                assert torch.equal(rotated_nms(boxes, scores, thr, block=block), want), (n, thr, block)
    with pytest.raises(ValueError, match="block"):
        rotated_nms(boxes, scores, 0.5, block=0)
    b64 = boxes.double()
    dense = _candidate_pairs(b64, b64)
    dense = dense[dense[:, 0] < dense[:, 1]]
    sweep = _self_candidate_pairs(b64)
    assert sorted(map(tuple, sweep.tolist())) == sorted(map(tuple, dense.tolist()))


def test_green_clipping_on_degenerate_pairs_matches_shapely():
    """The boundary-integral intersection (issue 26) on the pairs where edge clipping is fragile: a box and itself
    turned by π (all edges collinear, same direction, corners rounded differently), slid along its heading
    (two collinear edges), turned by π/2 about its centre, jittered; both argument orders; vs shapely to 1e-12 m²
    (the turned box: vs its own area)."""
    import shapely

    from zoo.bench.peers import _polygons
    from zoo.nn.boxes3d import _boundary_inside, _pair_intersection_area

    g = torch.Generator().manual_seed(0)
    n = 4000
    a = torch.cat(
        [
            torch.randn(n, 2, generator=g),
            torch.zeros(n, 1),
            1 + 4 * torch.rand(n, 3, generator=g),
            (torch.rand(n, 1, generator=g) * 2 - 1) * 3.2,
        ],
        1,
    ).double()
    kind = torch.arange(n) % 4
    b = a.clone()
    b[kind == 0, 6] += torch.pi
    slide = torch.rand(n, generator=g).double() * a[:, 3]
    b[kind == 1, 0] += (slide * torch.cos(a[:, 6]))[kind == 1]
    b[kind == 1, 1] += (slide * torch.sin(a[:, 6]))[kind == 1]
    b[kind == 2, 6] += torch.pi / 2
    b[kind == 3] += 0.3 * torch.randn(int((kind == 3).sum()), 7, generator=g).double()
    b[:, 3:6] = b[:, 3:6].abs()
    ref = torch.from_numpy(shapely.area(shapely.intersection(_polygons(a), _polygons(b))))
    # turned by π the box is itself: its area (GEOS itself returns an empty intersection for some of these)
    ref[kind == 0] = (a[:, 3] * a[:, 4])[kind == 0]
    for x, y in ((a, b), (b, a)):
        torch.testing.assert_close(_pair_intersection_area(x, y), ref, atol=1e-12, rtol=0)
    square = bev_corners(torch.tensor([[0.0, 0, 0, 2, 2, 1, 0]], dtype=torch.float64))
    # a square against itself: its edges lie on the same-direction edges: counted on one side only
    assert _boundary_inside(square, square, False).item() == pytest.approx(4.0)
    assert _boundary_inside(square, square, True).item() == 0.0
