"""nuScenes multi-view camera + LiDAR frames for camera-LiDAR fusion detectors (CMT).

Layout under ``root`` (nuScenes, as mmdet3d's converter leaves it): ``samples/CAM_*/*.jpg``,
``samples/LIDAR_TOP/*.pcd.bin``, ``sweeps/LIDAR_TOP/*.pcd.bin`` and mmdet3d v2 info pickles
(``nuscenes_infos_{train,val}.pkl``, read with the restricted unpickler of :mod:`data_modules.driving_formats`).
Files are also looked up in ``root`` itself (``shared/data/nuscenes_demo``). One collated batch is

``{"points": [FloatTensor[N_i, 5]] (x, y, z, intensity 0..255, Δt s), "images": FloatTensor[B, V, 3, H, W]
(BGR, normalised), "lidar2img": FloatTensor[B, V, 4, 4], "boxes": [FloatTensor[M_i, 9]] (x, y, z gravity centre,
dx, dy, dz, yaw, vx, vy; LiDAR frame), "labels": [LongTensor[M_i]], "frame_id": [str]}``.

Per frame (the released pipeline, ``projects/configs/fusion/*.py``):

1. LiDAR: the keyframe + up to ``sweeps - 1`` previous sweeps (``lidar_sweeps`` of the info, each moved into the
   keyframe's LiDAR frame by its ``sensor2lidar`` rotation/translation, points within 1 m of the sensor removed); the
   5th feature becomes Δt = t_key − t_sweep (0 for the keyframe; a frame without sweeps is the keyframe alone).
2. Cameras: the 6 views of ``cameras`` (a missing view is an error naming it); ``lidar2img = [K 0; 0 1] @ lidar2cam``.
   Image augmentation (``ResizeCropFlipImage``): resize by ``base · U(resize_range)`` (base = image_size W / 1600),
   crop ``image_size`` bottom-aligned with a random x offset, horizontal flip with p 0.5; test: resize by the base,
   bottom crop, centred. The same affine A goes into ``lidar2img ← A @ lidar2img``. GridMask (train, p 0.7).
3. 3D augmentation (``GlobalRotScaleTrans`` + ``RandomFlip3D``): rotation U(rot_range), scaling U(scale_range),
   translation N(0, translation_std), BEV flips; points, boxes and velocities move with the 4x4 T, and
   ``lidar2img ← lidar2img @ T⁻¹`` so every pixel still sees the same 3D point.
4. Range filters (points and box centres inside ``point_cloud_range``), then CBGS class-balanced resampling of the
   training split (``cbgs``: mmdet3d ``CBGSDataset``).
0. Optionally first (training): multi-modal GT-sampling (:class:`MultiModalGTSampling`, ``UnifiedObjectSample``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataNotFoundError, UserError
from zoo.nuscenes import CAMERAS, DETECTION_CLASSES

from .driving_formats import load_info_pickle, read_points

log = logging.getLogger(__name__)

CLASSES = DETECTION_CLASSES
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
SOURCE_WIDTH, SOURCE_HEIGHT = 1600, 900


# ============================================================================================ geometry
def image_affine(scale: float, crop_xy: tuple[float, float], flip: bool, out_width: int) -> np.ndarray:
    """4x4 matrix A acting on (u·d, v·d, d, 1): resize by ``scale``, crop at ``crop_xy``, optionally flip
    horizontally inside a crop of ``out_width`` pixels (u -> out_width − u). ``lidar2img ← A @ lidar2img``."""
    a = np.eye(4)
    a[0, 0] = a[1, 1] = scale
    a[0, 2], a[1, 2] = -crop_xy[0], -crop_xy[1]
    if flip:
        f = np.eye(4)
        f[0, 0], f[0, 2] = -1.0, out_width
        a = f @ a
    return a


def transform_frame_3d(
    points: np.ndarray,
    boxes: np.ndarray,
    lidar2img: np.ndarray,
    rot: float = 0.0,
    scale: float = 1.0,
    trans: Sequence[float] = (0.0, 0.0, 0.0),
    flip_x: bool = False,
    flip_y: bool = False,
):
    """Global 3D augmentation as one 4x4 T = Flip · Translate · Scale · Rot(z, rot) applied to points [N, >=3], boxes
    [M, 9] (centre by T, yaw and velocity with it, sizes × scale) and lidar2img [V, 4, 4] (``@ T⁻¹``).
    ``flip_y`` is mmdet3d's "horizontal" BEV flip (y -> −y), ``flip_x`` the "vertical" one (x -> −x)."""
    c, s = math.cos(rot), math.sin(rot)
    r = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    sc = np.diag([scale, scale, scale, 1.0])
    t = np.eye(4)
    t[:3, 3] = trans
    fl = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0, 1.0])
    m = fl @ t @ sc @ r
    points = points.copy()
    points[:, :3] = points[:, :3] @ m[:3, :3].T + m[:3, 3]
    boxes = boxes.copy()
    if len(boxes):
        boxes[:, :3] = boxes[:, :3] @ m[:3, :3].T + m[:3, 3]
        boxes[:, 3:6] *= scale
        yaw = boxes[:, 6] + rot
        if flip_y:
            yaw = -yaw
        if flip_x:
            yaw = math.pi - yaw
        boxes[:, 6] = (yaw + math.pi) % (2 * math.pi) - math.pi
        boxes[:, 7:9] = boxes[:, 7:9] @ m[:2, :2].T
    lidar2img = lidar2img @ np.linalg.inv(m)
    return points, boxes, lidar2img, m


