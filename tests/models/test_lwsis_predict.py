"""LWSIS prediction speed (issue 26): the dynamic mask head applies its first layer as W_rel·rel + W_F·F (the mask
features multiplied once per image) and gives what the concatenated form [rel; F] per instance gave, values and
gradients, and ``CondInst.predict`` keeps its outputs; ``zoo bench --op lwsis-predict`` times it against torchvision's
FCOS R-50."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.models.lwsis import TINY
from zoo.models.lwsis.model import CondInst, DynamicMaskHead, aligned_bilinear, compute_locations


def _concatenated(head: DynamicMaskHead, mask_feats, params, im_inds, locations, soi):
    """The dynamic head as it was before issue 26 (and as AdelaiDet writes it): each instance's input is its own copy
    of [relative coordinates; its image's mask features], then ``layers`` batched 1x1 convolutions."""
    r = params.shape[0]
    _, c, h, w = mask_feats.shape
    grid = compute_locations(h, w, head.mask_stride, mask_feats.device, mask_feats.dtype)
    rel = (locations[:, None, :] - grid[None]) / soi[:, None, None]
    x = torch.cat([rel.permute(0, 2, 1).to(mask_feats.dtype), mask_feats[im_inds].reshape(r, c, h * w)], 1)
    ws = torch.split(params, head.weight_nums + head.bias_nums, dim=1)
    n = len(head.weight_nums)
    for i in range(n):
        x = torch.bmm(ws[i].reshape(r, head.dims[i + 1], head.dims[i]), x) + ws[n + i][:, :, None]
        if i < n - 1:
            x = F.relu(x)
    return aligned_bilinear(x.reshape(r, 1, h, w), head.mask_stride // head.out_stride)


def test_dynamic_head_equals_the_concatenated_form_with_gradients():
    g = torch.Generator().manual_seed(0)
    head = DynamicMaskHead(16, 8, 3)
    feats = torch.randn(3, 16, 6, 10, generator=g, requires_grad=True)
    params = (0.3 * torch.randn(7, head.num_params, generator=g)).requires_grad_()
    im_inds = torch.tensor([2, 0, 2, 1, 0, 2, 2])  # unsorted, every image, several instances each
    loc = torch.rand(7, 2, generator=g) * torch.tensor([80.0, 48.0])
    soi = torch.tensor([64.0, 128.0, 64.0, 256.0, 512.0, 1024.0, 64.0])
    new = head(feats, params, im_inds, loc, soi)
    old = _concatenated(head, feats, params, im_inds, loc, soi)
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-5)
    w = torch.randn(new.shape, generator=g)
    grads_new = torch.autograd.grad((new * w).sum(), (feats, params))
    grads_old = torch.autograd.grad((old * w).sum(), (feats, params))
    for a, b in zip(grads_new, grads_old, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert head(feats, params[:0], im_inds[:0], loc[:0], soi[:0]).shape == (0, 1, 12, 20)


def test_predict_outputs_are_unchanged_by_the_faster_mask_head(monkeypatch):
    """A fixed input through the tiny network: the same detections, masks and mask probabilities (to float
    tolerance) with the head as it is and with the concatenated form; 100 detections per image (the most)."""
    torch.manual_seed(0)
    net = CondInst(num_classes=10, **TINY["net"])  # the registry's tiny network.eval()
    images = torch.rand(2, 3, 96, 160, generator=torch.Generator().manual_seed(1)) * 255
    new = net.predict(images)
    monkeypatch.setattr(net.dynamic, "forward", lambda *a: _concatenated(net.dynamic, *a))
    old = net.predict(images)
    for a, b in zip(new, old, strict=True):
        assert len(a["boxes"]) == 100
        for k in ("boxes", "scores", "labels", "masks"):
            assert torch.equal(a[k], b[k]), k
        torch.testing.assert_close(a["mask_probs"], b["mask_probs"], rtol=0, atol=1e-6)
        assert 0 < a["masks"].float().mean() < 1


def test_lwsis_predict_op_row(monkeypatch, capsys):
    """`zoo bench --op lwsis-predict` through the CLI at a small image: two rows against FCOS's full prediction, the
    ratios their medians' quotient, both models keeping 100 detections."""
    import zoo.bench.lwsis_predict as lp
    import zoo.bench.peers as peers
    from zoo.cli import main

    monkeypatch.setattr(lp, "LWSIS_PREDICT_HW", (64, 96))
    assert main(["bench", "--op", "lwsis-predict", "--steps", "1"]) == 0
    assert "torchvision FCOS R-50 full prediction" in capsys.readouterr().out
    rows = peers.bench_peer_ops("lwsis-predict", reps=1, verbose=False)
    assert [r["size"] for r in rows] == ["LWSIS r50 at 64x96, full prediction", "LWSIS r50 at 64x96, network only"]
    assert all(r["ratio"] == pytest.approx(r["zoo_ms"] / r["peer_ms"]) for r in rows)
    assert rows[0]["note"].startswith("100 masks; FCOS kept 100 boxes") and "GMACs" in rows[1]["note"]
    assert "lwsis-predict" in peers.PEER_OPS and "lwsis-predict" in peers.ALL_PEERS  # part of the speed table
