"""LWSIS data on every shared driving camera (issue 25): ``kitti_roots`` adds the KITTI frames (official layout and the
mmdet3d-info frame) after the nuScenes cameras, KITTI types mapped to the nuScenes classes, PLA from their LiDAR."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules.instance_seg import KITTI_TO_NUSCENES, NUSCENES_CLASSES, NuScenesInstanceSegDataModule, kitti_frames
from zoo.errors import DataNotFoundError


@pytest.fixture(scope="module")
def every_camera(shared_data):
    dm = NuScenesInstanceSegDataModule(
        str(shared_data / "nuscenes_demo"),
        image_size=[128, 224],
        min_box_px=0.0,
        kitti_roots=[str(shared_data / "kitti_frames"), str(shared_data / "kitti_demo")],
    )
    dm.setup("fit")
    return dm


def test_kitti_frames_read_both_layouts(shared_data):
    official = kitti_frames(shared_data / "kitti_frames")
    assert [r["frame_id"] for r in official] == ["000000", "000001", "000002"]
    assert official[1]["names"] == ["Truck", "Car", "Cyclist"]  # DontCare left out by the KITTI reader
    info = kitti_frames(shared_data / "kitti_demo")
    assert [r["frame_id"] for r in info] == ["000008"] and info[0]["names"] == ["Car"] * 6
    assert all(r["lidar2img"].shape == (1, 4, 4) and r["images"][0].is_file() for r in official + info)
    with pytest.raises(DataNotFoundError, match="KITTI root"):
        kitti_frames(shared_data / "no_such_kitti")


def test_every_camera_image_nuscenes_then_kitti(every_camera, shared_data):
    items = every_camera.prepare_items()
    assert [(it["frame"], it["camera"]) for it in items] == [(0, c) for c in every_camera.hparams.cameras] + [
        (1, "CAM2"),
        (2, "CAM2"),
        (3, "CAM2"),
        (4, "CAM2"),
    ]
    kitti = items[6:]
    # every mapped KITTI box in front of the camera gets a PLA instance (Misc has no nuScenes class)
    want = [["pedestrian"], ["truck", "car", "bicycle"], ["car"], ["car"] * 6]
    got = [[NUSCENES_CLASSES[i] for i in it["labels"]] for it in kitti]
    assert [sorted(g) for g in got] == [sorted(w) for w in want]
    assert set(KITTI_TO_NUSCENES.values()) <= set(NUSCENES_CLASSES)
    ped = kitti[0]  # the pedestrian of 000000, 8.4 m ahead: foreground LiDAR points inside its label box
    assert (ped["point_labels"][0] == 1).sum() > 10
    fg = ped["point_coords"][0][ped["point_labels"][0] == 1]
    x1, y1, x2, y2 = ped["boxes"][0]
    assert np.all((fg[:, 0] >= x1 - 1) & (fg[:, 0] <= x2 + 1) & (fg[:, 1] >= y1 - 1) & (fg[:, 1] <= y2 + 1))
    images, targets = next(iter(every_camera.val_dataloader()))
    assert images.shape[-2:] == (128, 224)


def test_frames_select_kitti_images(shared_data):
    dm = NuScenesInstanceSegDataModule(
        str(shared_data / "nuscenes_demo"),
        image_size=[128, 224],
        min_box_px=0.0,
        cameras=["CAM_FRONT"],
        kitti_roots=[str(shared_data / "kitti_demo")],
        train_frames=[1],
        val_frames=[0, 1],
    )
    assert [it["camera"] for it in dm.dataset("train").items] == ["CAM2"]
    assert [it["camera"] for it in dm.dataset("val").items] == ["CAM_FRONT", "CAM2"]
