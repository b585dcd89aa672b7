"""zoo.ops compiled Triton kernels on a CUDA device against the references (fp32 with TF32 tolerances, bf16), and
the benchmark at one size each. Skipped where there is no CUDA device; the same kernels run on the CPU in Triton's
interpreter in tests/ops."""

from __future__ import annotations

import pytest
import torch

from zoo.ops import _dispatch

# torch.cuda first: without a GPU, do not import triton here (tests/ops imports it in interpreter mode)
_WHY_NOT = "no CUDA device" if not torch.cuda.is_available() else _dispatch.cuda_kernel_error()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=f"needs a CUDA device with Triton: {_WHY_NOT}")

TOL = {torch.float32: dict(atol=2e-3, rtol=2e-3), torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("N,ds,dt", [(197, 64, 64), (50, 32, 80)])
def test_relation_kl_cuda(N, ds, dt, dtype):
    from zoo.ops import relation_kl, relation_kl_reference

    torch.manual_seed(0)
    sa, sb = (torch.randn(2, 3, N, ds, device="cuda", dtype=dtype, requires_grad=True) for _ in range(2))
    ta, tb = (torch.randn(2, 3, N, dt, device="cuda", dtype=dtype) for _ in range(2))
    ref = relation_kl_reference(sa, sb, ta, tb, ds**-0.5, dt**-0.5)
    g_ref = torch.autograd.grad(ref, (sa, sb))
    out = relation_kl(sa, sb, ta, tb, ds**-0.5, dt**-0.5)  # auto -> kernel on CUDA
    g_out = torch.autograd.grad(out, (sa, sb))
    torch.testing.assert_close(out, ref, **TOL[dtype])
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a.float(), b.float(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_propagate_cuda(dtype):
    from zoo.ops import graph_propagate, graph_propagate_reference

    torch.manual_seed(0)
    dense = (torch.rand(500, 400, device="cuda") < 0.02).float() * torch.rand(500, 400, device="cuda")
    adj = dense.to(dtype).to_sparse_csr()
    x = torch.randn(400, 200, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.randn(500, 200, device="cuda", dtype=dtype)
    ref = graph_propagate_reference(adj, x)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    out = graph_propagate(adj, x)
    (g_out,) = torch.autograd.grad((out * w).sum(), x)
    torch.testing.assert_close(out.float(), ref.float(), **TOL[dtype])
    torch.testing.assert_close(g_out.float(), g_ref.float(), **TOL[dtype])


def test_graph_propagate_given_transpose_and_reliant_on_the_kernel():
    """RELIANT's propagation (symmetric adjacency as its own transpose) runs on the kernel on CUDA and matches the
    CPU reference."""
    from torch_geometric.utils import to_undirected

    from zoo.models.reliant.model import GCNTeacher, PLPStudent

    torch.manual_seed(0)
    n = 300
    ei = to_undirected(torch.randint(0, n, (2, 1500)), num_nodes=n)
    ei = ei[:, ei[0] != ei[1]]
    x = torch.randn(n, 16)
    for net in (GCNTeacher(16), PLPStudent(16, n)):
        net.eval()
        xc = x.clone().requires_grad_()
        ref = net(xc, ei)
        (g_ref,) = torch.autograd.grad(ref.square().sum(), xc)
        net.cuda()
        xg = x.cuda().requires_grad_()
        out = net(xg, ei.cuda())
        (g_out,) = torch.autograd.grad(out.square().sum(), xg)
        torch.testing.assert_close(out.cpu(), ref, **TOL[torch.float32])
        torch.testing.assert_close(g_out.cpu(), g_ref, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fused_linear_cross_entropy_cuda(dtype, reduction):
    from zoo.ops import fused_linear_cross_entropy, fused_linear_cross_entropy_reference

    torch.manual_seed(0)
    h = torch.randn(300, 128, device="cuda", dtype=dtype, requires_grad=True)
    w = (torch.randn(5000, 128, device="cuda", dtype=dtype) / 128**0.5).requires_grad_()
    b = torch.randn(5000, device="cuda", dtype=dtype, requires_grad=True)
    y = torch.randint(0, 5000, (300,), device="cuda")
    y[::7] = -100
    ref = fused_linear_cross_entropy_reference(h, w, b, y, reduction=reduction)
    up = torch.rand_like(ref)
    g_ref = torch.autograd.grad((ref * up).sum(), (h, w, b))
    out = fused_linear_cross_entropy(h, w, b, y, reduction=reduction)
    g_out = torch.autograd.grad((out * up).sum(), (h, w, b))
    torch.testing.assert_close(out, ref, **TOL[dtype])
    for a, r in zip(g_out, g_ref):
        torch.testing.assert_close(a.float(), r.float(), **TOL[dtype])


@pytest.mark.parametrize(
    "op,size",
    [
        ("relation_kl", dict(B=8, H=12, N=197, d=64)),
        ("graph_propagate", dict(graph="cora", nodes=2708, nnz=13264, F=1433)),
        ("fused_linear_cross_entropy", dict(R=1024, D=768, V=30522)),
    ],
)
def test_bench_cuda(op, size):
    from zoo.ops.bench import bench_op

    rows = bench_op(op, device="cuda", sizes=[size], reps=3)
    assert {"reference", "triton"} <= {r["provider"] for r in rows}
    assert all(r["ms"] > 0 and r["peak_mib"] is not None for r in rows)


def test_voxelize_cuda_is_the_cpu_result(shared_data):
    """Issue 26: voxelize is one function on both devices: on CUDA tensors (counting / sort path on the GPU) it gives
    the CPU's coords, inverse, counts and keep on the KITTI and nuScenes frames, pillar and voxel grids, batched."""
    from zoo.bench.peers import PILLAR_GRID, VOXEL_GRID
    from zoo.data_modules.driving_formats import read_points
    from zoo.nn.pillars import voxelize

    kitti = [torch.from_numpy(read_points(shared_data / f"kitti_frames/velodyne/00000{i}.bin", 4)) for i in range(3)]
    nus = torch.from_numpy(read_points(next((shared_data / "nuscenes_demo").glob("*LIDAR_TOP*.pcd.bin")), 5))
    batch = torch.cat([torch.full((len(p),), i) for i, p in enumerate(kitti)])
    for pts, b in ((kitti[0], None), (torch.cat(kitti), batch), (nus, None)):
        for vs, rng, *_ in (PILLAR_GRID, VOXEL_GRID):
            cpu = voxelize(pts, vs, rng, b)
            gpu = voxelize(pts.cuda(), vs, rng, None if b is None else b.cuda())
            for c, g in zip(cpu, gpu):
                assert g.device.type == "cuda" and torch.equal(c, g.cpu())


def test_rotated_nms_and_iou_cuda_match_the_cpu():
    from zoo.bench.peers import scene_boxes
    from zoo.nn.boxes3d import bev_iou, rotated_nms

    boxes, scores = scene_boxes(2000, seed=3)
    torch.testing.assert_close(bev_iou(boxes.cuda(), boxes.cuda()).cpu(), bev_iou(boxes, boxes), atol=1e-6, rtol=0)
    keep = rotated_nms(boxes.cuda(), scores.cuda(), 0.2)
    assert keep.device.type == "cuda" and torch.equal(keep.cpu(), rotated_nms(boxes, scores, 0.2))


def test_peer_bench_voxelize_cuda(monkeypatch):
    import zoo.bench.peers as profiling

    monkeypatch.setattr(profiling, "LINEARITY_POINTS", (20_000, 100_000))
    rows = profiling.bench_peer_ops("voxelize", reps=3, device="cuda")
    assert all(r["device"] == "cuda" and r["zoo_ms"] > 0 for r in rows)
