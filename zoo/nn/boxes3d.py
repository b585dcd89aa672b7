"""7-DoF 3D boxes in the LiDAR frame: corners, points-in-box, rotated BEV / 3D IoU and rotated NMS, in torch.

A box is ``(x, y, z, dx, dy, dz, yaw)``: ``(x, y, z)`` the box's gravity (volume) centre, ``dx`` its extent along
its heading, ``dy`` across, ``dz`` vertical, ``yaw`` the heading about +z measured from +x (counter-clockwise
seen from above), the mmdet3d >= 1.0 / OpenPCDet LiDAR convention. Every function accepts float32 or float64
tensors on any device and broadcasts over leading dimensions where the signature says ``[...]``.

The rotated IoU is exact (up to float rounding) convex-polygon clipping done in batch: the intersection of two
rectangles is the convex hull of (corners of A inside B) ∪ (corners of B inside A) ∪ (edge-edge crossings), its
vertices sorted by angle about their mean and measured with the shoelace formula. Only pairs whose circumscribed
circles overlap are clipped (the others are 0), so the cost grows with the number of nearby pairs, not N·M. The
polygon arithmetic runs in float64 and the result is returned in the input's dtype. This plays the role of
mmcv's ``box_iou_rotated`` / OpenPCDet's ``iou3d_nms`` CUDA kernels (Shi et al., PointRCNN / OpenPCDet
``pcdet/ops/iou3d_nms``) without a compiled extension; it is checked against shapely in the tests.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["bev_corners", "bev_iou", "box_corners", "iou3d", "limit_period", "points_in_boxes", "rotated_nms"]

# unit-square corner signs in the box frame, counter-clockwise seen from above: front-left, rear-left, rear-right,
# front-right (x forward = heading, y left)
_SIGNS_2D = ((0.5, 0.5), (-0.5, 0.5), (-0.5, -0.5), (0.5, -0.5))


def limit_period(angle: torch.Tensor, offset: float = 0.5, period: float = 2 * torch.pi) -> torch.Tensor:
    """``angle`` wrapped into ``[-offset·period, (1-offset)·period)`` (default ``[-π, π)``)."""
    return angle - torch.floor(angle / period + offset) * period


def _check(boxes: torch.Tensor, name: str = "boxes") -> None:
    if boxes.shape[-1] != 7:
        raise ValueError(f"{name} must have 7 values (x, y, z, dx, dy, dz, yaw) in the last dimension, "
                         f"got shape {tuple(boxes.shape)}")


def bev_corners(boxes: torch.Tensor) -> torch.Tensor:
    """``boxes [..., 7]`` -> ``[..., 4, 2]`` BEV (x, y) corners, counter-clockwise: front-left, rear-left,
    rear-right, front-right (front = +heading)."""
    _check(boxes)
    signs = boxes.new_tensor(_SIGNS_2D)  # [4, 2]
    local = signs * boxes[..., None, 3:5]  # [..., 4, 2]
    c, s = torch.cos(boxes[..., 6:7]), torch.sin(boxes[..., 6:7])  # [..., 1]
    x = local[..., 0] * c - local[..., 1] * s + boxes[..., 0:1]
    y = local[..., 0] * s + local[..., 1] * c + boxes[..., 1:2]
    return torch.stack([x, y], dim=-1)


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """``boxes [..., 7]`` -> ``[..., 8, 3]`` corners: the 4 bottom corners (z - dz/2) in :func:`bev_corners`
    order, then the 4 top corners (z + dz/2) in the same order."""
    xy = bev_corners(boxes)  # [..., 4, 2]
    zb = (boxes[..., 2] - boxes[..., 5] / 2)[..., None, None].expand(*xy.shape[:-1], 1)
    zt = (boxes[..., 2] + boxes[..., 5] / 2)[..., None, None].expand(*xy.shape[:-1], 1)
    return torch.cat([torch.cat([xy, zb], -1), torch.cat([xy, zt], -1)], dim=-2)


def points_in_boxes(points: torch.Tensor, boxes: torch.Tensor, chunk: int = 32768) -> torch.Tensor:
    """``points [N, >=3]`` (x, y, z first), ``boxes [M, 7]`` -> ``bool [N, M]``: point n lies inside box m (faces
    included). Points are processed ``chunk`` at a time, so the float temporaries stay at ``chunk · M`` values."""
    _check(boxes)
    if points.dim() != 2 or points.shape[-1] < 3:
        raise ValueError(f"points must be [N, >=3] (x, y, z, ...), got shape {tuple(points.shape)}")
    boxes = boxes.to(points.dtype)
    c, s = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    half = boxes[:, 3:6] / 2
    out = torch.empty(len(points), len(boxes), dtype=torch.bool, device=points.device)
    for start in range(0, len(points), chunk):
        d = points[start:start + chunk, None, :3] - boxes[None, :, :3]  # [n, M, 3]
        lx = d[..., 0] * c + d[..., 1] * s  # rotate by -yaw into the box frame
        ly = -d[..., 0] * s + d[..., 1] * c
        out[start:start + chunk] = (lx.abs() <= half[:, 0]) & (ly.abs() <= half[:, 1]) & (d[..., 2].abs() <= half[:, 2])
    return out


def _inside(pts: torch.Tensor, boxes: torch.Tensor, eps: float) -> torch.Tensor:
    """``pts [P, K, 2]`` inside the BEV rectangle of ``boxes [P, 7]`` (tolerance ``eps`` metres) -> bool [P, K]."""
    d = pts - boxes[:, None, :2]
    c, s = torch.cos(boxes[:, None, 6]), torch.sin(boxes[:, None, 6])
    lx = d[..., 0] * c + d[..., 1] * s
    ly = -d[..., 0] * s + d[..., 1] * c
    return (lx.abs() <= boxes[:, None, 3] / 2 + eps) & (ly.abs() <= boxes[:, None, 4] / 2 + eps)


def _pair_intersection_area(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Exact BEV intersection areas of paired boxes ``a [P, 7]``, ``b [P, 7]`` (float64) -> ``[P]``."""
    ca, cb = bev_corners(a), bev_corners(b)  # [P, 4, 2]
    # edge-edge crossings: edge i of A (p -> p + r), edge j of B (q -> q + s)
    p = ca[:, :, None, :]
    r = (torch.roll(ca, -1, dims=1) - ca)[:, :, None, :]
    q = cb[:, None, :, :]
    s = (torch.roll(cb, -1, dims=1) - cb)[:, None, :, :]

    def cross(u, v):
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    denom = cross(r, s)  # [P, 4, 4]
    qp = q - p
    safe = torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
    t = cross(qp, s) / safe
    u = cross(qp, r) / safe
    tol = 1e-9
    crossing = (denom.abs() > 1e-12) & (t >= -tol) & (t <= 1 + tol) & (u >= -tol) & (u <= 1 + tol)
    xpts = (p + t[..., None] * r).reshape(len(a), 16, 2)

    verts = torch.cat([ca, cb, xpts], dim=1)  # [P, 24, 2]
    valid = torch.cat([_inside(ca, b, eps), _inside(cb, a, eps), crossing.reshape(len(a), 16)], dim=1)
    n_valid = valid.sum(1)
    w = valid.to(verts.dtype)
    centre = (verts * w[..., None]).sum(1) / n_valid.clamp(min=1)[:, None].to(verts.dtype)
    ang = torch.atan2(verts[..., 1] - centre[:, None, 1], verts[..., 0] - centre[:, None, 0])
    ang = torch.where(valid, ang, torch.full_like(ang, 10.0))  # invalid vertices sort last
    order = ang.argsort(dim=1)
    sv = torch.gather(verts, 1, order[..., None].expand(-1, -1, 2))
    svalid = torch.gather(valid, 1, order)
    # pad with the first vertex: repeated points add zero area to the shoelace sum
    sv = torch.where(svalid[..., None], sv, sv[:, :1, :].expand_as(sv))
    nxt = torch.roll(sv, -1, dims=1)
    area = 0.5 * (sv[..., 0] * nxt[..., 1] - sv[..., 1] * nxt[..., 0]).sum(1).abs()
    return torch.where(n_valid >= 3, area, torch.zeros_like(area))


