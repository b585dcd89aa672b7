"""CMT set-prediction machinery: Hungarian matching and DN-DETR query denoising.

- :func:`focal_cost` / :func:`hungarian_match`: mmdet's ``FocalLossCost`` (weight 2, α 0.25, γ 2) + an L1 cost (weight
  0.25) on the first 8 code dims, both pred and target multiplied by the code weights (``HungarianAssigner3D``);
  the assignment is scipy's ``linear_sum_assignment``.
- :func:`prepare_denoising` / :func:`denoising_attn_mask` (``CmtHead.prepare_for_dn``; DN-DETR, Li et al., CVPR 2022):
  ``groups = min(scalar, num_query // max #GT)`` copies of every GT centre, jittered by ``r ⊙ size / 2`` with
  r ~ U(-1, 1)^3, normalised to the range and clamped; a copy with ``‖r‖₂ > split`` gets the class "no object".
  They are prepended as extra anchors. Attention mask (True = blocked): matching queries cannot see DN queries; DN
  groups cannot see each other (they can see the matching queries).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

CODE_WEIGHTS = (2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)


def focal_cost(
    logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    weight: float = 2.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """mmdet ``FocalLossCost``: logits [Q, C], labels [M] -> [Q, M] = w (pos_cost - neg_cost)[:, labels]."""
    p = logits.sigmoid()
    neg = -(1 - p + eps).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + eps).log() * alpha * (1 - p).pow(gamma)
    return (pos[:, labels] - neg[:, labels]) * weight


def l1_cost(
    pred_code: torch.Tensor,
    gt_code: torch.Tensor,
    code_weights: Sequence[float] = CODE_WEIGHTS,
    weight: float = 0.25,
    dims: int = 8,
) -> torch.Tensor:
    """``BBox3DL1Cost`` on the code-weighted first ``dims`` dims: [Q, 10], [M, 10] -> [Q, M]."""
    w = pred_code.new_tensor(code_weights)[:dims]
    return torch.cdist(pred_code[:, :dims] * w, gt_code[:, :dims] * w, p=1) * weight


def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one assignment of a [Q, M] cost (Q >= M): (query indices, GT indices), scipy."""
    if cost.numel() == 0:
        e = torch.zeros(0, dtype=torch.long, device=cost.device)
        return e, e
    c = cost.detach().float().cpu().nan_to_num(nan=1e8, posinf=1e8, neginf=-1e8).numpy()
    rows, cols = linear_sum_assignment(c)
    return (
        torch.as_tensor(rows, dtype=torch.long, device=cost.device),
        torch.as_tensor(cols, dtype=torch.long, device=cost.device),
    )


def match(
    logits: torch.Tensor,
    pred_code: torch.Tensor,
    labels: torch.Tensor,
    gt_code: torch.Tensor,
    cls_weight: float = 2.0,
    reg_weight: float = 0.25,
    code_weights: Sequence[float] = CODE_WEIGHTS,
):
    """One frame: focal + L1 cost, Hungarian assignment -> (query indices, GT indices)."""
    cost = focal_cost(logits, labels, weight=cls_weight) + l1_cost(pred_code, gt_code, code_weights, reg_weight)
    return hungarian_match(cost)


# ============================================================================================ denoising
@dataclass
class Denoising:
    """Result of :func:`prepare_denoising` for a batch."""

    anchors: torch.Tensor  # [B, pad_size, 3] normalised DN anchors (zeros in padding slots)
    attn_mask: torch.Tensor  # [pad_size + num_query]^2 bool, True = blocked
    batch_idx: torch.Tensor  # [N_dn] frame of each DN query
    query_idx: torch.Tensor  # [N_dn] its slot in [0, pad_size)
    labels: torch.Tensor  # [N_dn] class target (num_classes = no object when the jitter was too large)
    boxes: torch.Tensor  # [N_dn, 9] the original GT box (the regression target)
    pad_size: int
    groups: int


def denoising_attn_mask(single_pad: int, groups: int, num_query: int, device=None) -> torch.Tensor:
    """[P + Q, P + Q] bool, True = blocked, P = single_pad * groups: matching queries cannot see DN queries; DN group g
    sees only itself and the matching queries."""
    pad = single_pad * groups
    n = pad + num_query
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[pad:, :pad] = True
    for g in range(groups):
        rows = slice(single_pad * g, single_pad * (g + 1))
        mask[rows, single_pad * (g + 1) : pad] = True
        mask[rows, : single_pad * g] = True
    return mask


def prepare_denoising(
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    num_query: int,
    num_classes: int,
    pc_range: Sequence[float],
    scalar: int = 10,
    noise_scale: float = 1.0,
    noise_trans: float = 0.0,
    split: float = 0.75,
    generator: torch.Generator | None = None,
) -> Denoising:
    """DN queries for a batch of GT boxes (list of [M_i, >= 6]) and labels (list of [M_i])."""
    dev = boxes[0].device if boxes else torch.device("cpu")
    known = [int(b.shape[0]) for b in boxes]
    max_known = max(known) if known else 0
    groups = scalar if max_known == 0 else max(1, min(scalar, num_query // max_known))
    single_pad = max(1, max_known)
    pad = single_pad * groups
    bsz = len(boxes)
    all_boxes = (
        torch.cat(
            [
                b[:, :9] if b.shape[1] >= 9 else torch.cat([b[:, :7], b.new_zeros(b.shape[0], 9 - b.shape[1])], 1)
                for b in boxes
            ]
        )
        if boxes
        else torch.zeros(0, 9)
    )
    all_labels = torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long)
    bidx = (
        torch.cat([torch.full((n,), i, dtype=torch.long, device=dev) for i, n in enumerate(known)])
        if known
        else torch.zeros(0, dtype=torch.long)
    )
    within = torch.cat([torch.arange(n, device=dev) for n in known]) if known else torch.zeros(0, dtype=torch.long)
    rep_boxes = all_boxes.repeat(groups, 1)
    rep_labels = all_labels.repeat(groups).clone()
    rep_bidx = bidx.repeat(groups)
    slots = torch.cat([within + single_pad * g for g in range(groups)]).long()
    centre = rep_boxes[:, :3].clone()
    lo = centre.new_tensor(pc_range[:3])
    hi = centre.new_tensor(pc_range[3:])
    if noise_scale > 0:
        r = torch.rand(centre.shape, generator=generator, device=centre.device, dtype=centre.dtype) * 2 - 1
        centre = centre + r * (rep_boxes[:, 3:6] / 2 + noise_trans) * noise_scale
        rep_labels[torch.linalg.vector_norm(r, dim=1) > split] = num_classes
    centre = ((centre - lo) / (hi - lo)).clamp(0, 1)
    anchors = centre.new_zeros(bsz, pad, 3)
    anchors[rep_bidx, slots] = centre
    return Denoising(
        anchors,
        denoising_attn_mask(single_pad, groups, num_query, dev),
        rep_bidx,
        slots,
        rep_labels,
        rep_boxes,
        pad,
        groups,
    )


def dn_cls_avg_factor(num_dn: int, split: float = 0.75) -> float:
    """The released DN focal normaliser: N_dn · π/6 · split³ (the expected share of jitters inside the split ball)."""
    return num_dn * math.pi / 6 * split**3
