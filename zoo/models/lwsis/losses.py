"""Losses of LWSIS on BoxInst (Li et al., AAAI 2023, arXiv 2212.03504, §3.2-3.4; Tian et al., BoxInst, CVPR 2021,
§3; FCOS, ICCV 2019). Reimplemented from the papers and the facts of AdelaiDet / ``Serenos/LWSIS``
(``adet/modeling/fcos/fcos_outputs.py``, ``adet/modeling/condinst/dynamic_mask_head.py``), not ported.

- FCOS targets (:func:`fcos_targets`): a location is positive for a GT box when it lies in the box's centre region
  (radius 1.5 strides, clipped to the box), its max ltrb distance falls in its level's size range
  ([0, 64], [64, 128], [128, 256], [256, 512], [512, ∞)), and the box is the smallest such box.
- FCOS losses (:func:`fcos_losses`): sigmoid focal (α 0.25, γ 2, sum / #pos), GIoU on positives weighted by the
  centerness targets (sum / Σ centerness), centerness BCE (sum / #pos); torchvision's ops.
- BoxInst (:func:`projection_loss`, :func:`pairwise_loss`, :func:`color_similarity`): dice on the x- and
  y-max-projections of mask and box, and −log P(same label) over 8 dilated neighbours whose Lab colour similarity
  exp(−‖Δlab‖/2) ≥ 0.3, inside the box.
- LWSIS point loss (:func:`point_loss`): per-instance-weighted BCE of mask logits sampled at PLA points.
- LWSIS GCR (:func:`geometric_graph`, :func:`appearance_graph`, :func:`graph_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

INF = 1e8


# ------------------------------------------------------------------------------------------------------ FCOS
def fcos_targets(
    locations: torch.Tensor, level: torch.Tensor, boxes: torch.Tensor, strides, sizes, radius: float = 1.5
):
    """``locations [L, 2]``, ``level [L]``, one image's GT ``boxes [G, 4]`` -> (matched GT index ``[L]`` (−1 =
    background), ltrb targets ``[L, 4]``)."""
    n = locations.shape[0]
    if boxes.shape[0] == 0:
        return torch.full((n,), -1, dtype=torch.long, device=locations.device), locations.new_zeros(n, 4)
    x, y = locations[:, 0:1], locations[:, 1:2]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], 2)  # [L, G, 4]
    stride = torch.as_tensor(strides, dtype=locations.dtype, device=locations.device)[level][:, None] * radius
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    x1, y1 = torch.maximum(cx - stride, boxes[:, 0]), torch.maximum(cy - stride, boxes[:, 1])
    x2, y2 = torch.minimum(cx + stride, boxes[:, 2]), torch.minimum(cy + stride, boxes[:, 3])
    in_centre = torch.stack([x - x1, y - y1, x2 - x, y2 - y], 2).min(2).values > 0
    lo = torch.as_tensor([0.0, *sizes], device=locations.device)[level][:, None]
    hi = torch.as_tensor([*sizes, INF], device=locations.device)[level][:, None]
    m = ltrb.max(2).values
    ok = in_centre & (m >= lo) & (m <= hi)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(n, -1).clone()
    area[~ok] = INF
    min_area, idx = area.min(1)
    idx[min_area == INF] = -1
    return idx, ltrb[torch.arange(n, device=locations.device), idx.clamp(min=0)]


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    lr, tb = ltrb[:, 0::2], ltrb[:, 1::2]
    return torch.sqrt(
        (lr.min(1).values / lr.max(1).values).clamp(min=0) * (tb.min(1).values / tb.max(1).values).clamp(min=0)
    )


def fcos_losses(logits, reg, ctr, locations, matched, ltrb_t, labels):
    """Flat per-location predictions of the batch (``logits [N, K]``, ``reg [N, 4]``, ``ctr [N]``,
    ``locations [N, 2]``), ``matched [N]`` (GT row in ``labels`` or −1) -> dict cls / box / ctr losses."""
    pos = matched >= 0
    num_pos = max(float(pos.sum()), 1.0)
    cls_t = torch.zeros_like(logits)
    cls_t[pos, labels[matched[pos]]] = 1.0
    loss_cls = sigmoid_focal_loss(logits, cls_t, alpha=0.25, gamma=2.0, reduction="sum") / num_pos
    if not pos.any():
        zero = reg.sum() * 0 + ctr.sum() * 0
        return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": zero, "loss_fcos_ctr": zero}
    xy, r, t = locations[pos], reg[pos], ltrb_t[pos]
    ctr_t = centerness_target(t)
    pred_box = torch.cat([xy - r[:, :2], xy + r[:, 2:]], 1)
    gt_box = torch.cat([xy - t[:, :2], xy + t[:, 2:]], 1)
    giou = generalized_box_iou_loss(pred_box, gt_box, reduction="none")
    loss_loc = (giou * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
    loss_ctr = F.binary_cross_entropy_with_logits(ctr[pos], ctr_t, reduction="sum") / num_pos
    return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, "loss_fcos_ctr": loss_ctr}


# ---------------------------------------------------------------------------------------------------- BoxInst
def box_masks(boxes: torch.Tensor, h: int, w: int, stride: int = 4, continuous: bool = False) -> torch.Tensor:
    """GT ``boxes [R, 4]`` (image px) -> ``[R, h, w]`` float box masks on the stride-``stride`` grid whose cell
    (i, j) samples image pixel (j·s + s//2, i·s + s//2) of the full-resolution box mask.

    Default, as released (AdelaiDet ``CondInst.add_bitmasks_from_boxes``: ``bitmask_full[int(y1):int(y2 + 1),
    int(x1):int(x2 + 1)] = 1``): the pixels int(x1) <= x <= int(x2), int(y1) <= y <= int(y2) (boxes are
    non-negative, so int() is floor). ``continuous``: zoo's earlier x1 <= x < x2, y1 <= y < y2 on the float box."""
    ys = torch.arange(h, device=boxes.device, dtype=boxes.dtype) * stride + stride // 2
    xs = torch.arange(w, device=boxes.device, dtype=boxes.dtype) * stride + stride // 2
    if not continuous:
        boxes = torch.cat([boxes[:, :2].floor(), (boxes[:, 2:] + 1).floor()], 1)
    inx = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])
    iny = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])
    return (iny[:, :, None] & inx[:, None, :]).to(boxes.dtype)


