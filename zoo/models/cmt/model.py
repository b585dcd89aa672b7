"""CMT, the Cross Modal Transformer (Yan, Liu, Li, Zhang, Chen, Wang, Zhang; ICCV 2023, arXiv 2301.01283).

Architecture of ``junjie18/CMT`` (``projects/mmdet3d_plugin/models/dense_heads/cmt_head.py``,
``.../utils/cmt_transformer.py``, ``.../detectors/cmt.py``).

- Image branch (paper §3.1): a timm backbone (ResNet-50 or VoVNet-99-eSE = timm ``ese_vovnet99b``) with the strides-16
  and -32 stages, the ``CPFPN`` neck (1x1 laterals, top-down sum, a 3x3 output conv on level 0 only); only the
  stride-16 level becomes image tokens ``[B, V*H*W, C]``.
- LiDAR branch: voxels (mean of the points of each voxel) -> mmdet3d ``SparseEncoder`` on spconv (basic blocks,
  height compression 128 x 2 -> 256 ch, stride 8), or the dynamic pillar net of :mod:`zoo.nn.pillars` (the 0.2 m
  pillar variant; the CPU path); then SECOND + SECONDFPN (:class:`zoo.nn.pillars.BEVBackbone`) and the head's shared
  3x3 conv -> BEV tokens ``[B, H*W, C]``.
- Coordinates encoding module (paper §3.2, Eq. 1-4): image tokens get ``rv_embedding`` of D camera-ray points
  back-projected with ``inv(lidar2img)`` and normalised to the point-cloud range; BEV tokens get ``bev_embedding`` of
  the sine encoding of their cell centres (:func:`pos2embed`, with the released narrow-band ``dim_t`` as a flag).
- Position-guided queries (§3.3): 900 learnable anchors in [0, 1]^3; query PE = BEV PE of (x, y) + the image PE of
  the ray through the anchor's projection, summed over the views that see it (visibility mask). As released, the
  anchors (trainable, so they leave [0, 1] during training) are clamped into [0, 1] before both query encodings
  (``clamp_query_anchors``).
- Decoder (§3.3): 6 post-norm DETR layers (self-attn -> cross-attn -> FFN) with ``F.scaled_dot_product_attention``;
  memory = BEV tokens ++ image tokens; a shared final LayerNorm on every layer's output; anchors never refined.
- Head: ``SeparateTaskHead`` with one group per decoder layer (grouped Conv1d over the query axis) predicting
  center (2), height (1), dim (3), rot (2), vel (2), cls (10); see :func:`encode_boxes` for the box code quirk.

CMT-L (``modalities="lidar"``) and CMT-C (``"camera"``) are the same network with one branch not built (CMT-C
keeps the BEV sine PE of its queries, as released); a fusion
model can also run on a subset of its branches (``forward(..., modalities=...)``), the tokens of the other one are
then left out of the memory and of the query PE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError, check_choice
from zoo.nn.pillars import BEVBackbone, DynamicPillarVFE, flatten_batch, grid_size, scatter_to_bev
from zoo.nuscenes import DETECTION_CLASSES

CLASSES = DETECTION_CLASSES
MODALITIES = ("fusion", "camera", "lidar")
# mmdet3d SparseEncoder encoder_channels of every released config (stage i, block j -> output channels)
SPARSE_ENCODER_CHANNELS = ((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128))
HEADS = (("center", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2))  # + ("cls_logits", num_classes)


# ================================================================================================ box code
def encode_boxes(boxes: torch.Tensor, quirk: bool = True) -> torch.Tensor:
    """Boxes [..., 9] (x, y, z gravity centre, dx, dy, dz, yaw, vx, vy) -> regression code [..., 10].

    ``quirk=True`` (released ``normalize_bbox``): (cx, cy, log dx, log dy, cz, log dz, sin, cos, vx, vy). The head's
    prediction vector is (center(2), height(1), dim(3), rot(2), vel(2)) compared element-wise to this code, so the
    sigmoid-bounded "height" slot regresses log dx and dim[1] regresses cz; :func:`decode_boxes` reads it back the
    same way (self-consistent; needed to load the official weights). ``quirk=False``: (cx, cy, cz, log dx, log dy,
    log dz, sin, cos, vx, vy), the slots mean what their names say.
    """
    x, y, z, dx, dy, dz, yaw = (boxes[..., i] for i in range(7))
    vel = boxes[..., 7:9] if boxes.shape[-1] >= 9 else boxes.new_zeros(*boxes.shape[:-1], 2)
    if quirk:
        parts = [x, y, dx.log(), dy.log(), z, dz.log()]
    else:
        parts = [x, y, z, dx.log(), dy.log(), dz.log()]
    return torch.cat([torch.stack(parts + [yaw.sin(), yaw.cos()], dim=-1), vel], dim=-1)


def decode_boxes(code: torch.Tensor, quirk: bool = True) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: code [..., 10] -> boxes [..., 9] (gravity centre, yaw = atan2(sin, cos))."""
    if quirk:
        x, y, ldx, ldy, z, ldz = (code[..., i] for i in range(6))
    else:
        x, y, z, ldx, ldy, ldz = (code[..., i] for i in range(6))
    yaw = torch.atan2(code[..., 6], code[..., 7])
    return torch.cat([torch.stack([x, y, z, ldx.exp(), ldy.exp(), ldz.exp(), yaw], dim=-1), code[..., 8:10]], dim=-1)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


