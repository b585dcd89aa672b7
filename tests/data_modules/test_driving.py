"""Driving readers and data modules on every shared 3D sample (KITTI frames + demo, nuScenes demo, Waymo tiny)."""

from __future__ import annotations

import io
import math
import os
import pickle

import numpy as np
import pytest
import torch

from zoo.data_modules.driving import (
    KittiDataModule,
    NuScenesDataModule,
    WaymoDataModule,
    collate_frames,
)
from zoo.data_modules.driving_formats import (
    InfoUnpickler,
    kitti_label_boxes,
    kitti_lidar2cam,
    load_info_pickle,
    read_kitti_calib,
    read_kitti_label,
    read_points,
)
from zoo.data_modules.projection import project as project_to_image
from zoo.errors import DataNotFoundError, UserError
from zoo.nn.boxes3d import box_corners, points_in_boxes

NUS_INFO = "n015-2018-07-24-11-22-45+0800.pkl"
KITTI_TYPES = ["car", "van", "truck", "pedestrian", "person_sitting", "cyclist", "tram", "misc"]


@pytest.fixture(scope="module")
def kitti_root(shared_data):
    return shared_data / "kitti_frames"


def test_kitti_frames_points_and_boxes(kitti_root):
    dm = KittiDataModule(kitti_root, train_split="all", val_split="all", classes=KITTI_TYPES, min_points=0)
    frames = [dm.frames("val")[i] for i in range(3)]
    assert [f["frame_id"] for f in frames] == ["000000", "000001", "000002"]
    assert [len(f["points"]) for f in frames] == [115384, 120268, 126891]
    assert [f["labels"].tolist() for f in frames] == [[3], [2, 0, 5], [7, 0]]  # DontCare dropped
    for f in frames:
        assert f["points"].dtype == torch.float32 and f["points"].shape[1] == 4 and f["dataset"] == "kitti"
        assert 0 <= float(f["points"][:, 3].min()) and float(f["points"][:, 3].max()) <= 1
    # car only (the SSDA3D demo source), boxes with LiDAR points only
    cars = KittiDataModule(kitti_root, train_split="all", val_split="all").frames("val")
    assert [len(cars[i]["boxes"]) for i in range(3)] == [0, 1, 1]
    assert points_in_boxes(cars[2]["points"], cars[2]["boxes"]).sum() > 50  # 67 points on the car at 34.7 m


def test_kitti_label_to_lidar_box_projects_onto_the_2d_label(kitti_root):
    """The car of frame 000002: its LiDAR box's 8 corners, projected with P2 @ R0_rect @ Tr_velo_to_cam, span the
    label's 2D box (to a few pixels); a yaw off by 90° does not."""
    calib = read_kitti_calib(kitti_root / "calib" / "000002.txt")
    objects = read_kitti_label(kitti_root / "label_2" / "000002.txt")
    boxes, names = kitti_label_boxes(objects, calib)
    assert names == ["Misc", "Car"]
    car = torch.from_numpy(boxes[1]).double()
    loc = np.array(objects[1]["location"])  # bottom centre, camera frame
    # LiDAR frame: x forward ≈ camera z, y left ≈ -camera x; z = bottom + h/2; (dx, dy, dz) = (l, w, h)
    assert car[0].item() == pytest.approx(loc[2] + 0.27, abs=0.1) and car[1].item() == pytest.approx(-loc[0], abs=0.1)
    assert car[3:6].tolist() == pytest.approx([4.36, 1.58, 1.41], abs=1e-5)
    assert car[6].item() == pytest.approx(1.58 - math.pi / 2, abs=1e-6)  # -rotation_y - pi/2
    lidar2img = np.eye(4)
    lidar2img[:3] = calib["P2"]
    lidar2img = lidar2img @ kitti_lidar2cam(calib)

    def extent(box):
        uv, depth = project_to_image(box_corners(box).numpy(), lidar2img)
        assert (depth > 0).all()
        return np.r_[uv.min(0), uv.max(0)]

    label_2d = np.array(objects[1]["bbox"])
    np.testing.assert_allclose(extent(car), label_2d, atol=2.0)
    turned = car.clone()
    turned[6] += math.pi / 2
    assert np.abs(extent(turned) - label_2d).max() > 5.0


