"""nuScenes multi-view data: the real keyframe (6 views, calibration, boxes), image and 3D augmentations that keep
lidar2img consistent, sweeps with Δt, GridMask, CBGS, and clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from zoo.data_modules.multiview import (
    CAMERAS,
    NuScenesMultiViewDataModule,
    cbgs_indices,
    collate_multiview,
    grid_mask,
    image_affine,
    transform_frame_3d,
)
from zoo.errors import DataNotFoundError, UserError

INFO = "n015-2018-07-24-11-22-45+0800.pkl"
PCR = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]


def _dm(root, **kw):
    args = {
        "root": str(root),
        "train_split": INFO,
        "val_split": INFO,
        "image_size": [128, 352],
        "point_cloud_range": PCR,
        "sweeps": 1,
        "cbgs": False,
        "batch_size": 1,
        "num_workers": 0,
    }
    args.update(kw)
    return NuScenesMultiViewDataModule(**args)


def _project(l2i, xyz):
    p = np.concatenate([xyz, np.ones((len(xyz), 1))], 1) @ np.asarray(l2i, dtype=np.float64).T
    return p[:, :2] / p[:, 2:3], p[:, 2]


@pytest.fixture(scope="module")
def demo(shared_data):
    return shared_data / "nuscenes_demo"


def test_real_keyframe(demo):
    dm = _dm(demo)
    dm.setup("fit")
    f = dm.datasets["val"][0]
    assert f["images"].shape == (6, 3, 128, 352) and f["lidar2img"].shape == (6, 4, 4)
    assert f["points"].shape[1] == 5 and (f["points"][:, 4] == 0).all()  # single sweep: Δt = 0
    assert f["boxes"].shape[1] == 9 and len(f["boxes"]) == len(f["labels"]) > 40
    names = [dm.classes[i] for i in f["labels"].tolist()]
    assert names.count("pedestrian") > 15 and names.count("car") >= 4
    # lidar2img = A @ K4 @ lidar2cam, A = resize by 352/1600 + bottom crop: recompute CAM_FRONT's from the info
    from zoo.data_modules.driving_formats import load_info_pickle

    cam = load_info_pickle(demo / INFO)["data_list"][0]["images"]["CAM_FRONT"]
    k4 = np.eye(4)
    k4[:3, :3] = np.asarray(cam["cam2img"])
    s = 352 / 1600
    want = image_affine(s, (0, int(900 * s) - 128), False, 352) @ k4 @ np.asarray(cam["lidar2cam"])
    np.testing.assert_allclose(f["lidar2img"][0].numpy(), want, rtol=1e-5, atol=1e-3)
    # LiDAR points project into the front view in front of the camera
    uv, z = _project(f["lidar2img"][0], f["points"][:, :3].numpy())
    inside = (z > 1) & (uv[:, 0] >= 0) & (uv[:, 0] < 352) & (uv[:, 1] >= 0) & (uv[:, 1] < 128)
    assert inside.sum() > 500
    batch = collate_multiview([f, f])
    assert batch["images"].shape == (2, 6, 3, 128, 352) and len(batch["points"]) == 2


def _sample(img, uv):
    u = np.clip(np.round(uv[:, 0]).astype(int), 0, img.shape[-1] - 1)
    v = np.clip(np.round(uv[:, 1]).astype(int), 0, img.shape[-2] - 1)
    return img[:, v, u].T  # [N, 3]


def test_image_augmentation_keeps_pixels_on_their_3d_points(demo):
    dm = _dm(
        demo,
        image_flip_prob=1.0,
        grid_mask=False,
        rot_range=[0, 0],
        scale_range=[1, 1],
        translation_std=[0, 0, 0],
        flip_prob=0.0,
        resize_range=[1.15, 1.25],
        seed=3,
    )
    dm.setup("fit")
    ref = dm.datasets["val"][0]
    aug = dm.datasets["train"][0]
    assert not torch.allclose(ref["lidar2img"], aug["lidar2img"])
    xyz = ref["points"][:, :3].numpy()  # the 3D aug is the identity here, so the same points
    for view in (0, 3):
        uv_r, z_r = _project(ref["lidar2img"][view], xyz)
        uv_a, _ = _project(aug["lidar2img"][view], xyz)
        ok = (z_r > 2) & (uv_r[:, 0] > 4) & (uv_r[:, 0] < 348) & (uv_r[:, 1] > 4) & (uv_r[:, 1] < 124)
        ok &= (uv_a[:, 0] > 4) & (uv_a[:, 0] < 348) & (uv_a[:, 1] > 4) & (uv_a[:, 1] < 124)
        assert ok.sum() > 200
        a = _sample(ref["images"][view].numpy(), uv_r[ok])
        b = _sample(aug["images"][view].numpy(), uv_a[ok])
        same = np.abs(a - b).mean()
        shuffled = np.abs(a - b[np.random.default_rng(0).permutation(len(b))]).mean()
        assert same < 0.5 * shuffled, (view, same, shuffled)  # same content under resize + crop + flip
    # the GT box corners of the front view land on the same pixel content too
    from zoo.nn.boxes3d import box_corners

    corners = box_corners(ref["boxes"][:, :7]).reshape(-1, 3).numpy()
    uv_r, z_r = _project(ref["lidar2img"][0], corners)
    uv_a, _ = _project(aug["lidar2img"][0], corners)
    ok = (z_r > 2) & (uv_r.min(1) > 2) & (uv_r[:, 0] < 350) & (uv_r[:, 1] < 126)
    ok &= (uv_a.min(1) > 2) & (uv_a[:, 0] < 350) & (uv_a[:, 1] < 126)
    assert ok.sum() >= 20
    a, b = _sample(ref["images"][0].numpy(), uv_r[ok]), _sample(aug["images"][0].numpy(), uv_a[ok])
    assert np.abs(a - b).mean() < 0.5 * np.abs(a - b[np.random.default_rng(1).permutation(len(b))]).mean()


def test_3d_augmentation_updates_lidar2img_and_boxes():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-20, 20, (50, 5))
    boxes = np.array([[5.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.3, 1.0, 0.5]])
    l2i = np.stack([np.eye(4) + 0.01 * rng.standard_normal((4, 4)) for _ in range(2)])
    p2, b2, l2i2, m = transform_frame_3d(
        pts, boxes, l2i, rot=0.4, scale=1.05, trans=(0.3, -0.2, 0.1), flip_x=True, flip_y=True
    )
    for v in range(2):  # every camera sees the moved points where it saw the originals
        np.testing.assert_allclose(
            np.c_[p2[:, :3], np.ones(50)] @ l2i2[v].T, np.c_[pts[:, :3], np.ones(50)] @ l2i[v].T, atol=1e-9
        )
    np.testing.assert_allclose(b2[0, 3:6], boxes[0, 3:6] * 1.05)
    # a point at the box's front edge stays at the box's front edge (centre + heading)
    front = boxes[0, :3] + np.array([np.cos(0.3), np.sin(0.3), 0]) * 2.0
    f2 = np.c_[front[None], [[1]]] @ m.T
    np.testing.assert_allclose(
        f2[0, :3], b2[0, :3] + np.array([np.cos(b2[0, 6]), np.sin(b2[0, 6]), 0]) * 2.1, atol=1e-9
    )
    np.testing.assert_allclose(b2[0, 7:9], m[:2, :2] @ boxes[0, 7:9])


def test_sweeps_add_delta_t(demo, tmp_path):
    from zoo.data_modules.driving_formats import load_info_pickle

    info = load_info_pickle(demo / INFO)
    rec = info["data_list"][0]
    for p in [rec["lidar_points"]["lidar_path"], *(c["img_path"] for c in rec["images"].values())]:
        (tmp_path / p).symlink_to(demo / p)
    rec["lidar_sweeps"] = [
        {
            "lidar_points": {"lidar_path": rec["lidar_points"]["lidar_path"]},
            "sensor2lidar_rotation": np.eye(3).tolist(),
            "sensor2lidar_translation": [1.0, 0.0, 0.0],
            "timestamp": rec["timestamp"] - 0.05,
        }
    ]
    with open(tmp_path / "infos.pkl", "wb") as f:
        pickle.dump(info, f, protocol=2)
    one = _dm(tmp_path, train_split="infos.pkl", val_split="infos.pkl", with_images=False)
    two = _dm(tmp_path, train_split="infos.pkl", val_split="infos.pkl", with_images=False, sweeps=2)
    one.setup("fit")
    two.setup("fit")
    p1, p2 = one.datasets["val"][0]["points"], two.datasets["val"][0]["points"]
    assert len(p2) > len(p1)
    dt = p2[:, 4].unique()
    assert len(dt) == 2 and float(dt.max()) == pytest.approx(0.05, abs=1e-4)


def test_grid_mask_and_cbgs():
    img = torch.ones(3, 64, 96)
    rng = np.random.default_rng(0)
    masked = [grid_mask(img, rng, prob=1.0) for _ in range(5)]
    for m in masked:
        frac = float((m == 0).float().mean())
        assert 0.05 < frac < 0.95 and m.shape == img.shape
    assert torch.equal(grid_mask(img, rng, prob=0.0), img)
    labels = [np.array([0, 0])] * 8 + [np.array([1])] * 2
    idx = cbgs_indices(labels, 2, np.random.default_rng(0))
    counts = np.bincount([int(labels[i][0]) for i in idx])
    assert counts.tolist() == [5, 5]  # class shares 0.8 / 0.2 -> 8 * 0.5/0.8 and 2 * 0.5/0.2 draws: balanced


def test_missing_view_and_missing_root_are_clear_errors(demo, tmp_path):
    dm = _dm(demo, cameras=[*CAMERAS, "CAM_SIDE"])
    dm.setup("fit")
    with pytest.raises(UserError, match=r"CAM_SIDE.*missing"):
        dm.datasets["val"][0]
    with pytest.raises(DataNotFoundError, match="nuScenes root"):
        _dm(tmp_path / "nope").setup("fit")
    with pytest.raises(UserError, match="image_size"):
        _dm(demo, image_size=[16])


def test_multimodal_gt_sampling_pastes_points_and_pixels(demo):
    from zoo.data_modules.multiview import MultiModalGTSampling
    from zoo.nn.boxes3d import points_in_boxes

    dm = _dm(demo)
    dm.setup("fit")
    ds = dm.datasets["val"]
    src = ds.raw_frame(0)
    db = MultiModalGTSampling.build([src], CAMERAS)
    assert db and all(len(o["points"]) >= 5 for o in db) and any(o["crops"] for o in db)
    # an empty scene (the same sensors, every box and the points inside them removed) receives the objects back
    inside = points_in_boxes(torch.as_tensor(src["points"][:, :3]), torch.as_tensor(src["boxes"][:, :7])).numpy()
    empty = {
        **src,
        "points": src["points"][~inside.any(1)],
        "boxes": src["boxes"][:0],
        "labels": src["labels"][:0],
        "images": [np.zeros_like(im) for im in src["images"]],
    }  # black views: pasted pixels show
    sampler = MultiModalGTSampling(db, dm.classes, {"car": 3, "pedestrian": 4}, mixup_rate=0.5, seed=0)
    out = sampler(empty, CAMERAS)
    names = [dm.classes[i] for i in out["labels"]]
    assert 1 <= names.count("car") <= 3 and 1 <= names.count("pedestrian") <= 4 and set(names) <= {"car", "pedestrian"}
    got = points_in_boxes(torch.as_tensor(out["points"][:, :3]), torch.as_tensor(out["boxes"][:, :7])).numpy()
    assert (got.sum(0) >= 5).all()  # every pasted box carries its points
    changed = [im.any() for im in out["images"]]
    assert any(changed)
    # the pasted pixels are half the source crop (mixup 0.5 with black) and lie inside the objects' 2D boxes
    v = int(np.argmax([im.astype(bool).sum() for im in out["images"]]))
    lit = out["images"][v].any(-1)
    cover = np.zeros_like(lit)
    from zoo.data_modules.multiview import _project_box

    for box in out["boxes"]:
        pr = _project_box(box, src["lidar2img"][v], lit.shape)
        if pr is not None:
            x1, y1, x2, y2 = pr[0]
            cover[y1:y2, x1:x2] = True
    assert lit.sum() > 100 and not (lit & ~cover).any()
    assert out["images"][v][lit].max() <= 128  # 0.5 x (<= 255) + 0.5 x 0
    # already-present objects are not pasted twice (their footprints collide)
    again = MultiModalGTSampling(db, dm.classes, {"car": 20}, seed=0)(src, CAMERAS)
    assert len(again["boxes"]) == len(src["boxes"])
    dmg = _dm(demo, gt_sampling=True, image_size=[64, 160])
    dmg.setup("fit")
    assert len(dmg.datasets["train"].gt_sampler.database) == len(db)
    assert dmg.datasets["train"][0]["images"].shape == (6, 3, 64, 160)


class _Model:
    """Stands in for an attached LightningModule: only its ``data_config()`` is read."""

    def __init__(self, **cfg):
        self.cfg = cfg

    def data_config(self):
        return self.cfg


def _attach(dm, **cfg):
    from types import SimpleNamespace

    dm.trainer = SimpleNamespace(lightning_module=_Model(**cfg))
    return dm


def test_range_and_image_size_follow_the_attached_model(demo):
    """Left unset, the point-cloud range and the image size are the model's (``data_config()``); set, they must agree
    with it (the error names both); the model's view count must be the number of cameras; with no model, unset
    values are a one-line error naming the argument."""
    model = {"point_cloud_range": PCR, "image_size": [64, 160], "num_views": 6, "voxel_size": [0.2, 0.2, 8.0]}
    dm = _attach(_dm(demo, image_size=None, point_cloud_range=None), **model)
    dm.setup("validate")
    assert dm.point_cloud_range == PCR and dm.image_size == [64, 160]
    assert dm.datasets["val"][0]["images"].shape == (6, 3, 64, 160)
    agree = _attach(_dm(demo, image_size=[64, 160], point_cloud_range=[int(v) if v.is_integer() else v for v in PCR]))
    agree.trainer.lightning_module.cfg.update(model)
    agree.setup("validate")  # the same values (5 and 5.0 alike): accepted
    with pytest.raises(UserError, match=r"point_cloud_range is \[-54.*built for \[-51.2") as e:
        _attach(_dm(demo, point_cloud_range=[-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]), **model).setup("validate")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"image_size is \[128, 352\] but the model was built for \[64, 160\]"):
        _attach(_dm(demo, point_cloud_range=None), **model).setup("validate")
    with pytest.raises(UserError, match="lists 2 views but the model was built for 6"):
        _attach(_dm(demo, image_size=None, point_cloud_range=None, cameras=CAMERAS[:2]), **model).setup("validate")
    with pytest.raises(UserError, match=r"image_size is not set and no attached model fixes it; set data.init_args"):
        _dm(demo, image_size=None).setup("validate")
    lidar = _attach(_dm(demo, image_size=None, point_cloud_range=None, with_images=False), point_cloud_range=PCR)
    lidar.setup("validate")  # a LiDAR-only model fixes no image size, and none is needed
    assert "images" not in lidar.datasets["val"][0]
