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
