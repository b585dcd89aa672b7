"""CMT: camera geometry of the coordinates encoding, query visibility, PE shapes, matching, denoising, box code, the
three modality paths, losses, bad calibration, the converter and a short real-data fit."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.errors import UserError
from zoo.models.cmt import SPECS
from zoo.models.cmt.convert import convert_state_dict
from zoo.models.cmt.matching import (
    denoising_attn_mask,
    focal_cost,
    hungarian_match,
    match,
    prepare_denoising,
)
from zoo.models.cmt.model import (
    CMT,
    camera_ray_points,
    check_lidar2img,
    decode_boxes,
    encode_boxes,
    pos2embed,
    project_anchors,
)
from zoo.models.cmt.module import CMTModule, ModalMask3D, sigmoid_focal_sum, synthetic_cameras
from zoo.models.cmt.sizes import SIZES

PCR = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]


NET_ARGS = set(inspect.signature(CMT).parameters) - {"img_backbone_kwargs"}


def tiny(**kw):
    """The registry's tiny cmt-pillar0200-r50 (its ``tiny_overrides``, module defaults otherwise); ``kw`` may name
    network arguments (merged into ``net``) and module arguments."""
    over = SPECS["cmt-pillar0200-r50"][3]
    net = {**over["net"], **{k: v for k, v in kw.items() if k in NET_ARGS}}
    args = {**over, **{k: v for k, v in kw.items() if k not in NET_ARGS}, "net": net}
    torch.manual_seed(0)
    return CMTModule(size="pillar0200-r50", **args)


def _project(l2i, pts):
    p = torch.cat([pts, torch.ones(len(pts), 1, dtype=pts.dtype)], 1) @ l2i.T
    return p[:, :2] / p[:, 2:3], p[:, 2]


# ------------------------------------------------------------------------------------------------ geometry
def test_ray_points_land_on_the_ray_of_their_pixel():
    l2i = synthetic_cameras(2, 64, 128, dtype=torch.float64)[None]
    rays = camera_ray_points(l2i, (4, 8), (64, 128), 6, PCR)  # [1, 2, 4, 8, 18]
    assert rays.shape == (1, 2, 4, 8, 18)
    lo, hi = torch.tensor(PCR[:3], dtype=torch.float64), torch.tensor(PCR[3:], dtype=torch.float64)
    pts = rays[0, 1, 2, 5].view(6, 3) * (hi - lo) + lo  # view 1, cell (h=2, w=5)
    uv, depth = _project(l2i[0, 1], pts)
    want = torch.tensor([[5 * 128 / 8, 2 * 64 / 4]], dtype=torch.float64).expand(6, 2)
    torch.testing.assert_close(uv, want, atol=1e-3, rtol=1e-5)  # computed in float32
    torch.testing.assert_close(depth, 1 + torch.arange(6, dtype=torch.float64) * (PCR[3] - 1) / 6, atol=1e-4, rtol=1e-5)


def test_anchor_back_projection_passes_through_the_anchor():
    l2i = synthetic_cameras(4, 64, 128, dtype=torch.float64)[None]
    p = torch.tensor([[20.0, 3.0, 0.5]], dtype=torch.float64)  # in front of view 0 (looks along +x)
    lo, hi = torch.tensor(PCR[:3], dtype=torch.float64), torch.tensor(PCR[3:], dtype=torch.float64)
    rays, vis = project_anchors(((p - lo) / (hi - lo))[None], l2i, (64, 128), 16, PCR)
    ray = rays[0, 0, 0].view(16, 3) * (hi - lo) + lo
    # every ray point projects onto the anchor's pixel, and the anchor lies on the line through them
    uv_p, _ = _project(l2i[0, 0], p)
    uv_r, _ = _project(l2i[0, 0], ray)
    torch.testing.assert_close(uv_r, uv_p.expand(16, 2))
    d = ray[-1] - ray[0]
    t = ((p[0] - ray[0]) @ d) / (d @ d)
    torch.testing.assert_close(ray[0] + t * d, p[0], atol=1e-5, rtol=1e-5)
    assert vis[0, :, 0].tolist() == [True, False, False, False]


def test_anchor_visibility_on_a_hand_built_camera():
    l2i = synthetic_cameras(4, 64, 128)[None]  # views look along +x, +y, -x, -y; horizontal FOV 90 degrees
    lo, hi = torch.tensor(PCR[:3]), torch.tensor(PCR[3:])
    pts = torch.tensor([[10.0, 0.0, 0.0], [-10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [10.0, 9.0, 0.0], [10.0, 0.0, 9.0]])
    _, vis = project_anchors(((pts - lo) / (hi - lo))[None], l2i, (64, 128), 4, PCR)
    v = vis[0].T.tolist()  # [point, view]
    assert v[0] == [True, False, False, False]
    assert v[1] == [False, False, True, False]  # behind view 0, seen by the rear view
    assert v[2] == [False, True, False, False]
    assert v[3] == [True, False, False, False]  # 42 degrees left: inside the 45-degree half FOV
    assert v[4] == [False, False, False, False]  # far above: outside the 64-row image


def test_position_encoding_shapes_and_narrow_band_quirk():
    pos = torch.rand(7, 2)
    e = pos2embed(pos, 16)
    assert e.shape == (7, 32)
    # released dim_t = 1 + 2 floor(i/2)/N: channel 0 of the x half is sin(2 pi x), channel 1 cos(2 pi x / 1)
    torch.testing.assert_close(e[:, 16], torch.sin(2 * math.pi * pos[:, 0]))
    torch.testing.assert_close(e[:, 0], torch.sin(2 * math.pi * pos[:, 1]))
    torch.testing.assert_close(e[:, 14 + 16 + 1], torch.cos(2 * math.pi * pos[:, 0] / (1 + 14 / 16)))
    detr = pos2embed(pos, 16, narrow_band=False)
    torch.testing.assert_close(detr[:, 31], torch.cos(2 * math.pi * pos[:, 0] / 10000 ** (14 / 16)))
    m = tiny()
    out = m(*m.example_input_array)
    n, q = len(m.model.decoder.layers), m.model.num_query
    assert out["cls"].shape == (n, 1, q, 10)
    assert out["box"].shape == (n, 1, q, 10)


# ------------------------------------------------------------------------------------------------ matching
def brute_force_assignment(cost: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """Minimum total cost over all injective maps GT -> query (tiny sizes)."""
    from itertools import permutations

    q, m = cost.shape
    best = (math.inf, ())
    for perm in permutations(range(q), m):
        total = sum(cost[perm[j], j] for j in range(m))
        if total < best[0]:
            best = (total, perm)
    return best


def test_hungarian_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        cost = torch.rand(6, 4, generator=g)
        rows, cols = hungarian_match(cost)
        best, _ = brute_force_assignment(cost.numpy())
        assert float(cost[rows, cols].sum()) == pytest.approx(best, abs=1e-6)
        assert sorted(cols.tolist()) == [0, 1, 2, 3]


def test_focal_cost_prefers_the_confident_class_and_match_uses_l1():
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0], [-4.0, -4.0]])
    c = focal_cost(logits, torch.tensor([1, 0]))
    assert c[1, 0] < c[0, 0] and c[0, 1] < c[1, 1]
    codes = torch.zeros(3, 10)
    codes[2, :2] = 5.0
    gt = torch.zeros(1, 10)
    gt[0, :2] = 5.0
    rows, cols = match(torch.zeros(3, 2), codes, torch.tensor([0]), gt)
    assert rows.tolist() == [2] and cols.tolist() == [0]


def test_denoising_attention_mask():
    m = denoising_attn_mask(single_pad=2, groups=3, num_query=4)
    assert m.shape == (10, 10)
    assert m[6:, :6].all() and not m[6:, 6:].any()  # matching queries do not see DN queries
    for g in range(3):
        rows = slice(2 * g, 2 * g + 2)
        own = torch.zeros(10, dtype=torch.bool)
        own[2 * g : 2 * g + 2] = True
        own[6:] = True
        assert (m[rows] == ~own).all()  # a group sees itself and the matching queries only


def test_prepare_denoising_targets_and_anchors():
    boxes = [
        torch.tensor([[10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]]),
        torch.tensor([[0.0, 5.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [-5.0, 0, 0, 1, 1, 1, 0, 0, 0]]),
    ]
    labels = [torch.tensor([0]), torch.tensor([8, 9])]
    dn = prepare_denoising(
        boxes, labels, num_query=10, num_classes=10, pc_range=PCR, scalar=3, generator=torch.Generator().manual_seed(0)
    )
    assert dn.groups == 3 and dn.pad_size == 6 and dn.anchors.shape == (2, 6, 3)
    assert dn.labels.shape == (9,)
    # jitter within half the box size: the DN anchor of the first car stays within (2, 1, 0.75) m of its centre
    lo, hi = torch.tensor(PCR[:3]), torch.tensor(PCR[3:])
    a = dn.anchors[0, 0] * (hi - lo) + lo
    assert (a - boxes[0][0, :3]).abs().le(torch.tensor([2.0, 1.0, 0.75]) + 1e-5).all()
    assert set(dn.labels.tolist()) <= {0, 8, 9, 10}
    assert torch.equal(dn.boxes[:3], torch.cat(boxes)[:, :9])


# ------------------------------------------------------------------------------------------------ box code
@pytest.mark.parametrize("quirk", [True, False])
def test_box_code_round_trip_and_quirk_layout(quirk):
    b = torch.tensor([[3.0, -4.0, 0.7, 4.2, 1.9, 1.6, 0.4, 1.0, -2.0]])
    code = encode_boxes(b, quirk)
    torch.testing.assert_close(decode_boxes(code, quirk), b)
    if quirk:  # the released layout: slot 2 (the sigmoid-bounded "height" head) holds log dx, slot 4 the centre z
        assert code[0, 2] == pytest.approx(math.log(4.2)) and code[0, 4] == pytest.approx(0.7)
    else:
        assert code[0, 2] == pytest.approx(0.7) and code[0, 3] == pytest.approx(math.log(4.2))


# ------------------------------------------------------------------------------------------------ modalities
def _batch(m, n_boxes=3):
    pts, images, l2i = m.example_input_array
    if pts is None:
        pts = [torch.zeros(8, 5)]
    boxes = torch.tensor([[10.0, 3.0, 0.0, 4.0, 2.0, 1.5, 0.3, 1.0, 0.0]]).repeat(n_boxes, 1)
    boxes[:, 0] += torch.arange(n_boxes) * 5.0
    return {"points": pts, "images": images, "lidar2img": l2i, "boxes": [boxes], "labels": [torch.arange(n_boxes) % 10]}


def _grads(m):
    return {n for n, p in m.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("path", ["fusion", "camera", "lidar"])
def test_modality_paths_finite_and_gradients_only_where_used(path):
    m = tiny()
    m.train()
    pts, images, l2i = m.example_input_array
    out = m.model(pts, images, l2i, modalities=path)
    assert all(torch.isfinite(v).all() for v in out.values())
    (out["cls"].sum() + out["box"].sum()).backward()
    g = _grads(m)
    img = any(n.startswith(("img.", "rv_embedding.")) for n in g)
    lid = any(n.startswith(("pts.", "shared_conv.", "bev_embedding.")) for n in g)
    assert img == (path != "lidar") and lid == (path != "camera"), (path, img, lid)
    assert any(n.startswith("task_head.") for n in g) and any(n.startswith("decoder.") for n in g)


def test_single_modality_models_and_masking():
    lidar = tiny(modalities="lidar")
    assert not hasattr(lidar.model, "img") and not hasattr(lidar.model, "rv_embedding")
    with pytest.raises(UserError, match="needs a branch"):
        lidar.model(None, None, None, modalities="camera")
    cam = tiny(modalities="camera")
    out = cam(*cam.example_input_array)
    assert torch.isfinite(out["box"]).all()
    fusion = tiny()
    b = _batch(fusion)
    zeroed = ModalMask3D().drop(b, "lidar")  # a camera-only batch: every point at the origin
    assert all((p == 0).all() for p in zeroed["points"])
    with torch.no_grad():
        o = fusion(*fusion._inputs(zeroed))
    assert torch.isfinite(o["cls"]).all()
    masker = ModalMask3D(0.25, 0.25)
    many = {"points": [torch.ones(4, 5)] * 400, "images": torch.ones(400, 1, 3, 2, 2)}
    masked, states = masker(many, torch.Generator().manual_seed(0))
    share = {s: states.count(s) / 400 for s in ("both", "camera_off", "lidar_off")}
    assert abs(share["both"] - 0.5) < 0.08 and abs(share["camera_off"] - 0.25) < 0.07
    for s, p, im in zip(states, masked["points"], masked["images"]):
        assert (p == 0).all() == (s == "lidar_off")
        black = torch.tensor(masker.black).view(3, 1, 1)
        assert torch.allclose(im[0], black.expand(3, 2, 2)) == (s == "camera_off")


def test_bad_calibration_is_a_clear_error():
    m = tiny()
    pts, images, l2i = m.example_input_array
    sing = l2i.clone()
    sing[0, 1, 2] = sing[0, 1, 0]  # two equal rows: not invertible
    with pytest.raises(UserError, match="view 1 is singular"):
        m(pts, images, sing)
    with pytest.raises(UserError, match="missing view"):
        m(pts, images, l2i[:, :1])
    with pytest.raises(UserError, match="singular"):
        check_lidar2img(torch.zeros(1, 1, 4, 4))


# ------------------------------------------------------------------------------------------------ release quirks
@pytest.mark.parametrize("clamp", [True, False])
def test_query_anchors_are_clamped_before_the_query_encodings(clamp):
    """``CmtHead.query_embed``: inverse_sigmoid(ref).sigmoid() -> anchors 1.3 / -0.2 encode like 1.0 / 0.0 (the box
    decoding clamps them anyway); with ``clamp_query_anchors=False`` the raw anchors change the query PE."""
    m = tiny(clamp_query_anchors=clamp).eval()
    pts, images, l2i = m.example_input_array
    q = m.model.num_query
    raw = torch.rand(q, 3, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.3  # ~ 38 % outside [0, 1]
    outs = []
    for ref in (raw, raw.clamp(0, 1)):
        with torch.no_grad():
            m.model.reference_points.weight.copy_(ref)
            dn = torch.tensor([[[-0.4, 1.2, 0.5]]])  # a denoising anchor outside [0, 1]
            outs.append(m.model(pts, images, l2i, dn_anchors=dn if not outs else dn.clamp(0, 1)))
    same = all(
        torch.allclose(a, b, atol=1e-6) for a, b in ((outs[0]["cls"], outs[1]["cls"]), (outs[0]["box"], outs[1]["box"]))
    )
    assert same == clamp
    dn_same = torch.allclose(outs[0]["cls"][:, :, 0], outs[1]["cls"][:, :, 0], atol=1e-6)  # the DN query alone
    assert dn_same == clamp


def test_cross_attention_dropout_is_the_releases(monkeypatch):
    """The release's cross-attention runs attention dropout 0.0 (its 0.1 lands in FlashMHA's ``bias``) and output
    dropout 0.1; the self-attention 0.1 and 0.1. ``cross_attn_dropout=0.1`` is zoo's earlier behaviour."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, dropout_p=0.0, **kw):
        seen.append(dropout_p)
        return sdpa(*args, dropout_p=dropout_p, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    for cross, want in ((None, [0.1, 0.0]), (0.1, [0.1, 0.1])):
        m = tiny(**({} if cross is None else {"cross_attn_dropout": cross})).train()
        layer = m.model.decoder.layers[0]
        assert layer.drop.p == 0.1  # output dropout of both attentions
        seen.clear()
        m.model(*m.example_input_array)
        assert seen[:2] == want  # layer 0: self-attention, then cross-attention
        m.eval()
        seen.clear()
        m.model(*m.example_input_array)
        assert set(seen) == {0.0}  # training only


def test_camera_only_queries_get_the_bev_pe_as_released():
    """``CmtImageHead`` inherits ``CmtHead.query_embed`` (BEV PE of the anchors' x, y + camera-ray PE), so the CMT-C
    release has a ``bev_embedding``; ``camera_bev_query_pe=False`` is zoo's earlier image-PE-only CMT-C."""
    cam = tiny(modalities="camera").eval()
    assert hasattr(cam.model, "bev_embedding") and not hasattr(cam.model, "shared_conv")
    with torch.no_grad():
        out = cam(*cam.example_input_array)["cls"]
        torch.nn.init.zeros_(cam.model.bev_embedding[2].bias)
        torch.nn.init.zeros_(cam.model.bev_embedding[2].weight)
        off = cam(*cam.example_input_array)["cls"]
    assert not torch.allclose(out, off)  # the BEV PE of the queries is in use
    plain = tiny(modalities="camera", camera_bev_query_pe=False)
    assert not hasattr(plain.model, "bev_embedding")


@pytest.mark.parametrize("norm_eval", [True, False])
def test_image_backbone_batchnorm_stays_frozen_as_released(norm_eval):
    """The released configs set ``norm_eval=True`` on the image backbone: its BatchNorm layers keep their running
    statistics in training; ``img_norm_eval=False`` trains them as ordinary BatchNorm. The neck and head are
    unaffected."""
    m = tiny(modalities="camera", img_norm_eval=norm_eval).train()
    bns = [mod for mod in m.model.img.backbone.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    m.model(*m.example_input_array)
    changed = any(not torch.equal(a, bn.running_mean) for a, bn in zip(before, bns))
    assert changed != norm_eval
    assert all(bn.training != norm_eval for bn in bns) and m.model.decoder.training


def test_negative_size_boxes_are_dropped_and_counted():
    """A box with a size <= 0 would be a NaN target (log dx) in the loss and the matching cost: it is dropped with a
    warning that counts it (as SSDA3D drops its bad boxes), the good boxes train as before."""
    m = tiny()
    b = _batch(m, 3)
    b["boxes"][0][1, 4] = -2.0
    with pytest.warns(UserWarning, match="dropped 1 of 3 target boxes"):
        boxes, labels = m._targets(b)
    assert len(boxes[0]) == 2 and labels[0].tolist() == [0, 2] and m.dropped_boxes == 1
    with pytest.warns(UserWarning, match=r"\(2 so far\)"):
        losses = m.compute_losses(b, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in losses.values())
    b["labels"] = [b["labels"][0][:2]]
    with pytest.raises(UserError, match="one label per box"):
        m._targets(b)


# ------------------------------------------------------------------------------------------------ objective
def test_focal_loss_against_hand_computation():
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]])
    labels = torch.tensor([1, 2])  # frame 2 is background (label == num_classes)
    p = logits.sigmoid()
    t = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    pt = p * t + (1 - p) * (1 - t)
    at = 0.25 * t + 0.75 * (1 - t)
    want = (-at * (1 - pt) ** 2 * torch.log(pt)).sum()
    torch.testing.assert_close(sigmoid_focal_sum(logits, labels), want)