def test_kitti_demo_info_matches_its_calibration(shared_data):
    """mmdet3d v2 KITTI info (camera-frame boxes): LiDAR boxes hold exactly the info's num_lidar_pts, and their
    centres project to the info's center_2d through its lidar2img."""
    root = shared_data / "kitti_demo"
    info = load_info_pickle(root / "000008.pkl")["data_list"][0]
    dm = KittiDataModule(root, train_split="000008.pkl", val_split="000008.pkl", min_points=0)
    frame = dm.frames("val")[0]
    assert frame["frame_id"] == "000008" and frame["points"].shape == (17238, 4)
    inst = [i for i in info["instances"] if i["bbox_label_3d"] >= 0]
    assert len(frame["boxes"]) == len(inst) == 6
    assert points_in_boxes(frame["points"], frame["boxes"]).sum(0).tolist() == [i["num_lidar_pts"] for i in inst]
    uv, depth = project_to_image(frame["boxes"][:, :3].numpy(), np.array(info["images"]["CAM2"]["lidar2img"]))
    np.testing.assert_allclose(uv, np.array([i["center_2d"] for i in inst]), atol=2.0)
    np.testing.assert_allclose(depth, [i["depth"] for i in inst], atol=0.05)


def test_nuscenes_demo_frame(shared_data):
    root = shared_data / "nuscenes_demo"
    info = load_info_pickle(root / NUS_INFO)["data_list"][0]
    all_cls = [
        "car",
        "truck",
        "trailer",
        "bus",
        "construction_vehicle",
        "bicycle",
        "motorcycle",
        "pedestrian",
        "traffic_cone",
        "barrier",
    ]
    dm = NuScenesDataModule(
        root, train_split=NUS_INFO, val_split=NUS_INFO, classes=all_cls, min_points=0, intensity="255"
    )
    frame = dm.frames("val")[0]
    assert frame["points"].shape == (34688, 4) and frame["dataset"] == "nuscenes"
    assert len(frame["boxes"]) == 68  # 69 instances, one with label -1
    assert float(frame["points"][:, 3].max()) <= 1.0
    # single keyframe: our points-in-box counts agree with the info's num_lidar_pts (devkit counting) to a few %
    ours = points_in_boxes(frame["points"], frame["boxes"]).sum(0).numpy()
    theirs = np.array([i["num_lidar_pts"] for i in info["instances"] if i["bbox_label_3d"] >= 0])
    assert (np.abs(ours - theirs) <= 0.05 * theirs + 5).all() and np.median(np.abs(ours - theirs)) == 0
    # SSDA3D conventions: car only, z shifted up 1.8 m, intensity / frame max
    ssda = NuScenesDataModule(root, train_split=NUS_INFO, val_split=NUS_INFO, z_shift=1.8, intensity="max")
    car = ssda.frames("val")[0]
    assert car["labels"].tolist() == [0] * 8  # the 8 cars of the info, each with LiDAR points
    assert float(car["points"][:, 3].max()) == 1.0
    torch.testing.assert_close(car["points"][:, 2], frame["points"][:, 2] + 1.8)


def test_waymo_tiny(shared_data):
    root = shared_data / "waymo_tiny" / "kitti_format"
    dm = WaymoDataModule(root, min_points=0)  # the fixture's 800-point subsets miss the boxes' points
    for split, fid in (("train", "0"), ("val", "1000000")):
        frame = dm.frames(split, augment=False)[0]
        assert frame["frame_id"] == fid and frame["points"].shape == (800, 4) and frame["dataset"] == "waymo"
        assert len(frame["boxes"]) == 1 and frame["labels"].tolist() == [0]
        assert 0 <= float(frame["points"][:, 3].min()) and float(frame["points"][:, 3].max()) <= 1  # tanh
    raw = load_info_pickle(root / "waymo_infos_train.pkl")["data_list"][0]["instances"][0]["bbox_3d"]
    got = dm.frames("train", augment=False)[0]["boxes"][0]
    assert got[2].item() == pytest.approx(raw[2] + raw[5] / 2)  # bottom -> gravity centre
    # the GT-database index needs numpy arrays (_reconstruct / ndarray): still admitted
    db = load_info_pickle_any(root / "waymo_dbinfos_train.pkl")
    np.testing.assert_allclose(db["Car"][0]["box3d_lidar"], raw, atol=0.01)  # same car, rounded
    assert WaymoDataModule(root, min_points=1).frames("train", augment=False)[0]["boxes"].shape == (0, 7)


def load_info_pickle_any(path):
    with open(path, "rb") as f:
        return InfoUnpickler(io.BufferedReader(f), source=str(path)).load()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"data_list": [_Evil()]}, protocol=2))
    with pytest.raises(UserError, match="refusing to unpickle global (posix|nt|os).system"):
        load_info_pickle(path)
    path.write_bytes(pickle.dumps({"data_list": [{"a": np.arange(3), "b": np.float32(2)}]}, protocol=2))
    assert load_info_pickle(path)["data_list"][0]["a"].tolist() == [0, 1, 2]
    path.write_bytes(pickle.dumps({"infos": []}))
    with pytest.raises(UserError, match="update_infos_to_v2"):
        load_info_pickle(path)