def dice_loss(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-row ``1 − 2 Σxy / (Σx² + Σy² + eps)`` over all but the first dimension."""
    x, y = x.flatten(1), y.flatten(1)
    return 1.0 - 2.0 * (x * y).sum(1) / ((x * x).sum(1) + (y * y).sum(1) + eps)


def projection_loss(mask_probs: torch.Tensor, box_mask: torch.Tensor) -> torch.Tensor:
    """BoxInst Eq. 2: dice(max_y mask, max_y box) + dice(max_x mask, max_x box), per instance ``[R]``.
    ``mask_probs``, ``box_mask``: ``[R, h, w]``."""
    return dice_loss(mask_probs.max(1).values, box_mask.max(1).values) + dice_loss(
        mask_probs.max(2).values, box_mask.max(2).values
    )


def _neighbours(x: torch.Tensor, k: int = 3, dilation: int = 2) -> torch.Tensor:
    """``[N, C, h, w]`` -> ``[N, C, k·k − 1, h, w]``: the 8 dilated neighbours of each pixel (zero padding)."""
    n, c, h, w = x.shape
    pad = dilation * (k - 1) // 2
    u = F.unfold(x, kernel_size=k, dilation=dilation, padding=pad).reshape(n, c, k * k, h, w)
    centre = k * k // 2
    return torch.cat([u[:, :, :centre], u[:, :, centre + 1 :]], 2)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``[..., 3, h, w]`` in 0..255 -> CIE Lab (D65), as skimage.color.rgb2lab."""
    c = rgb / 255.0
    c = torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = c.new_tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
    xyz = torch.einsum("ij,...jhw->...ihw", m, c)
    xyz = xyz / c.new_tensor([0.95047, 1.0, 1.08883])[:, None, None]
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    lightness = torch.where(xyz[..., 1:2, :, :] > 0.008856, 116 * f[..., 1:2, :, :] - 16, 903.3 * xyz[..., 1:2, :, :])
    a = 500 * (f[..., 0:1, :, :] - f[..., 1:2, :, :])
    b = 200 * (f[..., 1:2, :, :] - f[..., 2:3, :, :])
    return torch.cat([lightness, a, b], -3)


def color_similarity(
    images: torch.Tensor, stride: int = 4, dilation: int = 2, from_float: bool = False
) -> torch.Tensor:
    """``images [B, 3, H, W]`` RGB 0..255 -> ``[B, 8, H/s, W/s]``: exp(−‖lab_i − lab_j‖ / 2) between each stride-``s``
    average-pooled pixel and its 8 dilated neighbours (BoxInst §3.2).

    Default, as released (``add_bitmasks_from_boxes`` converts ``downsampled_images.byte()`` with skimage's
    ``rgb2lab``): the pooled colours are truncated to integers before the Lab conversion. ``from_float``: zoo's
    earlier Lab of the unrounded average."""
    pooled = F.avg_pool2d(images, stride, stride)
    lab = rgb_to_lab(pooled if from_float else pooled.floor())
    diff = lab[:, :, None] - _neighbours(lab, dilation=dilation)
    return torch.exp(-diff.norm(dim=1) * 0.5)


def pairwise_log_same(logits: torch.Tensor, dilation: int = 2) -> torch.Tensor:
    """``logits [R, 1, h, w]`` -> ``[R, 8, h, w]`` = log(p_i p_j + (1 − p_i)(1 − p_j)) over the dilated neighbours,
    computed stably in log space."""
    fg, bg = F.logsigmoid(logits), F.logsigmoid(-logits)
    nfg, nbg = _neighbours(fg, dilation=dilation)[:, 0], _neighbours(bg, dilation=dilation)[:, 0]
    return torch.logaddexp(fg + nfg, bg + nbg)


def pairwise_loss(
    logits: torch.Tensor, similarity: torch.Tensor, box_mask: torch.Tensor, thresh: float = 0.3, dilation: int = 2
) -> torch.Tensor:
    """BoxInst Eq. 4: mean of −log P(y_i = y_j) over the edges with colour similarity ≥ ``thresh`` whose centre
    pixel lies in the box. ``logits [R, 1, h, w]``, ``similarity [R, 8, h, w]`` (each instance's image),
    ``box_mask [R, h, w]``."""
    weight = (similarity >= thresh).to(logits.dtype) * box_mask[:, None]
    loss = -pairwise_log_same(logits, dilation)
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------------- LWSIS
def instance_weights(boxes: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """LWSIS §3.3: min-max normalisation over the batch's GT boxes of s = sqrt(area / 96²) (larger box, larger weight).

    Default, as released (``Serenos/LWSIS: adet/modeling/condinst/dynamic_mask_head.py``, ``gt_weight_norm``):
    (s − min s) / (max s − min s + 1e-5), so with one GT box in the batch (or boxes all of one size) every weight is
    0: the point loss vanishes and the GCR terms get the full weight 1 − w = 1. ``exact``: zoo's earlier form,
    (s − min s) / (max s − min s) and 0.5 for every box when all sizes are equal."""
    s = torch.sqrt(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0) / 96.0**2)
    if s.numel() == 0:
        return s
    span = s.max() - s.min()
    if not exact:
        return (s - s.min()) / (span + 1e-5)
    if span < 1e-6:
        return torch.full_like(s, 0.5)
    return (s - s.min()) / span


def sample_logits(logits: torch.Tensor, coords: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Bilinear samples (``grid_sample``, ``align_corners=False``) of ``logits [R, 1, h, w]`` (stride ``stride``) at
    image-pixel ``coords [R, P, 2]`` (x, y) -> ``[R, P]``."""
    h, w = logits.shape[-2:]
    g = torch.stack([coords[..., 0] / (stride * w), coords[..., 1] / (stride * h)], -1) * 2 - 1
    return F.grid_sample(logits, g[:, :, None, :].to(logits.dtype), mode="bilinear", align_corners=False)[:, 0, :, 0]


def point_loss(
    logits: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, stride: int = 4
) -> torch.Tensor:
    """LWSIS Eq. 5: mean over the R×P entries of w_r · 1[y ≠ −1] · BCE(m_r(x_rp), y_rp). ``labels [R, P]`` in
    {1 fg, 0 bg, −1 ignore}, ``weights [R]``."""
    if logits.shape[0] == 0:
        return logits.sum() * 0
    x = sample_logits(logits, coords, stride)
    valid = labels >= 0
    bce = F.binary_cross_entropy_with_logits(x, labels.clamp(min=0).to(x.dtype), reduction="none")
    return (bce * valid * weights[:, None]).mean()


def _enough_nodes(valid: torch.Tensor, min_nodes: int) -> torch.Tensor:
    """``[G, 1, 1]``: the instance has at least ``min_nodes`` valid nodes (the release builds no graph for 0 or 1)."""
    return (valid.sum(1) >= min_nodes)[:, None, None]


def geometric_graph(xyz: torch.Tensor, valid: torch.Tensor, thresh: float = 0.5, min_nodes: int = 2) -> torch.Tensor:
    """LWSIS §3.4 geometric graph over one instance's LiDAR points. ``xyz [G, N, 3]``, ``valid [G, N]`` -> bool
    adjacency ``[G, N, N]``: S_geo = exp(−(d_ij / d̄ − 1) / 2) ≥ ``thresh`` with d̄ the median over the valid nodes of
    their nearest-neighbour distance (self-pairs included, fully connected candidates), as the release's
    ``get_lidar_dis_similarity2``; an instance with fewer than ``min_nodes`` valid nodes has no edges (released: 2;
    zoo's earlier 1 gave a single node a self-edge)."""
    d = torch.cdist(xyz, xyz)  # [G, N, N]
    pair = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(xyz.shape[1], dtype=torch.bool, device=xyz.device)
    nn_d = d.masked_fill(~pair | eye, float("inf")).min(2).values  # [G, N]
    scale = []
    for g in range(xyz.shape[0]):
        v = nn_d[g][valid[g] & torch.isfinite(nn_d[g])]
        scale.append(v.median() if v.numel() else d.new_tensor(1.0))
    scale = torch.stack(scale).clamp(min=1e-6)[:, None, None]
    s = torch.exp(-(d / scale - 1) / 2)
    return (s >= thresh) & pair & _enough_nodes(valid, min_nodes)


def appearance_graph(
    feats: torch.Tensor, valid: torch.Tensor, thresh: float = 0.3, padded_range: bool = True, min_nodes: int = 2
) -> torch.Tensor:
    """LWSIS §3.4 appearance graph: ``feats [G, N, C]`` (detached P3 features sampled at the N node slots) -> bool
    ``[G, N, N]``: S = FFᵀ / (max S − min S + 1e-5) > ``thresh`` on the valid pairs.

    As released (``compute_resnet_sim``), max and min run over all N × N slots, the padding slots included (their
    features are sampled at pixel (0, 0), where the data pads their coordinates), and an instance with fewer than
    ``min_nodes`` (2) valid nodes has no edges. ``padded_range=False``: the range over the valid pairs only (zoo's
    earlier form, with ``min_nodes=1``)."""
    s = feats @ feats.transpose(1, 2)
    pair = valid[:, :, None] & valid[:, None, :]
    if padded_range:
        mx, mn = s.flatten(1).max(1).values, s.flatten(1).min(1).values
    else:
        big = torch.finfo(s.dtype).max
        mx = s.masked_fill(~pair, -big).flatten(1).max(1).values
        mn = s.masked_fill(~pair, big).flatten(1).min(1).values
    s = s / (mx - mn + 1e-5).clamp(min=1e-5)[:, None, None]
    return (s > thresh) & pair & _enough_nodes(valid, min_nodes)


def graph_loss(
    point_logits: torch.Tensor, adjacency: torch.Tensor, weights: torch.Tensor, pairwise: bool = False
) -> torch.Tensor:
    """Σ_edges (1 − w_r) ℓ_ij / #edges over the graph ``adjacency`` (LWSIS Eq. 7-8). ``point_logits [R, N]`` (mask
    logits of proposal r at its GT's nodes), ``adjacency [R, N, N]`` bool, ``weights [R]``.

    Default, as released (``compute_lidar_sim_loss`` in ``dynamic_mask_head.py``: both operands of the pair broadcast
    along the same axis): ℓ_ij = −log(p_j² + (1 − p_j)²), a per-node confidence term counted once per edge.
    ``pairwise``: the paper's pairwise term ℓ_ij = −log(p_i p_j + (1 − p_i)(1 − p_j))."""
    if point_logits.shape[0] == 0 or not adjacency.any():
        return point_logits.sum() * 0
    fg, bg = F.logsigmoid(point_logits), F.logsigmoid(-point_logits)
    if pairwise:
        log_same = torch.logaddexp(fg[:, :, None] + fg[:, None, :], bg[:, :, None] + bg[:, None, :])
    else:
        log_same = torch.logaddexp(2 * fg, 2 * bg)[:, None, :].expand_as(adjacency)
    a = adjacency.to(point_logits.dtype)
    return -(log_same * a * (1 - weights)[:, None, None]).sum() / a.sum()