def _candidate_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Index pairs ``[P, 2]`` whose circumscribed BEV circles overlap (all others have zero intersection)."""
    ra = 0.5 * torch.linalg.vector_norm(a[:, 3:5], dim=1)
    rb = 0.5 * torch.linalg.vector_norm(b[:, 3:5], dim=1)
    dist = torch.cdist(a[:, :2], b[:, :2])
    return torch.nonzero(dist < ra[:, None] + rb[None, :] + 1e-6)


def _self_candidate_pairs(boxes: torch.Tensor) -> torch.Tensor:
    """Pairs ``[P, 2]`` (``i < j``) of ``boxes [N, 7]`` whose circumscribed BEV circles overlap, found by a sweep
    along x (sort, then ``searchsorted`` for the end of each box's window ``x_i + r_i + max r``): O(N log N + pairs
    in the window), no N x N matrix. The pairs and the test (``dist < r_i + r_j + 1e-6``) are those of
    :func:`_candidate_pairs` restricted to ``i < j``."""
    n, dev = len(boxes), boxes.device
    r = 0.5 * torch.linalg.vector_norm(boxes[:, 3:5], dim=1)
    xs, perm = torch.sort(boxes[:, 0])
    end = torch.searchsorted(xs, xs + r[perm] + r.max() + 1e-6, right=True)
    pos = torch.arange(n, device=dev)
    width = end - pos - 1  # boxes after this one (in x order) inside its window
    k = torch.repeat_interleave(pos, width)
    j = k + 1 + torch.arange(len(k), device=dev) - torch.repeat_interleave(torch.cumsum(width, 0) - width, width)
    i, j = perm[k], perm[j]
    close = torch.linalg.vector_norm(boxes[i, :2] - boxes[j, :2], dim=1) < r[i] + r[j] + 1e-6
    i, j = i[close], j[close]
    return torch.stack([torch.minimum(i, j), torch.maximum(i, j)], dim=1)


def _bev_areas(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 3] * boxes[:, 4]).detach().to(torch.float64)


def _pair_iou(boxes: torch.Tensor, pairs: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """BEV IoU (float64) of ``boxes[pairs[:, 0]]`` with ``boxes[pairs[:, 1]]``: the values :func:`bev_iou` puts at
    those entries, computed for the pairs only."""
    b64 = boxes.detach().to(torch.float64)
    area = _bev_areas(boxes)
    out = b64.new_zeros(len(pairs))
    for start in range(0, len(pairs), chunk):
        i, j = pairs[start:start + chunk].unbind(1)
        inter = _pair_intersection_area(b64[i], b64[j])
        out[start:start + chunk] = inter / (area[i] + area[j] - inter).clamp(min=1e-12)
    return out


def _bev_intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` BEV intersection areas (float64)."""
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    out = a64.new_zeros(len(a), len(b))
    if len(a) == 0 or len(b) == 0:
        return out
    pairs = _candidate_pairs(a64, b64)
    chunk = 65536
    for start in range(0, len(pairs), chunk):
        i, j = pairs[start:start + chunk].unbind(1)
        out[i, j] = _pair_intersection_area(a64[i], b64[j])
    return out


