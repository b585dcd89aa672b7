"""CondInst (Tian, Shen, Chen, ECCV 2020) with FCOS (Tian et al., ICCV 2019) as the base network of BoxInst (Tian
et al., CVPR 2021) and LWSIS (Li et al., AAAI 2023, arXiv 2212.03504, §3.1). Plain ``nn.Module``s, no Lightning.

Library blocks: the ResNet backbone is timm's (``features_only``, res3-res5, ImageNet init in the paper; random here;
the bottlenecks stride in their 1x1 conv as detectron2's MSRA ResNet, ``stride_in_3x3`` is timm's layout),
the FPN and its P6/P7 block are torchvision's (``FeaturePyramidNetwork`` + ``LastLevelP6P7`` fed by P5, the
detectron2 / AdelaiDet ``LastLevelP6P7(..., "p5")`` layout). Written by hand (no library has them): the FCOS head with
its per-level learnable scales and the CondInst controller, the mask branch, the dynamic mask head with relative
coordinates and aligned-bilinear upsampling (AdelaiDet ``adet/modeling/condinst/{mask_branch,dynamic_mask_head}.py``,
``adet/utils/comm.py: aligned_bilinear``; facts only, the code is reimplemented).

Sizes (the official ``configs/BoxInst/Base-BoxInst-nuscenes.yaml``): stated once in :mod:`zoo.models.lwsis.sizes`.

Shapes: images ``[B, 3, H, W]`` float RGB in 0..255 (normalised inside with the detectron2 MSRA pixel mean / std);
FPN levels P3..P7 at strides 8..128; mask features ``[B, C_mask, H/8, W/8]``; mask logits at stride 4.
"""

from __future__ import annotations

import math
from itertools import pairwise

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork, batched_nms
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

__all__ = [
    "CondInst",
    "DynamicMaskHead",
    "FCOSHead",
    "MaskBranch",
    "aligned_bilinear",
    "compute_locations",
    "num_dynamic_params",
]

STRIDES = (8, 16, 32, 64, 128)
SIZES_OF_INTEREST = (64, 128, 256, 512)  # FCOS level ranges; the last level is unbounded
PIXEL_MEAN = (123.675, 116.28, 103.53)  # detectron2 MSRA ResNet, RGB order here
PIXEL_STD = (58.395, 57.12, 57.375)


def num_dynamic_params(in_channels: int, channels: int, layers: int) -> int:
    """Parameters the controller emits per instance: ``layers`` 1x1 convs (in+2 -> ch -> ... -> 1), weights + biases.
    BoxInst: (16+2)·8 + 8·8 + 8·1 = 216 weights + 8 + 8 + 1 biases = 233."""
    dims = [in_channels + 2] + [channels] * (layers - 1) + [1]
    return sum(a * b + b for a, b in pairwise(dims))