def test_bad_input_is_a_clear_error(tmp_path, kitti_root):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(np.zeros(7, np.float32).tobytes())
    with pytest.raises(UserError, match="not a multiple of 16"):
        read_points(bad, 4)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty point cloud"):
        read_points(empty, 5)
    calib = tmp_path / "calib.txt"
    text = (kitti_root / "calib" / "000001.txt").read_text()
    calib.write_text("\n".join(line for line in text.splitlines() if not line.startswith("R0_rect")))
    with pytest.raises(UserError, match="lacks R0_rect"):
        read_kitti_calib(calib)
    calib.write_text(text.replace("P2: 7.215377000000e+02 ", "P2: "))
    with pytest.raises(UserError, match="P2 has 11 values"):
        read_kitti_calib(calib)
    with pytest.raises(DataNotFoundError, match="training/.*velodyne,calib,label_2"):
        KittiDataModule(tmp_path / "nowhere").frames("train")
    with pytest.raises(DataNotFoundError, match="ImageSets"):
        KittiDataModule(kitti_root).frames("train")  # the sample has no ImageSets: say so, suggest 'all'
    with pytest.raises(DataNotFoundError, match="nuscenes_infos_train.pkl"):
        NuScenesDataModule(kitti_root).frames("train")
    with pytest.raises(UserError, match="intensity"):
        NuScenesDataModule(kitti_root, intensity="log")


def test_datamodule_batches_crop_and_collate(kitti_root):
    pcr = [0.0, -20.0, -3.0, 40.0, 20.0, 1.0]
    dm = KittiDataModule(
        kitti_root,
        train_split="all",
        val_split=["000001", "000002"],
        classes=["car", "cyclist"],
        point_cloud_range=pcr,
        batch_size=2,
        train_augmentations=[{"type": "GlobalFlip"}, {"type": "GlobalRotation"}],
    )
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"points", "boxes", "labels", "frame_id", "dataset"}
    assert batch["frame_id"] == ["000001", "000002"] and batch["dataset"] == ["kitti", "kitti"]
    for p, b, lab in zip(batch["points"], batch["boxes"], batch["labels"]):
        assert (p[:, 0] >= 0).all() and (p[:, 0] < 40).all() and (p[:, 1].abs() <= 20).all()
        assert len(b) == len(lab) and ((b[:, 0] >= 0) & (b[:, 0] < 40)).all()
    assert [len(b) for b in batch["boxes"]] == [0, 1]  # the frame-1 car at 58.8 m and cyclist at 46 m are cropped
    train = next(iter(dm.train_dataloader()))
    assert len(train["points"]) == 2 and all(p.shape[1] == 4 for p in train["points"])
    assert collate_frames([{"a": 1}, {"a": 2}]) == {"a": [1, 2]}


def project(frame):
    """Pixels [V, N, 2] and in-image mask [V, N] of the frame's points through its lidar2img."""
    p = torch.cat([frame["points"][:, :3].double(), torch.ones(len(frame["points"]), 1, dtype=torch.float64)], 1)
    h = torch.einsum("vij,nj->vni", frame["lidar2img"].double(), p)
    uv = h[..., :2] / h[..., 2:3]
    height, width = frame["images"].shape[-2:]
    inside = (h[..., 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
    return uv, inside


def test_camera_images_and_lidar2img(shared_data):
    nus = NuScenesDataModule(
        shared_data / "nuscenes_demo", train_split=NUS_INFO, val_split=NUS_INFO, z_shift=1.8, load_images=True
    ).frames("val")[0]
    assert nus["images"].shape == (6, 3, 900, 1600) and nus["images"].dtype == torch.uint8
    assert nus["lidar2img"].shape == (6, 4, 4)
    counts = project(nus)[1].sum(1)  # SOURCE.md: 3.0k-4.8k points inside each image (z shift undone)
    assert ((counts > 3000) & (counts < 4900)).all()
    # KITTI velodyne_reduced: every point of the demo cloud lies inside image_2 (the definition of "reduced")
    demo = KittiDataModule(
        shared_data / "kitti_demo", train_split="000008.pkl", val_split="000008.pkl", load_images=True
    ).frames("val")[0]
    assert demo["images"].shape == (1, 3, 375, 1242) and bool(project(demo)[1].all())
    # the raw KITTI layout builds P2 @ R0_rect @ Tr_velo_to_cam; a full 360° scan is mostly outside the image
    full = KittiDataModule(
        shared_data / "kitti_frames", train_split="all", val_split=["000000"], load_images=True
    ).frames("val")[0]
    frac = project(full)[1].float().mean().item()
    assert full["images"].shape == (1, 3, 370, 1224) and 0.1 < frac < 0.3
