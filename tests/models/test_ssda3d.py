"""SSDA3D: Point-CutMix / Point-MixUp invariants, the two training sets, pseudo-labels, and a short real-data fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoo.data_modules.domain_adaptation import CutMixFrames, MixUpFrames, PseudoLabelledFrames
from zoo.data_modules.point_mixing import (
    apply_cutmix,
    boxes_touching_region,
    draw_cutmix_region,
    draw_side_ratios,
    point_cutmix,
    point_mixup,
)
from zoo.errors import UserError
from zoo.models.ssda3d.module import SSDA3DModule
from zoo.models.ssda3d.pseudo_labels import PseudoLabelWriter
from zoo.nn.boxes3d import bev_iou, points_in_boxes
from zoo.pseudo_labels import read_pseudo_labels

RANGE = [-20.0, -20.0, -3.0, 20.0, 20.0, 3.0]


def frame(n, tag, boxes, seed, name):
    """Points carry their frame in the intensity (``tag``) and their row in a 5th column."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * torch.tensor([40.0, 40.0, 4.0]) - torch.tensor([20.0, 20.0, 2.0])
    pts = torch.cat([xyz, torch.full((n, 1), tag), torch.arange(n, dtype=torch.float32)[:, None]], 1)
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 7)
    return {
        "points": pts,
        "boxes": b,
        "labels": torch.zeros(len(b), dtype=torch.long),
        "frame_id": name,
        "dataset": name,
    }


