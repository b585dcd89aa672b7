"""CenterPoint head (Yin, Zhou, Krähenbühl, CVPR 2021, §3-4): heatmap of object centres on the BEV map + dense box
regression at the peaks. As OpenPCDet's ``CenterHead`` (``pcdet/models/dense_heads/center_head.py``,
``model_utils/centernet_utils.py``, ``utils/loss_utils.py``) as SSDA3D's ``ssda3d_centerpoint.yaml`` configures it:

- shared 3x3 conv (in -> 64, bias before BN) + BN + ReLU; separate heads center (2), center_z (1), dim (3, log),
  rot (2: cos, sin), hm (num_classes), each ``num_conv - 1`` x (Conv3x3 + BN + ReLU) + Conv3x3; hm bias -2.19;
- targets (:func:`centerpoint_targets`): a Gaussian on the heatmap per box, radius from CenterNet's formula
  (:func:`gaussian_radius`, min_overlap 0.1) clamped to >= 2 cells, sigma = diameter / 6; regression targets at the
  centre cell: sub-cell offset, z, log(dx, dy, dz), cos(yaw), sin(yaw);
- loss (:meth:`CenterHead.loss`): CenterNet focal loss on the clamped sigmoid heatmap (weight 1) + L1 on the masked
  regression (weight 0.25, code weights (1, 1, 1, 1, 1, 1, 0.2, 0.2)), both normalised by the number of objects;
- decode (:meth:`CenterHead.decode`): top-K heatmap peaks, score > threshold, centre inside the limit range, rotated
  BEV NMS (``zoo.nn.boxes3d.rotated_nms``) with pre/post caps.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from zoo.errors import UserError

__all__ = [
    "gaussian_radius",
    "draw_gaussian",
    "centerpoint_targets",
    "focal_loss_centernet",
    "CenterHead",
    "HEAD_ORDER",
]

HEAD_ORDER = ("center", "center_z", "dim", "rot")
HEAD_CHANNELS = {"center": 2, "center_z": 1, "dim": 3, "rot": 2}


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float = 0.5) -> torch.Tensor:
    """CenterNet's radius (Law & Deng's CornerNet formula as CenterNet/CenterPoint code it): the smallest of the three
    quadratic roots for which a box shifted by r keeps IoU >= ``min_overlap`` with the ground truth (in cells)."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def draw_gaussian(heatmap: torch.Tensor, cx: int, cy: int, radius: int) -> None:
    """heatmap[H, W] = max(heatmap, Gaussian(sigma = (2r + 1) / 6) centred on cell (cx, cy)), clipped at the border."""
    d = 2 * radius + 1
    sigma = d / 6
    r = torch.arange(-radius, radius + 1, dtype=heatmap.dtype, device=heatmap.device)
    g = torch.exp(-(r[None, :] ** 2 + r[:, None] ** 2) / (2 * sigma * sigma))
    g[g < torch.finfo(g.dtype).eps * g.max()] = 0
    h, w = heatmap.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return
    region = heatmap[cy - top : cy + bottom, cx - left : cx + right]
    torch.maximum(region, g[radius - top : radius + bottom, radius - left : radius + right], out=region)


def centerpoint_targets(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    feature_size: tuple[int, int],
    point_cloud_range: Sequence[float],
    voxel_size: Sequence[float],
    stride: float,
    gaussian_overlap: float = 0.1,
    min_radius: int = 2,
    max_objs: int = 500,
):
    """Targets of one frame (OpenPCDet ``assign_target_of_single_head``).

    boxes [M, 7] (x, y, z, dx, dy, dz, yaw), labels [M] in [0, num_classes); feature_size (H, W) of the head's map.
    -> heatmap [num_classes, H, W], target [max_objs, 8] (off_x, off_y, z, log dx, log dy, log dz, cos, sin),
    index [max_objs] (flat cell y * W + x), mask [max_objs] (1 for a real object).
    """
    h, w = feature_size
    heatmap = boxes.new_zeros(num_classes, h, w)
    target = boxes.new_zeros(max_objs, 8)
    index = torch.zeros(max_objs, dtype=torch.long, device=boxes.device)
    mask = torch.zeros(max_objs, dtype=torch.bool, device=boxes.device)
    if boxes.shape[0] == 0:
        return heatmap, target, index, mask
    cell_x, cell_y = voxel_size[0] * stride, voxel_size[1] * stride
    cx = ((boxes[:, 0] - point_cloud_range[0]) / cell_x).clamp(0, w - 0.5)
    cy = ((boxes[:, 1] - point_cloud_range[1]) / cell_y).clamp(0, h - 0.5)
    dx, dy = boxes[:, 3] / cell_x, boxes[:, 4] / cell_y
    radius = gaussian_radius(dx, dy, gaussian_overlap).int().clamp_min(min_radius)
    k = 0
    for i in range(boxes.shape[0]):
        if k >= max_objs:
            break
        if boxes[i, 3] <= 0 or boxes[i, 4] <= 0 or not (0 <= int(labels[i]) < num_classes):
            continue
        ix, iy = int(cx[i]), int(cy[i])
        draw_gaussian(heatmap[int(labels[i])], ix, iy, int(radius[i]))
        index[k] = iy * w + ix
        mask[k] = True
        target[k, 0] = cx[i] - ix
        target[k, 1] = cy[i] - iy
        target[k, 2] = boxes[i, 2]
        target[k, 3:6] = boxes[i, 3:6].log()
        target[k, 6] = torch.cos(boxes[i, 6])
        target[k, 7] = torch.sin(boxes[i, 6])
        k += 1
    return heatmap, target, index, mask


