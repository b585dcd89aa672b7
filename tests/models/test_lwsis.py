"""LWSIS: PLA on a hand-built scene, the balanced sampler, each loss against a direct computation, the dynamic head's
parameter count, a tiny forward/backward of the full objective, mask AP against pycocotools."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data_modules.point_labels import balanced_sample, check_calibration, point_label_assignment, project
from zoo.errors import UserError
from zoo.models.lwsis import losses as L
from zoo.models.lwsis.model import CondInst, DynamicMaskHead, aligned_bilinear, num_dynamic_params

TINY = {
    "depth": 18,
    "backbone_channels": [8, 16, 32, 64],
    "stem_width": 8,
    "fpn": 16,
    "tower": 1,
    "mask_ch": 8,
    "mask_convs": 1,
    "mask_out": 8,
    "gn_groups": 8,
}


# ------------------------------------------------------------------------------------------------ PLA
def _camera(f=500.0, cx=300.0, cy=200.0):
    """LiDAR (x forward, y left, z up) -> camera (x right, y down, z forward), pinhole K; image 400 x 600."""
    k = np.array([[f, 0, cx, 0], [0, f, cy, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    l2c = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return k @ l2c


SCENE = {  # name -> LiDAR point (x, y, z); the box spans x 9..11, y -2..2, z -1..1
    "near1": (9.5, 1.0, 0.0),  # fg, front face, u 247
    "near2": (9.5, 1.2, 0.1),  # fg, u 237
    "deep": (10.0, -0.5, 0.5),  # fg, u 325
    "through": (12.0, 1.2, 0.0),  # behind the box, seen through it (u 250, beside near1/near2): deleted
    "bg_far": (12.0, -1.5, 0.0),  # behind the box, u 362, no near point around: kept, background
    "pole": (5.0, -1.0, 0.0),  # an occluding near object in front of the box, u 400: kept, background
    "hidden": (10.5, -1.9, 0.0),  # inside the box but behind the pole (u 390): deleted
    "behind_cam": (-5.0, 0.0, 0.0),  # behind the camera
    "too_close": (0.5, 0.0, 0.0),  # depth < 1 m
    "off_image": (10.0, -20.0, 0.0),  # u 1300
}
NAMES = list(SCENE)


def _pla(mode, boxes=None, **kw):
    pts = np.array([[*SCENE[n], 0.5] for n in NAMES], dtype=np.float32)
    boxes = np.array([[10.0, 0.0, 0.0, 2.0, 4.0, 2.0, 0.0]], dtype=np.float32) if boxes is None else boxes
    return point_label_assignment(
        pts, _camera(), boxes, (400, 600), num_points=10, mode=mode, row_start=0, return_debug=True, **kw
    )


def _names(rows):
    """Names of the scene points whose (x, y, z) appear in rows [n, 6]."""
    return {n for n in NAMES for r in rows if np.allclose(r[:3], SCENE[n])}


def test_pla_occlusion_filter_and_labels_on_a_hand_built_scene():
    out, dbg = _pla("window")
    assert {NAMES[i] for i in dbg["visible"]} == set(NAMES) - {"behind_cam", "too_close", "off_image"}
    assert {NAMES[i] for i in dbg["deleted"]} == {"through", "hidden"}
    (inst,) = out
    assert _names(inst["in_rows"]) == {"near1", "near2", "deep"}
    assert _names(inst["out_rows"]) == {"bg_far", "pole"}
    assert (inst["num_fg"], inst["num_bg"]) == (3, 2)
    # 2D box = extent of the projected corners (nearest face x = 9: u = 300 -+ 500·2/9, v = 200 -+ 500/9)
    np.testing.assert_allclose(inst["box2d"], [300 - 1000 / 9, 200 - 500 / 9, 300 + 1000 / 9, 200 + 500 / 9], rtol=1e-5)
    # the (u, v) columns are the projections of the rows' points, truncated to integer pixels as released
    uv, _ = project(inst["in_rows"][:, :3], _camera())
    np.testing.assert_allclose(inst["in_rows"][:, 4:], np.trunc(uv), rtol=1e-5)
    (sub,), _ = _pla("window", subpixel=True)
    np.testing.assert_allclose(sub["in_rows"][:, 4:], project(sub["in_rows"][:, :3], _camera())[0], rtol=1e-5)
    assert sorted(inst["point_labels"].tolist()) == [0] * 5 + [1] * 5


def test_pla_simple_mode_keeps_the_occluded_points():
    (inst,), dbg = _pla("simple")
    assert len(dbg["deleted"]) == 0
    assert _names(inst["in_rows"]) == {"near1", "near2", "deep", "hidden"}
    assert _names(inst["out_rows"]) == {"through", "bg_far", "pole"}


def test_pla_drops_a_box_behind_the_camera_and_checks_calibration():
    boxes = np.array([[10.0, 0.0, 0.0, 2.0, 4.0, 2.0, 0.0], [-10.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0]], np.float32)
    out, _ = _pla("window", boxes=boxes)
    assert [o["index"] for o in out] == [0]
    # a calibration for 600 x 400 used on a 224 x 128 resize: a clear error naming the fix
    with pytest.raises(UserError, match="principal point.*cam2img"):
        check_calibration(_camera(), (128, 224))
    pts = np.zeros((4, 4), np.float32)
    with pytest.raises(UserError, match="another image size"):
        point_label_assignment(pts, _camera(), boxes, (128, 224))
    with pytest.raises(UserError, match="even number"):
        point_label_assignment(pts, _camera(), boxes, (400, 600), num_points=7)


def test_balanced_sampler_counts_and_ignore_marks():
    rng = np.random.default_rng(0)
    box = (100.0, 50.0, 200.0, 250.0)  # w 100, h 200
    fg = np.array([[150.0, 150.0], [151.0, 151.0], [152.0, 152.0]])
    _, labels = balanced_sample(fg, np.zeros((0, 2)), box, 10, rng)
    assert (labels == 1).sum() == 5 and (labels == 0).sum() == 5  # as released: synthetic pixels keep their label
    coords, labels = balanced_sample(fg, np.zeros((0, 2)), box, 10, rng, ignore_synthetic=True)
    assert (labels == 1).sum() == 5 and (labels == -1).sum() == 5 and (labels == 0).sum() == 0
    assert {tuple(c) for c in coords[labels == 1]} <= {tuple(c) for c in fg.astype(np.float32)}  # with replacement
    syn = coords[labels == -1]  # synthetic background: square of side min(w, h)/5 = 20 at the top-left corner
    assert (syn[:, 0] >= 100).all() and (syn[:, 0] <= 120).all() and (syn[:, 1] >= 50).all() and (syn[:, 1] <= 70).all()
    bg = rng.uniform(0, 300, size=(50, 2))
    coords, labels = balanced_sample(np.zeros((0, 2)), bg, box, 20, rng, ignore_synthetic=True)
    assert (labels == 0).sum() == 10 and (labels == -1).sum() == 10
    assert len({tuple(c) for c in coords[labels == 0]}) == 10  # enough points: without replacement
    syn = coords[labels == -1]  # synthetic fg: square of side 50 around the centre (150, 150)
    assert (np.abs(syn - [150, 150]) <= 25 + 1e-4).all()
    assert labels[:10].tolist() != [0] * 10  # shuffled


# ------------------------------------------------------------------------------------------------ losses
def test_projection_loss_is_zero_for_the_box_itself():
    box = torch.tensor([[8.0, 4.0, 30.0, 20.0]])
    bm = L.box_masks(box, 8, 10, stride=4)
    assert float(L.projection_loss(bm, bm)[0]) == pytest.approx(0.0, abs=1e-5)  # dice eps 1e-5 only
    assert float(L.projection_loss(torch.zeros_like(bm), bm)[0]) == pytest.approx(2.0, abs=1e-4)
    # cell centres 4j + 2; released pixels int(x1)..int(x2): x in [8, 30] -> columns 2..7, y in [4, 20] -> rows 1..4
    assert bm[0].nonzero()[:, 1].unique().tolist() == [2, 3, 4, 5, 6, 7]
    assert bm[0].nonzero()[:, 0].unique().tolist() == [1, 2, 3, 4]
    cont = L.box_masks(box, 8, 10, stride=4, continuous=True)  # zoo's earlier form: x in [8, 30) -> columns 2..6
    assert cont[0].nonzero()[:, 1].unique().tolist() == [2, 3, 4, 5, 6]


def test_pairwise_loss_against_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    h, w = 5, 6
    logits = torch.randn(1, 1, h, w, generator=g)
    sim = torch.rand(1, 8, h, w, generator=g)
    box = torch.zeros(1, h, w)
    box[0, 1:4, 1:5] = 1
    got = L.pairwise_loss(logits, sim, box, thresh=0.3, dilation=2)
    p = logits.sigmoid()[0, 0]
    offsets = [(dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2) if (dy, dx) != (0, 0)]
    total, count = 0.0, 0
    for i in range(h):
        for j in range(w):
            for k, (dy, dx) in enumerate(offsets):
                if box[0, i, j] == 0 or sim[0, k, i, j] < 0.3:
                    continue
                count += 1
                y, x = i + dy, j + dx
                if 0 <= y < h and 0 <= x < w:  # out-of-image neighbours: P(same) = 1 (AdelaiDet's zero padding)
                    total += -math.log(p[i, j] * p[y, x] + (1 - p[i, j]) * (1 - p[y, x]))
    assert float(got) == pytest.approx(total / count, rel=1e-5)


def test_color_similarity_matches_lab_distance():
    img = torch.zeros(1, 3, 8, 12)
    img[..., :, 6:] = 255.0  # pooled at stride 4: cells black | grey (half black, half white) | white
    sim = L.color_similarity(img, stride=4, dilation=1)
    white = L.rgb_to_lab(torch.full((3, 1, 1), 255.0))
    assert float(white[0]) == pytest.approx(100.0, abs=0.01) and float(white[1:].abs().max()) < 0.01
    grey = float(L.rgb_to_lab(torch.full((3, 1, 1), 127.0))[0])  # the release truncates the 127.5 average: L* 53.19
    # neighbour order: (-1,-1), (-1,0), (-1,1), (0,-1), (0,1), (1,-1), (1,0), (1,1)
    assert float(sim[0, 3, 0, 1]) == pytest.approx(math.exp(-grey / 2), rel=1e-3)  # grey vs black
    assert float(sim[0, 4, 0, 1]) == pytest.approx(math.exp(-(100 - grey) / 2), rel=1e-3)  # grey vs white
    assert float(sim[0, 6, 0, 2]) == pytest.approx(1.0, abs=1e-4)  # white vs white below


def test_point_loss_samples_cell_centres_and_ignores():
    logits = torch.arange(12.0).view(1, 1, 3, 4) / 4 - 1
    coords = torch.tensor([[[2.0, 2.0], [6.0, 10.0], [14.0, 6.0]]])  # centres of cells (0,0), (2,1), (1,3)
    np.testing.assert_allclose(L.sample_logits(logits, coords)[0].numpy(), [-1.0, 1.25, 0.75], rtol=1e-6)
    labels = torch.tensor([[1, 0, -1]])
    got = L.point_loss(logits, coords, labels, torch.tensor([0.5]))

    def bce(x, y):
        return -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))

    assert float(got) == pytest.approx(0.5 * (bce(-1.0, 1) + bce(1.25, 0)) / 3, rel=1e-5)


def test_instance_weights_min_max_as_released_and_the_exact_switch():
    boxes = torch.tensor([[0, 0, 96, 96], [0, 0, 192, 192], [0, 0, 384, 384.0]])
    np.testing.assert_allclose(L.instance_weights(boxes).numpy(), [0.0, 1 / (3 + 1e-5), 3 / (3 + 1e-5)], rtol=1e-6)
    np.testing.assert_allclose(L.instance_weights(boxes, exact=True).numpy(), [0.0, 1 / 3, 1.0], rtol=1e-6)
    # one GT box in the batch: the release's (max - min + 1e-5) gives weight 0 (no point loss, GCR weight 1)
    assert L.instance_weights(boxes[:1]).tolist() == [0.0]
    assert L.instance_weights(boxes[:1], exact=True).tolist() == [0.5]
    logits, coords = torch.full((1, 1, 4, 4), 1.0), torch.tensor([[[6.0, 6.0]]])
    w = L.instance_weights(boxes[:1])
    assert float(L.point_loss(logits, coords, torch.tensor([[0]]), w)) == 0.0
    adj = torch.ones(1, 2, 2, dtype=torch.bool)
    assert float(L.graph_loss(torch.zeros(1, 2), adj, w)) == pytest.approx(math.log(2), rel=1e-6)


def test_gcr_geometric_edges_on_a_known_point_set():
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [10, 0, 0], [0, 0, 0]]])
    valid = torch.tensor([[True, True, True, True, True, False]])
    adj = L.geometric_graph(xyz, valid)  # NN distances 1, 1, 1, 1, 7 -> median 1 -> edge iff d <= 1 + 2 ln 2
    want = torch.zeros(6, 6, dtype=torch.bool)
    for i in range(4):
        for j in range(4):
            want[i, j] = abs(i - j) <= 2
    want[4, 4] = True
    assert torch.equal(adj[0], want)
    feats = torch.tensor([[[1.0, 0], [1, 0], [0, 1], [0, 1], [1, 1], [0, 0]]])
    app = L.appearance_graph(feats, valid, thresh=0.3)  # S in {0, 1, 2}: max - min = 2 -> edge iff S / 2 > 0.3
    s = feats[0] @ feats[0].T
    assert torch.equal(app[0], (s / 2 > 0.3) & valid[0][:, None] & valid[0][None])


def test_gcr_graphs_as_released_range_over_padding_and_no_single_node_graph():
    feats = torch.tensor([[[3.0, 1], [1.5, 1.2], [-1.5, 0]]])  # the last slot is padding
    valid = torch.tensor([[True, True, False]])
    s = feats[0] @ feats[0].T  # valid pairs 3.69 .. 10; with the padding slot the range reaches down to -4.5
    pair = valid[0][:, None] & valid[0][None]
    want = (s / (10 + 4.5 + 1e-5) > 0.3) & pair  # the release: range over all slots
    assert torch.equal(L.appearance_graph(feats, valid)[0], want)
    earlier = L.appearance_graph(feats, valid, padded_range=False, min_nodes=1)[0]
    assert torch.equal(earlier, (s / (10 - 3.69 + 1e-5) > 0.3) & pair)
    assert earlier[1, 1] and not want[1, 1]
    one = torch.tensor([[True, False, False]])
    xyz = torch.randn(1, 3, 3)
    assert not L.geometric_graph(xyz, one).any() and not L.appearance_graph(feats, one).any()
    assert L.geometric_graph(xyz, one, min_nodes=1)[0, 0, 0]  # zoo's earlier self-edge for a single node


def test_graph_loss_released_per_point_default_and_the_paper_switch():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    adj = torch.tensor([[[True, True, False], [True, False, True], [False, False, False]]])
    w = torch.tensor([0.25])
    p = torch.sigmoid(logits[0])
    edges = [(0, 0), (0, 1), (1, 0), (1, 2)]
    pair = sum(-math.log(p[i] * p[j] + (1 - p[i]) * (1 - p[j])) for i, j in edges) * 0.75 / 4
    quirk = sum(-math.log(p[j] ** 2 + (1 - p[j]) ** 2) for i, j in edges) * 0.75 / 4
    assert float(L.graph_loss(logits, adj, w)) == pytest.approx(float(quirk), rel=1e-5)
    assert float(L.graph_loss(logits, adj, w, pairwise=True)) == pytest.approx(float(pair), rel=1e-5)


def test_fcos_targets_centre_sampling_and_ranges():
    locs = torch.tensor([[52.0, 52.0], [20.0, 20.0], [52.0, 52.0]])
    level = torch.tensor([0, 0, 1])  # stride 8, 8, 16
    boxes = torch.tensor([[10.0, 10.0, 90.0, 90.0], [40.0, 40.0, 60.0, 60.0]])
    idx, ltrb = L.fcos_targets(locs, level, boxes, (8, 16, 32, 64, 128), (64, 128, 256, 512))
    # (52, 52) at P3: both boxes contain its centre region, the smaller box (1) wins, max ltrb 12 in [0, 64]
    # (20, 20): outside both centre regions (radius 12 px); (52, 52) at P4: max ltrb 38 (box 0) not in [64, 128]
    assert idx.tolist() == [1, -1, -1]
    assert ltrb[0].tolist() == [12.0, 12.0, 8.0, 8.0]


# ------------------------------------------------------------------------------------------------ network
def test_dynamic_head_has_233_parameters_and_applies_them():
    assert num_dynamic_params(16, 8, 3) == 233 and num_dynamic_params(8, 8, 3) == 169
    with torch.device("meta"):
        net = CondInst(depth=50)
    assert net.head.controller.out_channels == 233 and net.dynamic.num_params == 233
    head = DynamicMaskHead(2, 4, 2)  # (2 + 2) -> 4 -> 1: 16 + 4 + 4 + 1 = 25
    assert head.num_params == 25
    params = torch.randn(1, 25)
    feats = torch.randn(1, 2, 2, 3)
    loc, soi = torch.tensor([[4.0, 4.0]]), torch.tensor([64.0])
    out = head(feats, params, torch.tensor([0]), loc, soi)
    assert out.shape == (1, 1, 4, 6)
    # direct: pixel (0, 1) at image (12, 4), rel = ((4 - 12) / 64, 0), then two 1x1 layers with ReLU between
    w1, w2, b1, b2 = params[0, :16].view(4, 4), params[0, 16:20].view(1, 4), params[0, 20:24], params[0, 24:25]
    x = torch.cat([torch.tensor([-8 / 64, 0.0]), feats[0, :, 0, 1]])
    y = w2 @ torch.relu(w1 @ x + b1) + b2
    assert aligned_bilinear(torch.full((1, 1, 2, 3), 7.0), 2).allclose(torch.full((1, 1, 4, 6), 7.0))
    direct = torch.zeros(1, 1, 2, 3)
    for i in range(2):
        for j in range(3):
            xx = torch.cat([(loc[0] - torch.tensor([j * 8 + 4.0, i * 8 + 4.0])) / 64, feats[0, :, i, j]])
            direct[0, 0, i, j] = (w2 @ torch.relu(w1 @ xx + b1) + b2)[0]
    assert float(direct[0, 0, 0, 1]) == pytest.approx(float(y[0]), rel=1e-5)
    torch.testing.assert_close(out, aligned_bilinear(direct, 2))


def test_aligned_bilinear_keeps_pixel_centres():
    x = torch.arange(4.0).view(1, 1, 1, 4).repeat(1, 1, 2, 1)  # value = column index at stride 8
    up = aligned_bilinear(x, 2)
    assert up.shape == (1, 1, 4, 8)
    # output k = input at (k - factor // 2) / factor, clamped to the border (replicate padding)
    torch.testing.assert_close(up[0, 0, 0], torch.tensor([0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]))
    torch.testing.assert_close(up[0, 0, 0], up[0, 0, 3])


def _targets(b, h, w, g=2, p=6, n=12):
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(b):
        xy = torch.rand(g, 2, generator=gen) * torch.tensor([w / 2, h / 2])
        wh = 12 + torch.rand(g, 2, generator=gen) * torch.tensor([w / 3, h / 3])
        boxes = torch.cat([xy, xy + wh], 1)
        out.append(
            {
                "boxes": boxes,
                "labels": torch.tensor([0, 3])[:g],
                "point_coords": boxes[:, None, :2] + torch.rand(g, p, 2, generator=gen) * wh[:, None],
                "point_labels": torch.randint(-1, 2, (g, p), generator=gen),
                "node_xyz": torch.randn(g, n, 3, generator=gen),
                "node_uv": boxes[:, None, :2] + torch.rand(g, n, 2, generator=gen) * wh[:, None],
                "node_valid": torch.rand(g, n, generator=gen) > 0.2,
            }
        )
    return out


@pytest.mark.parametrize("pla_gcr", [True, False])
def test_tiny_objective_forward_backward(pla_gcr):
    from zoo.models.lwsis.module import LWSISModule

    torch.manual_seed(0)
    m = LWSISModule(net=TINY, img_size=[64, 96], pla=pla_gcr, gcr=pla_gcr, loss_warmup_iters=1).train()
    images = torch.rand(2, 3, 64, 96) * 255
    losses = m.compute_losses(images, _targets(2, 64, 96), warm=1.0)
    assert set(losses) == {
        "loss_fcos_cls",
        "loss_fcos_loc",
        "loss_fcos_ctr",
        "loss_prj",
        "loss_pairwise",
        "loss_point",
        "loss_gcr_geo",
        "loss_gcr_app",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    for k in ("loss_point", "loss_gcr_geo", "loss_gcr_app"):
        assert (float(losses[k].detach()) > 0) == pla_gcr, k
    sum(losses.values()).backward()
    assert m.model.head.controller.weight.grad.abs().sum() > 0
    assert m.model.mask_branch.tower[-1].weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        (det, _) = m(images)
    assert det["masks"].shape[-2:] == (64, 96) and det["masks"].dtype == torch.bool
    assert det["boxes"].shape[0] == det["masks"].shape[0] == det["scores"].shape[0]


def test_module_single_box_batch_follows_the_release_and_the_switches_reach_the_losses(monkeypatch):
    from zoo.models.lwsis.module import LWSISModule

    seen, graph_loss = [], L.graph_loss
    monkeypatch.setattr(L, "graph_loss", lambda *a: seen.append(a[3]) or graph_loss(*a))
    images = torch.rand(1, 3, 64, 96) * 255
    out = {}
    for name, over in {"release": {}, "exact": {"instance_weight_exact": True}, "pair": {"gcr_pairwise": True}}.items():
        torch.manual_seed(0)
        m = LWSISModule(net=TINY, img_size=[64, 96], loss_warmup_iters=1, **over).train()
        out[name] = {k: float(v.detach()) for k, v in m.compute_losses(images, _targets(1, 64, 96, g=1)).items()}
    assert out["release"]["loss_point"] == 0.0 and out["exact"]["loss_point"] > 0  # w = 0 vs 0.5
    assert out["exact"]["loss_gcr_geo"] == pytest.approx(0.5 * out["release"]["loss_gcr_geo"], rel=1e-5)
    assert seen == [False, False, False, False, True, True]  # (geo, app) per run: gcr_pairwise reaches graph_loss


def test_module_rejects_bad_arguments():
    from zoo.models.lwsis.module import LWSISModule

    with pytest.raises(UserError, match="unknown size 'r18'; choose one of r101, r50") as e:
        LWSISModule(size="r18")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="'num_classes', which the network does not take") as e:
        LWSISModule(net={**TINY, "num_classes": 3})  # the label space is the module's own argument
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="'width'.*its arguments are .*box_activation"):
        LWSISModule(net={"width": 3})
    with pytest.raises(UserError, match="multiples of 32"):
        LWSISModule(net=TINY, img_size=[60, 96])


# ------------------------------------------------------------------------------------------------ metric
def test_mask_ap_is_one_for_a_perfect_prediction_and_matches_pycocotools():
    from zoo.metrics.instance_seg import MaskAP, coco_mask_ap

    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(3, 40, 60, dtype=torch.bool)
    masks[0, 5:20, 5:25] = True
    masks[1, 22:38, 30:58] = True
    masks[2, 2:12, 40:50] = True
    target = [{"masks": masks, "labels": torch.tensor([0, 0, 1])}]
    perfect = [{"masks": masks, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 1])}]
    m = MaskAP()
    m.update(perfect, target)
    assert float(m.compute()["map"]) == pytest.approx(1.0)
    assert coco_mask_ap(perfect, target) == pytest.approx(1.0)
    noisy = masks.clone()
    noisy[0, 5:20, 5:15] = False  # IoU 0.5
    noisy[1] ^= torch.rand(40, 60, generator=gen) > 0.9
    extra = torch.zeros(1, 40, 60, dtype=torch.bool)
    extra[0, 0:10, 0:10] = True
    pred = [
        {
            "masks": torch.cat([noisy, extra]),
            "scores": torch.tensor([0.9, 0.6, 0.7, 0.95]),
            "labels": torch.tensor([0, 0, 1, 0]),
        }
    ]
    m = MaskAP()
    m.update(pred, target)
    got = float(m.compute()["map"])
    assert 0.2 < got < 0.95
    assert got == pytest.approx(coco_mask_ap(pred, target), abs=1e-6)


# ------------------------------------------------------------------------------------------ golden (official code)
GOLDEN = Path(__file__).parent.parent / "fixtures" / "lwsis"


def _golden(name):
    from safetensors.torch import load_file

    return load_file(GOLDEN / f"{name}.safetensors")


def test_dynamic_mask_head_matches_the_official_module():
    """Serenos/LWSIS ``DynamicMaskHead.mask_heads_forward_with_coords`` (tests/fixtures/lwsis/README.md): 3
    instances on 2 images, 16 mask channels, 233 dynamic parameters, relative coordinates / sizes of interest."""
    from zoo.models.lwsis.model import DynamicMaskHead

    d = _golden("dynamic_mask_head")
    soi = torch.tensor([64.0, 128, 256, 512, 1024])[d["fpn_levels"]]
    got = DynamicMaskHead(16, 8, 3)(d["mask_feats"], d["params"], d["im_inds"], d["locations"], soi)
    torch.testing.assert_close(got, d["mask_logits"], rtol=1e-5, atol=1e-5)


def test_boxinst_terms_match_the_official_code():
    """Box bitmasks and Lab colour similarity of ``CondInst.add_bitmasks_from_boxes`` (skimage rgb2lab of the byte
    image), ``compute_project_term`` and the weighted ``compute_pairwise_term``; zoo's earlier forms differ."""
    b, logits = _golden("boxinst"), _golden("dynamic_mask_head")["mask_logits"]
    rgb = b["images_bgr"].float()[:, [2, 1, 0]]
    assert torch.equal(L.box_masks(b["boxes"], 12, 16, 4), b["gt_bitmasks"])
    assert not torch.equal(L.box_masks(b["boxes"], 12, 16, 4, continuous=True), b["gt_bitmasks"])
    torch.testing.assert_close(L.color_similarity(rgb, 4, 2), b["color_similarity"], rtol=1e-4, atol=2e-5)
    assert (L.color_similarity(rgb, 4, 2, from_float=True) - b["color_similarity"]).abs().max() > 1e-2
    prj = L.projection_loss(logits.sigmoid()[:, 0], b["gt_bitmasks"]).mean()
    torch.testing.assert_close(prj.reshape(1), b["loss_prj"], rtol=1e-5, atol=1e-6)
    pair = L.pairwise_loss(logits, b["color_similarity"][b["box_im"]], b["gt_bitmasks"], 0.3, 2)
    torch.testing.assert_close(pair.reshape(1), b["loss_pairwise"], rtol=1e-5, atol=1e-6)


