"""nuScenes instance segmentation with LiDAR weak labels: the shared nuScenes keyframe (6 cameras, LiDAR, 3D boxes) with
box-hull evaluation masks, nuInsSeg's table format (RLE and polygon masks), and the errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from data_modules.instance_seg import NUSCENES_CLASSES, NuScenesInstanceSegDataModule, load_nuinsseg
from zoo.errors import DataNotFoundError, UserError


@pytest.fixture(scope="module")
def demo(shared_data):
    root = shared_data / "nuscenes_demo"
    dm = NuScenesInstanceSegDataModule(str(root), image_size=[128, 224], min_box_px=0.0, batch_size=6)
    dm.setup("fit")
    return dm


def test_real_frame_cameras_and_instances(demo):
    from data_modules.driving_formats import load_info_pickle

    items = demo.prepare_items()
    assert [it["camera"] for it in items] == list(demo.hparams.cameras)
    info = load_info_pickle(next((demo._root()).glob("*.pkl")))["data_list"][0]
    for it in items:  # every visible box of the 10 classes: mmdet3d's per-camera instances without label -1
        want = sum(1 for x in info["cam_instances"][it["camera"]] if x["bbox_label_3d"] >= 0)
        assert len(it["labels"]) == want, it["camera"]
    assert sum(len(it["labels"]) for it in items) == 84  # 47 + 18 + 2 + 10 + 2 + 5 boxes over the six cameras
    front = items[0]
    names = [NUSCENES_CLASSES[i] for i in front["labels"]]
    assert names.count("pedestrian") > 5 and "car" in names


def test_batch_format_points_nodes_and_box_hull_masks(demo):
    images, targets = next(iter(demo.val_dataloader()))
    assert images.shape == (6, 3, 128, 224) and images.dtype == torch.float32
    assert 0 <= float(images.min()) and float(images.max()) <= 255 and float(images.std()) > 20
    t = targets[0]
    g = len(t["labels"])
    assert t["mask_source"] == "box-hull" and t["camera"] == "CAM_FRONT"
    assert t["boxes"].shape == (g, 4) and t["masks"].shape == (g, 128, 224) and t["masks"].dtype == torch.bool
    assert t["point_coords"].shape == (g, 20, 2) and set(t["point_labels"].unique().tolist()) <= {-1, 0, 1}
    assert t["node_xyz"].shape == (g, 200, 3) and t["node_valid"].any()
    # a hull mask lies within its (projected-extent) box, up to rasterisation, and fills a good part of it
    for box, mask in zip(t["boxes"], t["masks"]):
        ys, xs = mask.nonzero(as_tuple=True)
        if len(xs) == 0:
            continue
        assert xs.min() >= box[0].floor() - 1 and xs.max() <= box[2].ceil() + 1
        assert ys.min() >= box[1].floor() - 1 and ys.max() <= box[3].ceil() + 1
    # foreground PLA points fall inside their 2D box; nodes project where their (u, v) says
    fg = t["point_labels"] == 1
    assert fg.sum() > 50
    pts, owner = t["point_coords"][fg], fg.nonzero()[:, 0]
    b = t["boxes"][owner]
    assert ((pts[:, 0] >= b[:, 0] - 1) & (pts[:, 0] <= b[:, 2] + 1)).float().mean() == 1.0


def test_train_split_repeats_and_skips_empty_images(shared_data):
    dm = NuScenesInstanceSegDataModule(
        str(shared_data / "nuscenes_demo"),
        image_size=[128, 224],
        min_box_px=40.0,
        repeat=3,
        cameras=["CAM_FRONT", "CAM_BACK_LEFT"],
    )
    train = dm.dataset("train")
    kept = [it["camera"] for it in dm.prepare_items() if len(it["labels"])]
    assert len(train) == 3 * len(kept)


def _copy_demo(shared_data, tmp_path):
    root = tmp_path / "nus"
    root.mkdir()
    for f in (shared_data / "nuscenes_demo").iterdir():
        if f.suffix in (".pkl", ".bin") or "CAM_FRONT__" in f.name:
            (root / f.name).symlink_to(f)
    return root


def test_nuinsseg_table_rle_and_polygons(shared_data, tmp_path, demo):
    from pycocotools import mask as mask_utils

    from data_modules.driving_formats import load_info_pickle

    root = _copy_demo(shared_data, tmp_path)
    info = load_info_pickle(root / "n015-2018-07-24-11-22-45+0800.pkl")["data_list"][0]
    token = info["images"]["CAM_FRONT"]["sample_data_token"]
    front = demo.prepare_items()[0]
    # the two largest CAM_FRONT objects get human-style masks: one as RLE, one as a polygon (900 x 1600)
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in front["boxes"]]
    a, b = np.argsort(areas)[-2:]
    m = np.zeros((900, 1600), np.uint8)
    x1, y1, x2, y2 = (int(v) for v in front["boxes"][a])
    m[y1 + 2 : y2 - 2, x1 + 3 : x2 - 3] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    bx1, by1, bx2, by2 = (float(v) for v in front["boxes"][b])
    poly = [[bx1 + 1, by1 + 1, bx2 - 1, by1 + 1, (bx1 + bx2) / 2, by2 - 1]]
    cat = {
        "pedestrian": "human.pedestrian.adult",
        "car": "vehicle.car",
        "barrier": "movable_object.barrier",
        "truck": "vehicle.truck",
        "bus": "vehicle.bus.rigid",
        "traffic_cone": "movable_object.trafficcone",
        "construction_vehicle": "vehicle.construction",
        "bicycle": "vehicle.bicycle",
    }
    records = [
        {
            "token": "a",
            "sample_data_token": token,
            "category_name": cat[NUSCENES_CLASSES[front["labels"][a]]],
            "bbox_corners": [x1, y1, x2, y2],
            "filename": "x.jpg",
            "instance_mask": rle,
        },
        {
            "token": "b",
            "sample_data_token": token,
            "category_name": cat[NUSCENES_CLASSES[front["labels"][b]]],
            "bbox_corners": [bx1, by1, bx2, by2],
            "filename": "x.jpg",
            "instance_mask": poly,
        },
        {
            "token": "c",
            "sample_data_token": token,
            "category_name": "animal",
            "bbox_corners": [0, 0, 1, 1],
            "filename": "x.jpg",
            "instance_mask": rle,
        },  # not a detection class: dropped
    ]
    (root / "v1.0-mini").mkdir()
    (root / "v1.0-mini" / "nuinsseg.json").write_text(json.dumps(records))
    dm = NuScenesInstanceSegDataModule(str(root), cameras=["CAM_FRONT"], image_size=[128, 224], min_box_px=0.0)
    (it,) = dm.prepare_items()
    assert it["mask_source"] == "nuinsseg" and len(it["labels"]) == 2
    assert it["masks"][0].sum() == m.sum()
    # tight boxes of the masks (the official tbox_refine sets), not the projected 3D extents
    np.testing.assert_allclose(it["boxes"][0], [x1 + 3, y1 + 2, x2 - 3, y2 - 2], atol=1e-4)
    # PLA matched to the same instances: their LiDAR points and labels travel with the masks
    np.testing.assert_array_equal(it["point_labels"][0], front["point_labels"][a])
    np.testing.assert_array_equal(it["point_labels"][1], front["point_labels"][b])
    _, t = dm.dataset("val")[0]
    assert t["masks"].shape == (2, 128, 224) and t["mask_source"] == "nuinsseg"


def test_errors_name_the_problem(shared_data, tmp_path):
    with pytest.raises(DataNotFoundError, match="not found"):
        NuScenesInstanceSegDataModule(str(tmp_path / "missing")).setup()
    with pytest.raises(UserError, match="multiples of 32"):
        NuScenesInstanceSegDataModule(str(tmp_path), image_size=[100, 224])
    with pytest.raises(UserError, match="unknown camera"):
        NuScenesInstanceSegDataModule(str(tmp_path), cameras=["CAM_TOP"])
    bad = tmp_path / "nuinsseg.json"
    bad.write_text(json.dumps([{"sample_data_token": "x", "category_name": "vehicle.car"}]))
    with pytest.raises(UserError, match="lacks instance_mask"):
        load_nuinsseg(bad)
    # a camera file whose calibration belongs to another resolution: the image is smaller than cam2img expects
    root = _copy_demo(shared_data, tmp_path)
    front = next(root.glob("*CAM_FRONT__*.jpg"))
    from PIL import Image

    front.unlink()
    Image.new("RGB", (224, 128)).save(front, format="JPEG")
    dm = NuScenesInstanceSegDataModule(str(root), cameras=["CAM_FRONT"], image_size=[128, 224])
    with pytest.raises(UserError, match="principal point.*another image size"):
        dm.setup()
    shutil.rmtree(root)


def test_multi_scale_training_scales_boxes_points_and_nodes(demo):
    from data_modules.instance_seg import MultiScaleCollate, collate

    ds = demo.dataset("val")
    batch = [ds[0], ds[3]]
    _, ref = collate([ds[0], ds[3]])
    images, targets = MultiScaleCollate([80], max_size=1333)(batch)  # short side 128 -> 80: factor 0.625
    assert images.shape == (2, 3, 96, 160)  # 80 x 140 padded to multiples of 32
    assert float(images[..., 80:, :].abs().max()) == 0 and float(images[..., :, 140:].abs().max()) == 0
    torch.testing.assert_close(targets[0]["boxes"], ref[0]["boxes"] * 0.625)
    torch.testing.assert_close(targets[1]["point_coords"], ref[1]["point_coords"] * 0.625)
    torch.testing.assert_close(targets[1]["node_uv"], ref[1]["node_uv"] * 0.625)
    assert targets[0]["masks"].shape[-2:] == (96, 160)
    capped_images, capped = MultiScaleCollate([800], max_size=300)(batch)  # long side capped: 224 -> 300
    assert capped_images.shape[-2:] == (192, 320)  # 171 x 300 (rounded) padded
    torch.testing.assert_close(capped[0]["boxes"], ref[0]["boxes"] * torch.tensor([300 / 224, 171 / 128] * 2))


def test_nuinsseg_coco_export_and_pla_cache(shared_data, tmp_path, demo, monkeypatch):
    from pycocotools import mask as mask_utils

    root = _copy_demo(shared_data, tmp_path)
    front = demo.prepare_items()[0]
    img_name = front["image_path"].name
    j = int(np.argmax([(b[2] - b[0]) * (b[3] - b[1]) for b in front["boxes"]]))
    x1, y1, x2, y2 = (int(v) for v in front["boxes"][j])
    m = np.zeros((900, 1600), np.uint8)
    m[y1:y2, x1:x2] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    coco = {
        "images": [{"id": 7, "file_name": f"samples/CAM_FRONT/{img_name}", "height": 900, "width": 1600}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "segmentation": rle, "iscrowd": 0}],
        "categories": [{"id": 3, "name": NUSCENES_CLASSES[front["labels"][j]]}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    cache = tmp_path / "cache"
    dm = NuScenesInstanceSegDataModule(
        str(root),
        nuinsseg=str(tmp_path / "coco.json"),
        cameras=["CAM_FRONT"],
        image_size=[128, 224],
        min_box_px=0.0,
        cache_dir=str(cache),
    )
    (it,) = dm.prepare_items()
    assert it["mask_source"] == "nuinsseg" and it["labels"].tolist() == [front["labels"][j]]
    np.testing.assert_array_equal(it["point_labels"][0], front["point_labels"][j])
    # PLA written once per image (plain tensors, read back with weights_only) and reused by the next data module
    assert len(list(cache.glob("pla-*.pt"))) == 1

    def no_pla(*args, **kwargs):
        raise AssertionError("PLA recomputed despite the cache")

    monkeypatch.setattr("zoo.data_modules.point_labels.point_label_assignment", no_pla)
    again = NuScenesInstanceSegDataModule(
        str(root),
        nuinsseg=str(tmp_path / "coco.json"),
        cameras=["CAM_FRONT"],
        image_size=[128, 224],
        min_box_px=0.0,
        cache_dir=str(cache),
    )
    np.testing.assert_array_equal(again.prepare_items()[0]["point_coords"], it["point_coords"])