# region [-5, -5, 5, 5]; boxes: fully inside, fully outside, and crossing the border (only 2 corners inside)
INSIDE, OUTSIDE, BORDER = (
    [0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
    [12.0, 12.0, 0.0, 4.0, 2.0, 1.5, 0.3],
    [5.5, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
)


def test_corner_rule_on_a_hand_made_border_box():
    region = [-5.0, -5.0, 5.0, 5.0]
    touch = boxes_touching_region(torch.tensor([INSIDE, OUTSIDE, BORDER]), region, (RANGE[2], RANGE[5]))
    assert touch.tolist() == [True, False, True]
    # the border box has exactly 4 of 8 corners (x = 3.5) inside: one corner suffices; a box just beyond does not touch
    assert not boxes_touching_region(torch.tensor([[7.01, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]]), region, (-3, 3)).any()


def test_cutmix_points_and_boxes_come_from_the_right_frame():
    src = frame(3000, 0.25, [INSIDE, OUTSIDE, BORDER], 0, "src")
    tgt = frame(2000, 0.75, [INSIDE, OUTSIDE, BORDER], 1, "tgt")
    region = [-5.0, -5.0, 5.0, 5.0]
    out = apply_cutmix(src, tgt, region, RANGE)

    def inside(p):
        return (p[:, 0] > -5) & (p[:, 0] < 5) & (p[:, 1] > -5) & (p[:, 1] < 5)

    p = out["points"]
    from_t, from_s = p[:, 3] == 0.75, p[:, 3] == 0.25
    assert (from_t | from_s).all()
    assert inside(p[from_t]).all() and not inside(p[from_s]).any()
    assert int(from_t.sum()) == int(inside(tgt["points"]).sum())
    assert int(from_s.sum()) == int((~inside(src["points"])).sum())
    assert len(p) == int(inside(tgt["points"]).sum()) + int((~inside(src["points"])).sum())
    # rows are the original rows of their frame (5th column) and unchanged
    torch.testing.assert_close(p[from_t], tgt["points"][p[from_t][:, 4].long()])
    torch.testing.assert_close(p[from_s], src["points"][p[from_s][:, 4].long()])
    # boxes: source OUTSIDE (the source INSIDE and BORDER boxes touch the region) + target INSIDE and BORDER
    assert out["boxes"].tolist() == torch.tensor([OUTSIDE, INSIDE, BORDER]).tolist()
    assert out["labels"].tolist() == [0, 0, 0] and out["dataset"] == "tgt"


def test_cutmix_region_rules():
    rng = np.random.default_rng(0)
    ratios = np.array([draw_side_ratios(rng) for _ in range(300)])
    assert ((ratios >= 0.5) & (ratios <= 1.0)).all()
    assert (ratios.min(1) / ratios.max(1) >= 0.75).mean() > 0.99
    src = frame(500, 0.25, [OUTSIDE], 2, "src")
    tgt = frame(4000, 0.75, [INSIDE], 3, "tgt")
    for seed in range(10):
        region = draw_cutmix_region(
            src["points"], tgt["points"], RANGE, np.random.default_rng(seed), min_target_points=1000
        )
        x0, y0, x1, y1 = region
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        # centred on a source point, half-extent c * range / 2 with c in [0.5, 1]
        assert torch.isclose(src["points"][:, :2], torch.tensor([cx, cy]), atol=1e-4).all(1).any()
        assert 10.0 - 1e-6 <= (x1 - x0) / 2 <= 20.0 + 1e-6 and 10.0 - 1e-6 <= (y1 - y0) / 2 <= 20.0 + 1e-6
        t = tgt["points"]
        assert int(((t[:, 0] > x0) & (t[:, 0] < x1) & (t[:, 1] > y0) & (t[:, 1] < y1)).sum()) > 1000
    # a target with too few points can never satisfy the > N rule: no region, the caller resamples
    assert point_cutmix(src, frame(800, 0.75, [INSIDE], 4, "t"), RANGE, np.random.default_rng(0), 1000) is None


def test_cutmix_dataset_epoch_and_resampling():
    src = [frame(300, 0.25, [], 5, "s0"), frame(300, 0.25, [OUTSIDE], 6, "s1")]
    tgt = [frame(300, 0.75, [INSIDE], 7, "t0")]
    ds = CutMixFrames(src, tgt, RANGE, cutmix_prob=0.0, min_target_points=10)
    assert len(ds) == 3
    assert ds[1]["frame_id"] == "s1" and ds[2]["frame_id"] == "t0"
    assert all(len(ds[0]["boxes"]) for _ in range(5))  # s0 has no box: another index is drawn
    mixed = CutMixFrames(src, tgt, RANGE, cutmix_prob=1.0, min_target_points=10)[1]
    assert mixed["frame_id"].startswith("cutmix(s1|t0)")
    with pytest.raises(UserError, match="cutmix_prob"):
        CutMixFrames(src, tgt, RANGE, cutmix_prob=1.5)


def test_mixup_counts_union_and_collision_check():
    f1 = frame(1000, 0.25, [INSIDE, OUTSIDE], 8, "a")
    f2 = frame(700, 0.75, [[0.5, 0.5, 0.0, 4.0, 2.0, 1.5, 0.2], [-12.0, -12.0, 0.0, 4.0, 2.0, 1.5, 0.0]], 9, "b")
    out, lam = point_mixup(f1, f2, np.random.default_rng(0), alpha=2.0, return_lambda=True)
    assert lam == np.random.default_rng(0).beta(2.0, 2.0)  # Beta(alpha, alpha), drawn first
    p = out["points"]
    n1, n2 = int((p[:, 3] == 0.25).sum()), int((p[:, 3] == 0.75).sum())
    assert (n1, n2) == (int(1000 * lam), int(700 * (1 - lam))) and len(p) == n1 + n2
    for tag, f in ((0.25, f1), (0.75, f2)):  # every point is an unchanged row of its frame, none twice
        rows = p[p[:, 3] == tag]
        torch.testing.assert_close(rows, f["points"][rows[:, 4].long()])
        assert rows[:, 4].unique().numel() == len(rows)
    assert out["boxes"].tolist() == torch.cat([f1["boxes"], f2["boxes"]]).tolist()
    cd = point_mixup(f1, f2, np.random.default_rng(0), alpha=2.0, collision_check=True)
    # f2's first box overlaps f1's INSIDE box in BEV: dropped with its points; the far one stays
    assert cd["boxes"].tolist() == torch.cat([f1["boxes"], f2["boxes"][1:]]).tolist()
    assert (bev_iou(f1["boxes"], f2["boxes"][:1]) > 0).any()
    from_2 = cd["points"][cd["points"][:, 3] == 0.75]
    assert not points_in_boxes(from_2[:, :3], f2["boxes"][:1]).any()


def test_mixup_dataset_rules():
    gt = [frame(200, 0.25, [INSIDE], 10, "g0")]
    ps = [frame(200, 0.75, [OUTSIDE], 11, "p0"), frame(200, 0.75, [OUTSIDE], 12, "p1")]
    ds = MixUpFrames(gt, ps, mixup_prob=0.0, gt_prob=1.0)
    assert len(ds) == 3 and {ds[i]["frame_id"] for i in range(3)} == {"g0"}
    ds = MixUpFrames(gt, ps, mixup_prob=0.0, gt_prob=0.0)
    assert [ds[i]["frame_id"] for i in range(3)] == ["p0", "p1", "p0"]  # i mod |ps|
    ds = MixUpFrames(gt, ps, mixup_prob=1.0, mixup_type="gt_gt+ps")
    assert all(ds[i]["frame_id"].startswith("mixup(g0|") for i in range(5))  # first frame from gt
    with pytest.raises(UserError, match="mixup_type"):
        MixUpFrames(gt, ps, mixup_type="gt")


PCR = [-51.2, -51.2, -5.0, 51.2, 51.2, 4.8]  # the pillar size's range
NET = dict(
    voxel_size=[0.8, 0.8, 9.8],
    pillar_filters=[16, 16],
    layer_nums=[1, 1],
    layer_strides=[2, 2],
    num_filters=[16, 32],
    upsample_strides=[1, 2],
    num_upsample_filters=[16, 16],
    head_channels=16,
)
TINY = dict(size="pillar", net=NET, example_points=200)


def tiny(**net):
    """The tiny pillar module with more ``net`` overrides."""
    return SSDA3DModule(**{**TINY, "net": {**NET, **net}})


def _nuscenes(shared_data, **kw):
    from zoo.data_modules.driving import NuScenesDataModule

    info = "n015-2018-07-24-11-22-45+0800.pkl"
    return NuScenesDataModule(
        root=str(shared_data / "nuscenes_demo"),
        train_split=info,
        val_split=info,
        predict_split=info,
        z_shift=1.8,
        intensity="max",
        batch_size=1,
        **{"point_cloud_range": PCR, **kw},
    )


def test_short_fit_on_real_frames_lowers_the_loss(shared_data):
    from zoo.data_modules.driving import KittiDataModule, collate_frames

    torch.manual_seed(0)
    kitti = KittiDataModule(
        root=str(shared_data / "kitti_frames"),
        train_split=["000002"],
        val_split=["000002"],
        z_shift=1.73,
        intensity="max",
        point_cloud_range=PCR,
    )
    frames = [kitti.frames("train", augment=False)[0], _nuscenes(shared_data).frames("train", augment=False)[0]]
    mix = point_cutmix(frames[0], frames[1], PCR, np.random.default_rng(0), 10_000)
    assert mix is not None and len(mix["boxes"])
    batch = collate_frames([frames[1], mix])
    module = SSDA3DModule(**TINY).train()
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    losses = []
    for step in range(8):
        loss = module.model.head.loss(module(batch), batch["boxes"], batch["labels"])["loss"]  # training_step's loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


def test_pseudo_labels_written_by_predict_are_read_by_stage_two(shared_data, tmp_path):
    import lightning.pytorch as pl

    torch.manual_seed(0)
    dm = _nuscenes(shared_data)
    module = SSDA3DModule(**{**TINY, "net": {**NET, "score_threshold": 0.0}}, pseudo_label_threshold=0.05)
    writer = PseudoLabelWriter("pl/labels.json", threshold=0.06)  # tau on top of the module's
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[writer],
    )
    trainer.predict(module, dataloaders=dm.predict_dataloader(), return_predictions=False)
    path = tmp_path / "pl" / "labels.json"
    data = json.loads(path.read_text())
    assert data["classes"] == ["car"] and data["threshold"] == 0.06
    ((fid, lab),) = data["frames"].items()
    assert lab["boxes"] and all(s > 0.06 for s in lab["scores"]) and len(lab["boxes"]) == len(lab["labels"])
    labels = read_pseudo_labels(path, ["car"])
    ps = PseudoLabelledFrames(dm.frames("predict", augment=False), labels)
    f = ps[0]
    assert f["frame_id"] == fid and f["labels"].tolist() == lab["labels"][: len(f["labels"])]
    written = torch.tensor(lab["boxes"])  # the frame's boxes are the pseudo-labels (those centred inside the range)
    assert len(f["boxes"]) and all(torch.isclose(written, b, atol=1e-5).all(1).any() for b in f["boxes"])
    with pytest.raises(UserError, match="classes"):
        read_pseudo_labels(path, ["pedestrian"])
    # Stage II's data module reads them: labelled + pseudo-labelled frames, Point-MixUp-ed
    from zoo.data_modules import SSDA3DDataModule

    stage2 = SSDA3DDataModule(target=dm, stage="intra", pseudo_labels=str(path), mixup_prob=1.0, batch_size=1)
    batch = next(iter(stage2.train_dataloader()))
    assert len(stage2.train_set) == 2 and batch["frame_id"][0].startswith("mixup(") and len(batch["boxes"][0])
    # ... and Stage II starts from the Stage-I weights (init_weights: a Lightning checkpoint, weights_only)
    trainer.save_checkpoint(tmp_path / "stage1.ckpt")
    intra = SSDA3DModule(**TINY, stage="intra", init_weights=str(tmp_path / "stage1.ckpt"))
    intra.load_initial_weights(str(tmp_path / "stage1.ckpt"))
    for k, v in module.model.state_dict().items():
        torch.testing.assert_close(intra.model.state_dict()[k], v)
    fit = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        max_steps=2,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    fit.fit(SSDA3DModule(**TINY, stage="intra", init_weights=str(tmp_path / "stage1.ckpt")), datamodule=stage2)
    assert fit.global_step == 2 and torch.isfinite(fit.callback_metrics["train/loss"])


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="stage"):
        SSDA3DModule(**TINY, stage="stage3")
    with pytest.raises(UserError, match="divisible"):
        tiny(point_cloud_range=[-50.0, -50.0, -5.0, 50.0, 50.0, 4.8])
    from zoo.data_modules import SSDA3DDataModule

    class _T:
        classes = ["car"]
        point_cloud_range = RANGE

    with pytest.raises(UserError, match="pseudo_labels"):
        SSDA3DDataModule(target=_T(), stage="intra")