def test_layer_loss_is_zero_for_a_perfect_box_and_counts_every_layer():
    m = tiny()
    b = _batch(m, 2)
    code = encode_boxes(b["boxes"][0], True)
    box = torch.zeros(1, m.model.num_query, 10)
    box[0, :2] = code
    cls = torch.full((1, m.model.num_query, 10), -8.0)
    cls[0, 0, 0] = cls[0, 1, 1] = 8.0
    lc, lb, matches = m.layer_loss(cls, box, b["boxes"], b["labels"])
    assert matches[0][0].tolist() == [0, 1] and float(lb) == pytest.approx(0.0, abs=1e-6) and float(lc) < 1e-3
    losses = m.compute_losses(b)
    n = len(m.model.decoder.layers)
    assert {k for k in losses if k.startswith("d0.")} == {
        "d0.loss_cls",
        "d0.loss_bbox",
        "d0.dn_loss_cls",
        "d0.dn_loss_bbox",
    }
    assert float(losses["loss"]) == pytest.approx(float(sum(v for k, v in losses.items() if k != "loss")))
    assert len([k for k in losses if k.endswith("loss_cls") and "dn" not in k]) == n


def test_one_cycle_schedule_and_backbone_lr():
    m = tiny()
    cfg = m.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[0] == pytest.approx(lrs[2] * 0.01) and lrs[1] == pytest.approx(lrs[2] * 0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == pytest.approx([0.05, 0.01, 0.01])  # backbone decay x 5
    peak = []
    for _ in range(1000):
        opt.step()
        sched.step()
        peak.append(opt.param_groups[2]["lr"])
        if len(peak) == 999:
            break
    assert max(peak) == pytest.approx(m.hparams.lr * 8, rel=1e-3)
    assert int(np.argmax(peak)) in range(390, 410)


# ------------------------------------------------------------------------------------------------ converter
def _official_key(ours: str) -> str:
    """Our key -> the release's (hand-written inverse of the documented layout)."""
    rules = [
        ("img.neck.fpn_conv.", "img_neck.fpn_convs.0.conv."),
        ("shared_conv.0.", "pts_bbox_head.shared_conv.conv."),
        ("shared_conv.1.", "pts_bbox_head.shared_conv.bn."),
        ("decoder.post_norm.", "pts_bbox_head.transformer.decoder.post_norm."),
    ]
    for a, b in rules:
        if ours.startswith(a):
            return b + ours[len(a) :]
    parts = ours.split(".")
    if ours.startswith("img.neck.lateral_convs."):
        return f"img_neck.lateral_convs.{parts[3]}.conv.{parts[4]}"
    if ours.startswith("img.backbone."):
        return "img_backbone." + ".".join(parts[2:])
    if ours.startswith("pts.pts_backbone.blocks."):
        return f"pts_backbone.blocks.{parts[3]}.{int(parts[4]) - 1}.{parts[5]}"
    if ours.startswith("pts.pts_backbone.deblocks."):
        return "pts_neck.deblocks." + ".".join(parts[3:])
    if ours.startswith("pts.pts_voxel_encoder.pfn."):
        return "pts_voxel_encoder.pfn_layers." + ".".join(parts[3:])
    if ours.startswith("decoder.layers."):
        sub = {"self_attn": "attentions.0.attn", "cross_attn": "attentions.1.attn", "norms": "norms"}
        rest = ".".join(parts[4:])
        if parts[3] == "ffn":
            tail = f"ffns.0.layers.0.0.{parts[5]}" if parts[4] == "0" else f"ffns.0.layers.1.{parts[5]}"
        else:
            tail = f"{sub[parts[3]]}.{rest}"
        return f"pts_bbox_head.transformer.decoder.layers.{parts[2]}.{tail}"
    if ours.startswith("task_head."):
        return "pts_bbox_head.task_heads.0." + ".".join(parts[1:])
    return "pts_bbox_head." + ours  # reference_points, bev_embedding, rv_embedding


def test_converter_on_the_official_layout():
    m = tiny()
    own = m.model.state_dict()
    official = {
        _official_key(k): torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
        for k, v in own.items()
    }
    one_by_one = "pts_neck.deblocks.0.0.weight"  # stride-1 level: the release's 1x1 Conv2d is [out, in], ours [in, out]
    assert official[one_by_one].shape[-2:] == (1, 1)
    assert "pts_bbox_head.transformer.decoder.layers.0.attentions.1.attn.in_proj_weight" in official
    assert "pts_backbone.blocks.0.0.weight" in official  # SECOND's first conv (ours sits behind a ZeroPad2d)
    got = convert_state_dict({"state_dict": official})
    assert set(got) == {k for k in own if not k.endswith("num_batches_tracked")}
    for k, v in got.items():
        assert v.shape == own[k].shape
        want = official[_official_key(k)]
        torch.testing.assert_close(v, want.transpose(0, 1) if _official_key(k) == one_by_one else want)
    m.model.load_state_dict({**own, **got}, strict=True)
    # spconv weights: mmcv (k, k, k, in, out) -> spconv 2 (out, k, k, k, in)
    w = torch.randn(3, 3, 3, 16, 32)
    conv = convert_state_dict({"pts_middle_encoder.encoder_layers.encoder_layer1.2.0.weight": w})
    torch.testing.assert_close(conv["pts.pts_middle_encoder.encoder_layers.0.2.0.weight"], w.permute(4, 0, 1, 2, 3))
    with pytest.raises(UserError, match="VoVNet"):
        convert_state_dict({"img_backbone.stage2.OSA2_1.conv_reduction.OSA2_1_reduction/conv.weight": torch.zeros(1)})
    with pytest.raises(UserError, match="not a key"):
        convert_state_dict({"backbone.foo": torch.zeros(1)})


@pytest.mark.parametrize("name", ["cmt-voxel0075-vov", "cmt-voxel0100-r50", "cmt-lidar-voxel0075", "cmt-camera-vov"])
@pytest.mark.parametrize("spconv_layout", ["2.x", "1.x"])
def test_converter_covers_the_full_official_key_set(name, spconv_layout):
    """Every key and shape of the official network of each released config (tests/fixtures/cmt/official_keys.json:
    VoVNet / ResNet image backbone, CPFPN, SparseEncoder, SECOND, SECONDFPN and the head, built from the official
    module definitions) converts onto the registry entry's model, nothing missing or left over, equal shapes; the
    parameter counts are equal. Sparse conv weights are tried in both spconv layouts (the fixture holds 2.x's)."""
    import json

    spec = json.loads((GOLDEN / "official_keys.json").read_text())[name]
    with torch.device("meta"):
        m = CMTModule(**SPECS[name][0])
        sd = {k: torch.empty(s) for k, s in spec["keys"].items()}
    sparse = [k for k, v in sd.items() if v.dim() == 5]
    assert len(sparse) == (0 if name == "cmt-camera-vov" else 21)
    if spconv_layout == "1.x":  # mmcv's spconv: (kD, kH, kW, C_in, C_out)
        sd.update({k: sd[k].permute(1, 2, 3, 4, 0) for k in sparse})
    got = convert_state_dict({"state_dict": sd})
    own = {k: v for k, v in m.model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(got) == set(own)
    assert [k for k in own if got[k].shape != own[k].shape] == []
    official_params = sum(
        math.prod(s)
        for k, s in spec["keys"].items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert official_params == sum(p.numel() for p in m.model.parameters()) == SPECS[name][1]


def test_sparse_conv_layout_is_read_from_the_shape():
    """Both spconv layouts of one weight give the same spconv 2.x tensor; a shape that fits neither is refused."""
    w2 = torch.randn(32, 3, 3, 3, 16)  # encoder_layer1's stride-2 conv: 16 -> 32 channels, spconv 2.x layout
    key = "pts_middle_encoder.encoder_layers.encoder_layer1.2.0.weight"
    ours = "pts.pts_middle_encoder.encoder_layers.0.2.0.weight"
    for w in (w2, w2.permute(1, 2, 3, 4, 0)):
        torch.testing.assert_close(convert_state_dict({key: w})[ours], w2)
    w = torch.randn(128, 3, 1, 1, 128)  # conv_out: kernel (3, 1, 1)
    torch.testing.assert_close(
        convert_state_dict({"pts_middle_encoder.conv_out.0.weight": w})["pts.pts_middle_encoder.conv_out.0.weight"], w
    )
    with pytest.raises(UserError, match="neither spconv 1.x"):
        convert_state_dict({key: torch.randn(3, 3, 3, 32, 16)})


def test_released_vovnet_has_ese_in_every_block():
    """DD3D's ``_OSA_module`` (the release's VoVNet) applies eSE in every OSA block; timm's ese_vovnet99b only in each
    stage's last block (``ese_every_block=False``)."""
    from timm.models.vovnet import OsaBlock

    with torch.device("meta"):
        rel = CMTModule(**SPECS["cmt-camera-vov"][0])
        timm_arch = CMTModule(**SPECS["cmt-camera-vov"][0], net={"ese_every_block": False})
    blocks = [b for b in rel.model.img.backbone.modules() if isinstance(b, OsaBlock)]
    assert len(blocks) == 16 and all(b.attn is not None for b in blocks)
    blocks = [b for b in timm_arch.model.img.backbone.modules() if isinstance(b, OsaBlock)]
    assert sum(b.attn is not None for b in blocks) == 4


def _mmcv_checkpoint(state_dict: dict, optimizer: torch.optim.Optimizer) -> dict:
    """The structure mmcv 1.x ``save_checkpoint`` writes (runner/checkpoint.py: meta with mmcv_version, time and the
    model's CLASSES; ``weights_to_cpu`` keeps ``_metadata``), with the meta of CMT's tools/train.py (env_info,
    config text, seed (numpy int from init_random_seed), exp_name, mmdet/mmdet3d versions, CLASSES, PALETTE) and the
    runner's epoch / iter and fp16 loss-scaler state."""
    from collections import OrderedDict

    sd = OrderedDict((k, v.detach().clone()) for k, v in state_dict.items())
    sd._metadata = OrderedDict([("", {"version": 1}), ("pts_middle_encoder.conv_input.0", {"version": 2})])
    meta = {
        "env_info": "sys.platform: linux\nPyTorch: 1.9.0",
        "config": "model = dict(type='CmtDetector')\n",
        "seed": np.int64(1234),
        "exp_name": "cmt_voxel0075_vov_1600x640_cbgs.py",
        "mmdet_version": "2.24.0",
        "mmseg_version": "0.20.0",
        "mmdet3d_version": "1.0.0rc5",
        "CLASSES": tuple(SPECS_CLASSES),
        "PALETTE": None,
        "epoch": 20,
        "iter": 123456,
        "mmcv_version": "1.6.0",
        "time": "Sat Mar 11 10:00:00 2023",
        "fp16": {
            "loss_scaler": {
                "cur_scale": 512.0,
                "cur_iter": 123456,
                "mode": "dynamic",
                "last_overflow_iter": 120000,
                "scale_factor": 2.0,
                "scale_window": 1000,
            }
        },
        "hook_msgs": {"last_ckpt": "work_dirs/epoch_20.pth"},
    }
    return {"meta": meta, "state_dict": sd, "optimizer": optimizer.state_dict()}


# The release file's class list as the specs state it, written out on purpose (not zoo.nuscenes.DETECTION_CLASSES):
# the fixture stands for the official checkpoint's meta, independent of the code it checks.
SPECS_CLASSES = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)


def test_release_file_format_reads_safely_and_converts_strictly(tmp_path):
    """An mmcv ``save_checkpoint`` file of the official layout (meta + state_dict + AdamW state) is read by
    ``zoo.convert.read_release`` (weights_only) and, through ``convert.read_official``, loads strictly; the same file
    with one foreign global is refused before anything in it runs, a missing key is named."""
    import pathlib

    from zoo import hub
    from zoo.convert import read_release
    from zoo.models.cmt.convert import read_official

    m = tiny()
    official = {
        _official_key(k): torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
        for k, v in m.model.state_dict().items()
    }
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=1e-4)
    opt.step()
    path = tmp_path / "epoch_20.pth"
    torch.save(_mmcv_checkpoint(official, opt), path)
    raw = read_release(path)
    assert raw["meta"]["CLASSES"] == SPECS_CLASSES and int(raw["meta"]["seed"]) == 1234
    target = tiny()
    hub.load_weights_strict(target.model, read_official(path), str(path))
    got = target.model.state_dict()
    torch.testing.assert_close(
        got["decoder.layers.0.cross_attn.in_proj_weight"],
        official["pts_bbox_head.transformer.decoder.layers.0.attentions.1.attn.in_proj_weight"],
    )
    bad = _mmcv_checkpoint(official, opt)
    bad["meta"]["work_dir"] = pathlib.PurePosixPath("work_dirs/cmt")  # any other global
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="weights_only"):
        read_release(tmp_path / "bad.pth")
    del official["pts_bbox_head.reference_points.weight"]
    torch.save(_mmcv_checkpoint(official, opt), path)
    with pytest.raises(hub.WeightsMismatchError, match="missing keys.*reference_points"):
        hub.load_weights_strict(tiny().model, read_official(path), str(path))