def bev_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rotated BEV IoU, ``a [N, 7]``, ``b [M, 7]`` -> ``[N, M]`` (input dtype; no gradient)."""
    _check(a, "a")
    _check(b, "b")
    inter = _bev_intersection(a, b)
    union = _bev_areas(a)[:, None] + _bev_areas(b)[None, :] - inter
    return (inter / union.clamp(min=1e-12)).to(a.dtype)


def iou3d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """3D IoU of rotated (yaw-only) boxes, ``a [N, 7]``, ``b [M, 7]`` -> ``[N, M]``: BEV intersection × vertical
    overlap over the union of volumes (input dtype; no gradient)."""
    _check(a, "a")
    _check(b, "b")
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    inter_bev = _bev_intersection(a64, b64)
    top = torch.minimum(a64[:, None, 2] + a64[:, None, 5] / 2, b64[None, :, 2] + b64[None, :, 5] / 2)
    bottom = torch.maximum(a64[:, None, 2] - a64[:, None, 5] / 2, b64[None, :, 2] - b64[None, :, 5] / 2)
    inter = inter_bev * (top - bottom).clamp(min=0)
    vol_a = a64[:, 3] * a64[:, 4] * a64[:, 5]
    vol_b = b64[:, 3] * b64[:, 4] * b64[:, 5]
    union = vol_a[:, None] + vol_b[None, :] - inter
    return (inter / union.clamp(min=1e-12)).to(a.dtype)


def rotated_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS with the rotated BEV IoU (as OpenPCDet's ``nms_gpu``): visit boxes by descending score, keep a
    box unless its BEV IoU with an already kept box is > ``iou_threshold``. ``boxes [N, 7]``, ``scores [N]`` ->
    ``LongTensor`` of kept indices into the input, sorted by descending score (on ``boxes.device``).

    Sparse: only the pairs whose circumscribed circles overlap (:func:`_self_candidate_pairs`, a sweep along x) get
    an IoU, and the greedy pass walks only the boxes that overlap a lower-scored box above the threshold, so time and
    memory grow with the overlapping pairs, not N². The IoU values (float64, compared in the input's dtype) and the
    kept set are those of the dense ``bev_iou`` matrix."""
    _check(boxes)
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be [N] for boxes [N, 7], got {tuple(scores.shape)} and {tuple(boxes.shape)}")
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    ranked = boxes[order].detach()
    pairs = _self_candidate_pairs(ranked.to(torch.float64))  # i < j: i scores higher
    over = pairs[_pair_iou(ranked, pairs).to(boxes.dtype) > iou_threshold].cpu().numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    if len(over):
        over = over[np.lexsort((over[:, 1], over[:, 0]))]
        rows, starts = np.unique(over[:, 0], return_index=True)
        ends = np.append(starts[1:], len(over))
        for i, s, e in zip(rows.tolist(), starts.tolist(), ends.tolist()):  # ascending rank: the greedy order
            if not suppressed[i]:
                suppressed[over[s:e, 1]] = True
    keep = torch.from_numpy(np.flatnonzero(~suppressed)).to(order.device)
    return order[keep]
