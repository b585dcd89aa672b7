"""The SSDA3D / CenterPoint-voxel 3D encoder on spconv: mean VFE, ``VoxelResBackBone8x`` and ``HeightCompression``.

Architecture as OpenPCDet's ``pcdet/models/backbones_3d/spconv_backbone.py`` (``VoxelResBackBone8x``; SECOND, Yan et
al., Sensors 2018, with residual sparse blocks) as SSDA3D configures it: SubM(C -> 16) + 2 residual blocks;
[SparseConv s2 16 -> 32 + 2 res]; [s2 32 -> 64 + 2 res]; [s2 64 -> 128, padding (0, 1, 1) + 2 res]; out SparseConv
(3, 1, 1) stride (2, 1, 1) 128 ch. BatchNorm1d eps 1e-3, momentum 0.01. The sparse shape is the grid's
``(nz + 1, ny, nx)``; HeightCompression stacks the remaining z slices into channels (128 x 2 = 256 for the paper's
grid 1440 x 1440 x 49), stride 8.

spconv is an optional extra (``pip install zoo[3d]``), imported only when a voxel model is built. On a CPU-only machine
spconv 2.3.8's CPU wheel runs the forward, but its backward calls CUDA kernels: the tests run this backbone's forward
and check its shapes only; training the voxel model needs a GPU. The CPU training path is :mod:`zoo.nn.pillars`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from zoo.errors import UserError
from zoo.nn.pillars import grid_size, voxelize

__all__ = ["import_spconv", "VoxelResBackBone8x", "mean_vfe", "spconv_cpu_single_thread"]


@contextlib.contextmanager
def spconv_cpu_single_thread(x: torch.Tensor):
    """spconv 2.3.8's CPU path gives wrong, run-to-run different sums with more than one intra-op thread (measured on
    CMT's golden sparse encoder: 0.003-0.085 off with 2 threads, exact with 1): a CPU forward runs on one thread, the
    caller's thread count is put back afterwards. CUDA is untouched."""
    threads = torch.get_num_threads()
    if x.device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def import_spconv():
    """``spconv.pytorch``, or a UserError naming the extra that installs it."""
    try:
        import spconv.pytorch as spconv
    except ImportError as e:
        raise UserError(
            f"the voxel backbone needs spconv ({e}); install it with `pip install zoo[3d]` (or the "
            "spconv-cuXXX wheel matching your CUDA), or use the pillar backbone (backbone: pillar)"
        ) from e
    return spconv


def _rank_within(groups: torch.Tensor) -> torch.Tensor:
    """For each element its 0-based position among the elements of the same group, in input order."""
    perm = torch.sort(groups, stable=True).indices
    g = groups[perm]
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(g.shape[0], device=g.device) - torch.searchsorted(g, g, right=False)
    return rank