def test_converter_command_line_is_zoo_converts(monkeypatch, tmp_path):
    """``python -m zoo.models.cmt.convert CHECKPOINT NAME OUT_DIR`` is :func:`zoo.convert.converter_main` with CMT's
    reader: the entry built by name, the converted weights loaded strictly, a Hub folder exported."""
    from zoo.models.cmt import convert

    seen = {}

    def converter_main(argv, load, what, names):
        seen.update(argv=argv, load=load, what=what, names=names)
        return 0

    monkeypatch.setattr(convert._convert, "converter_main", converter_main)
    assert convert.main(["ckpt.pth", "cmt-voxel0075-vov", str(tmp_path)]) == 0
    assert seen["load"] is convert.load_official and "cmt-camera-vov" in seen["names"]
    loaded = {}
    monkeypatch.setattr(convert._convert, "load_official", lambda path, name, read: loaded.update(read=read) or name)
    assert convert.load_official("ckpt.pth", "cmt-voxel0075-vov") == "cmt-voxel0075-vov"
    assert loaded["read"] is convert.read_official


def test_size_and_net_overrides_are_checked_in_one_line():
    """A size is a released configuration (sizes.py) and ``net`` overrides only arguments the network takes;
    ``img_backbone_kwargs`` (it may name a file) is its own init arg, refused inside ``net``."""
    for kw, msg in (
        ({"size": "voxel0050-vov"}, r"unknown size 'voxel0050-vov'; choose one of camera-vov, lidar-voxel0075"),
        ({"net": {"hidden_dims": 64}}, r"net has 'hidden_dims', which the network does not take; its arguments are"),
        ({"net": {"img_backbone_kwargs": {}}}, r"set img_backbone_kwargs as model.init_args.img_backbone_kwargs"),
        ({"classes": ["car"]}, r"classes lists 1 names but the network has 10 classes"),
    ):
        with pytest.raises(UserError, match=msg) as e, torch.device("meta"):
            CMTModule(**kw)
        assert "\n" not in str(e.value)


