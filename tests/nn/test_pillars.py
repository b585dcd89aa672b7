"""zoo.nn.pillars: dynamic voxelisation and the pillar feature net against loop-based references."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.errors import UserError
from zoo.nn.pillars import BEVBackbone, DynamicPillarVFE, flatten_batch, grid_size, scatter_to_bev, voxelize

RANGE = (-4.0, -4.0, -2.0, 4.0, 4.0, 2.0)
VOX = (1.0, 1.0, 4.0)


def cloud(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * torch.tensor([10.0, 10.0, 5.0]) - torch.tensor([5.0, 5.0, 2.5])
    return torch.cat([xyz, torch.rand(n, 1, generator=g)], 1)  # some points fall outside RANGE


def test_voxelize_matches_a_loop():
    pts = cloud(300, 0)
    b = torch.tensor([0] * 150 + [1] * 150)
    vox = voxelize(pts, (1.0, 1.0, 1.0), RANGE, b)
    ref: dict[tuple, list[int]] = {}
    for i, p in enumerate(pts.tolist()):
        if all(RANGE[k] <= p[k] < RANGE[k + 3] for k in range(3)):
            cell = (int(b[i]), *(math.floor((p[k] - RANGE[k]) / 1.0) for k in (2, 1, 0)))
            ref.setdefault(cell, []).append(i)
    assert vox.keep.sum() == sum(len(v) for v in ref.values())
    got = {tuple(c): int(n) for c, n in zip(vox.coords.tolist(), vox.counts)}
    assert got == {k: len(v) for k, v in ref.items()}
    kept = torch.nonzero(vox.keep).flatten().tolist()
    for j, i in enumerate(kept):  # every point sits in its own cell
        cell = tuple(vox.coords[vox.inverse[j]].tolist())
        assert cell in ref and i in ref[cell]


def test_pillar_net_matches_a_loop_reference():
    torch.manual_seed(0)
    vfe = DynamicPillarVFE(4, (8, 6), VOX, RANGE).eval()  # eval: BatchNorm uses its running stats, pointwise
    for m in vfe.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    pts = cloud(200, 1)
    feats, coords = vfe(pts)
    # reference: per pillar, decorate its points, run the two PFN layers point by point, max over the pillar
    groups: dict[tuple, list[torch.Tensor]] = {}
    for p in pts:
        if all(RANGE[k] <= float(p[k]) < RANGE[k + 3] for k in range(3)):
            key = (0, 0, math.floor((float(p[1]) + 4) / 1.0), math.floor((float(p[0]) + 4) / 1.0))
            groups.setdefault(key, []).append(p)
    l1, l2 = vfe.pfn

    def layer(layer_, x):
        return torch.relu(layer_.norm(layer_.linear(x)))

    assert len(groups) == coords.shape[0]
    for (b, z, iy, ix), plist in groups.items():
        P = torch.stack(plist)
        mean = P[:, :3].mean(0)
        centre = torch.tensor([(ix + 0.5) * 1.0 - 4, (iy + 0.5) * 1.0 - 4, 0.0])
        x = torch.cat([P, P[:, :3] - mean, P[:, :3] - centre], 1)
        h = layer(l1, x)
        h = torch.cat([h, h.max(0).values.expand_as(h)], 1)
        want = layer(l2, h).max(0).values
        row = ((coords == torch.tensor([b, z, iy, ix])).all(1)).nonzero().item()
        torch.testing.assert_close(feats[row], want, atol=1e-5, rtol=1e-5)


def test_scatter_and_backbone_shapes():
    pts, bidx, b = flatten_batch([cloud(100, 2), cloud(80, 3)])
    vfe = DynamicPillarVFE(4, (8, 8), VOX, RANGE)
    f, c = vfe(pts, bidx)
    nx, ny, _ = grid_size(VOX, RANGE)
    canvas = scatter_to_bev(f, c, b, ny, nx)
    assert canvas.shape == (2, 8, 8, 8)
    assert torch.equal(canvas[c[:, 0], :, c[:, 2], c[:, 3]], f)
    occupied = torch.zeros(2, 8, 8, dtype=torch.bool)
    occupied[c[:, 0], c[:, 2], c[:, 3]] = True
    assert (canvas.abs().sum(1)[~occupied] == 0).all()
    bev = BEVBackbone(8, (1, 1, 1), (2, 2, 2), (8, 16, 16), (0.5, 1, 2), (4, 4, 4))
    assert bev(canvas).shape == (2, 12, 2, 2) and bev.stride == 4


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="voxel_size"):
        voxelize(cloud(10, 0), (1.0, 1.0), RANGE)
    with pytest.raises(UserError, match=r"\[N, >=3\]"):
        voxelize(torch.zeros(5, 2), VOX, RANGE)
    with pytest.raises(UserError, match="pillars span the whole z range"):
        DynamicPillarVFE(4, (8,), (1.0, 1.0, 1.0), RANGE)
    with pytest.raises(UserError, match="one output stride"):
        BEVBackbone(8, (1, 1), (2, 2), (8, 8), (1, 1), (4, 4))


def test_release_pillars_filter_on_x_and_y_only():
    """yinjunbo/SSDA3D DynamicPillarVFE keeps points outside the z range (they shape their pillar); filter_z=True
    (the default, CMT's) drops them."""
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(3000, 2, generator=g) * 10.0 - 5.0
    z = torch.rand(3000, 1, generator=g) * 3.8 - 1.9
    z[:500] += 5.0  # 500 points above the z range
    pts = torch.cat([xy, z, torch.rand(3000, 1, generator=g)], 1)
    rng, vox = (-4.0, -4.0, -2.0, 4.0, 4.0, 2.0), (0.25, 0.25, 4.0)
    inside_xy = ((xy >= -4.0) & (xy < 4.0)).all(1)
    cells_xy = {tuple(c) for c in torch.floor((xy[inside_xy] + 4.0) / 0.25).long().tolist()}
    inside = inside_xy & (z[:, 0] >= -2.0) & (z[:, 0] < 2.0)
    cells_xyz = {tuple(c) for c in torch.floor((xy[inside] + 4.0) / 0.25).long().tolist()}
    release = voxelize(pts, vox, rng, filter_z=False)
    assert int(release.keep.sum()) == int(inside_xy.sum()) and release.coords.shape[0] == len(cells_xy)
    assert (release.coords[:, 1] == 0).all()
    zoo_z = voxelize(pts, vox, rng)
    assert zoo_z.coords.shape[0] == len(cells_xyz) < len(cells_xy)
    net = DynamicPillarVFE(4, (8, 8), vox, rng, filter_z=False).eval()
    feats, coords = net(pts)
    assert feats.shape[0] == len(cells_xy)
    # the pillar mean includes the high points: decorate's cluster offsets average to zero over every pillar
    dec = net.decorate(pts, release)
    assert dec.shape[0] == int(inside_xy.sum()) and dec[:, 2].max() > 2.0
    with pytest.raises(UserError, match="filter_z"):
        voxelize(pts, (0.25, 0.25, 1.0), rng, filter_z=False)


def _voxelize_by_unique(points, voxel_size, point_cloud_range, batch_index=None, filter_z=True):
    """zoo's previous voxelize (before issue 26), kept here as the reference: float [N, 3] broadcasts and one
    ``torch.unique(sorted=True, return_inverse=True, return_counts=True)`` over the flat key."""
    nx, ny, nz = grid_size(voxel_size, point_cloud_range)
    lo = torch.tensor(point_cloud_range[:3], dtype=points.dtype)
    hi = torch.tensor(point_cloud_range[3:], dtype=points.dtype)
    vs = torch.tensor(voxel_size, dtype=points.dtype)
    xyz = points[:, :3]
    if filter_z:
        keep = ((xyz >= lo) & (xyz < hi)).all(dim=1)
        idx = torch.minimum(torch.floor((xyz[keep] - lo) / vs).long(), torch.tensor([nx - 1, ny - 1, nz - 1]))
    else:
        cell = torch.floor((xyz[:, :2] - lo[:2]) / vs[:2]).long()
        keep = ((cell >= 0) & (cell < torch.tensor([nx, ny]))).all(dim=1)
        idx = torch.cat([cell[keep], torch.zeros_like(cell[keep, :1])], dim=1)
    b = batch_index[keep].long() if batch_index is not None else torch.zeros(idx.shape[0], dtype=torch.long)
    key = ((b * nz + idx[:, 2]) * ny + idx[:, 1]) * nx + idx[:, 0]
    uniq, inverse, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
    coords = torch.stack([uniq // (nx * ny * nz), uniq // (nx * ny) % nz, uniq // nx % ny, uniq % nx], dim=1)
    return coords, inverse, counts, keep


PILLAR_GRID = ((0.2, 0.2, 9.8), (-51.2, -51.2, -5.0, 51.2, 51.2, 4.8))  # ssda3d-pillar
VOXEL_GRID = ((0.075, 0.075, 0.2), (-54.0, -54.0, -5.0, 54.0, 54.0, 4.8))  # ssda3d-voxel (a key space > 2^21)


def test_voxelize_is_the_previous_torch_unique_result_on_real_frames(shared_data):
    """Issue 26: the counting (pillar grid) and radix-sort (voxel grid) paths give exactly the coords, inverse,
    counts and keep mask of the previous torch.unique implementation on KITTI 000000-000002 (one frame, three
    frames as one cloud, three frames as a batch) and the nuScenes keyframe, filter_z both ways for pillars."""
    from data_modules.driving_formats import read_points

    kitti = [torch.from_numpy(read_points(shared_data / f"kitti_frames/velodyne/00000{i}.bin", 4)) for i in range(3)]
    nus = next((shared_data / "nuscenes_demo").glob("*LIDAR_TOP*.pcd.bin"))
    clouds = {
        "kitti": (kitti[0], None),
        "kitti x3": (torch.cat(kitti), None),
        "kitti batch 3": (torch.cat(kitti), torch.cat([torch.full((len(p),), i) for i, p in enumerate(kitti)])),
        "nuscenes": (torch.from_numpy(read_points(nus, 5)), None),
    }
    compared = 0
    for name, (pts, b) in clouds.items():
        for grid, filter_zs in ((PILLAR_GRID, (True, False)), (VOXEL_GRID, (True,))):
            for fz in filter_zs:
                new = voxelize(pts, *grid, batch_index=b, filter_z=fz)
                old = _voxelize_by_unique(pts, *grid, batch_index=b, filter_z=fz)
                for field, got, want in zip(("coords", "inverse", "counts", "keep"), new, old):
                    assert got.dtype == want.dtype and torch.equal(got, want), (name, grid, fz, field)
                compared += 1
                assert new.counts.max() > 1  # real frames: cells with many points
    assert compared == 12


@pytest.mark.parametrize("n", [0, 1, 5000])
def test_voxelize_both_unique_paths_agree_with_torch_unique(n, monkeypatch):
    """The dense counting path and the sort path give the torch.unique result on the same cloud (forced by the
    dense-table threshold), batch indices included, empty and single-point clouds included."""
    import zoo.nn.pillars as pillars

    pts = cloud(n, 4) * 3
    b = torch.arange(n) % 3
    want = _voxelize_by_unique(pts, (0.5, 0.5, 0.5), RANGE, b)
    for cells, per_point in ((1 << 30, 4), (0, 0)):  # every key space dense / none: the sort path
        monkeypatch.setattr(pillars, "_DENSE_CELLS", cells)
        monkeypatch.setattr(pillars, "_DENSE_PER_POINT", per_point)
        got = voxelize(pts, (0.5, 0.5, 0.5), RANGE, b)
        assert all(torch.equal(x, y) for x, y in zip(got, want))
    with pytest.raises(UserError, match="batch_index"):
        voxelize(torch.zeros(3, 4), (0.5, 0.5, 0.5), RANGE, torch.tensor([0, -1, 0]))