# ------------------------------------------------------------------ parity with the official mixers (fixtures README)
FIX = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "ssda3d"


class _LegacyDraws:
    """numpy's legacy global stream (the release calls np.random.*) behind the Generator methods zoo's mixers call."""

    def __init__(self, seed: int):
        self.rs = np.random.RandomState(seed)

    def random(self, size=None):
        return self.rs.random_sample(size)

    def integers(self, n):
        return self.rs.randint(0, n)

    def beta(self, a, b):
        return self.rs.beta(a, b)

    def permutation(self, n):
        return self.rs.permutation(n)


def _frame(points, boxes):
    return {
        "points": torch.from_numpy(points),
        "boxes": torch.from_numpy(boxes),
        "labels": torch.zeros(len(boxes), dtype=torch.long),
    }


def test_point_cutmix_matches_the_release():
    """inter_domain_point_cutmix (yinjunbo/SSDA3D @ 5aa7443) on 2,018 source / 10,058 target points with the same
    np.random draws: identical points (order included) and boxes. The inputs hold points on the float32 rounding of
    the region's borders, where a float32 comparison puts them on the other side."""
    from safetensors.numpy import load_file

    x, y = load_file(FIX / "cutmix_inputs.safetensors"), load_file(FIX / "cutmix_outputs.safetensors")
    out = point_cutmix(
        _frame(x["source_points"], x["source_boxes"]),
        _frame(x["target_points"], x["target_boxes"]),
        x["point_cloud_range"].tolist(),
        _LegacyDraws(int(x["seed"][0])),
    )
    assert out["points"].shape == y["points"].shape and torch.equal(out["points"], torch.from_numpy(y["points"]))
    assert torch.equal(out["boxes"], torch.from_numpy(y["boxes"]))
    region = out["cutmix_region"].tolist()
    # the float32 comparison (zoo's earlier rule) disagrees on the border points
    t = torch.from_numpy(x["target_points"])
    f32 = (t[:, 0] > region[0]) & (t[:, 0] < region[2]) & (t[:, 1] > region[1]) & (t[:, 1] < region[3])
    t64 = t.double()
    f64 = (t64[:, 0] > region[0]) & (t64[:, 0] < region[2]) & (t64[:, 1] > region[1]) & (t64[:, 1] < region[3])
    n_source_outside = int((~_in(x["source_points"], region)).sum())
    assert (f32 != f64).any() and int(f64.sum()) == out["points"].shape[0] - n_source_outside