def grid_mask(
    image: torch.Tensor, rng: np.random.Generator, ratio: float = 0.5, prob: float = 0.7, mode: int = 1
) -> torch.Tensor:
    """GridMask (Chen et al. 2020; CMT's ``use_h, use_w, ratio 0.5, mode 1, prob 0.7``): with probability ``prob``,
    a grid of period d ~ U[2, min(H, W)) whose stripes of width ⌊d·ratio⌋ (rows and columns) are kept (mode 1) and the
    rest zeroed (in normalised space: the mean colour). image [3, H, W]. The released 0-1° rotation is omitted."""
    if rng.random() > prob:
        return image
    h, w = image.shape[-2:]
    d = int(rng.integers(2, max(3, min(h, w))))
    keep_len = max(1, int(d * ratio))
    oy, ox = int(rng.integers(0, d)), int(rng.integers(0, d))
    rows = ((torch.arange(h) + oy) % d) < keep_len
    cols = ((torch.arange(w) + ox) % d) < keep_len
    stripes = rows[:, None] | cols[None, :]
    mask = stripes if mode == 1 else ~stripes
    return image * mask.to(image.dtype)


def cbgs_indices(labels_per_frame: Sequence[np.ndarray], num_classes: int, rng: np.random.Generator) -> list[int]:
    """mmdet3d ``CBGSDataset``: for each class c, draw ``len(I_c) · (1/K) / f_c`` frames (with replacement) from the
    frames I_c containing c, f_c = |I_c| / Σ_k |I_k|. Frames without any box are dropped."""
    per_class = [
        [i for i, lab in enumerate(labels_per_frame) if (np.asarray(lab) == c).any()] for c in range(num_classes)
    ]
    total = sum(len(ix) for ix in per_class)
    if total == 0:
        return list(range(len(labels_per_frame)))
    out: list[int] = []
    for ix in per_class:
        if not ix:
            continue
        ratio = (1.0 / num_classes) / (len(ix) / total)
        out += rng.choice(ix, int(len(ix) * ratio)).tolist()
    return out


# ============================================================================================ GT-sampling
SAMPLE_GROUPS = {
    "car": 2,
    "truck": 3,
    "construction_vehicle": 7,
    "bus": 4,
    "trailer": 6,
    "barrier": 2,
    "motorcycle": 6,
    "bicycle": 6,
    "pedestrian": 2,
    "traffic_cone": 2,
}


def _project_box(box: np.ndarray, l2i: np.ndarray, hw: tuple[int, int]):
    """2D box (x1, y1, x2, y2) in pixels and mean depth of a 3D box [7+] seen by ``l2i``; None when any corner is
    behind the camera or the box misses the image."""
    from zoo.nn.boxes3d import box_corners

    c = box_corners(torch.as_tensor(box[None, :7], dtype=torch.float64))[0].numpy()
    p = np.c_[c, np.ones(8)] @ l2i.T
    if (p[:, 2] <= 0.1).any():
        return None
    uv = p[:, :2] / p[:, 2:3]
    h, w = hw
    x1, y1 = np.clip(uv.min(0), 0, [w, h]).astype(int)
    x2, y2 = np.clip(uv.max(0), 0, [w, h]).astype(int)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return (x1, y1, x2, y2), float(p[:, 2].mean())


