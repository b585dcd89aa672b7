"""SSDA3D's detector: CenterPoint (Yin et al., CVPR 2021) on a voxel (paper) or dynamic-pillar (CPU) encoder.

SSDA3D (Wang et al., AAAI 2023, arXiv 2212.02845) trains OpenPCDet's CenterPoint unchanged in both stages
(``yinjunbo/SSDA3D:tools/cfgs/nuscenes_models/ssda3d_centerpoint.yaml``); the method is in the
data (Point-CutMix, Point-MixUp: :mod:`zoo.data_modules.point_mixing`). Two encoders, the sizes of
:mod:`zoo.models.ssda3d.sizes`:

- ``voxel`` (the paper's): mean VFE on 0.075 x 0.075 x 0.2 m voxels over [-54, 54]^2 x [-5, 4.8] m ->
  ``VoxelResBackBone8x`` (spconv) -> HeightCompression 256 ch at stride 8 (180 x 180) -> BEV backbone layers [5, 5],
  strides [1, 2], filters [128, 256], upsample [1, 2] -> [256, 256] (512 ch) -> CenterHead (stride 8).
- ``pillar`` (spconv-free, CPU): dynamic pillar net (filters [64, 64]) on 0.2 m pillars over [-51.2, 51.2]^2 x
  [-5, 4.8] m (512 x 512) -> BEV backbone [3, 5, 5] / [2, 2, 2] / [64, 128, 256], upsample [0.5, 1, 2] -> 3 x 128
  (OpenPCDet ``cbgs_dyn_pp_centerpoint.yaml``) -> CenterHead (stride 4).

Release quirks kept as defaults (each a switch): ``pillar_filter_z=False``, the release's ``DynamicPillarVFE`` filters
points on x / y only, so points outside the z range still shape their pillar (True: zoo's earlier z filter);
``max_points_per_voxel=10`` and ``max_voxels=(120000, 160000)`` (train, eval), the release's hard voxeliser for the
voxel encoder (None: dynamic voxels, every point counts).

Input: a collated batch dict (``zoo.data_modules.driving.collate_frames``): ``points`` list of [N_i, >=4] (x, y, z,
intensity) in the LiDAR frame. Output: the head's maps (training) or per-frame detections (:meth:`detect`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zoo.errors import UserError, check_choice
from zoo.nn.centerpoint import CenterHead
from zoo.nn.pillars import BEVBackbone, DynamicPillarVFE, flatten_batch, grid_size, scatter_to_bev

__all__ = ["SSDA3DDetector"]


class SSDA3DDetector(nn.Module):
    """Encoder -> BEV map -> BEV backbone + neck -> CenterHead. See the module docstring for the two sizes."""

    def __init__(
        self,
        backbone: str = "pillar",
        num_classes: int = 1,
        num_point_features: int = 4,
        voxel_size: Sequence[float] = (0.2, 0.2, 9.8),
        point_cloud_range: Sequence[float] = (-51.2, -51.2, -5.0, 51.2, 51.2, 4.8),
        pillar_filters: Sequence[int] = (64, 64),
        voxel_channels: Sequence[int] = (16, 32, 64, 128),
        layer_nums: Sequence[int] = (3, 5, 5),
        layer_strides: Sequence[int] = (2, 2, 2),
        num_filters: Sequence[int] = (64, 128, 256),
        upsample_strides: Sequence[float] = (0.5, 1, 2),
        num_upsample_filters: Sequence[int] = (128, 128, 128),
        head_channels: int = 64,
        bn_momentum: float = 0.01,
        pillar_filter_z: bool = False,
        max_points_per_voxel: int | None = 10,
        max_voxels: Sequence[int] | None = (120_000, 160_000),
        **head_kw,
    ):
        super().__init__()
        check_choice("backbone", backbone, ("pillar", "voxel"))
        if max_voxels is not None and (len(max_voxels) != 2 or min(int(v) for v in max_voxels) < 1):
            raise UserError(
                f"max_voxels needs (train, test) voxel caps >= 1, e.g. [120000, 160000], or null for "
                f"none; got {max_voxels}"
            )
        if max_points_per_voxel is not None and int(max_points_per_voxel) < 1:
            raise UserError(f"max_points_per_voxel must be >= 1 (or null for no cap), got {max_points_per_voxel}")
        self.max_points_per_voxel = None if max_points_per_voxel is None else int(max_points_per_voxel)
        self.max_voxels = None if max_voxels is None else tuple(int(v) for v in max_voxels)
        self.backbone = backbone
        self.num_point_features = num_point_features
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.nx, self.ny, self.nz = grid_size(self.voxel_size, self.point_cloud_range)
        if backbone == "pillar":
            self.vfe = DynamicPillarVFE(
                num_point_features, pillar_filters, self.voxel_size, self.point_cloud_range, filter_z=pillar_filter_z
            )
            bev_in, enc_stride = self.vfe.out_channels, 1
        else:
            from zoo.nn.voxel_backbone import VoxelResBackBone8x

            self.encoder = VoxelResBackBone8x(
                num_point_features, self.voxel_size, self.point_cloud_range, voxel_channels
            )
            bev_in, enc_stride = self.encoder.out_channels, self.encoder.stride
        self.bev = BEVBackbone(bev_in, layer_nums, layer_strides, num_filters, upsample_strides, num_upsample_filters)
        total = 1
        for s in layer_strides:
            total *= int(s)
        total *= enc_stride
        if self.nx % total or self.ny % total:
            raise UserError(
                f"the grid {self.nx} x {self.ny} cells must be divisible by the network's total "
                f"downsampling {total}: change point_cloud_range or voxel_size"
            )
        if not 0 < bn_momentum <= 1:
            raise UserError(f"bn_momentum must lie in (0, 1], got {bn_momentum}")
        # encoder + BEV BatchNorms: OpenPCDet's momentum 0.01 (eps 1e-3); a run of a few hundred steps (the demo) uses
        # 0.1 so that the running statistics used in evaluation catch up with the weights. The head keeps 0.1.
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = bn_momentum
        self.stride = enc_stride * self.bev.stride  # head map stride in voxels
        self.head = CenterHead(
            self.bev.out_channels,
            num_classes,
            head_channels,
            point_cloud_range=self.point_cloud_range,
            voxel_size=self.voxel_size,
            stride=self.stride,
            **head_kw,
        )

    def bev_features(self, points: list[torch.Tensor]) -> torch.Tensor:
        """Per-frame clouds -> BEV features [B, C, ny / stride, nx / stride]."""
        pts, bidx, b = flatten_batch(points)
        pts = pts[:, : self.num_point_features].float()
        if self.backbone == "pillar":
            feats, coords = self.vfe(pts, bidx)
            x = scatter_to_bev(feats, coords, b, self.ny, self.nx)
        else:
            from zoo.nn.voxel_backbone import mean_vfe

            cap = None if self.max_voxels is None else self.max_voxels[0 if self.training else 1]
            feats, coords = mean_vfe(pts, bidx, self.voxel_size, self.point_cloud_range, self.max_points_per_voxel, cap)
            x = self.encoder(feats, coords, b)
        return self.bev(x)

    def forward(self, points: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> the head's maps: hm [B, K, H, W] (logits), center [B, 2, H, W], center_z, dim (log), rot (cos, sin)."""
        return self.head(self.bev_features(points))

    def detect(self, points: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.head.decode(self(points))