def _in(points, region):
    p = torch.from_numpy(points).double()
    return (p[:, 0] > region[0]) & (p[:, 0] < region[2]) & (p[:, 1] > region[1]) & (p[:, 1] < region[3])


@pytest.mark.parametrize("collision", [True, False])
def test_point_mixup_matches_the_release(collision):
    """intra_domain_point_mixup(_cd) (yinjunbo/SSDA3D @ 5aa7443, BEV IoU by shapely) with the same np.random draws:
    identical points and boxes; with the collision check the frame-2 points within 0.1 m (x, y) of a colliding box
    go too (collision_margin=0, zoo's earlier rule, keeps some of them)."""
    from safetensors.numpy import load_file

    x = load_file(FIX / "mixup.safetensors")
    name, seed = ("cd", 11) if collision else ("plain", 12)
    f1, f2 = _frame(x["points1"], x["boxes1"]), _frame(x["points2"], x["boxes2"])
    out = point_mixup(f1, f2, _LegacyDraws(seed), 2.0, collision_check=collision)
    assert torch.equal(out["points"], torch.from_numpy(x[f"{name}_points"]))
    assert torch.equal(out["boxes"], torch.from_numpy(x[f"{name}_boxes"]))
    if collision:
        old = point_mixup(f1, f2, _LegacyDraws(seed), 2.0, collision_check=True, collision_margin=0.0)
        assert old["points"].shape[0] > out["points"].shape[0]