class MultiModalGTSampling:
    """Multi-modal GT-sampling (CMT's ``UnifiedObjectSample`` with ``sample_2d=True``).

    The database (:meth:`build`) holds, per training-set object with >= ``min_points`` LiDAR points, its box, label,
    points and the image crop of every view it projects into. A frame receives, per class, up to
    ``sample_groups[c] - (#c already in the frame)`` objects drawn at random, dropped when their BEV footprint overlaps
    a box already there (rotated BEV IoU > 0); the frame's points inside a pasted box are removed and the object's
    points added; in every view the pasted objects' crops are resized onto their projected 2D boxes, far to near,
    blended ``mixup_rate`` : 1 - ``mixup_rate`` with the frame's pixels.
    """

    def __init__(
        self,
        database: list[dict],
        classes: Sequence[str],
        sample_groups: dict | None = None,
        mixup_rate: float = 0.5,
        seed: int = 0,
    ):
        self.database, self.classes = database, list(classes)
        self.groups = dict(SAMPLE_GROUPS if sample_groups is None else sample_groups)
        self.mixup_rate = mixup_rate
        self.rng = np.random.default_rng(seed)
        self.by_class = {c: [i for i, o in enumerate(database) if o["label"] == c] for c in range(len(self.classes))}

    @staticmethod
    def build(frames: Sequence[dict], cameras: Sequence[str], min_points: int = 5) -> list[dict]:
        """Objects of raw frames (:meth:`MultiViewFrames.raw_frame`) -> database entries."""
        from zoo.nn.boxes3d import points_in_boxes

        db = []
        for f in frames:
            if not len(f["boxes"]):
                continue
            inside = points_in_boxes(torch.as_tensor(f["points"][:, :3]), torch.as_tensor(f["boxes"][:, :7])).numpy()
            for j, (box, lab) in enumerate(zip(f["boxes"], f["labels"])):
                if inside[:, j].sum() < min_points:
                    continue
                crops = {}
                for cam, img, l2i in zip(cameras, f.get("images") or [], f.get("lidar2img", [])):
                    pr = _project_box(box, l2i, img.shape[:2])
                    if pr is not None:
                        (x1, y1, x2, y2), _ = pr
                        crops[cam] = img[y1:y2, x1:x2].copy()
                db.append(
                    {"box": box.copy(), "label": int(lab), "points": f["points"][inside[:, j]].copy(), "crops": crops}
                )
        return db

    def __call__(self, frame: dict, cameras: Sequence[str] | None = None) -> dict:
        from PIL import Image

        from zoo.nn.boxes3d import bev_iou, points_in_boxes

        boxes, labels = frame["boxes"], frame["labels"]
        chosen: list[dict] = []
        current = boxes[:, :7].copy()
        for c, name in enumerate(self.classes):
            want = int(self.groups.get(name, 0)) - int((labels == c).sum())
            pool = self.by_class.get(c, [])
            if want <= 0 or not pool:
                continue
            for i in self.rng.choice(pool, min(want, len(pool)), replace=False):
                obj = self.database[int(i)]
                cand = obj["box"][None, :7]
                if len(current) and (bev_iou(torch.as_tensor(cand), torch.as_tensor(current)) > 0).any():
                    continue
                chosen.append(obj)
                current = np.concatenate([current, cand])
        if not chosen:
            return frame
        out = dict(frame)
        new_boxes = np.stack([o["box"] for o in chosen])
        drop = (
            points_in_boxes(torch.as_tensor(frame["points"][:, :3]), torch.as_tensor(new_boxes[:, :7]))
            .numpy()
            .any(axis=1)
        )
        out["points"] = np.concatenate([frame["points"][~drop], *(o["points"] for o in chosen)])
        out["boxes"] = np.concatenate([boxes, new_boxes])
        out["labels"] = np.concatenate([labels, np.array([o["label"] for o in chosen], dtype=labels.dtype)])
        if frame.get("images") is not None and cameras is not None:
            images = [im.copy() for im in frame["images"]]
            for v, (cam, l2i) in enumerate(zip(cameras, frame["lidar2img"])):
                placed = []
                for o in chosen:
                    pr = _project_box(o["box"], l2i, images[v].shape[:2])
                    if pr is not None and cam in o["crops"] and o["crops"][cam].size:
                        placed.append((pr[1], pr[0], o["crops"][cam]))
                for _, (x1, y1, x2, y2), crop in sorted(placed, key=lambda t: -t[0]):  # far to near
                    patch = np.asarray(Image.fromarray(crop).resize((x2 - x1, y2 - y1), Image.BILINEAR), np.float32)
                    region = images[v][y1:y2, x1:x2].astype(np.float32)
                    images[v][y1:y2, x1:x2] = (self.mixup_rate * patch + (1 - self.mixup_rate) * region).astype(
                        np.uint8
                    )
            out["images"] = images
        return out


