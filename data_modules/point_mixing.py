"""SSDA3D's two point-cloud mixers (Wang et al., AAAI 2023, arXiv 2212.02845, §3.2-3.3), on frame dicts.

A frame is ``{"points": [N, C], "boxes": [M, 7], "labels": [M], "frame_id": str, "dataset": str}`` (the
``zoo.data_modules.driving`` format), already augmented by its own domain's pipeline. Randomness comes from a
``numpy.random.Generator`` the caller owns (one per data-loader worker).

- :func:`point_cutmix` (Stage I, inter-domain Point-CutMix; ``yinjunbo/SSDA3D:pcdet/datasets/processor/
  inter_domain_point_cutmix.py``): side ratios ``c_x, c_y ~ U(0.5, 1)`` redrawn (at most 100
  times) until ``min(c) / max(c) >= 0.75``; an axis-aligned BEV region of half-extent ``c * (range_xy) / 2``
  centred on a random **source** point, redrawn until the target has more than ``min_target_points`` (10,000) points
  strictly inside; points = target inside the region + source outside it; boxes = source boxes not "inside" + target
  boxes "inside", where a box is inside when at least one of its 8 corners lies in the region box
  ``[x0, x1] x [y0, y1] x [z_min, z_max]``
  of the point-cloud range (the corner rule: a source box crossing the border is dropped, its outside points stay
  unlabelled; a target box crossing it is kept with only its inside points).
- :func:`point_mixup` (Stage II, intra-domain Point-MixUp; ``.../intra_domain_point_mixup.py``):
  ``lambda ~ Beta(alpha, alpha)`` (alpha 2), each cloud shuffled, the first ``floor(lambda N_1)`` points of frame 1 and
  ``floor((1 - lambda) N_2)`` of frame 2 overlaid in one frame, boxes = the union. ``collision_check=True`` (the
  ``_cd`` configs) first drops frame-2 boxes whose BEV IoU with any frame-1 box is > 0, with the frame-2 points inside
  them or within 0.1 m of them in x / y (the release's margin, ``collision_margin``).

Both compare as the release: region borders in float64, the range's extent in float32 (parity fixtures in
``tests/fixtures/ssda3d``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from zoo.errors import UserError

__all__ = [
    "draw_side_ratios",
    "draw_cutmix_region",
    "apply_cutmix",
    "point_cutmix",
    "boxes_touching_region",
    "point_mixup",
]


def draw_side_ratios(rng: np.random.Generator, min_aspect: float = 0.75, max_tries: int = 100) -> np.ndarray:
    """``c = 0.5 + 0.5 U(0, 1)^2`` per axis, redrawn until ``min(c) / max(c) >= min_aspect`` (the last draw is kept
    after ``max_tries`` redraws, as the official loop does)."""
    c = 0.5 + rng.random(2) * 0.5
    tries = 0
    while c.min() / c.max() < min_aspect:
        tries += 1
        c = 0.5 + rng.random(2) * 0.5
        if tries > max_tries:
            break
    return c


def _inside_xy(points: torch.Tensor, region: Sequence[float]) -> torch.Tensor:
    """Strictly inside the BEV region, compared in float64 as the release does (its float32 points meet a float64
    region in numpy); a float32 comparison rounds the border and can put a point on the other side."""
    x0, y0, x1, y1 = region
    x, y = points[:, 0].double(), points[:, 1].double()
    return (x > x0) & (x < x1) & (y > y0) & (y < y1)


def draw_cutmix_region(
    source_points: torch.Tensor,
    target_points: torch.Tensor,
    point_cloud_range: Sequence[float],
    rng: np.random.Generator,
    min_target_points: int = 10_000,
    max_tries: int = 1000,
) -> list[float] | None:
    """The BEV region ``[x0, y0, x1, y1]`` of one Point-CutMix, or None when ``max_tries`` centres (source points)
    all leave at most ``min_target_points`` target points inside (the official code loops forever; the caller
    resamples other frames instead)."""
    if source_points.shape[0] == 0 or target_points.shape[0] <= min_target_points:
        return None
    c = draw_side_ratios(rng)
    # the release holds the range as float32 (DatasetTemplate.point_cloud_range): its xy extent is a float32 difference
    pcr = np.asarray(point_cloud_range, dtype=np.float32)
    half = (pcr[3:5] - pcr[0:2]) * c / 2.0
    src = source_points[:, :2].double().numpy()
    for _ in range(max_tries):
        centre = src[rng.integers(src.shape[0])]
        region = [
            float(centre[0] - half[0]),
            float(centre[1] - half[1]),
            float(centre[0] + half[0]),
            float(centre[1] + half[1]),
        ]
        if int(_inside_xy(target_points, region).sum()) > min_target_points:
            return region
    return None


def boxes_touching_region(
    boxes: torch.Tensor, region: Sequence[float], z_range: Sequence[float], min_corners: int = 1
) -> torch.Tensor:
    """BoolTensor[M]: at least ``min_corners`` of the box's 8 corners lie in ``[x0, x1] x [y0, y1] x [z0, z1]``
    (bounds included; OpenPCDet ``mask_boxes_outside_range_numpy(..., min_num_corners=1)``). The corners are computed in
    the boxes' dtype and compared in float64, as the release's numpy comparison with its float64 region does."""
    from zoo.nn.boxes3d import box_corners

    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=boxes.device)
    c = box_corners(boxes[:, :7]).double()  # [M, 8, 3]
    lo = c.new_tensor([region[0], region[1], float(np.float32(z_range[0]))])
    hi = c.new_tensor([region[2], region[3], float(np.float32(z_range[1]))])
    inside = ((c >= lo) & (c <= hi)).all(dim=-1)
    return inside.sum(dim=1) >= min_corners


def apply_cutmix(source: dict, target: dict, region: Sequence[float], point_cloud_range: Sequence[float]) -> dict:
    """The mixed frame for a given region: target points inside + source points outside; source boxes not touching
    the region + target boxes touching it (corner rule). Keys other than points/boxes/labels come from the target."""
    t_in = _inside_xy(target["points"], region)
    s_in = _inside_xy(source["points"], region)
    z_range = (point_cloud_range[2], point_cloud_range[5])
    s_box_in = boxes_touching_region(source["boxes"], region, z_range)
    t_box_in = boxes_touching_region(target["boxes"], region, z_range)
    out = {k: v for k, v in target.items() if k not in ("points", "boxes", "labels")}
    out["points"] = torch.cat([target["points"][t_in], source["points"][~s_in].to(target["points"].dtype)], dim=0)
    out["boxes"] = torch.cat([source["boxes"][~s_box_in].to(target["boxes"].dtype), target["boxes"][t_box_in]], dim=0)
    out["labels"] = torch.cat([source["labels"][~s_box_in], target["labels"][t_box_in]], dim=0)
    out["frame_id"] = f"cutmix({source.get('frame_id', '?')}|{target.get('frame_id', '?')})"
    return out


def point_cutmix(
    source: dict,
    target: dict,
    point_cloud_range: Sequence[float],
    rng: np.random.Generator,
    min_target_points: int = 10_000,
    max_tries: int = 1000,
) -> dict | None:
    """Inter-domain Point-CutMix of a source and a target frame (see the module docstring); None when no region
    with enough target points was found (the caller resamples)."""
    if source["points"].shape[1] != target["points"].shape[1]:
        raise UserError(
            f"Point-CutMix: source points have {source['points'].shape[1]} features, target points "
            f"{target['points'].shape[1]}; give both domains the same point features (x, y, z, intensity)"
        )
    region = draw_cutmix_region(
        source["points"], target["points"], point_cloud_range, rng, min_target_points, max_tries
    )
    if region is None:
        return None
    out = apply_cutmix(source, target, region, point_cloud_range)
    out["cutmix_region"] = torch.tensor(region, dtype=torch.float64)
    return out


def point_mixup(
    frame1: dict,
    frame2: dict,
    rng: np.random.Generator,
    alpha: float = 2.0,
    collision_check: bool = False,
    return_lambda: bool = False,
    collision_margin: float = 0.1,
):
    """Intra-domain Point-MixUp of two target frames (see the module docstring). -> the mixed frame (and lambda).

    ``collision_margin``: with ``collision_check`` the frame-2 points removed with a colliding box are those within
    ``collision_margin`` metres of it in x and y (its own z extent): the release's ``get_points_in_box``
    (``pcdet/datasets/augmentor/augmentor_utils.py``, ``MARGIN = 1e-1``), the default 0.1; 0 removes only the
    points inside the box (zoo's earlier rule)."""
    if frame1["points"].shape[1] != frame2["points"].shape[1]:
        raise UserError("Point-MixUp: both frames need the same point features")
    if not collision_margin >= 0:
        raise UserError(f"Point-MixUp: collision_margin is a distance in metres >= 0, got {collision_margin}")
    lam = float(rng.beta(alpha, alpha))
    p2, b2, l2 = frame2["points"], frame2["boxes"], frame2["labels"]
    if collision_check and frame1["boxes"].shape[0] and b2.shape[0]:
        from zoo.nn.boxes3d import bev_iou, points_in_boxes

        collide = bev_iou(frame1["boxes"][:, :7].double(), b2[:, :7].double()).max(dim=0).values > 0
        if collide.any():
            grown = b2[collide, :7].clone()
            grown[:, 3:5] += 2 * collision_margin
            p2 = p2[~points_in_boxes(p2[:, :3], grown).any(dim=1)]
        b2, l2 = b2[~collide], l2[~collide]
    p1 = frame1["points"][torch.from_numpy(rng.permutation(frame1["points"].shape[0]))]
    p2 = p2[torch.from_numpy(rng.permutation(p2.shape[0]))]
    n1, n2 = int(p1.shape[0] * lam), int(p2.shape[0] * (1 - lam))
    out = {k: v for k, v in frame1.items() if k not in ("points", "boxes", "labels")}
    out["points"] = torch.cat([p1[:n1], p2[:n2]], dim=0)
    out["boxes"] = torch.cat([frame1["boxes"], b2.to(frame1["boxes"].dtype)], dim=0)
    out["labels"] = torch.cat([frame1["labels"], l2], dim=0)
    out["frame_id"] = f"mixup({frame1.get('frame_id', '?')}|{frame2.get('frame_id', '?')})"
    return (out, lam) if return_lambda else out