# ------------------------------------------------------- parity with the official detector pieces (fixtures README)
_TINY = dict(
    backbone="pillar",
    voxel_size=(0.8, 0.8, 9.8),
    point_cloud_range=(-12.8, -12.8, -5.0, 12.8, 12.8, 4.8),
    pillar_filters=(8, 8),
    layer_nums=(1, 1, 1),
    layer_strides=(2, 2, 2),
    num_filters=(8, 16, 16),
    upsample_strides=(0.5, 1, 2),
    num_upsample_filters=(8, 8, 8),
    head_channels=8,
)


@pytest.fixture(scope="module")
def official_pillar():
    """zoo's tiny pillar detector holding the official weights (an OpenPCDet checkpoint_state file), + the official
    inputs / outputs."""
    from safetensors.torch import load_file

    from zoo.models.ssda3d.convert import load_official, read_checkpoint
    from zoo.models.ssda3d.model import SSDA3DDetector

    det = SSDA3DDetector(**_TINY)
    ckpt = read_checkpoint(FIX / "pillar_checkpoint_epoch_20.pth")
    assert set(ckpt) == {"epoch", "it", "model_state", "optimizer_state", "version"}
    load_official(det, ckpt)
    return det.eval(), {**load_file(FIX / "pillar_vfe.safetensors"), **load_file(FIX / "pillar_bev_head.safetensors")}


