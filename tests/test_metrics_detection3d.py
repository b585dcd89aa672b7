"""nuScenes (devkit algorithm) and KITTI-style 3D detection metrics on perfect and shifted predictions."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.errors import UserError
from zoo.metrics.detection3d import KittiDetection, NuScenesDetection, kitti_ap_r40

CARS = torch.tensor(
    [
        [10.0, 5.0, -0.5, 4.0, 2.0, 1.5, 0.3],
        [20.0, -6.0, -0.4, 4.5, 1.9, 1.6, -2.0],
        [-15.0, 3.0, -0.6, 3.8, 1.8, 1.5, math.pi / 2],
    ]
)


def targets():
    return [
        {"boxes": CARS[:2], "labels": torch.zeros(2, dtype=torch.long)},
        {"boxes": CARS[2:], "labels": torch.zeros(1, dtype=torch.long)},
        {"boxes": torch.zeros(0, 7), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def predictions(shift=(0.0, 0.0, 0.0), extra=None):
    out = []
    for i, t in enumerate(targets()):
        b = t["boxes"].clone()
        b[:, :3] += torch.tensor(shift)
        out.append(
            {
                "boxes": b,
                "scores": torch.linspace(0.9, 0.5, len(b)) if len(b) else torch.zeros(0),
                "labels": t["labels"].clone(),
            }
        )
    if extra is not None:
        out[2] = extra
    return out


def test_nuscenes_perfect_prediction_scores_one():
    m = NuScenesDetection(classes=["car"])
    preds, tgts = predictions(), targets()
    m.update(preds[:2], tgts[:2])  # two batches accumulate
    m.update(preds[2:], tgts[2:])
    r = m.compute()
    for th in (0.5, 1.0, 2.0, 4.0):
        assert r[f"car/ap@{th}"].item() == pytest.approx(1.0)
    assert r["mAP"].item() == pytest.approx(1.0) and r["NDS"].item() == pytest.approx(1.0)
    assert r["mATE"].item() == pytest.approx(0.0, abs=1e-6) and r["mAOE"].item() == pytest.approx(0.0, abs=1e-6)


def test_nuscenes_one_metre_shift_loses_what_the_definitions_say():
    """Devkit matching is ``distance < threshold``: at exactly 1 m AP@0.5 and AP@1 are 0, AP@2 and AP@4 are 1;
    trans_err = 1 m; NDS = (5 * 0.5 + 0 (ATE) + 1 + 1 + 1 + 1) / 10 = 0.65."""
    m = NuScenesDetection(classes=["car"])
    m.update(predictions(shift=(1.0, 0.0, 0.0)), targets())
    r = m.compute()
    assert [r[f"car/ap@{th}"].item() for th in (0.5, 1.0, 2.0, 4.0)] == [0.0, 0.0, 1.0, 1.0]
    assert r["car/trans_err"].item() == pytest.approx(1.0)
    assert r["car/scale_err"].item() == pytest.approx(0.0, abs=1e-6)
    assert r["mAP"].item() == pytest.approx(0.5) and r["NDS"].item() == pytest.approx(0.65)
    # a pure z shift: the devkit's centre distance is BEV and its scale error size-only, so nothing is lost
    m.reset()
    m.update(predictions(shift=(0.0, 0.0, 1.0)), targets())
    assert m.compute()["NDS"].item() == pytest.approx(1.0)


def test_nuscenes_false_positive_and_range_filter():
    fp = {
        "boxes": torch.tensor([[30.0, 30.0, 0.0, 4.0, 2.0, 1.5, 0.0]]),
        "scores": torch.tensor([0.95]),
        "labels": torch.tensor([0]),
    }
    m = NuScenesDetection(classes=["car"])
    m.update(predictions(extra=fp), targets())
    ap = m.compute()["car/ap@2.0"].item()
    assert 0.0 < ap < 1.0  # the highest-scored box is a false positive
    far = {
        "boxes": torch.tensor([[60.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]]),
        "scores": torch.tensor([0.95]),
        "labels": torch.tensor([0]),
    }
    m.reset()
    m.update(predictions(extra=far), targets())  # beyond the 50 m car range: filtered like the devkit does
    assert m.compute()["car/ap@2.0"].item() == pytest.approx(1.0)
    with pytest.raises(UserError, match="not nuScenes detection classes"):
        NuScenesDetection(classes=["Car"])


def test_kitti_perfect_and_shifted():
    m = KittiDetection(classes=["car"], iou_thresholds=(0.7, 0.5))
    m.update(predictions(), targets())
    r = m.compute()
    assert all(r[k].item() == pytest.approx(1.0) for k in ("car/ap_bev@0.7", "car/ap_3d@0.7", "mAP"))
    # a 1 m shift along a 4 m x 2 m car's length: BEV IoU = 3*2 / (8 + 8 - 6) = 0.6 -> lost at 0.7, kept at 0.5
    box = torch.tensor([[10.0, 5.0, -0.5, 4.0, 2.0, 1.5, 0.0]])
    shifted = box.clone()
    shifted[0, 0] += 1.0
    m = KittiDetection(classes=["car"])
    m.update(
        [{"boxes": shifted, "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.long)}],
        [{"boxes": box, "labels": torch.zeros(1, dtype=torch.long)}],
    )
    r = m.compute()
    assert r["car/ap_bev@0.7"].item() == 0.0 and r["car/ap_3d@0.7"].item() == 0.0
    assert r["car/ap_bev@0.5"].item() == 1.0 and r["car/ap_3d@0.5"].item() == 1.0


def test_kitti_ap_r40_definition():
    # 2 GT; detections TP, FP, TP by descending score: precision at recall 0.5 = 1, at recall 1 = 2/3
    assert kitti_ap_r40(
        torch.tensor([0.9, 0.8, 0.7]).numpy(), torch.tensor([1.0, 0.0, 1.0]).numpy(), 2
    ) == pytest.approx((20 * 1.0 + 20 * 2 / 3) / 40)
    assert kitti_ap_r40(torch.tensor([0.9]).numpy(), torch.tensor([1.0]).numpy(), 2) == pytest.approx(0.5)
    assert math.isnan(kitti_ap_r40(torch.zeros(0).numpy(), torch.zeros(0).numpy(), 0))


def test_metric_states_merge_like_processes():
    """Two metric objects (two ranks' worth of frames) merged through torchmetrics' state reduction equal one
    metric that saw all frames."""
    preds, tgts = predictions(shift=(0.3, 0.0, 0.0)), targets()
    whole = NuScenesDetection(classes=["car"])
    whole.update(preds, tgts)
    a, b = NuScenesDetection(classes=["car"]), NuScenesDetection(classes=["car"])
    a.update(preds[:1], tgts[:1])
    b.update(preds[1:], tgts[1:])
    b.frame_keys = [k + 1000 for k in b.frame_keys]  # another rank's keys
    b.pred_rows = [torch.cat([r[:, :1] + 1000, r[:, 1:]], 1) for r in b.pred_rows]
    b.target_rows = [torch.cat([r[:, :1] + 1000, r[:, 1:]], 1) for r in b.target_rows]
    a.merge_state(b)
    ra, rw = a.compute(), whole.compute()
    assert all(ra[k].item() == pytest.approx(rw[k].item(), nan_ok=True) for k in rw)
    assert rw["car/ap@0.5"].item() == pytest.approx(1.0) and rw["car/trans_err"].item() == pytest.approx(0.3)


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    preds, tgts = predictions(shift=(0.7, 0.0, 0.0)), targets()
    mine = [0, 2] if rank == 0 else [1]  # uneven shards
    res = {}
    for m in (NuScenesDetection(classes=["car"]), KittiDetection(classes=["car"])):
        m.update([preds[i] for i in mine], [tgts[i] for i in mine])
        res.update({k: float(v) for k, v in m.compute().items()})
    if rank == 0:
        with open(out, "w") as f:
            json.dump(res, f)
    dist.destroy_process_group()


def test_metrics_accumulate_across_processes(tmp_path):
    """Two gloo processes (forked), each updating with its own frames, compute what one process computes on all
    frames: the states are gathered with unique frame keys."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.json"
    mp.start_processes(_ddp_worker, args=(port, str(out)), nprocs=2, start_method="fork")
    got = json.loads(out.read_text())
    ref = {}
    for m in (NuScenesDetection(classes=["car"]), KittiDetection(classes=["car"])):
        m.update(predictions(shift=(0.7, 0.0, 0.0)), targets())
        ref.update({k: v.item() for k, v in m.compute().items()})
    assert got.keys() == ref.keys()
    assert all(got[k] == pytest.approx(ref[k], nan_ok=True) for k in ref)
    assert ref["car/ap@0.5"] == 0.0 and ref["car/ap@1.0"] == pytest.approx(1.0)  # 0.7 m: matched only from 1 m
