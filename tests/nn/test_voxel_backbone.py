"""zoo.nn.voxel_backbone (spconv): forward and shapes only. spconv 2.3.8's CPU wheel runs the forward, but its backward
launches CUDA kernels, so on a CPU machine the backward (training) of this backbone cannot be tested; the CPU training
path is the pillar encoder (tests/nn/test_pillars.py)."""

from __future__ import annotations

import torch

from zoo.nn.voxel_backbone import VoxelResBackBone8x, mean_vfe

RANGE = (-6.4, -6.4, -2.0, 6.4, 6.4, 3.0)  # 32 x 32 x 25 voxels of 0.4 x 0.4 x 0.2 m
VOX = (0.4, 0.4, 0.2)


def _cloud(n, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(RANGE[:3]), torch.tensor(RANGE[3:])
    return torch.cat([lo + torch.rand(n, 3, generator=g) * (hi - lo) * 0.999, torch.rand(n, 1, generator=g)], 1)


def test_mean_vfe_is_the_voxel_mean():
    pts = torch.tensor([[0.1, 0.1, 0.05, 0.2], [0.3, 0.2, 0.1, 0.4], [1.0, 1.0, 1.0, 1.0]])
    feats, coords = mean_vfe(pts, torch.zeros(3, dtype=torch.long), VOX, RANGE)
    assert coords.tolist() == [[0, 10, 16, 16], [0, 15, 18, 18]]
    torch.testing.assert_close(feats[0], pts[:2].mean(0))


def test_forward_shapes_paper_layout():
    torch.manual_seed(0)
    net = VoxelResBackBone8x(4, VOX, RANGE, channels=(4, 8, 8, 8), out_channels=8).eval()
    assert net.sparse_shape == [26, 32, 32]  # (nz + 1, ny, nx) as OpenPCDet
    pts = [_cloud(1500, 0), _cloud(900, 1)]
    b = torch.cat([torch.full((len(p),), i) for i, p in enumerate(pts)])
    feats, coords = mean_vfe(torch.cat(pts), b, VOX, RANGE)
    with torch.no_grad():
        out = net(feats, coords, 2)
    # z: 26 -> 13 -> 7 -> 3 (padding 0) -> 1 (kernel 3, stride 2); x/y: 32 / 8 = 4
    assert net.out_z == 1 and out.shape == (2, 8 * 1, 4, 4) and net.out_channels == 8
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    # the paper's grid: 0.075 x 0.075 x 0.2 m over [-54, 54]^2 x [-5, 4.8] -> 1440 x 1440 x 49, 256 BEV channels
    with torch.device("meta"):
        paper = VoxelResBackBone8x()
    assert paper.sparse_shape == [50, 1440, 1440] and paper.out_channels == 256


def test_mean_vfe_hard_voxel_cap_matches_a_loop():
    """The release's hard voxeliser (<= max points per voxel, <= max voxels per frame, first come first served)."""
    import pytest

    from zoo.errors import UserError

    g = torch.Generator().manual_seed(0)
    pts = torch.cat(
        [torch.rand(400, 3, generator=g) * torch.tensor([1.2, 1.2, 0.4]) - 0.6, torch.rand(400, 1, generator=g)], 1
    )  # dense: many voxels hold more than 3 points
    b = torch.cat([torch.zeros(250, dtype=torch.long), torch.ones(150, dtype=torch.long)])
    feats, coords = mean_vfe(pts, b, VOX, RANGE, max_points_per_voxel=3, max_voxels=7)
    ref: dict[tuple, list[int]] = {}
    per_frame: dict[int, int] = {}
    for i, p in enumerate(pts.tolist()):
        cell = (int(b[i]), *(int((p[k] - RANGE[k]) // VOX[k]) for k in (2, 1, 0)))
        if cell not in ref:
            if per_frame.get(cell[0], 0) >= 7:
                continue
            per_frame[cell[0]] = per_frame.get(cell[0], 0) + 1
            ref[cell] = []
        if len(ref[cell]) < 3:
            ref[cell].append(i)
    got = {tuple(c): f for c, f in zip(coords.tolist(), feats)}
    assert set(got) == set(ref) and len(got) == 14
    for cell, idx in ref.items():
        torch.testing.assert_close(got[cell], pts[idx].mean(0))
    dyn, _ = mean_vfe(pts, b, VOX, RANGE)
    assert dyn.shape[0] > 14  # without the cap every voxel (and point) counts
    with pytest.raises(UserError, match="max_voxels"):
        mean_vfe(pts, b, VOX, RANGE, max_voxels=0)


def test_cpu_forward_is_the_same_on_any_thread_count():
    """spconv's CPU path sums wrongly (and differently run to run) with several intra-op threads; the forward runs on
    one thread and gives the caller's thread count back."""
    torch.manual_seed(0)
    net = VoxelResBackBone8x(4, VOX, RANGE, channels=(8, 16, 16, 16), out_channels=16).eval()
    pts = [_cloud(3000, 2), _cloud(2500, 3)]
    b = torch.cat([torch.full((len(p),), i) for i, p in enumerate(pts)])
    feats, coords = mean_vfe(torch.cat(pts), b, VOX, RANGE)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 2, 4):
            torch.set_num_threads(threads)
            with torch.no_grad():
                outs.append(net(feats, coords, 2))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    for out in outs[1:]:
        assert torch.equal(out, outs[0])