def test_point_loss_and_instance_weights_match_the_official_code():
    """``gt_weight_norm`` and ``roi_mask_point_loss`` on ``point_sample``d mask logits (dynamic_mask_head.py)."""
    p, b, logits = _golden("point_loss"), _golden("boxinst"), _golden("dynamic_mask_head")["mask_logits"]
    w = L.instance_weights(b["boxes"])
    torch.testing.assert_close(w, p["gt_weight_norm"], rtol=1e-6, atol=1e-7)
    assert torch.equal(L.instance_weights(b["boxes"][:1]), p["weight_single"])
    got = L.point_loss(logits, p["point_coords"], p["point_labels"].long(), w)
    torch.testing.assert_close(got.reshape(1), p["loss_point"], rtol=1e-5, atol=1e-6)


def test_gcr_graphs_and_losses_match_the_official_code():
    """``get_lidar_dis_similarity2`` (geometric graph, >= 0.5), ``compute_resnet_sim`` (appearance graph on P3,
    > 0.3), ``compute_lidar_sim_loss`` with the (1 - w) weighting of dynamic_mask_head.py; nodes in the release's
    order (valid in-box rows, valid out-of-box rows, zero padding)."""
    import torch.nn.functional as F

    g, b, logits = _golden("gcr"), _golden("boxinst"), _golden("dynamic_mask_head")["mask_logits"]
    rows = torch.cat([g["lidar_in"], g["lidar_out"]], 1)
    valid = rows[..., 0] != 0
    order = torch.argsort((~valid).int(), dim=1, stable=True)
    rows, valid = torch.gather(rows, 1, order[..., None].expand_as(rows)), torch.gather(valid, 1, order)
    xyz, uv = rows[..., :3].float(), rows[..., 4:].float()
    torch.testing.assert_close(uv / 4 * valid[..., None], g["lidar_coords"].float())
    geo = L.geometric_graph(xyz, valid)
    assert torch.equal(geo, g["lidar_sim"] >= 0.5)
    p3 = g["p3"]
    grid = torch.stack([uv[..., 0] / (8 * p3.shape[-1]), uv[..., 1] / (8 * p3.shape[-2])], -1) * 2 - 1
    feats = F.grid_sample(p3[b["box_im"]], grid[:, :, None, :], align_corners=False)[..., 0].transpose(1, 2)
    app = L.appearance_graph(feats, valid)
    assert torch.equal(app, g["resnet_sim"] > 0.3)
    w = L.instance_weights(b["boxes"])
    node_logits = L.sample_logits(logits, uv, 4)
    torch.testing.assert_close(L.graph_loss(node_logits, geo, w).reshape(1), g["loss_gcr_geo"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(L.graph_loss(node_logits, app, w).reshape(1), g["loss_gcr_app"], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ release checkpoints
TINY_NET = dict(
    depth=50, backbone_channels=[2, 4, 8, 16], fpn=32, tower=1, mask_ch=16, mask_convs=1, mask_out=8, gn_groups=32
)


def _official_tiny_state():
    from safetensors.torch import load_file

    state = {}
    for part in ("resnet", "fpn", "fcos", "mask"):
        state.update(load_file(GOLDEN / f"condinst_tiny_w_{part}.safetensors"))
    return state


@pytest.mark.parametrize("size", ["r50", "r101"])
def test_converter_maps_the_full_official_key_set(size):
    """Every key of the official CondInst (names / shapes of ``CondInst(cfg).state_dict()`` built from the official
    module definitions with Base-BoxInst-nuscenes.yaml, tests/fixtures/lwsis/official_keys.json) lands on a zoo key
    of the same shape, and every zoo key is filled."""
    import json

    from zoo.models.lwsis.convert import convert_state_dict
    from zoo.models.lwsis.model import CondInst
    from zoo.models.lwsis.sizes import SIZES

    keys = json.loads((GOLDEN / "official_keys.json").read_text())[size]
    official = {k: torch.zeros(s, device="meta") for k, s in keys.items()}
    official["mask_head.sizes_of_interest"] = torch.tensor([64.0, 128, 256, 512, 1024])
    with torch.device("meta"):
        own = CondInst(num_classes=10, **SIZES[size]).state_dict()
    got = convert_state_dict({"model": official})
    assert sorted(got) == sorted(own)
    assert {k: tuple(v.shape) for k, v in got.items()} == {k: tuple(v.shape) for k, v in own.items()}


def test_converted_official_network_reproduces_its_outputs():
    """The official tiny CondInst's state_dict (detectron2 ResNet-50 layout, FPN, FCOS head, controller, mask branch),
    converted and loaded strictly: FPN levels, class logits, box regression (zoo multiplies by the stride),
    centerness, controller outputs and mask features agree at float32 tolerance for an RGB copy of its BGR input; the
    timm stride-in-3x3 layout does not."""
    from safetensors.torch import load_file

    from zoo.models.lwsis.convert import convert_state_dict
    from zoo.models.lwsis.model import CondInst

    io, fpn = load_file(GOLDEN / "condinst_tiny_io.safetensors"), load_file(GOLDEN / "condinst_tiny_fpn.safetensors")
    state = convert_state_dict(_official_tiny_state())
    image = io["image_bgr"].float()[:, [2, 1, 0]]

    def close(a, b):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))

    m = CondInst(**TINY_NET).eval()
    m.load_state_dict(state, strict=True)
    with torch.no_grad():
        out, feats = m(image), m.features(image)
    for i, f in enumerate(("p3", "p4", "p5", "p6", "p7")):
        close(feats[i], fpn[f])
        close(out["logits"][i], io[f"logits_{f}"])
        close(out["reg"][i] / m.strides[i], io[f"reg_{f}"])
        close(out["ctr"][i], io[f"ctr_{f}"])
        if f"params_{f}" in io:
            close(out["params"][i], io[f"params_{f}"])
    close(out["mask_feats"], fpn["mask_feats"])
    timm_layout = CondInst(**TINY_NET, stride_in_3x3=True).eval()
    timm_layout.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert not torch.allclose(timm_layout.features(image)[0], fpn["p3"], rtol=1e-2)


def test_release_files_load_without_running_code_and_convert_strictly(tmp_path):
    """detectron2's trained ``.pth`` ({model, optimizer, scheduler, iteration}) and model-zoo ``.pkl`` (a raw pickle
    of numpy arrays with ``__author__``) both convert into a strict load; files naming any other global are refused."""
    import os
    import pickle

    from zoo.models.lwsis.convert import convert_state_dict, read_official
    from zoo.models.lwsis.model import CondInst

    state = _official_tiny_state()
    want = convert_state_dict(state)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.05, momentum=0.9)
    torch.save(
        {
            "model": state,
            "optimizer": opt.state_dict(),
            "scheduler": {"last_epoch": 9999, "base_lrs": [0.05]},
            "iteration": 9999,
        },
        tmp_path / "model_final.pth",
    )
    with open(tmp_path / "model_final.pkl", "wb") as f:
        pickle.dump(
            {"model": {k: v.numpy() for k, v in state.items()}, "__author__": "LWSIS", "matching_heuristics": True}, f
        )
    for name in ("model_final.pth", "model_final.pkl"):
        got = read_official(tmp_path / name)
        CondInst(**TINY_NET).load_state_dict(got, strict=True)
        assert all(torch.equal(got[k], want[k]) for k in want), name

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    with open(tmp_path / "crafted.pkl", "wb") as f:
        pickle.dump({"model": {}, "x": Payload()}, f)
    with pytest.raises(UserError, match="refusing to unpickle global posix.getcwd"):
        read_official(tmp_path / "crafted.pkl")
    torch.save({"model": state, "extra": Path("/etc")}, tmp_path / "crafted.pth")
    with pytest.raises(ValueError, match="weights_only=True.*Nothing in it was run"):
        read_official(tmp_path / "crafted.pth")
    with pytest.raises(UserError, match="no place in zoo's CondInst: \\['proposal_generator.fcos_head.share_tower"):
        convert_state_dict({**state, "proposal_generator.fcos_head.share_tower.0.weight": torch.zeros(1)})