def _by_cell(feats, coords):
    key = (coords[:, 0].long() * 32 + coords[:, 2].long()) * 32 + coords[:, 3].long()
    order = key.argsort()
    return feats[order], key[order]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_dynamic_pillar_vfe_matches_the_release(official_pillar, mode):
    """DynamicPillarVFE (pcdet/models/backbones_3d/vfe/dynamic_pillar_vfe.py) on 2 x 1,500 points, 500 above the z
    range: the same 1,438 pillars and features (max |diff| < 1e-5, BN in eval and in train mode); zoo's earlier z
    filter (pillar_filter_z=True) makes fewer pillars."""
    det, ref = official_pillar
    pts = ref["points"]
    import copy

    vfe = copy.deepcopy(det.vfe).train(mode == "train")  # train mode updates the BN statistics: on a copy
    with torch.no_grad():
        feats, coords = vfe(pts[:, 1:], pts[:, 0].long())
    got, key = _by_cell(feats, coords)
    want, want_key = _by_cell(ref[f"{mode}_pillar_features"], ref["voxel_coords"])
    assert torch.equal(key, want_key)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    from zoo.nn.pillars import voxelize

    assert voxelize(pts[:, 1:], det.voxel_size, det.point_cloud_range, pts[:, 0].long()).coords.shape[0] < len(key)