def aligned_bilinear(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample ``[N, C, h, w]`` by an integer ``factor`` to ``[N, C, factor·h, factor·w]`` keeping the input grid's
    samples on the output grid (CondInst §3.3, AdelaiDet ``aligned_bilinear``): replicate-pad one row/column at the
    bottom/right, bilinear resize to ``factor·h + 1`` with ``align_corners=True`` (input j -> output factor·j), shift
    by ``factor // 2`` (replicate pad at the top/left) and crop, so output k samples input (k − factor//2) / factor."""
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    x = F.interpolate(x, size=(factor * h + 1, factor * w + 1), mode="bilinear", align_corners=True)
    x = F.pad(x, (factor // 2, 0, factor // 2, 0), mode="replicate")
    return x[:, :, : factor * h, : factor * w]


def compute_locations(h: int, w: int, stride: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Image coordinates ``[h·w, 2]`` (x, y) of the centres of a stride-``stride`` feature map's cells,
    ``(i·stride + stride // 2)`` (FCOS)."""
    xs = torch.arange(0, w * stride, stride, device=device, dtype=dtype)
    ys = torch.arange(0, h * stride, stride, device=device, dtype=dtype)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], 1) + stride // 2


class Scale(nn.Module):
    """A learnable scalar per FPN level (FCOS box regression)."""

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x):
        return x * self.scale


def _tower(channels: int, n: int, gn_groups: int) -> nn.Sequential:
    layers = []
    for _ in range(n):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(gn_groups, channels), nn.ReLU()]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """FCOS head shared over P3..P7: a classification tower and a box tower (``tower`` × conv3x3 + GN + ReLU each),
    class logits (prior 0.01), ltrb distances (``relu(scale_l · x) · stride``, FCOS "norm_reg_targets" as AdelaiDet;
    ``box_activation="exp"``: ``exp(scale_l · x) · stride``, the FCOS paper's original form, which starts every box at
    one stride per side and cannot die, used by the short CPU demo from random init), centerness on the box tower,
    and CondInst's controller (a 3x3 conv on the box tower emitting the dynamic-head parameters)."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        tower: int,
        num_params: int,
        num_levels: int = 5,
        gn_groups: int = 32,
        box_activation: str = "relu",
    ):
        super().__init__()
        if box_activation not in ("relu", "exp"):
            raise ValueError(f"box_activation must be 'relu' (AdelaiDet) or 'exp' (FCOS paper), got {box_activation!r}")
        self.box_activation = box_activation
        self.cls_tower = _tower(channels, tower, gn_groups)
        self.bbox_tower = _tower(channels, tower, gn_groups)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(channels, 1, 3, padding=1)
        self.controller = nn.Conv2d(channels, num_params, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, feats: list[torch.Tensor], strides=STRIDES):
        """-> per level: logits ``[B, K, h, w]``, ltrb ``[B, 4, h, w]`` (pixels), centerness ``[B, 1, h, w]``,
        controller ``[B, P, h, w]``."""
        logits, reg, ctr, params = [], [], [], []
        for lvl, x in enumerate(feats):
            c, b = self.cls_tower(x), self.bbox_tower(x)
            logits.append(self.cls_logits(c))
            ctr.append(self.ctrness(b))
            r = self.scales[lvl](self.bbox_pred(b))
            r = F.relu(r) if self.box_activation == "relu" else torch.exp(r.clamp(max=8.0))
            reg.append(r * strides[lvl])
            params.append(self.controller(b))
        return logits, reg, ctr, params


class MaskBranch(nn.Module):
    """CondInst mask branch: P3, P4, P5 each -> conv3x3 + BN + ReLU, aligned-bilinear upsampled to P3 and summed,
    ``convs`` × (conv3x3 + BN + ReLU), conv1x1 -> ``out`` channels. Output stride 8."""

    def __init__(self, in_ch: int, ch: int, convs: int, out: int):
        super().__init__()

        def cbr(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.refine = nn.ModuleList(cbr(in_ch, ch) for _ in range(3))
        self.tower = nn.Sequential(*[cbr(ch, ch) for _ in range(convs)], nn.Conv2d(ch, out, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.refine[0](feats[0])
        for i in (1, 2):
            y = self.refine[i](feats[i])
            f = x.shape[-1] // y.shape[-1] if y.shape[-1] else 1
            y = aligned_bilinear(y, max(f, 1))[:, :, : x.shape[-2], : x.shape[-1]]
            if y.shape[-2:] != x.shape[-2:]:  # odd sizes: pad the upsampled map (replicate) to P3's size
                y = F.pad(y, (0, x.shape[-1] - y.shape[-1], 0, x.shape[-2] - y.shape[-2]), mode="replicate")
            x = x + y
        return self.tower(x)


class DynamicMaskHead(nn.Module):
    """CondInst's dynamic mask head: per instance, ``layers`` 1x1 convs whose weights come from the controller,
    applied to the mask features concatenated with relative coordinates ((instance location − pixel location) /
    size of interest of the instance's FPN level); ReLU between layers; one output logit map at stride 8, then
    aligned-bilinear ×2 to stride 4 (``mask_out_stride``). No parameters of its own."""

    def __init__(self, in_channels: int, channels: int, layers: int, mask_stride: int = 8, out_stride: int = 4):
        super().__init__()
        self.in_channels, self.channels, self.layers = in_channels, channels, layers
        dims = [in_channels + 2] + [channels] * (layers - 1) + [1]
        self.weight_nums = [a * b for a, b in pairwise(dims)]
        self.bias_nums = dims[1:]
        self.dims = dims
        self.num_params = sum(self.weight_nums) + sum(self.bias_nums)
        self.mask_stride, self.out_stride = mask_stride, out_stride

    def forward(
        self,
        mask_feats: torch.Tensor,
        params: torch.Tensor,
        im_inds: torch.Tensor,
        locations: torch.Tensor,
        soi: torch.Tensor,
    ) -> torch.Tensor:
        """``mask_feats [B, C, h, w]``; per instance ``params [R, P]``, image index ``im_inds [R]``, location
        ``locations [R, 2]`` (image px), size of interest ``soi [R]`` -> mask logits ``[R, 1, 2h, 2w]`` (stride 4)."""
        r = params.shape[0]
        _, c, h, w = mask_feats.shape
        if r == 0:
            f = self.mask_stride // self.out_stride
            return mask_feats.new_zeros(0, 1, h * f, w * f)
        grid = compute_locations(h, w, self.mask_stride, mask_feats.device, mask_feats.dtype)  # [hw, 2]
        rel = (locations[:, None, :] - grid[None]) / soi[:, None, None]  # [R, hw, 2]
        ws = torch.split(params, self.weight_nums + self.bias_nums, dim=1)
        n = len(self.weight_nums)
        # The first layer acts on [rel; F] (CondInst concatenates them). It is applied as W_rel·rel + W_F·F: the mask
        # features F are one map per image, multiplied once by all that image's instances' W_F stacked, instead of
        # being copied once per instance (100 detections: 100 copies of F). Same sums, in another order.
        w0 = ws[0].reshape(r, self.dims[1], self.dims[0])
        x = torch.baddbmm(ws[n][:, :, None], w0[:, :, :2], rel.transpose(1, 2).to(mask_feats.dtype))
        feats = mask_feats.reshape(-1, c, h * w)
        for b in im_inds.unique().tolist():
            sel = (im_inds == b).nonzero()[:, 0]
            x.index_add_(0, sel, (w0[sel, :, 2:].reshape(-1, c) @ feats[b]).reshape(sel.numel(), -1, h * w))
        for i in range(n):
            if i:
                x = torch.baddbmm(ws[n + i][:, :, None], ws[i].reshape(r, self.dims[i + 1], self.dims[i]), x)
            if i < n - 1:
                x = F.relu(x)
        logits = x.reshape(r, 1, h, w)
        return aligned_bilinear(logits, self.mask_stride // self.out_stride)


class CondInst(nn.Module):
    """ResNet + FPN (P3-P7) + FCOS head with controller + mask branch + dynamic mask head.

    ``forward(images)`` returns the raw head outputs (training); :meth:`predict` adds FCOS post-processing and the
    masks of the kept detections (inference: the same network, LWSIS adds nothing at test time).
    """

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 10,
        fpn: int = 256,
        tower: int = 4,
        mask_ch: int = 128,
        mask_convs: int = 4,
        mask_out: int = 16,
        dyn_ch: int = 8,
        dyn_layers: int = 3,
        backbone_channels: tuple[int, ...] | None = None,
        stem_width: int = 64,
        gn_groups: int = 32,
        freeze_at: int = 2,
        frozen_bn: bool = True,
        num_levels: int = 5,
        box_activation: str = "relu",
        stride_in_3x3: bool = False,
    ):
        super().__init__()
        name = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101"}.get(depth)
        if name is None:
            raise ValueError(f"depth must be 18, 34, 50 or 101, got {depth}")
        kw = {}
        if backbone_channels is not None:  # a narrower ResNet of the same layout (tests, CPU demo)
            kw = {"channels": tuple(backbone_channels), "stem_width": stem_width}
        self.backbone = timm.create_model(name, pretrained=False, features_only=True, out_indices=(2, 3, 4), **kw)
        if depth >= 50 and not stride_in_3x3:
            # detectron2's MSRA ResNet (RESNETS.STRIDE_IN_1X1 = True, the release's config): a downsampling bottleneck
            # strides in its first 1x1 conv; timm / torchvision stride in the 3x3 (``stride_in_3x3``)
            for layer in (self.backbone.layer2, self.backbone.layer3, self.backbone.layer4):
                blk = layer[0]
                blk.conv1.stride, blk.conv2.stride = blk.conv2.stride, (1, 1)
        if frozen_bn:  # detectron2 FrozenBN: BN statistics and affine fixed (buffers, not parameters)
            self.backbone = timm.layers.freeze_batch_norm_2d(self.backbone)
        for mod_name in ("conv1", "bn1", "layer1")[: {0: 0, 1: 2, 2: 3}.get(freeze_at, 3)]:
            for p in getattr(self.backbone, mod_name).parameters():
                p.requires_grad_(False)
        in_chs = self.backbone.feature_info.channels()
        self.num_levels = num_levels
        self.fpn = FeaturePyramidNetwork(in_chs, fpn, extra_blocks=LastLevelP6P7(fpn, fpn) if num_levels == 5 else None)
        self.dynamic = DynamicMaskHead(mask_out, dyn_ch, dyn_layers)
        self.head = FCOSHead(fpn, num_classes, tower, self.dynamic.num_params, num_levels, gn_groups, box_activation)
        self.mask_branch = MaskBranch(fpn, mask_ch, mask_convs, mask_out)
        self.num_classes = num_classes
        self.strides = STRIDES[:num_levels]
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    def soi(self) -> torch.Tensor:
        """Size of interest per level, the relative-coordinate normaliser (AdelaiDet: ``sizes_of_interest`` + the
        last one doubled)."""
        s = list(SIZES_OF_INTEREST[: self.num_levels - 1]) + [SIZES_OF_INTEREST[self.num_levels - 2] * 2]
        return torch.tensor(s, dtype=torch.float32)

    def features(self, images: torch.Tensor):
        x = (images - self.pixel_mean) / self.pixel_std
        feats = self.backbone(x)
        out = self.fpn({str(i): f for i, f in enumerate(feats)})
        return list(out.values())[: self.num_levels]

    def forward(self, images: torch.Tensor) -> dict:
        """``images [B, 3, H, W]`` (0..255 RGB, H and W multiples of 32) -> dict of per-level lists ``logits``,
        ``reg``, ``ctr``, ``params`` and ``mask_feats [B, C, H/8, W/8]``, ``p3`` (the FPN P3 map, for GCR)."""
        feats = self.features(images)
        logits, reg, ctr, params = self.head(feats, self.strides)
        return {
            "logits": logits,
            "reg": reg,
            "ctr": ctr,
            "params": params,
            "mask_feats": self.mask_branch(feats[:3]),
            "p3": feats[0],
        }

    @torch.no_grad()
    def predict(
        self,
        images: torch.Tensor,
        score_thresh: float = 0.05,
        pre_nms_topk: int = 1000,
        nms_thresh: float = 0.6,
        max_dets: int = 100,
        mask_thresh: float = 0.5,
        out: dict | None = None,
    ):
        """Detections per image: ``boxes [n, 4]`` (x1, y1, x2, y2), ``scores [n]`` (sqrt(cls · centerness), FCOS
        "thresh_with_ctr"), ``labels [n]``, ``masks [n, H, W]`` bool and ``mask_probs`` (same, float)."""
        out = self(images) if out is None else out
        _, _, h, w = images.shape
        soi = self.soi().to(images.device)
        results = []
        flat = flatten_outputs(out, self.strides)
        for i in range(images.shape[0]):
            score = torch.sqrt(flat["logits"][i].sigmoid() * flat["ctr"][i].sigmoid()[:, None])  # [L, K]
            keep = score > score_thresh
            cand = keep.nonzero()
            s = score[keep]
            if s.numel() > pre_nms_topk:
                s, idx = s.topk(pre_nms_topk)
                cand = cand[idx]
            loc, cls = cand[:, 0], cand[:, 1]
            xy, ltrb = flat["locations"][loc], flat["reg"][i][loc]
            boxes = torch.cat([xy - ltrb[:, :2], xy + ltrb[:, 2:]], 1)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            k = batched_nms(boxes, s, cls, nms_thresh)[:max_dets]
            loc, cls, s, boxes = loc[k], cls[k], s[k], boxes[k]
            logits = self.dynamic(
                out["mask_feats"],
                flat["params"][i][loc],
                torch.full_like(loc, i),
                flat["locations"][loc],
                soi[flat["level"][loc]],
            )
            probs = (
                F.interpolate(logits.sigmoid(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
                if logits.shape[0]
                else logits.new_zeros(0, h, w)
            )
            results.append(
                {"boxes": boxes, "scores": s, "labels": cls, "masks": probs > mask_thresh, "mask_probs": probs}
            )
        return results


def flatten_outputs(out: dict, strides=STRIDES) -> dict:
    """Per-level head outputs -> flat per-location tensors: ``logits [B, L, K]``, ``reg [B, L, 4]``, ``ctr [B, L]``,
    ``params [B, L, P]``, ``locations [L, 2]``, ``level [L]`` (L = Σ h·w over levels, level-major)."""

    def cat(key):
        return torch.cat([t.flatten(2).transpose(1, 2) for t in out[key]], 1)

    locs, level = [], []
    for lvl, t in enumerate(out["logits"]):
        h, w = t.shape[-2:]
        locs.append(compute_locations(h, w, strides[lvl], t.device, t.dtype))
        level.append(torch.full((h * w,), lvl, dtype=torch.long, device=t.device))
    return {
        "logits": cat("logits"),
        "reg": cat("reg"),
        "ctr": cat("ctr")[..., 0],
        "params": cat("params"),
        "locations": torch.cat(locs),
        "level": torch.cat(level),
    }