def test_data_config_is_what_the_network_was_built_for():
    """``data_config()`` (what the data module follows): range, voxel size, image size and view count of the size,
    with the ``net`` overrides."""
    with torch.device("meta"):
        fusion = CMTModule(**SPECS["cmt-voxel0100-r50"][0]).data_config()
        lidar = CMTModule(**SPECS["cmt-lidar-voxel0075"][0], net={"image_size": [128, 352]}).data_config()
        camera = CMTModule(size="camera-vov", net={"image_size": [320, 800], "num_views": 5}).data_config()
    assert fusion == {
        "point_cloud_range": PCR,
        "voxel_size": [0.1, 0.1, 0.2],
        "image_size": [320, 800],
        "num_views": 6,
    }
    assert lidar["voxel_size"] == [0.075, 0.075, 0.2] and lidar["image_size"] == [128, 352]
    assert camera["point_cloud_range"] == [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
    assert camera["image_size"] == [320, 800] and camera["num_views"] == 5
    assert tiny().example_input_array[1].shape == (1, 2, 3, 64, 128)  # the tiny size's 2 views of 64 x 128


def test_token_grids_of_the_released_configs_on_meta():
    with torch.device("meta"):
        m = CMTModule(**SPECS["cmt-voxel0075-vov"][0])
        r = CMTModule(**SPECS["cmt-voxel0100-r50"][0])
    assert m.model.pts.bev_hw == (180, 180) and r.model.pts.bev_hw == (128, 128)
    assert m.model.pts.pts_middle_encoder.out_channels == 256
    assert m.model.img.backbone.feature_info.channels() == [768, 1024]
    assert r.model.img.backbone.feature_info.channels() == [1024, 2048]


# ------------------------------------------------------------------------------------------------ real data
def test_short_fit_on_the_real_frame_reduces_the_loss(shared_data):
    from zoo.data_modules.multiview import NuScenesMultiViewDataModule

    info = "n015-2018-07-24-11-22-45+0800.pkl"
    dm = NuScenesMultiViewDataModule(
        root=str(shared_data / "nuscenes_demo"),
        train_split=info,
        val_split=info,
        image_size=[64, 128],
        point_cloud_range=PCR,
        sweeps=1,
        augment=False,
        cbgs=False,
        with_images=False,
        batch_size=1,
        num_workers=0,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    m = tiny(modalities="lidar", num_query=80, dn_groups=1, dropout=0.0)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = m.compute_losses(batch, torch.Generator().manual_seed(0))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


def test_the_data_module_follows_the_attached_cmt(shared_data):
    """NuScenesMultiViewDataModule with range and image size unset, attached (a stub trainer) to the tiny CMT (2 views
    of 64 x 128, ±51.2 m): its frames are what the network was built for, and one fits the model."""
    from types import SimpleNamespace

    from zoo.data_modules.multiview import CAMERAS, NuScenesMultiViewDataModule, collate_multiview

    info = "n015-2018-07-24-11-22-45+0800.pkl"
    m = tiny().eval()
    dm = NuScenesMultiViewDataModule(
        root=str(shared_data / "nuscenes_demo"), train_split=info, val_split=info, cameras=CAMERAS[:2], sweeps=1
    )
    dm.trainer = SimpleNamespace(lightning_module=m)
    dm.setup("validate")
    assert dm.point_cloud_range == PCR and dm.image_size == [64, 128]
    batch = collate_multiview([dm.datasets["val"][0]])
    assert batch["images"].shape == (1, 2, 3, 64, 128)
    with torch.no_grad():
        assert torch.isfinite(m(*m._inputs(batch))["box"]).all()


def test_voxel_path_forward_on_the_cpu():
    """The released sparse encoder (spconv) at a small grid: 41 z cells as released, 32 x 32 cells -> 4 x 4 BEV tokens
    of 256 channels. Only the forward: spconv's CPU wheel has no backward (the tiny registry models use pillars)."""
    m = tiny(
        modalities="lidar",
        lidar_encoder="voxel",
        point_cloud_range=[-12.8, -12.8, -5.0, 12.8, 12.8, 3.0],
        voxel_size=[0.8, 0.8, 0.2],
    )
    assert m.model.pts.pts_middle_encoder.out_channels == 256 and m.model.pts.bev_hw == (4, 4)
    g = torch.Generator().manual_seed(0)
    pts = [
        torch.cat(
            [
                torch.rand(500, 3, generator=g) * torch.tensor([25.0, 25.0, 7.0]) - torch.tensor([12.5, 12.5, 4.5]),
                torch.rand(500, 2, generator=g),
            ],
            1,
        )
    ]
    m.eval()
    with torch.no_grad():
        bev = m.model.pts(pts)
        out = m(pts)
    assert bev.shape == (1, m.model.pts.out_channels, 4, 4) and torch.isfinite(out["box"]).all()


def test_converter_maps_the_released_vovnet_onto_timm():
    """DD3D's VoVNet-99-eSE key layout (the CMT release's image backbone) -> timm ese_vovnet99b, every key, same shapes
    (meta device: names and shapes only)."""
    import re

    with torch.device("meta"):
        m = CMTModule(**SPECS["cmt-camera-vov"][0])
    own = {
        k: v
        for k, v in m.model.state_dict().items()
        if k.startswith("img.backbone.") and not k.endswith("num_batches_tracked")
    }

    def official(k):
        k = k[len("img.backbone.") :]
        if k.startswith("stem_"):
            i, part, rest = re.match(r"stem_(\d+)\.(conv|bn)\.(.*)", k).groups()
            return f"img_backbone.stem.stem_{int(i) + 1}/{'norm' if part == 'bn' else 'conv'}.{rest}"
        s, b, rest = re.match(r"stages_(\d+)\.blocks\.(\d+)\.(.*)", k).groups()
        s, b = int(s) + 2, int(b) + 1
        osa = f"OSA{s}_{b}"
        if rest.startswith("conv_mid."):
            i, part, tail = re.match(r"conv_mid\.(\d+)\.(conv|bn)\.(.*)", rest).groups()
            return f"img_backbone.stage{s}.{osa}.layers.{i}.{osa}_{i}/{'norm' if part == 'bn' else 'conv'}.{tail}"
        if rest.startswith("conv_concat."):
            part, tail = re.match(r"conv_concat\.(conv|bn)\.(.*)", rest).groups()
            return f"img_backbone.stage{s}.{osa}.concat.{osa}_concat/{'norm' if part == 'bn' else 'conv'}.{tail}"
        return f"img_backbone.stage{s}.{osa}.ese.fc.{rest[len('attn.fc.') :]}"

    sd = {official(k): v for k, v in own.items()}
    assert "img_backbone.stage4.OSA4_9.layers.4.OSA4_9_4/conv.weight" in sd  # V-99: 9 blocks in stage 4
    got = convert_state_dict(sd)
    assert set(got) == set(own) and all(got[k].shape == own[k].shape for k in own)


# ------------------------------------------------------------------------------------------------ golden (official)
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "cmt"


class _Features(torch.nn.Module):
    """Stands in for a branch: returns the official run's branch output (the head's input)."""

    def __init__(self, feat: torch.Tensor, out_channels: int = 0):
        super().__init__()
        self.feat, self.out_channels = feat, out_channels

    def forward(self, *args):
        return self.feat


def test_head_matches_the_official_cmt_head():
    """junjie18/CMT's CmtHead (query PE, camera-ray and BEV PE, 2-layer PETR decoder, SeparateTaskHead, box decoding by
    MultiTaskBBoxCoder) run on small inputs (tests/fixtures/cmt/README.md); 29 % of the anchors lie outside [0, 1].
    Compares, at float32 tolerance: the memory PE (BEV ++ image), the query PE, every decoder layer's output, the
    logits and box codes of every layer, and the decoded top-20 boxes of both frames."""
    from safetensors.torch import load_file

    io = load_file(GOLDEN / "head_io.safetensors")
    weights = load_file(GOLDEN / "head_weights.safetensors")
    b, v = io["lidar2img"].shape[:2]
    e = io["img_feat"].shape[1]
    m = tiny(
        hidden_dim=e,
        num_heads=4,
        ffn_dim=64,
        num_layers=2,
        num_query=24,
        depth_num=8,
        head_conv=16,
        bev_upsample_filters=[8, 8],
    ).eval()
    got = convert_state_dict(weights)
    own = m.model.state_dict()
    assert set(got) <= set(own) and all(got[k].shape == own[k].shape for k in got)
    m.model.load_state_dict({**own, **got}, strict=True)
    m.model.pts = _Features(io["bev_feat"], io["bev_feat"].shape[1])
    m.model.img = _Features(io["img_feat"].view(b, v, *io["img_feat"].shape[1:]))
    pad_hw = (64, 128)
    cap = {}
    m.model.decoder.register_forward_hook(lambda mod, args, out: cap.update(args=args, out=out))
    with torch.no_grad():
        out = m.model([torch.zeros(1, 5)] * b, torch.zeros(b, v, 3, *pad_hw), io["lidar2img"].float())
    tgt, query_pos, memory, memory_pos, _ = cap["args"]
    hw = io["bev_pe"].shape[0]
    rv = io["rv_pe"].view(b, -1, e)  # [(B V), H, W, E] -> [B, (V H W), E]
    checks = {
        "BEV token PE": (memory_pos[:, :hw], io["bev_pe"].expand(b, -1, -1)),
        "camera-ray token PE": (memory_pos[:, hw:], rv),
        "query PE (BEV + camera-ray, clamped anchors)": (query_pos, io["query_pe"]),
        "decoder outputs": (cap["out"], io["decoder"]),
        "logits": (out["cls"], io["cls"]),
        "box codes": (out["box"], io["box"]),
    }
    for name, (ours, theirs) in checks.items():
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4, msg=lambda s, n=name: f"{n}: {s}")
    dets = m.model.decode(out["cls"][-1], out["box"][-1], max_num=20)
    for i, d in enumerate(dets):
        torch.testing.assert_close(d["boxes"], io[f"det{i}_boxes"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(d["scores"], io[f"det{i}_scores"], atol=1e-6, rtol=1e-5)
        assert torch.equal(d["labels"], io[f"det{i}_labels"])
    # zoo's earlier behaviour (raw anchors in the query PE) does not reproduce the release
    raw = CMTModule(**{**m.hparams, "net": {**m.hparams.net, "clamp_query_anchors": False}}).eval()
    raw.model.load_state_dict({**raw.model.state_dict(), **got}, strict=True)
    raw.model.pts, raw.model.img = m.model.pts, m.model.img
    with torch.no_grad():
        out_raw = raw.model([torch.zeros(1, 5)] * b, torch.zeros(b, v, 3, *pad_hw), io["lidar2img"].float())
    assert (out_raw["box"] - io["box"]).abs().max() > 1e-3


def _weights_from_keys(keys: list) -> dict:
    """The deterministic weights both runs use (tests/fixtures/cmt/README.md): one generator (seed 0) over the
    official (key, shape) list in order; conv / linear weights scaled by sqrt(2 / fan_in), norm scales around 1."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, shape in keys:
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0)
            continue
        t = torch.randn(shape, generator=g)
        if k.endswith("running_var"):
            t = t.abs() + 0.5
        elif k.endswith(("running_mean", "bias")):
            t = t * 0.1
        elif len(shape) == 1:
            t = 1 + 0.1 * t
        else:
            t = t * (2.0 / (t.numel() // shape[0])) ** 0.5
        out[k] = t
    return out


def test_image_branch_matches_the_official_vovnet_and_cpfpn():
    """The release's VoVNet (V-19-slim-eSE, DD3D layout) + CPFPN (32 ch) on two 48x96 images vs timm
    ``ese_vovnet19b_slim`` + zoo's CPFPN with the converted weights: stage-4 / stage-5 features and both neck levels."""
    import json

    from safetensors.torch import load_file

    from zoo.models.cmt.model import ImageBranch

    keys = json.loads((GOLDEN / "branch_keys.json").read_text())["img"]
    io = load_file(GOLDEN / "img_branch_io.safetensors")
    branch = ImageBranch("ese_vovnet19b_slim", (3, 4), 32).eval()
    got = {k[len("img.") :]: v for k, v in convert_state_dict(_weights_from_keys(keys)).items()}
    branch.load_state_dict(got, strict=True)
    with torch.no_grad():
        feats = branch.backbone(io["image"])
        neck = branch.neck(feats)
    for name, ours in (("stage4", feats[0]), ("stage5", feats[1]), ("neck0", neck[0]), ("neck1", neck[1])):
        torch.testing.assert_close(ours, io[name], atol=1e-4, rtol=1e-4, msg=lambda s, n=name: f"{n}: {s}")


def test_lidar_branch_matches_the_official_sparse_encoder_second_and_fpn():
    """mmdet3d 1.0.0rc5 SparseEncoder (CMT's encoder channels / paddings, sparse shape 41x32x32) + SECOND [5, 5] +
    SECONDFPN on 400 voxels of two frames vs zoo's spconv SparseEncoder + BEVBackbone with the converted weights: the
    height-compressed sparse output and the 512-channel BEV map (spconv forward only, as the CPU wheel allows)."""
    import json

    from safetensors.torch import load_file

    keys = json.loads((GOLDEN / "branch_keys.json").read_text())["pts"]
    io = load_file(GOLDEN / "lidar_branch_io.safetensors")
    m = tiny(
        modalities="lidar",
        lidar_encoder="voxel",
        point_cloud_range=[-12.8, -12.8, -5.0, 12.8, 12.8, 3.0],
        voxel_size=[0.8, 0.8, 0.2],
        **{k: v for k, v in SIZES["lidar-voxel0075"].items() if k.startswith("bev_")},
    ).eval()
    got = convert_state_dict(_weights_from_keys(keys))
    own = m.model.pts.state_dict()
    sub = {k[len("pts.") :]: v for k, v in got.items()}
    assert set(sub) == {k for k in own if not k.endswith("num_batches_tracked")}
    m.model.pts.load_state_dict({**own, **sub}, strict=True)
    with torch.no_grad():
        sparse = m.model.pts.pts_middle_encoder(io["voxel_features"], io["voxel_coords"], 2)
        bev = m.model.pts.pts_backbone(sparse)
    torch.testing.assert_close(sparse, io["sparse_out"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bev, io["bev"], atol=1e-4, rtol=1e-4)