def focal_loss_centernet(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (CenterNet Eq. 1, alpha 2, beta 4) on probabilities ``pred``, normalised
    by the number of peaks (cells where gt == 1)."""
    pos = gt.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - gt) ** 4 * neg
    num_pos = pos.sum()
    if num_pos == 0:
        return -neg_loss.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos


class SeparateHead(nn.Module):
    """One 3x3-conv branch per regression target (OpenPCDet ``SeparateHead``)."""

    def __init__(
        self, channels: int, heads: dict[str, int], num_conv: int = 2, use_bias: bool = True, init_bias: float = -2.19
    ):
        super().__init__()
        self.names = list(heads)
        for name, out in heads.items():
            layers: list[nn.Module] = []
            for _ in range(num_conv - 1):
                layers += [
                    nn.Conv2d(channels, channels, 3, padding=1, bias=use_bias),
                    nn.BatchNorm2d(channels),
                    nn.ReLU(),
                ]
            layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=True))
            branch = nn.Sequential(*layers)
            if name == "hm":
                nn.init.constant_(branch[-1].bias, init_bias)
            else:
                for m in branch.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight)
                        if m.bias is not None:
                            nn.init.zeros_(m.bias)
            setattr(self, name, branch)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name)(x) for name in self.names}


class CenterHead(nn.Module):
    """CenterPoint's single-group head: [B, in_channels, H, W] -> dict of maps (hm [B, K, H, W], center [B, 2, H, W],
    center_z [B, 1, H, W], dim [B, 3, H, W], rot [B, 2, H, W]).

    ``stride`` is the map's stride in voxels (cells of ``voxel_size``), used to place targets and decode boxes.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int = 1,
        shared_channels: int = 64,
        num_conv: int = 2,
        point_cloud_range: Sequence[float] = (-54.0, -54.0, -5.0, 54.0, 54.0, 4.8),
        voxel_size: Sequence[float] = (0.075, 0.075, 0.2),
        stride: float = 8,
        gaussian_overlap: float = 0.1,
        min_radius: int = 2,
        max_objs: int = 500,
        cls_weight: float = 1.0,
        loc_weight: float = 0.25,
        code_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2),
        score_threshold: float = 0.1,
        nms_threshold: float = 0.2,
        nms_pre: int = 1000,
        nms_post: int = 83,
        max_per_frame: int = 500,
        post_center_range: Sequence[float] = (-61.2, -61.2, -10.0, 61.2, 61.2, 11.8),
    ):
        super().__init__()
        if num_classes < 1:
            raise UserError(f"num_classes must be >= 1, got {num_classes}")
        if len(code_weights) != 8:
            raise UserError(
                f"code_weights needs 8 numbers (x, y offsets, z, 3 log sizes, cos, sin), got {list(code_weights)}"
            )
        self.num_classes = num_classes
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.voxel_size = [float(v) for v in voxel_size]
        self.stride = float(stride)
        self.gaussian_overlap, self.min_radius, self.max_objs = gaussian_overlap, int(min_radius), int(max_objs)
        self.cls_weight, self.loc_weight = float(cls_weight), float(loc_weight)
        self.register_buffer("code_weights", torch.tensor(code_weights, dtype=torch.float32), persistent=False)
        self.score_threshold, self.nms_threshold = float(score_threshold), float(nms_threshold)
        self.nms_pre, self.nms_post, self.max_per_frame = int(nms_pre), int(nms_post), int(max_per_frame)
        self.post_center_range = [float(v) for v in post_center_range]
        self.shared_conv = nn.Sequential(
            nn.Conv2d(in_channels, shared_channels, 3, padding=1, bias=True), nn.BatchNorm2d(shared_channels), nn.ReLU()
        )
        self.heads = SeparateHead(shared_channels, {**HEAD_CHANNELS, "hm": num_classes}, num_conv=num_conv)
        self.skipped_boxes = 0  # boxes with dx or dy <= 0 left out of the targets so far (warned about)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.shared_conv(x))

    # ------------------------------------------------------------------------------------------ training
    def targets(self, boxes: list[torch.Tensor], labels: list[torch.Tensor], feature_size: tuple[int, int]):
        """Per-frame :func:`centerpoint_targets`, stacked. Boxes with ``dx <= 0`` or ``dy <= 0`` are skipped, as the
        release's ``assign_target_of_single_head`` does, and counted: a ``UserWarning`` names the batch's count and
        the running total (``skipped_boxes``)."""
        bad = sum(int(((b[:, 3] <= 0) | (b[:, 4] <= 0)).sum()) for b in boxes if b.numel())
        if bad:
            self.skipped_boxes += bad
            warnings.warn(
                f"CenterPoint targets: skipped {bad} of {sum(len(b) for b in boxes)} boxes in this batch "
                f"({self.skipped_boxes} so far) with a non-positive size (dx or dy <= 0); fix the dataset's "
                "boxes",
                UserWarning,
                stacklevel=2,
            )
        out = [
            centerpoint_targets(
                b.detach().float(),
                lab,
                self.num_classes,
                feature_size,
                self.point_cloud_range,
                self.voxel_size,
                self.stride,
                self.gaussian_overlap,
                self.min_radius,
                self.max_objs,
            )
            for b, lab in zip(boxes, labels)
        ]
        return tuple(torch.stack(t) for t in zip(*out))

    def loss(
        self, preds: dict[str, torch.Tensor], boxes: list[torch.Tensor], labels: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """-> {"loss", "hm_loss", "loc_loss"}: focal(sigmoid(hm) clamped to [1e-4, 1 - 1e-4]) x cls_weight
        + sum_d code_weight_d x L1_d / num objects x loc_weight (OpenPCDet ``RegLossCenterNet``; NaN target elements
        excluded, as its ``_reg_loss``)."""
        hm = preds["hm"]
        heatmap, target, index, mask = self.targets(boxes, labels, tuple(hm.shape[-2:]))
        heatmap, target, index, mask = (t.to(hm.device) for t in (heatmap, target, index, mask))
        prob = hm.float().sigmoid().clamp(1e-4, 1 - 1e-4)
        hm_loss = focal_loss_centernet(prob, heatmap) * self.cls_weight
        reg = torch.cat([preds[n] for n in HEAD_ORDER], dim=1).float()  # [B, 8, H, W]
        b, c = reg.shape[:2]
        reg = reg.view(b, c, -1).gather(2, index[:, None, :].expand(b, c, index.shape[1])).transpose(1, 2)  # [B, M, 8]
        # a NaN target element (log of a negative dz) is left out, as the release's _reg_loss does (isnotnan)
        m = mask[..., None].float() * (~torch.isnan(target)).float()
        target = torch.nan_to_num(target, nan=0.0)
        num = mask.sum().clamp_min(1).float()
        l1 = (torch.abs(reg - target) * m).sum(dim=(0, 1)) / num  # per code dim
        loc_loss = (l1 * self.code_weights.to(l1)).sum() * self.loc_weight
        return {"loss": hm_loss + loc_loss, "hm_loss": hm_loss.detach(), "loc_loss": loc_loss.detach()}

    # ------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def decode(self, preds: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Maps -> per frame ``{"boxes": [K, 7], "scores": [K], "labels": [K]}`` (labels in [0, num_classes))."""
        from zoo.nn.boxes3d import rotated_nms

        hm = preds["hm"].float().sigmoid()
        b, k, h, w = hm.shape
        cell_x, cell_y = self.voxel_size[0] * self.stride, self.voxel_size[1] * self.stride
        top = min(self.max_per_frame, k * h * w)
        scores, flat = hm.view(b, -1).topk(top, dim=1)
        labels = torch.div(flat, h * w, rounding_mode="floor")
        cell = flat % (h * w)
        ys = torch.div(cell, w, rounding_mode="floor").float()
        xs = (cell % w).float()

        def at(name):
            m = preds[name].float()
            return m.view(b, m.shape[1], -1).gather(2, cell[:, None, :].expand(b, m.shape[1], top)).transpose(1, 2)

        center, z, dim, rot = at("center"), at("center_z"), at("dim").exp(), at("rot")
        x = (xs + center[..., 0]) * cell_x + self.point_cloud_range[0]
        y = (ys + center[..., 1]) * cell_y + self.point_cloud_range[1]
        yaw = torch.atan2(rot[..., 1], rot[..., 0])
        boxes = torch.cat([x[..., None], y[..., None], z, dim, yaw[..., None]], dim=-1)
        lo = torch.tensor(self.post_center_range[:3], device=boxes.device)
        hi = torch.tensor(self.post_center_range[3:], device=boxes.device)
        out = []
        for i in range(b):
            keep = (scores[i] > self.score_threshold) & ((boxes[i, :, :3] >= lo) & (boxes[i, :, :3] <= hi)).all(1)
            bx, sc, lb = boxes[i][keep], scores[i][keep], labels[i][keep]
            order = sc.argsort(descending=True)[: self.nms_pre]
            bx, sc, lb = bx[order], sc[order], lb[order]
            if bx.shape[0]:
                sel = rotated_nms(bx, sc, self.nms_threshold)[: self.nms_post]
                bx, sc, lb = bx[sel], sc[sel], lb[sel]
            out.append({"boxes": bx, "scores": sc, "labels": lb})
        return out