def test_pla_projection_occlusion_filter_and_sampler_match_the_official_code():
    """Official nuInsSeg converter ``map_point_to_img`` (nuScenes calibration chain, depth > 1, 1 px border, int16
    pixels), ``tools/utils.py: remove_overlap`` on its depth image and ``random_sample_balance`` with fixed
    ``np.random`` draws (tests/fixtures/lwsis/README.md)."""
    from safetensors.numpy import load_file

    from zoo.data_modules.point_labels import occlusion_filter

    g = load_file(GOLDEN / "pla.safetensors")
    uv, depth = project(g["points"], g["lidar2img"])
    h, w = 900, 1600
    vis = (depth > 1) & (uv[:, 0] > 1) & (uv[:, 0] < w - 1) & (uv[:, 1] > 1) & (uv[:, 1] < h - 1)
    assert np.array_equal(vis, g["visible"])
    np.testing.assert_allclose(depth[vis], g["depth"], rtol=1e-5)  # the release projects in float32
    off = np.abs(np.trunc(uv[vis]) - g["pixels"].T)
    assert off.max() <= 1 and (off > 0).mean() < 0.01  # float32 vs float64 at integer boundaries: 14 of 3513
    pixels, d = g["pixels"].T.astype(np.float64), g["depth"].astype(np.float64)
    assert np.array_equal(occlusion_filter(pixels, d, (h, w)), g["keep"])
    assert not np.array_equal(occlusion_filter(pixels, d, (h, w), vectorised=True), g["keep"])
    box = (500.0, 300.0, 740.0, 480.0)  # the release's bbox [500, 300, 240, 180] (x, y, w, h)
    empty = np.zeros((0, 2))
    for case, (fg, bg) in {"both": (g["fg"], g["bg"]), "no_fg": (empty, g["bg"]), "no_bg": (g["fg"], empty)}.items():
        coords, labels = balanced_sample(fg, bg, box, 20, np.random.RandomState(7))
        np.testing.assert_allclose(coords, g[f"{case}_coords"], rtol=1e-6, err_msg=case)
        assert np.array_equal(labels, g[f"{case}_labels"]), case