# ============================================================================================ position codes
def pos2embed(pos: torch.Tensor, num_feats: int, narrow_band: bool = True, temperature: float = 10000.0):
    """Sine encoding of normalised (x, y) [..., 2] -> [..., 2 * num_feats], y part first (``cmt_head.pos2embed``).

    Angles ``2π p / dim_t_i``, sin on even i, cos on odd i (interleaved). ``narrow_band=True`` is the released
    ``dim_t_i = 1 + 2⌊i/2⌋ / N`` (the temperature argument is unused there: all periods lie between 1 and 2 in
    normalised units); ``False`` is DETR's ``T^(2⌊i/2⌋/N)``.
    """
    i = torch.arange(num_feats, dtype=torch.float32, device=pos.device)
    expo = 2 * torch.div(i, 2, rounding_mode="floor") / num_feats
    dim_t = 1 + expo if narrow_band else temperature**expo
    p = pos.float() * 2 * math.pi
    px = p[..., 0, None] / dim_t
    py = p[..., 1, None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=-1).flatten(-2)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=-1).flatten(-2)
    return torch.cat((py, px), dim=-1)


def bev_cell_centres(ny: int, nx: int, device=None) -> torch.Tensor:
    """Normalised centres of a ny x nx BEV map, row-major (h w): [ny*nx, 2] (x = (w+0.5)/nx, y = (h+0.5)/ny)."""
    ys, xs = torch.meshgrid(
        torch.arange(ny, device=device, dtype=torch.float32),
        torch.arange(nx, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([(xs + 0.5) / nx, (ys + 0.5) / ny], dim=-1).reshape(-1, 2)


def check_lidar2img(lidar2img: torch.Tensor, num_views: int | None = None) -> torch.Tensor:
    """[B, V, 4, 4] finite and invertible (else a UserError naming the view) -> its inverse (img2lidar)."""
    if lidar2img.dim() != 4 or lidar2img.shape[-2:] != (4, 4):
        raise UserError(
            f"lidar2img must be [B, V, 4, 4] (one 4x4 LiDAR->image matrix per view), got {tuple(lidar2img.shape)}"
        )
    if num_views is not None and lidar2img.shape[1] != num_views:
        raise UserError(
            f"the batch has {num_views} camera views but lidar2img has {lidar2img.shape[1]} matrices: "
            "every view needs its calibration (a missing view in the info file?)"
        )
    m = lidar2img.double()
    if not torch.isfinite(m).all():
        raise UserError("lidar2img holds NaN/inf entries: check the calibration (cam2img, lidar2cam) of the frame")
    inv, info = torch.linalg.inv_ex(m)
    cond = torch.linalg.cond(m[..., :3, :3]) if m.device.type != "meta" else None
    bad = (info != 0) | (~torch.isfinite(inv).all(dim=(-1, -2)))
    if cond is not None:
        bad = bad | (cond > 1e12) | ~torch.isfinite(cond)
    if bad.any():
        b, v = (int(i) for i in bad.nonzero()[0])
        raise UserError(
            f"lidar2img of frame {b}, view {v} is singular (not invertible): the camera-ray position "
            "encoding needs inv(lidar2img); rebuild it as [K 0; 0 1] @ lidar2cam from the info file"
        )
    return inv.to(lidar2img.dtype)


def camera_ray_points(
    lidar2img: torch.Tensor,
    feat_hw: tuple[int, int],
    pad_hw: tuple[int, int],
    depth_num: int,
    pc_range: Sequence[float],
    img2lidar: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalised 3D points along the camera ray of every image-feature cell (paper Eq. 1-2, ``CmtHead._rv_pe``).

    Cell (h, w) sits at pixel ``(u, v) = (w pad_w / W, h pad_h / H)`` (top-left, no +0.5); depths
    ``d_k = 1 + k (x_max - 1) / D``; ``P_k = inv(lidar2img) (u d_k, v d_k, d_k, 1)``, normalised by the range (no
    clamp). lidar2img [B, V, 4, 4] -> [B, V, H, W, D*3] (depth-major: x0 y0 z0 x1 ...).
    """
    H, W = feat_hw
    pad_h, pad_w = pad_hw
    dev, dt = lidar2img.device, torch.float32
    v = torch.arange(H, device=dev, dtype=dt) * pad_h / H
    u = torch.arange(W, device=dev, dtype=dt) * pad_w / W
    d = 1 + torch.arange(depth_num, device=dev, dtype=dt) * (pc_range[3] - 1) / depth_num
    vv, uu, dd = torch.meshgrid(v, u, d, indexing="ij")
    pix = torch.stack([uu * dd, vv * dd, dd, torch.ones_like(dd)], dim=-1)  # [H, W, D, 4]
    inv = img2lidar if img2lidar is not None else check_lidar2img(lidar2img)
    pts = torch.einsum("hwdo,bvco->bvhwdc", pix, inv.to(dt))[..., :3]
    lo = pts.new_tensor(pc_range[:3])
    hi = pts.new_tensor(pc_range[3:])
    pts = (pts - lo) / (hi - lo)
    return pts.flatten(-2)


def project_anchors(
    anchors: torch.Tensor,
    lidar2img: torch.Tensor,
    pad_hw: tuple[int, int],
    depth_num: int,
    pc_range: Sequence[float],
    img2lidar: torch.Tensor | None = None,
):
    """Anchors [B, Q, 3] (normalised) -> (ray points [B, V, Q, D*3], visibility [B, V, Q]) (``_rv_query_embed``).

    The anchor (in metres) is projected into every view; ``(u, v) = (x_c, y_c) / z_c`` with z_c guarded by ±1e-6
    (detached, as released); visible when ``0 <= u < pad_w``, ``0 <= v < pad_h`` and ``z_c > 0``; the D ray points
    through (u, v) are rebuilt and back-projected exactly as for the image tokens.
    """
    lo = anchors.new_tensor(pc_range[:3])
    hi = anchors.new_tensor(pc_range[3:])
    pts = anchors * (hi - lo) + lo
    pts = torch.cat([pts, torch.ones_like(pts[..., :1])], dim=-1)  # [B, Q, 4]
    proj = torch.einsum("bqd,bvcd->bvqc", pts, lidar2img.to(pts.dtype))
    z = proj[..., 2:3].detach()
    zpos = z > 0
    uv = proj[..., :2] / (z + zpos * 1e-6 - (~zpos) * 1e-6)
    pad_h, pad_w = pad_hw
    vis = (uv[..., 0] >= 0) & (uv[..., 0] < pad_w) & (uv[..., 1] >= 0) & (uv[..., 1] < pad_h) & zpos[..., 0]
    d = 1 + torch.arange(depth_num, device=pts.device, dtype=pts.dtype) * (pc_range[3] - 1) / depth_num
    pix = torch.cat(
        [
            uv[..., None, :] * d[:, None],
            d[:, None].expand(*uv.shape[:-1], depth_num, 1),
            torch.ones(*uv.shape[:-1], depth_num, 1, device=pts.device, dtype=pts.dtype),
        ],
        dim=-1,
    )
    inv = img2lidar if img2lidar is not None else check_lidar2img(lidar2img)
    back = torch.einsum("bvqdo,bvco->bvqdc", pix, inv.to(pts.dtype))[..., :3]
    back = (back - lo) / (hi - lo)
    return back.flatten(-2), vis


# ============================================================================================ image branch
class CPFPN(nn.Module):
    """PETR/CMT ``CPFPN``: 1x1 lateral convs (bias) to ``out_channels``, top-down nearest upsampling + sum, and a 3x3
    output conv on level 0 only (the other levels are their laterals). [B, C_i, H_i, W_i] -> list [B, C, H_i, W_i]."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        return [self.fpn_conv(lat[0])] + lat[1:]


class ImageBranch(nn.Module):
    """timm backbone (features_only, strides 16 and 32) + CPFPN; images [B, V, 3, H, W] -> stride-16 level
    [B, V, C, H/16, W/16] (the only level the head consumes).

    ``ese_every_block`` (VoVNet backbones): the release's VoVNet (DD3D's ``vovnet.py``, ``_OSA_module``) builds and
    applies its eSE attention in every OSA block (the ``SE`` flag it is given is unused), timm's ``ese_vovnet*`` only in
    the last block of each stage; True adds timm's ``EffectiveSEModule`` (same hard-sigmoid gate) to the other blocks,
    so the released checkpoints load; False is timm's architecture.

    ``norm_eval`` (the released configs' ``norm_eval=True`` for VoVNet and ResNet): the backbone's BatchNorm layers stay
    in eval mode while the model trains (running statistics frozen and used; their affine parameters still learn);
    False trains them as ordinary BatchNorm."""

    def __init__(
        self,
        backbone: str,
        out_indices: Sequence[int] = (3, 4),
        channels: int = 256,
        backbone_kwargs: dict | None = None,
        ese_every_block: bool = True,
        norm_eval: bool = True,
    ):
        super().__init__()
        import timm

        try:
            self.backbone = timm.create_model(
                backbone,
                pretrained=False,
                features_only=True,
                out_indices=tuple(out_indices),
                **(backbone_kwargs or {}),
            )
        except RuntimeError as e:
            raise UserError(
                f"img_backbone {backbone!r} is not a timm model ({e}); use e.g. resnet50 or ese_vovnet99b"
            ) from e
        if ese_every_block:
            self._add_ese_to_every_block()
        info = self.backbone.feature_info
        if info.reduction()[0] != 16:
            raise UserError(
                f"img_backbone {backbone!r}: out_indices {list(out_indices)} start at stride "
                f"{info.reduction()[0]}; CMT's image tokens are the stride-16 level (use the stride-16 "
                "and stride-32 stages)"
            )
        self.neck = CPFPN(info.channels(), channels)
        self.stride = 16
        self.norm_eval = norm_eval

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _add_ese_to_every_block(self):
        from timm.layers import EffectiveSEModule
        from timm.models.vovnet import OsaBlock

        blocks = [m for m in self.backbone.modules() if isinstance(m, OsaBlock)]
        ese = {type(b.attn) for b in blocks if b.attn is not None}
        if ese != {EffectiveSEModule}:  # not an eSE VoVNet (ResNet, or a VoVNet without / with another attention)
            return
        for block in blocks:
            if block.attn is None:
                block.attn = EffectiveSEModule(block.conv_concat.conv.out_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, v = images.shape[:2]
        feats = self.backbone(images.flatten(0, 1))
        x = self.neck(feats)[0]
        return x.view(b, v, *x.shape[1:])


# ============================================================================================ LiDAR branch
class SparseEncoder(nn.Module):
    """mmdet3d ``SparseEncoder`` (block_type basicblock) on spconv, as CMT's voxel configs: SubM(C->16) + BN + ReLU;
    encoder_channels ((16,16,32),(32,32,64),(64,64,128),(128,128)) = per stage two ``SparseBasicBlock`` (SubM 3x3x3,
    no bias, BN, residual) then a stride-2 SparseConv3d down to the next width (paddings 1, 1, (0,1,1)); conv_out
    SparseConv3d (3,1,1) stride (2,1,1) 128 ch; the z slices stacked into channels (41 z -> 2 slices -> 256 ch).
    forward(features [V, C], coords [V, 4] (b, z, y, x), batch_size) -> [B, 128 * nz_out, ny/8, nx/8]."""

    def __init__(self, in_channels: int, sparse_shape: Sequence[int], out_channels: int = 128):
        super().__init__()
        from zoo.nn.voxel_backbone import import_spconv

        sp = import_spconv()
        self.sparse_shape = [int(s) for s in sparse_shape]

        def bn(c):
            return nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)

        self.conv_input = sp.SparseSequential(
            sp.SubMConv3d(in_channels, 16, 3, padding=1, bias=False, indice_key="subm1"), bn(16), nn.ReLU()
        )
        chans = SPARSE_ENCODER_CHANNELS
        pads = (1, 1, (0, 1, 1), None)
        self.encoder_layers = nn.ModuleList()
        cin = 16
        for i, stage in enumerate(chans):
            blocks = []
            for j, c in enumerate(stage):
                if j == len(stage) - 1 and i != len(chans) - 1:
                    blocks.append(
                        sp.SparseSequential(
                            sp.SparseConv3d(
                                cin, c, 3, stride=2, padding=pads[i], bias=False, indice_key=f"spconv{i + 2}"
                            ),
                            bn(c),
                            nn.ReLU(),
                        )
                    )
                else:
                    blocks.append(_SparseBasicBlock(sp, c, f"subm{i + 1}"))
                cin = c
            self.encoder_layers.append(nn.ModuleList(blocks))  # iterated in forward: the blocks take sparse tensors
        self.conv_out = sp.SparseSequential(
            sp.SparseConv3d(
                128, out_channels, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=False, indice_key="spconv_down2"
            ),
            bn(out_channels),
            nn.ReLU(),
        )
        z = self.sparse_shape[0]
        for k, p in ((3, 1), (3, 1), (3, 0), (3, 0)):
            z = (z + 2 * p - k) // 2 + 1
        self.out_channels = out_channels * z
        self.stride = 8

    def forward(self, features, coords, batch_size):
        from zoo.nn.voxel_backbone import import_spconv, spconv_cpu_single_thread

        sp = import_spconv()
        with spconv_cpu_single_thread(features):
            x = sp.SparseConvTensor(features, coords.int(), self.sparse_shape, batch_size)
            x = self.conv_input(x)
            for stage in self.encoder_layers:
                for block in stage:
                    x = block(x)
            dense = self.conv_out(x).dense()
        b, c, d, h, w = dense.shape
        return dense.view(b, c * d, h, w)


class _SparseBasicBlock(nn.Module):
    """mmdet3d ``SparseBasicBlock``: SubM 3x3x3 (no bias) + BN + ReLU, SubM + BN, + identity, ReLU."""

    def __init__(self, sp, c: int, key: str):
        super().__init__()
        self.conv1 = sp.SubMConv3d(c, c, 3, padding=1, bias=False, indice_key=key)
        self.bn1 = nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)
        self.conv2 = sp.SubMConv3d(c, c, 3, padding=1, bias=False, indice_key=key)
        self.bn2 = nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)

    def forward(self, x):
        out = self.conv1(x)
        out = out.replace_feature(torch.relu(self.bn1(out.features)))
        out = self.conv2(out)
        return out.replace_feature(torch.relu(self.bn2(out.features) + x.features))


class LidarBranch(nn.Module):
    """Points (list of [N_i, C]) -> BEV map [B, bev_channels, ny / s, nx / s] (before the head's shared conv).

    ``encoder="voxel"``: mean VFE over dynamic voxels (the released hard voxeliser caps 10 points per voxel) ->
    :class:`SparseEncoder` -> SECOND/SECONDFPN. ``encoder="pillar"``: :class:`~zoo.nn.pillars.DynamicPillarVFE` ->
    BEV scatter -> SECOND/SECONDFPN.
    """

    def __init__(
        self,
        encoder: str,
        point_cloud_range: Sequence[float],
        voxel_size: Sequence[float],
        point_features: int,
        pillar_filters: Sequence[int],
        layer_nums: Sequence[int],
        layer_strides: Sequence[int],
        num_filters: Sequence[int],
        upsample_strides: Sequence[float],
        upsample_filters: Sequence[int],
    ):
        super().__init__()
        check_choice("lidar_encoder", encoder, ("voxel", "pillar"))
        self.encoder = encoder
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_features = point_features
        nx, ny, nz = grid_size(self.voxel_size, self.point_cloud_range)
        self.nx, self.ny = nx, ny
        if encoder == "voxel":
            self.pts_middle_encoder = SparseEncoder(point_features, (nz + 1, ny, nx))
            cin, s0 = self.pts_middle_encoder.out_channels, 8
        else:
            self.pts_voxel_encoder = DynamicPillarVFE(
                point_features, pillar_filters, self.voxel_size, self.point_cloud_range
            )
            cin, s0 = self.pts_voxel_encoder.out_channels, 1
        self.pts_backbone = BEVBackbone(cin, layer_nums, layer_strides, num_filters, upsample_strides, upsample_filters)
        self.out_channels = self.pts_backbone.out_channels
        stride = s0 * self.pts_backbone.stride
        if nx % stride or ny % stride:
            raise UserError(f"the BEV grid {nx} x {ny} is not divisible by the LiDAR branch's stride {stride}")
        self.stride = int(stride)
        self.bev_hw = (ny // self.stride, nx // self.stride)

    def forward(self, points: list[torch.Tensor]) -> torch.Tensor:
        pts, bidx, b = flatten_batch(points)
        if pts.shape[1] < self.point_features:
            raise UserError(
                f"the LiDAR branch reads {self.point_features} point features (x, y, z, intensity, dt), "
                f"the points have {pts.shape[1]}"
            )
        pts = pts[:, : self.point_features]
        if self.encoder == "voxel":
            from zoo.nn.voxel_backbone import mean_vfe

            feats, coords = mean_vfe(pts, bidx, self.voxel_size, self.point_cloud_range)
            bev = self.pts_middle_encoder(feats, coords, b)
        else:
            feats, coords = self.pts_voxel_encoder(pts, bidx)
            bev = scatter_to_bev(feats, coords, b, self.ny, self.nx)
        return self.pts_backbone(bev)


# ================================================================================================ decoder
class Attention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameter layout (``in_proj_weight`` [3E, E],
    ``in_proj_bias``, ``out_proj``) computed by ``F.scaled_dot_product_attention``. q [B, Lq, E], k/v [B, Lk, E];
    ``mask`` [Lq, Lk] bool, True = blocked (mmcv's convention)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise UserError(f"hidden_dim {dim} must be divisible by num_heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, q, k, v, mask: torch.Tensor | None = None):
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        b, lq, e = q.shape
        h = self.heads

        def split(x, w, bias):
            return F.linear(x, w, bias).view(b, -1, h, e // h).transpose(1, 2)

        allowed = None if mask is None else ~mask
        out = F.scaled_dot_product_attention(
            split(q, wq, bq),
            split(k, wk, bk),
            split(v, wv, bv),
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, e))


class DecoderLayer(nn.Module):
    """Post-norm DETR layer: x = LN(x + Drop(SA(x + pos, x + pos, x))); x = LN(x + Drop(CA(x + pos, mem + mem_pos,
    mem))); x = LN(x + FFN(x)) with FFN = Linear(E, F) ReLU Linear(F, E) (ffn_drop 0).

    ``dropout`` is the output dropout of both attentions and the attention-weight dropout of the self-attention
    (mmcv ``MultiheadAttention(dropout=0.1)``); ``cross_attn_dropout`` is the cross-attention's attention-weight
    dropout. The release builds its cross-attention as ``FlashMHA(embed_dims, num_heads, attn_drop)``
    (``petr_transformer.py``, ``PETRMultiheadFlashAttention``), where the third positional parameter is ``bias``
    (``attention.py``): the 0.1 becomes ``bias=True`` and the attention dropout keeps its default 0.0.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, cross_attn_dropout: float = 0.0):
        super().__init__()
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, cross_attn_dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pos, mem, mem_pos, mask=None):
        q = x + pos
        x = self.norms[0](x + self.drop(self.self_attn(q, q, x, mask)))
        x = self.norms[1](x + self.drop(self.cross_attn(x + pos, mem + mem_pos, mem)))
        return self.norms[2](x + self.ffn(x))


class Decoder(nn.Module):
    """``PETRTransformerDecoder``: ``num_layers`` layers, every intermediate output through one shared post-norm
    LayerNorm and ``nan_to_num``. -> [L, B, Q, E]."""

    def __init__(
        self, num_layers: int, dim: int, heads: int, ffn_dim: int, dropout: float, cross_attn_dropout: float = 0.0
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(dim, heads, ffn_dim, dropout, cross_attn_dropout) for _ in range(num_layers)
        )
        self.post_norm = nn.LayerNorm(dim)

    def forward(self, x, pos, mem, mem_pos, mask=None):
        outs = []
        for layer in self.layers:
            x = layer(x, pos, mem, mem_pos, mask)
            outs.append(self.post_norm(x))
        return torch.stack(outs).nan_to_num()


class GroupLayerNorm1d(nn.Module):
    """LayerNorm over each group's channels of [B, G*C, Q] (eps 1e-6), per-channel affine (``cmt_head.py``)."""

    def __init__(self, channels: int, groups: int, eps: float = 1e-6):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        b, c, q = x.shape
        g = x.view(b, self.groups, c // self.groups, q)
        mean = g.mean(dim=2, keepdim=True)
        var = g.var(dim=2, unbiased=False, keepdim=True)
        g = (g - mean) / torch.sqrt(var + self.eps)
        return g.view(b, c, q) * self.weight[:, None] + self.bias[:, None]


class SeparateTaskHead(nn.Module):
    """Per-layer prediction heads as grouped Conv1d over the query axis (one group per decoder layer). Each head:
    Conv1d(G*E -> G*64, k, groups=G, no bias) + GroupLayerNorm1d + ReLU, Conv1d(G*64 -> G*out, k, groups=G).
    k = ``final_kernel`` (1; 3 in the LiDAR-only config, which then mixes neighbouring query indices).
    [L, B, Q, E] -> {name: [L, B, Q, out]}."""

    def __init__(
        self,
        dim: int,
        groups: int,
        num_classes: int,
        head_conv: int = 64,
        final_kernel: int = 1,
        init_bias: float = -2.19,
    ):
        super().__init__()
        self.groups = groups
        self.names = [n for n, _ in HEADS] + ["cls_logits"]
        for name, out in [*HEADS, ("cls_logits", num_classes)]:
            seq = nn.Sequential(
                nn.Conv1d(
                    dim * groups, head_conv * groups, final_kernel, padding=final_kernel // 2, groups=groups, bias=False
                ),
                GroupLayerNorm1d(head_conv * groups, groups),
                nn.ReLU(),
                nn.Conv1d(head_conv * groups, out * groups, final_kernel, padding=final_kernel // 2, groups=groups),
            )
            setattr(self, name, seq)
        self.init_bias = init_bias

    def reset_parameters(self):
        for name in self.names:
            for m in getattr(self, name):
                if isinstance(m, nn.Conv1d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits[-1].bias, self.init_bias)

    def forward(self, x):
        n, b, q, c = x.shape
        x = x.permute(1, 0, 3, 2).reshape(b, n * c, q)
        out = {}
        for name in self.names:
            y = getattr(self, name)(x)
            out[name] = y.view(b, n, -1, q).permute(1, 0, 3, 2)
        return out


# ================================================================================================ the model
class CMT(nn.Module):
    """Cross Modal Transformer. forward(points, images, lidar2img) -> dict:

    ``cls`` [L, B, Q, num_classes] logits of every decoder layer, ``box`` [L, B, Q, 10] the prediction vector in the
    code space of :func:`encode_boxes` (centre in metres), ``anchors`` [B, Q, 3]. Q = denoising queries (when
    ``dn_anchors`` are given) + ``num_query``.
    points: list of B clouds [N_i, >= point_features] (LiDAR frame); images [B, V, 3, H, W] (normalised, padded to
    /32); lidar2img [B, V, 4, 4] (including every image / 3D augmentation).

    ``image_size`` (height, width) and ``num_views`` name the camera input the configuration is trained on (what its
    data pipeline crops to); they build nothing, and ``forward`` reads the actual image shape and view count.
    """

    def __init__(
        self,
        modalities: str = "fusion",
        num_classes: int = 10,
        point_cloud_range: Sequence[float] = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0),
        lidar_encoder: str = "voxel",
        voxel_size: Sequence[float] = (0.075, 0.075, 0.2),
        point_features: int = 5,
        pillar_filters: Sequence[int] = (64,),
        bev_layer_nums: Sequence[int] = (5, 5),
        bev_layer_strides: Sequence[int] = (1, 2),
        bev_num_filters: Sequence[int] = (128, 256),
        bev_upsample_strides: Sequence[float] = (1, 2),
        bev_upsample_filters: Sequence[int] = (256, 256),
        img_backbone: str = "ese_vovnet99b",
        img_out_indices: Sequence[int] = (3, 4),
        img_backbone_kwargs: dict | None = None,
        image_size: Sequence[int] = (640, 1600),
        num_views: int = 6,
        hidden_dim: int = 256,
        num_query: int = 900,
        depth_num: int = 64,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        head_conv: int = 64,
        final_kernel: int = 1,
        narrow_band_pe: bool = True,
        box_code_quirk: bool = True,
        clamp_query_anchors: bool = True,
        cross_attn_dropout: float = 0.0,
        camera_bev_query_pe: bool = True,
        ese_every_block: bool = True,
        img_norm_eval: bool = True,
    ):
        super().__init__()
        check_choice("modalities", modalities, MODALITIES)
        self.modalities = modalities
        self.use_camera = modalities in ("fusion", "camera")
        self.use_lidar = modalities in ("fusion", "lidar")
        self.pc_range = [float(v) for v in point_cloud_range]
        if len(self.pc_range) != 6:
            raise UserError(f"point_cloud_range needs 6 numbers (x0 y0 z0 x1 y1 z1), got {list(point_cloud_range)}")
        self.hidden_dim, self.num_query, self.depth_num = hidden_dim, num_query, depth_num
        self.num_classes, self.narrow_band_pe, self.box_code_quirk = num_classes, narrow_band_pe, box_code_quirk
        self.clamp_query_anchors = clamp_query_anchors
        self.voxel_size, self.point_features = [float(v) for v in voxel_size], point_features
        self.image_size, self.num_views = [int(v) for v in image_size], int(num_views)
        if len(self.image_size) != 2 or min(self.image_size) < 1 or self.num_views < 1:
            raise UserError(
                f"image_size must be (height, width) and num_views >= 1, got {list(image_size)} and {num_views}"
            )
        if not 0.0 <= cross_attn_dropout < 1.0:
            raise UserError(f"cross_attn_dropout must lie in [0, 1), got {cross_attn_dropout}")
        if self.use_camera:
            self.img = ImageBranch(
                img_backbone, img_out_indices, hidden_dim, img_backbone_kwargs, ese_every_block, img_norm_eval
            )
            self.rv_embedding = nn.Sequential(
                nn.Linear(depth_num * 3, hidden_dim * 4), nn.ReLU(), nn.Linear(hidden_dim * 4, hidden_dim)
            )
        # CMT-C (``CmtImageHead``) inherits ``CmtHead.query_embed``: its queries get the BEV sine PE of the anchors'
        # (x, y) too, so the camera-only release has a ``bev_embedding`` (used on the queries only)
        self.bev_query_pe = self.use_lidar or camera_bev_query_pe
        if self.bev_query_pe:
            self.bev_embedding = nn.Sequential(
                nn.Linear(hidden_dim * 2, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim)
            )
        if self.use_lidar:
            self.pts = LidarBranch(
                lidar_encoder,
                self.pc_range,
                voxel_size,
                point_features,
                pillar_filters,
                bev_layer_nums,
                bev_layer_strides,
                bev_num_filters,
                bev_upsample_strides,
                bev_upsample_filters,
            )
            self.shared_conv = nn.Sequential(
                nn.Conv2d(self.pts.out_channels, hidden_dim, 3, padding=1, bias=False),
                nn.BatchNorm2d(hidden_dim),
                nn.ReLU(),
            )
        self.reference_points = nn.Embedding(num_query, 3)
        self.decoder = Decoder(num_layers, hidden_dim, num_heads, ffn_dim, dropout, cross_attn_dropout)
        self.task_head = SeparateTaskHead(hidden_dim, num_layers, num_classes, head_conv, final_kernel)
        self.reset_parameters()

    def reset_parameters(self):
        if self.reference_points.weight.device.type == "meta":
            return
        nn.init.uniform_(self.reference_points.weight, 0, 1)
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.task_head.reset_parameters()

    # ------------------------------------------------------------------------------------------ tokens
    def active(self, modalities: str | None) -> tuple[bool, bool]:
        """(camera, lidar) in use for this call: the built branches, or the subset ``modalities`` names."""
        if modalities is None:
            return self.use_camera, self.use_lidar
        check_choice("modalities", modalities, MODALITIES)
        cam, lid = modalities in ("fusion", "camera"), modalities in ("fusion", "lidar")
        if (cam and not self.use_camera) or (lid and not self.use_lidar):
            raise UserError(
                f"modalities={modalities!r} needs a branch this model does not have (built: "
                f"{self.modalities!r}); run it with a subset of {self.modalities!r}"
            )
        return cam, lid

    def forward(
        self,
        points=None,
        images=None,
        lidar2img=None,
        dn_anchors: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        modalities: str | None = None,
    ) -> dict:
        cam, lid = self.active(modalities)
        mem, mem_pos = [], []
        anchors = self.reference_points.weight
        b = None
        if lid:
            if points is None:
                raise UserError(
                    "this CMT uses LiDAR: the batch needs 'points' (a list of [N, C] clouds); for a "
                    "camera-only run pass modalities='camera'"
                )
            bev = self.shared_conv(self.pts(points))  # [B, E, h, w]
            b, _, h, w = bev.shape
            mem.append(bev.flatten(2).transpose(1, 2))
            centres = bev_cell_centres(h, w, bev.device)
            mem_pos.append(
                self.bev_embedding(pos2embed(centres, self.hidden_dim, self.narrow_band_pe)).expand(b, -1, -1)
            )
        img2lidar = None
        if cam:
            if images is None or lidar2img is None:
                raise UserError(
                    "this CMT uses cameras: the batch needs 'images' [B, V, 3, H, W] and 'lidar2img' "
                    "[B, V, 4, 4]; for a LiDAR-only run pass modalities='lidar'"
                )
            if images.dim() != 5:
                raise UserError(f"images must be [B, V, 3, H, W], got {tuple(images.shape)}")
            img2lidar = check_lidar2img(lidar2img, images.shape[1])
            feat = self.img(images)  # [B, V, E, H, W]
            b = feat.shape[0]
            fh, fw = feat.shape[-2:]
            pad_hw = tuple(images.shape[-2:])
            mem.append(feat.permute(0, 1, 3, 4, 2).reshape(b, -1, self.hidden_dim))
            rays = camera_ray_points(lidar2img, (fh, fw), pad_hw, self.depth_num, self.pc_range, img2lidar)
            mem_pos.append(self.rv_embedding(rays).reshape(b, -1, self.hidden_dim))
        if not mem:
            raise UserError("CMT needs at least one modality in use")
        memory, memory_pos = torch.cat(mem, dim=1), torch.cat(mem_pos, dim=1)
        anchors = anchors[None].expand(b, -1, -1)
        if dn_anchors is not None:
            anchors = torch.cat([dn_anchors.to(anchors.dtype), anchors], dim=1)
        query_pos = torch.zeros(*anchors.shape[:2], self.hidden_dim, device=anchors.device, dtype=memory.dtype)
        # ``CmtHead.query_embed``: inverse_sigmoid(ref).sigmoid() clamps the (trainable, unbounded) anchors, the
        # denoising ones included, into [eps / (1 + eps), 1 / (1 + eps)] before both query encodings
        pe_anchors = inverse_sigmoid(anchors).sigmoid() if self.clamp_query_anchors else anchors
        if lid or (cam and not self.use_lidar and self.bev_query_pe):
            query_pos = query_pos + self.bev_embedding(
                pos2embed(pe_anchors[..., :2], self.hidden_dim, self.narrow_band_pe)
            )
        if cam:
            rays, vis = project_anchors(pe_anchors, lidar2img, pad_hw, self.depth_num, self.pc_range, img2lidar)
            query_pos = query_pos + (self.rv_embedding(rays) * vis[..., None]).sum(dim=1)
        tgt = torch.zeros_like(query_pos)
        hs = self.decoder(tgt, query_pos, memory, memory_pos, attn_mask)  # [L, B, Q, E]
        out = self.task_head(hs)
        ref = inverse_sigmoid(anchors)
        lo, hi = self.pc_range[:3], self.pc_range[3:]
        cxy = (out["center"] + ref[..., :2]).sigmoid()
        cx = cxy[..., 0:1] * (hi[0] - lo[0]) + lo[0]
        cy = cxy[..., 1:2] * (hi[1] - lo[1]) + lo[1]
        hz = (out["height"] + ref[..., 2:3]).sigmoid() * (hi[2] - lo[2]) + lo[2]
        box = torch.cat([cx, cy, hz, out["dim"], out["rot"], out["vel"]], dim=-1)
        return {"cls": out["cls_logits"], "box": box, "anchors": anchors}

    # ------------------------------------------------------------------------------------------ inference
    def decode(
        self,
        cls: torch.Tensor,
        box: torch.Tensor,
        max_num: int = 300,
        post_center_range: Sequence[float] = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0),
    ) -> list[dict]:
        """Last-layer logits [B, Q, C] and codes [B, Q, 10] -> per frame {"boxes" [K, 9] (gravity centre),
        "scores" [K], "labels" [K]}: sigmoid over Q x C, global top-k (300), no NMS, centres inside
        ``post_center_range`` (``NMSFreeCoder``)."""
        out = []
        scores = cls.sigmoid()
        for s, c in zip(scores, box):
            k = min(max_num, s.numel())
            val, idx = s.flatten().topk(k)
            labels = idx % s.shape[1]
            boxes = decode_boxes(c[idx // s.shape[1]], self.box_code_quirk)
            r = boxes.new_tensor(post_center_range)
            keep = ((boxes[:, :3] >= r[:3]) & (boxes[:, :3] <= r[3:])).all(dim=1)
            out.append({"boxes": boxes[keep], "scores": val[keep], "labels": labels[keep]})
        return out