def test_bev_scatter_backbone_and_center_head_match_the_release(official_pillar):
    """PointPillarScatter, BaseBEVBackbone (upsample strides 0.5 / 1 / 2) and CenterHead's separate heads, each fed
    the official input of its stage: max |diff| < 1e-5; the whole detector end to end too."""
    from zoo.nn.pillars import scatter_to_bev

    det, ref = official_pillar
    pts = ref["points"]
    with torch.no_grad():
        feats, coords = det.vfe(pts[:, 1:], pts[:, 0].long())
        torch.testing.assert_close(
            scatter_to_bev(feats, coords, 2, 32, 32), ref["spatial_features"], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(det.bev(ref["spatial_features"]), ref["spatial_features_2d"], atol=1e-5, rtol=1e-5)
        maps = det.head(ref["spatial_features_2d"])
        end = det([pts[pts[:, 0] == b, 1:] for b in range(2)])
    for name in ("hm", "center", "center_z", "dim", "rot"):
        torch.testing.assert_close(maps[name], ref[f"pred_{name}"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(end[name], ref[f"pred_{name}"], atol=1e-4, rtol=1e-4)


def _official_boxes(gt):
    """OpenPCDet's padded (B, M, 8) gt_boxes (class 0 = padding, class 1 = car) -> zoo's per-frame boxes / labels."""
    keep = [g[:, 7] > 0 for g in gt]
    return [g[k, :7] for g, k in zip(gt, keep)], [(g[k, 7] - 1).long() for g, k in zip(gt, keep)]


def test_center_head_targets_and_loss_match_the_release(official_pillar):
    """CenterHead.assign_targets (Gaussian heatmap, radius min_overlap 0.1 / min 2, regression targets; a negative-
    size box skipped, a box on the range's corner clamped) and get_loss (focal + 0.25 x L1): heatmap and targets of
    the real objects equal to float32, losses within 1e-6."""
    det, ref = official_pillar
    boxes, labels = _official_boxes(ref["gt_boxes"])
    with pytest.warns(UserWarning, match="non-positive size"):
        heatmap, target, index, mask = det.head.targets(boxes, labels, (8, 8))
    torch.testing.assert_close(heatmap, ref["target_heatmap"], atol=1e-6, rtol=1e-6)
    want_mask = ref["target_masks"].bool()
    assert mask.sum() == want_mask.sum() == 5
    torch.testing.assert_close(target[mask], ref["target_boxes"][want_mask], atol=1e-6, rtol=1e-6)
    assert torch.equal(index[mask], ref["target_inds"][want_mask].long())
    maps = {n: ref[f"pred_{n}"] for n in ("hm", "center", "center_z", "dim", "rot")}
    with pytest.warns(UserWarning):
        losses = det.head.loss(maps, boxes, labels)
    for k in ("loss", "hm_loss", "loc_loss"):
        torch.testing.assert_close(losses[k].reshape(1), ref[k], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("spconv_layout", ["2.x", "1.x"])
def test_openpcdet_voxel_checkpoint_converts_strictly(tmp_path, spconv_layout):
    """An OpenPCDet checkpoint_state file ({"epoch", "it", "model_state", "optimizer_state", "version"}) of the voxel
    CenterPoint, with the official model_state's keys and shapes (voxel_model_state_shapes.json, from the official
    VoxelResBackBone8x / BaseBEVBackbone / CenterHead modules), reads through zoo.convert.read_release and loads
    strictly; spconv 1.x kernels (kD, kH, kW, in, out) are told from their shapes and permuted."""
    pytest.importorskip("spconv")
    from zoo.models.ssda3d.convert import convert_key, load_official, read_checkpoint
    from zoo.models.ssda3d.model import SSDA3DDetector

    shapes = json.loads((FIX / "voxel_model_state_shapes.json").read_text())
    g = torch.Generator().manual_seed(0)
    state = {
        k: (
            torch.zeros(s, dtype=torch.long)
            if k.endswith(("num_batches_tracked", "global_step"))
            else torch.randn(s, generator=g)
        )
        for k, s in shapes.items()
    }
    saved = {
        k: (v.permute(1, 2, 3, 4, 0).contiguous() if v.dim() == 5 and spconv_layout == "1.x" else v)
        for k, v in state.items()
    }
    path = tmp_path / "checkpoint_epoch_20.pth"
    torch.save(
        {
            "epoch": 20,
            "it": 5,
            "model_state": saved,
            "optimizer_state": {"state": {}, "param_groups": []},
            "version": "pcdet+0.5.2",
        },
        path,
    )
    det = SSDA3DDetector(
        backbone="voxel",
        voxel_size=(0.2, 0.2, 0.2),
        point_cloud_range=(-6.4, -6.4, -5.0, 6.4, 6.4, 4.8),
        voxel_channels=(16, 32, 64, 128),
        layer_nums=(1, 1),
        layer_strides=(1, 2),
        num_filters=(8, 16),
        upsample_strides=(1, 2),
        num_upsample_filters=(8, 8),
        head_channels=8,
    )
    load_official(det, read_checkpoint(path))
    own = det.state_dict()
    for key in (
        "backbone_3d.conv_input.0.weight",
        "backbone_3d.conv4.0.0.weight",
        "backbone_3d.conv_out.0.weight",
        "backbone_3d.conv2.1.conv1.bias",
        "dense_head.heads_list.0.center.0.0.weight",
        "dense_head.heads_list.0.hm.1.bias",
        "backbone_2d.deblocks.1.0.weight",
    ):
        assert torch.equal(own[convert_key(key)], state[key]), key
    with pytest.raises(UserError, match="not a key"):
        convert_key("roi_head.shared_fc_layer.0.weight")


def test_bad_input_is_reported():
    """Issue 23: batch_size <= 0 and an all-NaN cloud are one-line UserErrors; boxes of non-positive size, which the
    targets skip (as the release), are counted in a warning."""
    from zoo.data_modules import SSDA3DDataModule

    class _T:
        classes = ["car"]
        point_cloud_range = RANGE

    for bad in (0, -2):
        with pytest.raises(UserError, match="batch_size") as e:
            SSDA3DDataModule(target=_T(), batch_size=bad)
        assert "\n" not in str(e.value)
    m = SSDA3DModule(**TINY)
    g = torch.Generator().manual_seed(0)
    good = torch.cat([torch.rand(300, 3, generator=g) * 20 - 10, torch.rand(300, 1, generator=g)], 1)
    box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
    batch = {
        "points": [good, torch.full((300, 4), float("nan"))],
        "boxes": [box, box],
        "labels": [torch.zeros(1, dtype=torch.long)] * 2,
        "frame_id": ["ok", "scan-7"],
    }
    with pytest.raises(UserError, match="scan-7.*NaN") as e:
        m.training_step(batch, 0)
    assert "\n" not in str(e.value)
    bad_box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0], [3.0, 3.0, 0.0, -4.0, 2.0, 1.5, 0.0]])
    batch = {
        "points": [good, good],
        "boxes": [bad_box, bad_box],
        "labels": [torch.zeros(2, dtype=torch.long)] * 2,
        "frame_id": ["a", "b"],
    }
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 boxes .*\(2 so far\)"):
        loss = m.training_step(batch, 0)
    assert torch.isfinite(loss) and m.model.head.skipped_boxes == 2


def test_ssda3d_defaults_follow_the_release():
    """pillar_filter_z=False (x / y filtering, the release's DynamicPillarVFE) and the hard-voxel cap 10 / 120k / 160k
    are the defaults; the switches restore zoo's earlier behaviour."""
    m = SSDA3DModule(**TINY)
    assert m.model.vfe.filter_z is False and m.model.max_points_per_voxel == 10
    assert tuple(m.model.max_voxels) == (120_000, 160_000)
    assert tiny(pillar_filter_z=True).model.vfe.filter_z is True
    with pytest.raises(UserError, match="max_voxels"):
        tiny(max_voxels=[10])


# ------------------------------------------------------------------ sizes once, data follows the model (issue 24)
def test_unknown_size_and_net_override_are_one_line_user_errors():
    with pytest.raises(UserError, match="unknown size 'tiny'.*pillar, voxel") as e:
        SSDA3DModule(size="tiny")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="'pillar_width'.*which the network does not take") as e:
        tiny(pillar_width=3)
    assert "\n" not in str(e.value)
    # the label space and the objective are the module's own arguments, not the network's
    for key in ("num_classes", "loc_weight"):
        with pytest.raises(UserError, match=key):
            tiny(**{key: 1})