# ============================================================================================ dataset
class MultiViewFrames(Dataset):
    """Frames of one info file (module docstring); ``train`` switches the random augmentations on."""

    def __init__(
        self,
        root: Path,
        records: list[dict],
        categories: dict,
        classes: Sequence[str],
        cameras: Sequence[str],
        image_size: Sequence[int] | None,
        point_cloud_range: Sequence[float],
        train: bool,
        sweeps: int = 10,
        resize_range: Sequence[float] = (0.94, 1.25),
        rot_range=(-0.785, 0.785),
        scale_range=(0.9, 1.1),
        translation_std=(0.5, 0.5, 0.5),
        flip_prob: float = 0.5,
        image_flip_prob: float = 0.5,
        use_grid_mask: bool = True,
        augment_3d: bool = True,
        augment_images: bool = True,
        seed: int = 0,
        with_images: bool = True,
        cache: bool = False,
    ):
        self.root, self.records, self.classes = root, records, list(classes)
        self.label_of = {i: (self.classes.index(n) if n in self.classes else -1) for n, i in categories.items()}
        self.cameras = list(cameras)
        self.image_size = None if image_size is None else tuple(int(v) for v in image_size)  # None: no images read
        self.pcr = np.asarray(point_cloud_range, dtype=np.float64)
        self.train, self.sweeps = train, sweeps
        self.resize_range, self.rot_range, self.scale_range = resize_range, rot_range, scale_range
        self.translation_std, self.flip_prob, self.image_flip_prob = translation_std, flip_prob, image_flip_prob
        self.use_grid_mask, self.augment_3d, self.augment_images = use_grid_mask, augment_3d, augment_images
        self.with_images = with_images
        self.rng = np.random.default_rng(seed)
        self.index = list(range(len(records)))
        self.cache = cache and not train  # a frame without random augmentation is deterministic
        self.gt_sampler: MultiModalGTSampling | None = None
        self._cached: dict[int, dict] = {}

    def __len__(self):
        return len(self.index)

    def _find(self, name: str, subdirs: Sequence[str]) -> Path:
        p = Path(name)
        for cand in [self.root / p, *(self.root / d / p.name for d in subdirs), self.root / p.name]:
            if cand.is_file():
                return cand
        raise DataNotFoundError(
            f"{p.name} not found under {self.root} (looked in {', '.join(subdirs)} and the root); "
            "expected the nuScenes layout samples/<SENSOR>/<file>"
        )

    def labels(self, i: int) -> np.ndarray:
        return np.array(
            [self.label_of.get(int(o.get("bbox_label_3d", -1)), -1) for o in self.records[i].get("instances", [])],
            dtype=np.int64,
        )

    # -------------------------------------------------------------------------------------- LiDAR
    def _points(self, rec: dict) -> np.ndarray:
        lp = rec.get("lidar_points") or {}
        if "lidar_path" not in lp:
            raise UserError(f"frame {rec.get('token', '?')}: the info has no lidar_points.lidar_path")
        pts = read_points(self._find(lp["lidar_path"], ("samples/LIDAR_TOP",)), 5)
        pts = pts.copy()
        pts[:, 4] = 0.0
        clouds = [pts]
        t0 = float(rec.get("timestamp", 0.0))
        for sw in (rec.get("lidar_sweeps") or [])[: max(self.sweeps - 1, 0)]:
            path = (sw.get("lidar_points") or {}).get("lidar_path") or sw.get("data_path")
            q = read_points(self._find(path, ("sweeps/LIDAR_TOP", "samples/LIDAR_TOP")), 5).copy()
            q = q[np.linalg.norm(q[:, :2], axis=1) >= 1.0]
            rot = np.asarray(sw["sensor2lidar_rotation"], dtype=np.float64)
            tr = np.asarray(sw["sensor2lidar_translation"], dtype=np.float64)
            q[:, :3] = q[:, :3] @ rot.T + tr
            ts = float(sw.get("timestamp", t0))
            q[:, 4] = t0 - (ts / 1e6 if ts > 1e12 else ts)
            clouds.append(q.astype(np.float32))
        return np.concatenate(clouds)

    # -------------------------------------------------------------------------------------- cameras
    def _raw_images(self, rec: dict) -> tuple[list[np.ndarray], np.ndarray]:
        """The views of ``cameras`` as RGB uint8 arrays [H, W, 3] and their raw lidar2img [V, 4, 4] (K4 @ lidar2cam)."""
        from PIL import Image

        imgs = rec.get("images") or {}
        missing = [c for c in self.cameras if c not in imgs]
        if missing:
            raise UserError(
                f"frame {rec.get('token', '?')}: camera view(s) {missing} missing from the info's images; "
                "CMT needs every view of `cameras` (or list fewer cameras)"
            )
        out, mats = [], []
        for cam in self.cameras:
            info = imgs[cam]
            k4 = np.eye(4)
            k4[:3, :3] = np.asarray(info["cam2img"], dtype=np.float64)[:3, :3]
            mats.append(k4 @ np.asarray(info["lidar2cam"], dtype=np.float64))
            img = Image.open(self._find(info["img_path"], (f"samples/{cam}",))).convert("RGB")
            out.append(np.asarray(img, dtype=np.uint8))
        return out, np.stack(mats)

    def _augment_images(self, raw: list[np.ndarray], l2i: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """ResizeCropFlipImage + normalisation (+ GridMask) of raw views; lidar2img <- A @ lidar2img per view."""
        from PIL import Image

        fh, fw = self.image_size
        out, mats = [], []
        for arr_in, m in zip(raw, l2i):
            img = Image.fromarray(arr_in)
            w, h = img.size
            base = fw / float(w)
            aug = self.train and self.augment_images
            scale = base * float(self.rng.uniform(*self.resize_range)) if aug else base
            nw, nh = int(w * scale), int(h * scale)
            crop_y = max(nh - fh, 0)
            crop_x = int(self.rng.uniform(0, max(0, nw - fw))) if aug else int(max(0, nw - fw) / 2)
            flip = bool(aug and self.rng.random() < self.image_flip_prob)
            img = img.resize((nw, nh), Image.BILINEAR).crop((crop_x, crop_y, crop_x + fw, crop_y + fh))
            if flip:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            a = image_affine(scale, (crop_x, crop_y), flip, fw)
            arr = torch.from_numpy(np.asarray(img, dtype=np.float32)[..., ::-1].copy()).permute(2, 0, 1)  # BGR
            arr = (arr - torch.tensor(MEAN_BGR).view(3, 1, 1)) / torch.tensor(STD_BGR).view(3, 1, 1)
            if self.train and self.use_grid_mask:
                arr = grid_mask(arr, self.rng)
            out.append(arr)
            mats.append(a @ m)
        return torch.stack(out), np.stack(mats)

    def _images(self, rec: dict):
        return self._augment_images(*self._raw_images(rec))

    def raw_frame(self, i: int) -> dict:
        """Record ``i`` before any augmentation: points, boxes [M, 9], labels, raw views and lidar2img (GT database)."""
        rec = self.records[i]
        inst = rec.get("instances", [])
        boxes = np.array(
            [list(o["bbox_3d"])[:7] + list(o.get("velocity", [np.nan, np.nan]))[:2] for o in inst], dtype=np.float64
        ).reshape(-1, 9)
        labels = self.labels(i)
        keep = labels >= 0
        frame = {"points": self._points(rec), "boxes": boxes[keep], "labels": labels[keep]}
        if self.with_images:
            frame["images"], frame["lidar2img"] = self._raw_images(rec)
        return frame

    # -------------------------------------------------------------------------------------- frame
    def __getitem__(self, idx: int) -> dict:
        if self.cache and self.index[idx] in self._cached:
            return self._cached[self.index[idx]]
        frame = self._load(idx)
        if self.cache:
            self._cached[self.index[idx]] = frame
        return frame

    def _load(self, idx: int) -> dict:
        rec = self.records[self.index[idx]]
        raw = self.raw_frame(self.index[idx])
        if self.train and self.gt_sampler is not None:
            raw = self.gt_sampler(raw, self.cameras)
        points, boxes, labels = raw["points"], raw["boxes"], raw["labels"]
        images, l2i = (
            self._augment_images(raw["images"], raw["lidar2img"]) if self.with_images else (None, np.zeros((0, 4, 4)))
        )
        if self.train and self.augment_3d:
            rot = float(self.rng.uniform(*self.rot_range))
            scale = float(self.rng.uniform(*self.scale_range))
            trans = self.rng.normal(0.0, 1.0, 3) * np.asarray(self.translation_std)
            fy = bool(self.rng.random() < self.flip_prob)
            fx = bool(self.rng.random() < self.flip_prob)
            points, boxes, l2i, _ = transform_frame_3d(points, boxes, l2i, rot, scale, trans, fx, fy)
        lo, hi = self.pcr[:3], self.pcr[3:]
        points = points[((points[:, :3] >= lo) & (points[:, :3] < hi)).all(axis=1)]
        inside = (
            ((boxes[:, :2] >= lo[:2]) & (boxes[:, :2] <= hi[:2])).all(axis=1) if len(boxes) else np.zeros(0, dtype=bool)
        )
        boxes, labels = boxes[inside], labels[inside]
        if self.train:
            points = points[self.rng.permutation(len(points))]
        frame = {
            "points": torch.from_numpy(points.astype(np.float32)),
            "boxes": torch.from_numpy(boxes.astype(np.float32)),
            "labels": torch.from_numpy(labels),
            "frame_id": str(rec.get("token", self.index[idx])),
        }
        if images is not None:
            frame["images"] = images
            frame["lidar2img"] = torch.from_numpy(l2i.astype(np.float32))
        return frame


def collate_multiview(frames: Sequence[dict]) -> dict:
    """Frames -> batch (module docstring): images and lidar2img stacked (padded to a multiple of 32), the rest lists."""
    if not frames:
        raise UserError("collate_multiview: empty batch")
    out = {k: [f[k] for f in frames] for k in ("points", "boxes", "labels", "frame_id")}
    if "images" in frames[0]:
        imgs = torch.stack([f["images"] for f in frames])
        h, w = imgs.shape[-2:]
        ph, pw = -h % 32, -w % 32
        if ph or pw:
            imgs = torch.nn.functional.pad(imgs, (0, pw, 0, ph))
        out["images"] = imgs
        out["lidar2img"] = torch.stack([f["lidar2img"] for f in frames])
    return out


def _check_image_size(image_size: Sequence[int]) -> list[int]:
    if len(image_size) != 2 or min(image_size) < 32:
        raise UserError(f"image_size must be (height, width) >= 32 px, got {list(image_size)}")
    return [int(v) for v in image_size]


class NuScenesMultiViewDataModule(LightningDataModule):
    """nuScenes 6 cameras + LiDAR sweeps + boxes with velocity, in mmdet3d v2 info layout (module docstring).

    ``train_split`` / ``val_split`` / ``test_split``: info file names under ``root`` (or paths). ``repeat`` repeats
    the training frames per epoch (the one-frame demo); ``cbgs`` resamples them class-balanced first;
    ``cache_frames`` keeps frames that are read without random augmentation in memory (small sets only).
    ``gt_sampling`` (training, with ``augment``): :class:`MultiModalGTSampling` with a database built in memory from
    the training split at setup (small splits; the release precomputes ``nuscenes_dbinfos_train.pkl`` and its image
    crops with ``tools/data_converter/create_unified_gt_database.py``, a file this module does not read).

    ``point_cloud_range`` and ``image_size`` (height, width) follow the model (its ``data_config()``) when left
    ``None``; set, they must agree with it, and ``cameras`` must list as many views as the model was built for.
    """

    def __init__(
        self,
        root: str,
        train_split: str = "nuscenes_infos_train.pkl",
        val_split: str = "nuscenes_infos_val.pkl",
        test_split: str | None = None,
        classes: Sequence[str] = CLASSES,
        cameras: Sequence[str] = CAMERAS,
        image_size: Sequence[int] | None = None,
        point_cloud_range: Sequence[float] | None = None,
        sweeps: int = 10,
        resize_range: Sequence[float] = (0.94, 1.25),
        rot_range: Sequence[float] = (-0.785, 0.785),
        scale_range: Sequence[float] = (0.9, 1.1),
        translation_std: Sequence[float] = (0.5, 0.5, 0.5),
        flip_prob: float = 0.5,
        image_flip_prob: float = 0.5,
        grid_mask: bool = True,
        augment: bool = True,
        cbgs: bool = True,
        with_images: bool = True,
        cache_frames: bool = False,
        gt_sampling: bool = False,
        sample_groups: dict | None = None,
        mixup_rate: float = 0.5,
        repeat: int = 1,
        batch_size: int = 2,
        num_workers: int = 4,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        self.classes = list(classes)
        self.point_cloud_range = None if point_cloud_range is None else [float(v) for v in point_cloud_range]
        self.image_size = None if image_size is None else _check_image_size(image_size)
        if repeat < 1 or batch_size < 1:
            raise UserError(f"repeat ({repeat}) and batch_size ({batch_size}) must be >= 1")
        self.datasets: dict[str, MultiViewFrames] = {}

    def _info(self, split: str) -> tuple[list[dict], dict]:
        path = Path(split).expanduser()
        if not path.is_absolute():
            path = self.root / split
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"nuScenes root {self.root} not found; expected samples/CAM_*/, samples/LIDAR_TOP/, "
                "sweeps/LIDAR_TOP/ and mmdet3d v2 info pickles (nuscenes_infos_train.pkl)"
            )
        info = load_info_pickle(path)
        cats = (info.get("metainfo") or {}).get("categories")
        if not isinstance(cats, dict):
            raise UserError(f"{path}: metainfo.categories missing; regenerate the infos with mmdet3d >= 1.1")
        return info["data_list"], cats

    def frames(self, split: str, train: bool) -> MultiViewFrames:
        hp = self.hparams
        records, cats = self._info(split)
        ds = MultiViewFrames(
            self.root,
            records,
            cats,
            self.classes,
            hp.cameras,
            self.image_size,
            self.point_cloud_range,
            train and hp.augment,
            hp.sweeps,
            hp.resize_range,
            hp.rot_range,
            hp.scale_range,
            hp.translation_std,
            hp.flip_prob,
            hp.image_flip_prob,
            hp.grid_mask,
            True,
            True,
            hp.seed,
            hp.with_images,
            hp.cache_frames,
        )
        if train and hp.gt_sampling and hp.augment:
            raw = [ds.raw_frame(i) for i in range(len(records))]
            db = MultiModalGTSampling.build(raw, hp.cameras if hp.with_images else [])
            ds.gt_sampler = MultiModalGTSampling(db, self.classes, hp.sample_groups, hp.mixup_rate, hp.seed)
            log.info("GT-sampling database: %d objects from %d frames", len(db), len(raw))
        if train:
            index = list(range(len(records)))
            if hp.cbgs:
                index = cbgs_indices([ds.labels(i) for i in index], len(self.classes), np.random.default_rng(hp.seed))
                if not index:
                    raise UserError(
                        f"CBGS resampling of {split} ({len(records)} frames) kept no frame (each class "
                        "draws |frames with it| x (1/K) / its share, rounded down); set cbgs: false"
                    )
            ds.index = index * hp.repeat
        return ds

    def follow_model(self) -> None:
        """Resolve the arguments left ``None`` from the attached model's ``data_config()`` (point-cloud range; image
        size and camera count when images are read); a value set here must agree with the model's."""
        from zoo.sizes import follow_model, model_data_config

        cfg = model_data_config(self)
        pcr = follow_model(self, "point_cloud_range", self.point_cloud_range, cfg.get("point_cloud_range"))
        self.point_cloud_range = [float(v) for v in pcr]
        if not self.hparams.with_images:
            return
        self.image_size = _check_image_size(follow_model(self, "image_size", self.image_size, cfg.get("image_size")))
        views = cfg.get("num_views")
        if views is not None and views != len(self.hparams.cameras):
            raise UserError(
                f"{type(self).__name__}: data.init_args.cameras lists {len(self.hparams.cameras)} views but the model "
                f"was built for {views}; list {views} cameras or set the model's num_views"
            )

    def setup(self, stage: str | None = None):
        hp = self.hparams
        self.follow_model()
        if stage in (None, "fit"):
            self.datasets["train"] = self.frames(hp.train_split, True)
            self.datasets["val"] = self.frames(hp.val_split, False)
        if stage in (None, "test"):
            self.datasets["test"] = self.frames(hp.test_split or hp.val_split, False)
        if stage == "validate":
            self.datasets["val"] = self.frames(hp.val_split, False)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[name],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_multiview,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)
