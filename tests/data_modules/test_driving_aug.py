"""Global augmentations move boxes with points; GT-sampling pastes database objects without collisions."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.data_modules.driving import KittiDataModule, NuScenesDataModule
from zoo.data_modules.driving_aug import (
    Compose,
    GlobalFlip,
    GlobalRotation,
    GlobalScaling,
    GlobalTranslation,
    GTSampling,
    build_augmentation,
    build_gt_database,
)
from zoo.errors import UserError
from zoo.nn.boxes3d import bev_iou, points_in_boxes

NUS_INFO = "n015-2018-07-24-11-22-45+0800.pkl"


@pytest.fixture(scope="module")
def kitti(shared_data):
    return KittiDataModule(
        shared_data / "kitti_frames", train_split="all", val_split="all", classes=["car", "pedestrian", "cyclist"]
    )


@pytest.fixture(scope="module")
def nus_frame(shared_data):
    dm = NuScenesDataModule(
        shared_data / "nuscenes_demo",
        train_split=NUS_INFO,
        val_split=NUS_INFO,
        classes=["car", "pedestrian", "cyclist"],
    )
    return dm.frames("val")[0]


def as64(frame):
    return {**frame, "points": frame["points"].double(), "boxes": frame["boxes"].double()}


@pytest.mark.parametrize(
    "aug",
    [
        GlobalFlip(prob=1.0),
        GlobalRotation(seed=1),
        GlobalScaling(seed=2),
        GlobalTranslation(seed=3),
        Compose([GlobalFlip(seed=4), GlobalRotation(seed=5), GlobalScaling(seed=6)]),
    ],
)
def test_global_augmentations_keep_points_in_their_boxes(aug, nus_frame):
    frame = as64(nus_frame)
    before = points_in_boxes(frame["points"], frame["boxes"])
    assert before.sum() > 100
    out = aug(frame)
    assert out["points"].shape == frame["points"].shape and out["boxes"].shape == frame["boxes"].shape
    assert not torch.equal(out["points"][:, :3], frame["points"][:, :3])  # something moved
    assert torch.equal(points_in_boxes(out["points"], out["boxes"]), before)
    torch.testing.assert_close(out["points"][:, 3], frame["points"][:, 3])  # intensity untouched
    assert (out["boxes"][:, 6].abs() <= math.pi + 1e-9).all()


def test_global_augmentation_geometry():
    box = torch.tensor([[10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])
    frame = {"points": torch.tensor([[10.0, 0.0, 0.0, 0.5]]), "boxes": box, "labels": torch.tensor([0])}
    rot = GlobalRotation.apply(frame, math.pi / 2)
    torch.testing.assert_close(rot["boxes"][0, [0, 1, 6]], torch.tensor([0.0, 10.0, math.pi / 2]))
    flipped = GlobalFlip(axes=["y"], prob=1.0)(rot)  # x -> -x, yaw -> pi - yaw
    torch.testing.assert_close(flipped["boxes"][0, [0, 1, 6]], torch.tensor([0.0, 10.0, math.pi / 2]))
    twice = GlobalFlip(axes=["x"], prob=1.0)(GlobalFlip(axes=["x"], prob=1.0)(frame))
    torch.testing.assert_close(twice["boxes"], box)
    scaled = GlobalScaling.apply(frame, 1.1)
    torch.testing.assert_close(scaled["boxes"][0, :6], box[0, :6] * 1.1)
    assert frame["boxes"] is box and box[0, 0] == 10.0  # inputs are not modified
    with pytest.raises(UserError, match="range"):
        GlobalScaling(range=[1.1, 0.9])


def test_augmentations_are_seedable(nus_frame):
    a = Compose([GlobalFlip(), GlobalRotation(), GlobalScaling()])
    b = Compose([GlobalFlip(), GlobalRotation(), GlobalScaling()])
    a.reseed(7)
    b.reseed(7)
    torch.testing.assert_close(a(nus_frame)["boxes"], b(nus_frame)["boxes"])
    b.reseed(8)
    assert not torch.allclose(a(nus_frame)["boxes"], b(nus_frame)["boxes"])


def test_gt_database_stores_points_once(kitti):
    db = kitti.gt_database()
    assert {c: len(v) for c, v in db.items()} == {"car": 2, "pedestrian": 1, "cyclist": 1}
    assert kitti.gt_database() is db  # built once
    for objs in db.values():
        for o in objs:
            local = o["points"]
            # stored relative to the box centre: all inside the box placed at the origin
            at_origin = torch.cat([torch.zeros(3), o["box"][3:]])[None]
            assert len(local) > 0 and points_in_boxes(local, at_origin).all()


def test_gt_sampling_pastes_without_collisions(kitti, nus_frame):
    db = kitti.gt_database()
    cars_before = int((nus_frame["labels"] == 0).sum())
    aug = GTSampling(db, ["car", "pedestrian", "cyclist"], {"car": cars_before + 2, "cyclist": 1}, min_points=5, seed=0)
    out = aug(nus_frame)
    n0 = len(nus_frame["boxes"])
    added = out["boxes"][n0:]
    assert len(added) == 3 and out["labels"][n0:].tolist() == [0, 0, 2]
    iou = bev_iou(out["boxes"], out["boxes"])
    off_diag = iou - torch.diag(torch.diagonal(iou))
    assert float(off_diag[n0:].max()) == 0.0  # no pasted box overlaps any other box
    inside = points_in_boxes(out["points"], added)
    expected = sorted(len(o["points"]) for o in db["car"]) + [len(db["cyclist"][0]["points"])]
    assert sorted(inside.sum(0).tolist()[:2]) == expected[:2] and inside.sum(0)[2] == expected[2]
    kept = ~points_in_boxes(nus_frame["points"], added).any(1)
    assert len(out["points"]) == int(kept.sum()) + sum(expected)
    # a candidate that would collide is rejected: put a box where a database car sits
    blocker = db["car"][0]["box"].clone()
    blocker[0] += 0.5
    frame = {"points": torch.zeros(1, 4), "boxes": blocker[None], "labels": torch.tensor([1])}
    got = GTSampling(db, ["car", "pedestrian", "cyclist"], {"car": 2}, seed=0)(frame)
    assert got["labels"].tolist() == [1, 0] and torch.equal(got["boxes"][1], db["car"][1]["box"])
    with pytest.raises(UserError, match="not among"):
        GTSampling(db, ["car"], {"bus": 2})


def test_datamodule_composes_augmentations_from_specs(kitti, shared_data):
    dm = KittiDataModule(
        shared_data / "kitti_frames",
        train_split="all",
        val_split="all",
        classes=["car"],
        train_augmentations=[
            {"type": "GTSampling", "sample_groups": {"car": 2}},
            {"type": "GlobalRotation", "range": [0.3, 0.3]},
        ],
    )
    train, val = dm.frames("train"), dm.frames("val")
    frame0 = train[0]  # frame 000000 has no car: both database cars are pasted, then rotated by 0.3 rad
    assert len(frame0["boxes"]) == 2 and len(val[0]["boxes"]) == 0
    assert points_in_boxes(frame0["points"], frame0["boxes"]).sum() == sum(
        len(o["points"]) for o in dm.gt_database()["car"]
    )
    with pytest.raises(UserError, match="unknown augmentation type"):
        build_augmentation({"type": "Mosaic"})
    with pytest.raises(UserError, match="GTSampling needs"):
        build_augmentation({"type": "GTSampling", "sample_groups": {"car": 1}})
    assert build_gt_database([], ["car"]) == {"car": []}


def test_augmentations_move_velocity_and_cameras(shared_data):
    """Velocities turn with the boxes; lidar2img follows the points, so every point keeps its pixel."""
    dm = NuScenesDataModule(
        shared_data / "nuscenes_demo", train_split=NUS_INFO, val_split=NUS_INFO, with_velocity=True, load_images=True
    )
    frame = dm.frames("val")[0]
    assert frame["velocity"].shape == (len(frame["boxes"]), 2) and frame["velocity"].abs().max() > 1.0
    rot = GlobalRotation.apply(frame, math.pi / 2)
    torch.testing.assert_close(rot["velocity"], torch.stack([-frame["velocity"][:, 1], frame["velocity"][:, 0]], 1))
    flip = GlobalFlip(axes=["x"], prob=1.0)(frame)
    torch.testing.assert_close(flip["velocity"][:, 1], -frame["velocity"][:, 1])
    torch.testing.assert_close(GlobalScaling.apply(frame, 1.1)["velocity"], frame["velocity"] * 1.1)

    def pixels(f):
        p = torch.cat([f["points"][:, :3].double(), torch.ones(len(f["points"]), 1, dtype=torch.float64)], 1)
        h = torch.einsum("vij,nj->vni", f["lidar2img"].double(), p)
        return h[..., :2] / h[..., 2:3], h[..., 2]

    frame = {**frame, "points": frame["points"].double(), "lidar2img": frame["lidar2img"].double()}
    uv, depth = pixels(frame)
    moved = Compose([GlobalFlip(prob=1.0), GlobalRotation(seed=0), GlobalScaling(seed=1), GlobalTranslation(seed=2)])(
        frame
    )
    uv2, depth2 = pixels(moved)
    front = depth > 1.0
    assert torch.equal(front, depth2 > 1.0)
    assert (uv2 - uv)[front].abs().max() < 1e-6
    assert torch.equal(moved["images"], frame["images"])


def test_gt_database_on_disk_is_written_once_and_reused(shared_data, tmp_path):
    kw = {
        "train_split": "all",
        "val_split": "all",
        "classes": ["car", "pedestrian", "cyclist"],
        "gt_database_dir": str(tmp_path / "db"),
    }
    dm = KittiDataModule(shared_data / "kitti_frames", **kw)
    db = dm.gt_database()
    files = sorted(p.name for p in (tmp_path / "db").glob("*.bin"))
    assert files == ["000000_pedestrian_0.bin", "000001_car_0.bin", "000001_cyclist_1.bin", "000002_car_0.bin"]
    memory = KittiDataModule(shared_data / "kitti_frames", **{**kw, "gt_database_dir": None}).gt_database()
    again = KittiDataModule(shared_data / "kitti_frames", **kw).gt_database()  # read back from index.json
    for c in db:
        for on_disk, reread, mem in zip(db[c], again[c], memory[c]):
            assert on_disk["num_points"] == reread["num_points"] == len(mem["points"])
            torch.testing.assert_close(reread["box"], mem["box"])
    frame = {"points": torch.zeros(1, 4), "boxes": torch.zeros(0, 7), "labels": torch.zeros(0, dtype=torch.long)}
    out = GTSampling(again, ["car", "pedestrian", "cyclist"], {"car": 2}, seed=0)(frame)
    assert len(out["points"]) == 1 + sum(o["num_points"] for o in memory["car"])
    with pytest.raises(UserError, match="built from other frames"):
        KittiDataModule(shared_data / "kitti_frames", **{**kw, "classes": ["car"]}).gt_database()