def test_sizes_build_the_registry_architectures_on_the_meta_device():
    from zoo import registry
    from zoo.models.ssda3d.sizes import DEFAULT, SIZES

    assert DEFAULT == "pillar" and set(SIZES) == {"voxel", "pillar"}
    with torch.device("meta"):
        for size in SIZES:
            m = SSDA3DModule(size=size)
            assert m.data_config()["point_cloud_range"] == SIZES[size]["point_cloud_range"]
            assert sum(p.numel() for p in m.model.parameters()) == registry.get(f"ssda3d-{size}").params


class _Trainer:
    """Just what ``zoo.sizes.model_data_config`` reads: the module attached with the data module."""

    def __init__(self, module):
        self.lightning_module = module


def test_driving_data_follows_the_model_range_and_refuses_a_conflicting_one(shared_data):
    from zoo.data_modules.driving import NuScenesDataModule

    module = tiny()
    info = "n015-2018-07-24-11-22-45+0800.pkl"
    kw = dict(root=str(shared_data / "nuscenes_demo"), train_split=info, val_split=info, z_shift=1.8, batch_size=1)
    dm = NuScenesDataModule(**kw)
    assert dm.point_cloud_range is None
    dm.trainer = _Trainer(module)
    dm.setup("validate")
    assert dm.point_cloud_range == PCR
    pts = dm.val_set[0]["points"]
    assert bool((pts[:, :2].abs() < 51.2).all())
    small = tiny(point_cloud_range=[-12.8, -12.8, -5.0, 12.8, 12.8, 4.8])
    bad = NuScenesDataModule(**kw, point_cloud_range=PCR)
    bad.trainer = _Trainer(small)
    with pytest.raises(UserError, match="point_cloud_range is .* but the model was built for") as e:
        bad.setup("validate")
    assert "\n" not in str(e.value)
    # no model attached and no range: no crop (the data module's own behaviour)
    free = NuScenesDataModule(**kw)
    free.setup("validate")
    assert free.point_cloud_range is None


def test_ssda3d_data_module_passes_the_model_range_to_its_domains(shared_data):
    from zoo.data_modules import KittiDataModule, SSDA3DDataModule

    kitti = KittiDataModule(root=str(shared_data / "kitti_frames"), train_split=["000002"], val_split=["000002"])
    dm = SSDA3DDataModule(target=_nuscenes(shared_data, point_cloud_range=None), source=kitti, batch_size=1)
    with pytest.raises(UserError, match="Point-CutMix sizes its region"):
        dm.setup("fit")  # nothing fixes the range
    dm.trainer = _Trainer(tiny())
    dm.setup("fit")
    assert dm.point_cloud_range == PCR and kitti.point_cloud_range == PCR and dm.target.point_cloud_range == PCR
    conflict = SSDA3DDataModule(target=_nuscenes(shared_data), source=kitti, point_cloud_range=RANGE)
    conflict.trainer = _Trainer(tiny())
    with pytest.raises(UserError, match="but the model was built for"):
        conflict.setup("fit")