def mean_vfe(
    points: torch.Tensor,
    batch_index: torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    max_points_per_voxel: int | None = None,
    max_voxels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenPCDet ``MeanVFE``: the mean of each voxel's point features.
    -> (features [V, C], coords [V, 4] (b, iz, iy, ix)).

    ``max_points_per_voxel`` / ``max_voxels`` None: dynamic voxels, every point counts. Set, they emulate the
    release's hard voxeliser (spconv ``VoxelGenerator`` / ``PointToVoxel`` in OpenPCDet's ``data_processor.
    transform_points_to_voxels``; ``MAX_POINTS_PER_VOXEL: 10``, ``MAX_NUMBER_OF_VOXELS`` 120000 train / 160000 test
    in ``yinjunbo/SSDA3D:tools/cfgs/nuscenes_models/ssda3d_centerpoint.yaml``): points are taken in input order,
    a voxel keeps its first ``max_points_per_voxel`` points, and only the first ``max_voxels`` voxels of each frame
    (in order of their first point) exist; later points of a dropped voxel are ignored.
    """
    for name, v in (("max_points_per_voxel", max_points_per_voxel), ("max_voxels", max_voxels)):
        if v is not None and int(v) < 1:
            raise UserError(f"{name} must be >= 1 (or null for no cap), got {v}")
    vox = voxelize(points, voxel_size, point_cloud_range, batch_index)
    kept = points[vox.keep]
    inverse, coords = vox.inverse, vox.coords
    if max_points_per_voxel is not None or max_voxels is not None:
        n, v = inverse.shape[0], coords.shape[0]
        order = torch.arange(n, device=points.device)
        first = torch.full((v,), n, dtype=torch.long, device=points.device).scatter_reduce(
            0, inverse, order, reduce="amin", include_self=True
        )
        use = torch.ones(n, dtype=torch.bool, device=points.device)
        if max_points_per_voxel is not None:
            use &= _rank_within(inverse) < int(max_points_per_voxel)  # a point's place in its voxel, input order
        voxel_ok = torch.ones(v, dtype=torch.bool, device=points.device)
        if max_voxels is not None:
            # per frame (coords[:, 0]), the voxels ranked by their first point
            by_first = torch.argsort(first, stable=True)
            rank_v = torch.empty_like(by_first)
            rank_v[by_first] = _rank_within(coords[by_first, 0])
            voxel_ok = rank_v < int(max_voxels)
            use &= voxel_ok[inverse]
        remap = torch.cumsum(voxel_ok.long(), 0) - 1
        coords = coords[voxel_ok]
        kept, inverse = kept[use], remap[inverse[use]]
    counts = torch.bincount(inverse, minlength=coords.shape[0])
    feats = points.new_zeros(coords.shape[0], points.shape[1]).index_add_(0, inverse, kept)
    return feats / counts[:, None].to(points.dtype), coords


class _Spconv:
    """Builders that import spconv lazily (this module imports without it)."""

    def __init__(self):
        self.sp = import_spconv()

    def norm(self, c):
        return nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)

    def post_act(self, cin, cout, stride, padding, key):
        sp = self.sp
        return sp.SparseSequential(
            sp.SparseConv3d(cin, cout, 3, stride=stride, padding=padding, bias=False, indice_key=key),
            self.norm(cout),
            nn.ReLU(),
        )

    def res(self, c, key):
        return _basic_block_class(self.sp)(self, c, key)


_BLOCK = None


def _basic_block_class(sp):
    """``SparseBasicBlock`` must subclass spconv's ``SparseModule`` (so ``SparseSequential`` hands it the sparse
    tensor, not its features); spconv is imported lazily, so the class is made on first use."""
    global _BLOCK
    if _BLOCK is None:

        class SparseBasicBlock(sp.SparseModule):
            """Two SubM 3x3x3 convs with bias (as OpenPCDet's ``SparseBasicBlock``) + BN, identity shortcut, ReLU.
            The conv biases are held beside the convs (``bias1``, ``bias2``; official ``conv1.bias``,
            ``conv2.bias``) and added to the features: spconv's CPU inference path refuses a conv with a fused
            bias ("cpu don't support act and bias"); the sum is the same."""

            def __init__(self, b: _Spconv, c: int, key: str):
                super().__init__()
                self.conv1 = b.sp.SubMConv3d(c, c, 3, padding=1, bias=False, indice_key=key)
                self.bias1 = nn.Parameter(torch.zeros(c))
                self.bn1 = b.norm(c)
                self.conv2 = b.sp.SubMConv3d(c, c, 3, padding=1, bias=False, indice_key=key)
                self.bias2 = nn.Parameter(torch.zeros(c))
                self.bn2 = b.norm(c)

            def forward(self, x):
                out = self.conv1(x)
                out = out.replace_feature(torch.relu(self.bn1(out.features + self.bias1)))
                out = self.conv2(out)
                return out.replace_feature(torch.relu(self.bn2(out.features + self.bias2) + x.features))

        _BLOCK = SparseBasicBlock
    return _BLOCK


class VoxelResBackBone8x(nn.Module):
    """Sparse residual 3D encoder, stride 8 in x/y. forward(features [V, C], coords [V, 4] (b, iz, iy, ix), batch_size)
    -> dense BEV map [B, 128 * nz_out, ny / 8, nx / 8] (HeightCompression). ``out_channels`` = 128 * nz_out."""

    def __init__(
        self,
        in_channels: int = 4,
        voxel_size: Sequence[float] = (0.075, 0.075, 0.2),
        point_cloud_range: Sequence[float] = (-54.0, -54.0, -5.0, 54.0, 54.0, 4.8),
        channels: Sequence[int] = (16, 32, 64, 128),
        out_channels: int = 128,
    ):
        super().__init__()
        b = _Spconv()
        sp = b.sp
        if len(channels) != 4:
            raise UserError(f"VoxelResBackBone8x has 4 stages: channels needs 4 widths, got {list(channels)}")
        nx, ny, nz = grid_size(voxel_size, point_cloud_range)
        if nx % 8 or ny % 8:
            raise UserError(f"the voxel grid {nx} x {ny} must be divisible by 8 (the backbone's stride)")
        self.sparse_shape = [nz + 1, ny, nx]
        c1, c2, c3, c4 = (int(c) for c in channels)
        self.conv_input = sp.SparseSequential(
            sp.SubMConv3d(in_channels, c1, 3, padding=1, bias=False, indice_key="subm1"), b.norm(c1), nn.ReLU()
        )
        self.conv1 = sp.SparseSequential(b.res(c1, "res1"), b.res(c1, "res1"))
        self.conv2 = sp.SparseSequential(b.post_act(c1, c2, 2, 1, "spconv2"), b.res(c2, "res2"), b.res(c2, "res2"))
        self.conv3 = sp.SparseSequential(b.post_act(c2, c3, 2, 1, "spconv3"), b.res(c3, "res3"), b.res(c3, "res3"))
        self.conv4 = sp.SparseSequential(
            b.post_act(c3, c4, 2, (0, 1, 1), "spconv4"), b.res(c4, "res4"), b.res(c4, "res4")
        )
        self.conv_out = sp.SparseSequential(
            sp.SparseConv3d(
                c4, out_channels, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=False, indice_key="spconv_down2"
            ),
            b.norm(out_channels),
            nn.ReLU(),
        )
        z = nz + 1
        for k, s, p in ((3, 2, 1), (3, 2, 1), (3, 2, 0), (3, 2, 0)):  # conv2, conv3, conv4 (z pad 0), conv_out
            z = (z + 2 * p - k) // s + 1
        if z < 1:
            raise UserError(f"the voxel grid has {nz} z cells: too few for the backbone's 4 z-downsamplings")
        self.out_z = z
        self.out_channels = out_channels * z
        self.stride = 8

    def forward(self, features: torch.Tensor, coords: torch.Tensor, batch_size: int) -> torch.Tensor:
        sp = import_spconv()
        with spconv_cpu_single_thread(features):
            x = sp.SparseConvTensor(features, coords.int(), self.sparse_shape, batch_size)
            x = self.conv_input(x)
            for stage in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv_out):
                x = stage(x)
            dense = x.dense()  # [B, C, D, H, W]
        b, c, d, h, w = dense.shape
        return dense.view(b, c * d, h, w)
