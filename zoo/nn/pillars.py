"""Dynamic (spconv-free) voxelisation, the dynamic pillar feature net, the BEV scatter and the BEV backbone + FPN neck.

Pure PyTorch, deterministic on the CPU. The recipe of OpenPCDet's dynamic pillar models (``DynPillarVFE``,
``PointPillarScatter`` and ``BaseBEVBackbone``; PointPillars, Lang et al., CVPR 2019, §2.1):

1. :func:`voxelize`: points inside the range -> integer cell ``(b, iz, iy, ix)``, the unique occupied cells and every
   point's cell (what ``torch.unique(..., return_inverse=True)`` gives, by counting or one sort). No cap on the
   points per cell or on the cells: every point counts. Plain tensor ops: the same function runs on CUDA tensors.
   ``filter_z=False`` (pillars) keeps the points whose x / y cell is in the grid whatever their z, as OpenPCDet's
   ``DynamicPillarVFE`` (SSDA3D's default).
2. :class:`DynamicPillarVFE`: per point ``(x, y, z, r) || xyz - mean(pillar) || xyz - centre(pillar)`` (10-d), then PFN
   layers Linear (no bias) + BatchNorm1d (over points) + ReLU; the pillar feature is the max over its points
   (``scatter_reduce 'amax'``), concatenated back to the points between layers.
3. :func:`scatter_to_bev`: pillar features -> a dense ``(B, C, ny, nx)`` canvas.
4. :class:`BEVBackbone`: OpenPCDet's ``BaseBEVBackbone``: per level a stride-S 3x3 conv + L 3x3 convs (BN eps 1e-3,
   momentum 0.01, ReLU), each level upsampled (transposed conv, or a strided conv for an upsample stride < 1) to a
   common stride and concatenated (the FPN neck of SECOND/PointPillars).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from zoo.errors import UserError

__all__ = ["Voxels", "grid_size", "voxelize", "DynamicPillarVFE", "scatter_to_bev", "BEVBackbone", "flatten_batch"]


def grid_size(voxel_size: Sequence[float], point_cloud_range: Sequence[float]) -> tuple[int, int, int]:
    """``(nx, ny, nz)`` cells of the grid: ``round((max - min) / voxel)`` per axis."""
    if len(voxel_size) != 3 or len(point_cloud_range) != 6:
        raise UserError(
            f"voxel_size needs 3 numbers and point_cloud_range 6 (x0 y0 z0 x1 y1 z1), got "
            f"{list(voxel_size)} and {list(point_cloud_range)}"
        )
    out = []
    for i in range(3):
        extent = float(point_cloud_range[i + 3]) - float(point_cloud_range[i])
        if extent <= 0 or float(voxel_size[i]) <= 0:
            raise UserError(
                f"point_cloud_range {list(point_cloud_range)} and voxel_size {list(voxel_size)} must be "
                "positive extents: max > min and voxel > 0 on every axis"
            )
        out.append(int(round(extent / float(voxel_size[i]))))
    return tuple(out)


class Voxels(NamedTuple):
    """Result of :func:`voxelize`.

    ``coords``: LongTensor[V, 4] ``(b, iz, iy, ix)`` of the occupied cells, sorted by their flat key;
    ``inverse``: LongTensor[N'] the cell of every kept point (index into ``coords``);
    ``counts``: LongTensor[V] points per cell; ``keep``: BoolTensor[N] which input points lie inside the range.
    """

    coords: torch.Tensor
    inverse: torch.Tensor
    counts: torch.Tensor
    keep: torch.Tensor


# key spaces up to this many cells (or _DENSE_PER_POINT per point) are counted in a dense table; larger ones sorted
_DENSE_CELLS = 1 << 21
_DENSE_PER_POINT = 4


def _flat_nonzero(x: torch.Tensor) -> torch.Tensor:
    """Indices of the non-zero entries of the 1-D ``x`` (int64): ``numpy.flatnonzero`` on the CPU (several times
    faster than ``torch.nonzero`` there), ``torch.nonzero`` elsewhere."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(x.numpy()))
    return torch.nonzero(x).squeeze(1)


def _unique_keys(key: torch.Tensor, num_keys: int, dense: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch.unique(key, sorted=True, return_inverse=True, return_counts=True)`` for keys in ``[0, num_keys)``,
    in linear time: ``dense`` (a small key space: pillars; int64 keys) a counting pass (``bincount``) over a dense
    table, else one integer sort (int32 keys where they fit) and run boundaries (voxels). Same values, same dtypes
    (int64) as ``torch.unique``."""
    n = key.numel()
    dev = key.device
    if dense:
        counts_full = torch.bincount(key, minlength=num_keys)
        uniq = _flat_nonzero(counts_full)
        table = torch.empty(num_keys, dtype=torch.long, device=dev)
        table.index_copy_(0, uniq, torch.arange(uniq.numel(), device=dev))
        return uniq, table.index_select(0, key), counts_full.index_select(0, uniq)
    sorted_key, perm = torch.sort(key)  # the order of equal keys does not matter
    first = torch.ones(n, dtype=torch.bool, device=dev)  # a run of equal keys starts here
    if n > 1:
        torch.ne(sorted_key[1:], sorted_key[:-1], out=first[1:])
    inverse = torch.empty(n, dtype=torch.long, device=dev).index_copy_(0, perm, torch.cumsum(first, 0) - 1)
    starts = _flat_nonzero(first)
    counts = torch.diff(starts, append=torch.tensor([n], device=dev))
    return sorted_key.index_select(0, starts).long(), inverse, counts


def voxelize(
    points: torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    batch_index: torch.Tensor | None = None,
    filter_z: bool = True,
) -> Voxels:
    """Dynamic voxelisation: every point inside ``point_cloud_range`` goes to its cell, no cap.

    points: [N, >=3] (x, y, z, ...); batch_index: LongTensor[N] frame of each point (all 0 when None).
    A point is inside when ``min <= p < max`` on every axis. Cells are ``floor((p - min) / voxel)``.
    ``filter_z=False`` (pillars only, one z cell): a point is kept when its x / y cell lies in the grid,
    ``0 <= floor((p - min) / voxel) < n``, whatever its z, as OpenPCDet's ``DynamicPillarVFE.forward``
    (``yinjunbo/SSDA3D:pcdet/models/backbones_3d/vfe/dynamic_pillar_vfe.py``) filters; every kept point has ``iz = 0``.
    The flat key is ``((b * nz + iz) * ny + iy) * nx + ix``. The result is what
    ``torch.unique(key, sorted=True, return_inverse=True, return_counts=True)`` gives, computed in linear time by
    :func:`_unique_keys` (counting for pillar grids, one integer sort for voxel grids): no point is dropped, unlike
    spconv's ``PointToVoxel`` with its caps. Plain tensor ops, so the same function runs on CUDA tensors.
    """
    if points.dim() != 2 or points.shape[1] < 3:
        raise UserError(f"voxelize: points must be [N, >=3] (x, y, z, ...), got shape {tuple(points.shape)}")
    nx, ny, nz = grid_size(voxel_size, point_cloud_range)
    dev = points.device
    lo = torch.tensor(point_cloud_range[:3], dtype=points.dtype, device=dev)
    hi = torch.tensor(point_cloud_range[3:], dtype=points.dtype, device=dev)
    vs = torch.tensor(voxel_size, dtype=points.dtype, device=dev)
    num_frames = 1
    if batch_index is not None and batch_index.numel():
        if int(batch_index.min()) < 0:
            raise UserError("voxelize: batch_index must be >= 0 (the frame of each point)")
        num_frames = int(batch_index.max()) + 1
    num_keys = num_frames * nz * ny * nx
    dense = num_keys <= max(_DENSE_CELLS, _DENSE_PER_POINT * points.shape[0])
    kdt = torch.int32 if not dense and num_keys < 2**31 else torch.long  # int32: a faster sort; int64: bincount
    cols = points.unbind(1)  # per-axis passes over strided columns: cheaper than [N, 3] broadcasts
    if filter_z:
        keep = (cols[0] >= lo[0]) & (cols[0] < hi[0])
        for a in (1, 2):
            keep &= (cols[a] >= lo[a]) & (cols[a] < hi[a])
        sel = _flat_nonzero(keep)
        # float rounding at the upper edge (p just below max) can give n: clamp into the grid
        cell = [
            torch.floor((cols[a].index_select(0, sel) - lo[a]) / vs[a]).to(kdt).clamp_(max=n - 1)
            for a, n in enumerate((nx, ny, nz))
        ]
        key = (cell[2] * ny + cell[1]) * nx + cell[0]
    else:
        if nz != 1:
            raise UserError(
                f"voxelize(filter_z=False) is for pillars (one z cell); this grid has {nz}: keep "
                "filter_z=True for voxels"
            )
        cx, cy = (torch.floor((cols[a] - lo[a]) / vs[a]) for a in (0, 1))
        keep = (cx >= 0) & (cx < nx) & (cy >= 0) & (cy < ny)
        sel = _flat_nonzero(keep)
        key = cy.index_select(0, sel).to(kdt) * nx + cx.index_select(0, sel).to(kdt)
    if batch_index is not None:
        key += batch_index.index_select(0, sel).to(kdt) * (nz * ny * nx)
    uniq, inverse, counts = _unique_keys(key, num_keys, dense)
    ix = uniq % nx
    rest = uniq // nx
    iy = rest % ny
    rest = rest // ny
    iz = rest % nz
    bb = rest // nz
    return Voxels(torch.stack([bb, iz, iy, ix], dim=1), inverse, counts, keep)


def flatten_batch(points: list[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A list of per-frame clouds [N_i, C] -> (points [sum N_i, C], batch index [sum N_i], batch size)."""
    if torch.is_tensor(points):
        points = [points]
    if not points:
        raise UserError("the batch holds no frame: 'points' is an empty list")
    widths = {p.shape[-1] for p in points}
    if len(widths) != 1 or any(p.dim() != 2 for p in points):
        shapes = [tuple(p.shape) for p in points]
        raise UserError(f"every frame's points must be [N, C] with one C, got shapes {shapes}")
    idx = torch.cat([torch.full((p.shape[0],), i, dtype=torch.long, device=p.device) for i, p in enumerate(points)])
    return torch.cat(points, dim=0), idx, len(points)


def _scatter_max(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    out = x.new_zeros(size, x.shape[1])
    return out.scatter_reduce(0, index[:, None].expand_as(x), x, reduce="amax", include_self=False)


def _scatter_mean(x: torch.Tensor, index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    out = x.new_zeros(counts.shape[0], x.shape[1]).index_add_(0, index, x)
    return out / counts[:, None].to(x.dtype)


class PFNLayer(nn.Module):
    """One PFN layer (OpenPCDet ``PFNLayerV2``): Linear (no bias) -> BatchNorm1d over points -> ReLU, pillar max.
    A non-last layer has half the output width and returns ``point || max(pillar)[point]``."""

    def __init__(self, in_channels: int, out_channels: int, last: bool):
        super().__init__()
        self.last = last
        width = out_channels if last else out_channels // 2
        self.linear = nn.Linear(in_channels, width, bias=False)
        self.norm = nn.BatchNorm1d(width, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor, inverse: torch.Tensor, num_pillars: int) -> torch.Tensor:
        x = torch.relu(self.norm(self.linear(x)))
        x_max = _scatter_max(x, inverse, num_pillars)
        return x_max if self.last else torch.cat([x, x_max[inverse]], dim=1)


class DynamicPillarVFE(nn.Module):
    """Dynamic pillar feature net (OpenPCDet ``DynPillarVFE``; PointPillars §2.1 without the point cap).

    Input points [N, C] (x, y, z, intensity[, ...]); each point is decorated with its offset to the arithmetic mean of
    its pillar's points (3) and to the pillar's centre (3, z centre = the range's middle): ``C + 6`` features.
    forward(points, batch_index) -> (pillar features [P, filters[-1]], coords [P, 4] (b, 0, iy, ix)).

    ``filter_z``: True (default, zoo's behaviour kept for CMT) drops points outside the z range; False is the release
    (``DynamicPillarVFE.forward`` of OpenPCDet / ``yinjunbo/SSDA3D``): points are filtered on x and y only, so a point
    above or below the range still feeds its pillar's mean and max and can make a pillar exist.
    """

    def __init__(
        self,
        num_point_features: int = 4,
        filters: Sequence[int] = (64, 64),
        voxel_size: Sequence[float] = (0.2, 0.2, 8.0),
        point_cloud_range: Sequence[float] = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0),
        filter_z: bool = True,
    ):
        super().__init__()
        self.filter_z = bool(filter_z)
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        nx, ny, nz = grid_size(self.voxel_size, self.point_cloud_range)
        if nz != 1:
            raise UserError(
                f"pillars span the whole z range: voxel_size[2] must equal point_cloud_range z extent "
                f"({self.point_cloud_range[5] - self.point_cloud_range[2]}), got {self.voxel_size[2]}"
            )
        if not filters or any(int(f) <= 0 for f in filters):
            raise UserError(f"pillar filters must be positive widths, got {list(filters)}")
        self.num_point_features = num_point_features
        widths = [num_point_features + 6, *[int(f) for f in filters]]
        self.pfn = nn.ModuleList(
            PFNLayer(widths[i], widths[i + 1], last=i == len(filters) - 1) for i in range(len(filters))
        )
        self.out_channels = widths[-1]

    def decorate(self, points: torch.Tensor, vox: Voxels) -> torch.Tensor:
        """[N', C + 6]: raw features || xyz - pillar mean || xyz - pillar centre (points inside the range only)."""
        p = points[vox.keep]
        xyz = p[:, :3]
        mean = _scatter_mean(xyz, vox.inverse, vox.counts)
        c = vox.coords[vox.inverse]
        x0, y0, z0, _, _, z1 = self.point_cloud_range
        centre = torch.stack(
            [
                (c[:, 3].to(p.dtype) + 0.5) * self.voxel_size[0] + x0,
                (c[:, 2].to(p.dtype) + 0.5) * self.voxel_size[1] + y0,
                torch.full_like(xyz[:, 2], (z0 + z1) / 2),
            ],
            dim=1,
        )
        return torch.cat([p[:, : self.num_point_features], xyz - mean[vox.inverse], xyz - centre], dim=1)

    def forward(self, points: torch.Tensor, batch_index: torch.Tensor | None = None):
        if points.shape[1] < self.num_point_features:
            raise UserError(
                f"the pillar net reads {self.num_point_features} point features, the points have {points.shape[1]}"
            )
        vox = voxelize(points, self.voxel_size, self.point_cloud_range, batch_index, filter_z=self.filter_z)
        x = self.decorate(points, vox)
        for layer in self.pfn:
            x = layer(x, vox.inverse, vox.coords.shape[0])
        return x, vox.coords


def scatter_to_bev(features: torch.Tensor, coords: torch.Tensor, batch_size: int, ny: int, nx: int) -> torch.Tensor:
    """Pillar features [P, C] at ``coords`` [P, 4] (b, z, y, x) -> dense canvas [B, C, ny, nx] (zeros elsewhere)."""
    flat = (coords[:, 0] * ny + coords[:, 2]) * nx + coords[:, 3]
    canvas = features.new_zeros(batch_size * ny * nx, features.shape[1])
    canvas = canvas.index_copy(0, flat, features)
    return canvas.view(batch_size, ny, nx, -1).permute(0, 3, 1, 2).contiguous()


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
        nn.ReLU(),
    ]


class BEVBackbone(nn.Module):
    """OpenPCDet ``BaseBEVBackbone`` (SECOND's RPN; PointPillars Fig. 2 "Backbone (2D CNN)") with its FPN-style neck.

    Level i: ``ZeroPad2d(1) + Conv3x3(stride S_i, no bias) + BN + ReLU`` then ``layer_nums[i]`` x (Conv3x3 + BN +
    ReLU); its output is brought to the common stride by ``ConvTranspose2d(k = s = u_i)`` (u_i >= 1) or by
    ``Conv2d(k = s = 1/u_i)`` (u_i < 1), + BN + ReLU; the levels are concatenated.
    [B, in_channels, H, W] -> [B, sum(num_upsample_filters), H * u_0 / S_0, ...].
    """

    def __init__(
        self,
        in_channels: int,
        layer_nums: Sequence[int] = (3, 5, 5),
        layer_strides: Sequence[int] = (2, 2, 2),
        num_filters: Sequence[int] = (64, 128, 256),
        upsample_strides: Sequence[float] = (0.5, 1, 2),
        num_upsample_filters: Sequence[int] = (128, 128, 128),
    ):
        super().__init__()
        n = len(layer_nums)
        if not (len(layer_strides) == len(num_filters) == len(upsample_strides) == len(num_upsample_filters) == n):
            raise UserError(
                "BEV backbone: layer_nums, layer_strides, num_filters, upsample_strides and "
                "num_upsample_filters must have one entry per level"
            )
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        cin = in_channels
        for i in range(n):
            layers: list[nn.Module] = [
                nn.ZeroPad2d(1),
                nn.Conv2d(cin, num_filters[i], 3, stride=layer_strides[i], padding=0, bias=False),
                nn.BatchNorm2d(num_filters[i], eps=1e-3, momentum=0.01),
                nn.ReLU(),
            ]
            for _ in range(layer_nums[i]):
                layers += _conv_bn_relu(num_filters[i], num_filters[i])
            self.blocks.append(nn.Sequential(*layers))
            u = float(upsample_strides[i])
            if u >= 1:
                k = int(round(u))
                up = nn.ConvTranspose2d(num_filters[i], num_upsample_filters[i], k, stride=k, bias=False)
            else:
                k = int(round(1 / u))
                up = nn.Conv2d(num_filters[i], num_upsample_filters[i], k, stride=k, bias=False)
            self.deblocks.append(
                nn.Sequential(up, nn.BatchNorm2d(num_upsample_filters[i], eps=1e-3, momentum=0.01), nn.ReLU())
            )
            cin = num_filters[i]
        self.out_channels = int(sum(num_upsample_filters))
        total = 1.0
        strides = []
        for s, u in zip(layer_strides, upsample_strides):
            total *= s
            strides.append(total / float(u))
        if len({round(s, 6) for s in strides}) != 1:
            raise UserError(
                f"BEV backbone: every level must reach one output stride, got {strides} (cumulative "
                "layer stride / upsample stride)"
            )
        self.stride = strides[0]  # output stride relative to the input canvas

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ups = []
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            ups.append(deblock(x))
        return torch.cat(ups, dim=1) if len(ups) > 1 else ups[0]