# ------------------------------------------------------------------ sizes once, data follows the model (issue 24)
def test_sizes_build_the_registry_architectures():
    from zoo import registry
    from zoo.models.lwsis.module import LWSISModule
    from zoo.models.lwsis.sizes import DEFAULT, SIZES

    assert DEFAULT == "r50" and set(SIZES) == {"r50", "r101"}
    with torch.device("meta"):
        for size in SIZES:
            m = LWSISModule(size=size)
            assert m.data_config() == {"image_size": [800, 1344]}
            assert sum(p.numel() for p in m.model.parameters()) == registry.get(f"lwsis-boxinst-{size}").params


class _Trainer:
    """Just what ``zoo.sizes.model_data_config`` and the module's ``setup`` read."""

    def __init__(self, module, datamodule=None):
        self.lightning_module, self.datamodule = module, datamodule


def test_instance_seg_data_follows_the_model_image_size(shared_data):
    from zoo.data_modules import NuScenesInstanceSegDataModule
    from zoo.models.lwsis.module import LWSISModule

    root = str(shared_data / "nuscenes_demo")
    module = LWSISModule(net=TINY, img_size=[64, 96])
    dm = NuScenesInstanceSegDataModule(root, cameras=["CAM_FRONT"], min_box_px=0.0)
    with pytest.raises(UserError, match="image_size is not set and no attached model fixes it") as e:
        dm.setup("fit")  # no model, no size
    assert "\n" not in str(e.value)
    dm.trainer = _Trainer(module)
    dm.setup("fit")
    images, _ = next(iter(dm.val_dataloader()))
    assert dm.image_size == [64, 96] and tuple(images.shape[-2:]) == (64, 96)
    bad = NuScenesInstanceSegDataModule(root, cameras=["CAM_FRONT"], image_size=[128, 224])
    bad.trainer = _Trainer(module)
    with pytest.raises(UserError, match=r"image_size is \[128, 224\] but the model was built for \[64, 96\]") as e:
        bad.setup("fit")
    assert "\n" not in str(e.value)
    module.trainer = None
    module._trainer = _Trainer(module, NuScenesInstanceSegDataModule(root, image_size=[64, 96]))
    module.setup("fit")  # 10 classes on both sides
    module.model.num_classes = 3
    with pytest.raises(UserError, match="the head has 3 classes, the data module 10"):
        module.setup("fit")
