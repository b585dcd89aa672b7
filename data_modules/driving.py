"""LiDAR driving datasets (KITTI, nuScenes, Waymo) in their published layouts, as one ``DrivingDataModule`` family.

Every data loader yields collated frames (:func:`collate_frames`); one frame is

``{"points": FloatTensor[N, 4] (x, y, z, intensity in [0, 1]) in the LiDAR frame, "boxes": FloatTensor[M, 7]
(x, y, z gravity centre, dx, dy, dz, yaw; :mod:`zoo.nn.boxes3d`), "labels": LongTensor[M] (index into
``classes``), "frame_id": str, "dataset": "kitti" | "nuscenes" | "waymo"}``, plus, when asked for:
``"images"`` uint8 [V, 3, H, W] RGB and ``"lidar2img"`` float32 [V, 4, 4] (``load_images=True``; KITTI image_2 with
``P2 @ R0_rect @ Tr_velo_to_cam``, the six nuScenes cameras in mmdet3d's order with ``cam2img @ lidar2cam``, Waymo's
front camera with the info's ``lidar2img``), and ``"velocity"`` [M, 2] m/s (nuScenes, ``with_velocity=True``).

Layouts expected under ``root`` (readers in :mod:`data_modules.driving_formats`):

- :class:`KittiDataModule`: the KITTI object benchmark, ``root/training/{velodyne,calib,label_2}/NNNNNN.*`` with
  ``root/ImageSets/{train,val}.txt`` (``root`` may also be the ``training`` folder itself, as in
  ``shared/data/kitti_frames``). A split is an ImageSets name, ``"all"`` (every velodyne file), a list of frame ids,
  or an mmdet3d v2 info file ``*.pkl`` (camera-frame boxes converted with the info's ``lidar2cam``).
- :class:`NuScenesDataModule`: ``root/samples/LIDAR_TOP/*.pcd.bin`` + mmdet3d v2 infos
  (``nuscenes_infos_{train,val}.pkl``; boxes already LiDAR-frame gravity-centred). Point files are also looked up in
  ``root`` itself (the layout of ``shared/data/nuscenes_demo``). Single sweep (SSDA3D ``MAX_SWEEPS: 1``).
- :class:`WaymoDataModule`: mmdet3d's KITTI-format Waymo, ``root/training/velodyne/*.bin`` (6 floats) +
  ``waymo_infos_{train,val}.pkl`` (bottom-centred boxes, lifted to the gravity centre).

Per-dataset conventions are arguments: ``classes`` and ``class_map`` (dataset category -> our class name; by default
the lower-cased category, so KITTI ``Car`` and Waymo ``Car`` both become ``car``; categories that map outside
``classes`` are dropped, as are KITTI ``DontCare`` and nuScenes label -1), ``z_shift`` (added to points and boxes:
SSDA3D's nuScenes ``SHIFT_COOR`` 1.8 m), ``intensity`` (``"none"``: clip to [0, 1], KITTI; ``"max"``: divide by the
frame's maximum, SSDA3D ``normalize_intensity``; ``"255"``: nuScenes raw / 255; ``"tanh"``: Waymo), ``min_points``
(default 1: boxes with fewer LiDAR points in this sweep are dropped), ``point_cloud_range`` (points outside are
cropped, boxes whose centre lies outside in x/y are dropped; applied after augmentation; unset, it follows the model
attached to the trainer, ``zoo.sizes.follow_model``), ``train_augmentations``
(a list of specs for :func:`data_modules.driving_aug.build_augmentation`, applied in order to training frames only;
``GTSampling`` draws on a database built once from the training split, in memory or, with ``gt_database_dir``, on
disk and reused). GT-sampling pastes points only: with ``load_images`` the images do not show pasted objects.
Points with a NaN or infinite value are dropped (a warning counts them); a cloud with no finite point is an error.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataNotFoundError, UserError, check_choice, check_positive
from zoo.nn.boxes3d import points_in_boxes
from zoo.sizes import follow_model, model_data_config

from .driving_aug import Compose, build_augmentation, build_gt_database
from .driving_formats import (
    KITTI_CLASSES,
    NUSCENES_CAMERAS,
    POINT_WIDTH,
    WAYMO_CLASSES,
    camera_boxes_to_lidar,
    kitti_label_boxes,
    kitti_lidar2img,
    load_info_pickle,
    pad4,
    read_kitti_calib,
    read_kitti_label,
    read_points,
)

log = logging.getLogger(__name__)

__all__ = [
    "DrivingDataModule",
    "DrivingFrames",
    "KittiDataModule",
    "NuScenesDataModule",
    "WaymoDataModule",
    "collate_frames",
]

INTENSITY_MODES = ("none", "max", "255", "tanh")


def info_lidar_path(info, source, index: int) -> str:
    """``info["lidar_points"]["lidar_path"]`` of frame ``index`` of the mmdet3d v2 info file ``source``, or a
    :class:`UserError` naming the frame and how to regenerate the file (an info without LiDAR, e.g. a camera-only
    or hand-edited one, otherwise fails with a ``KeyError``)."""
    lp = info.get("lidar_points") if isinstance(info, Mapping) else None
    path = lp.get("lidar_path") if isinstance(lp, Mapping) else None
    if not isinstance(path, str) or not path:
        frame = info.get("sample_idx", info.get("token", index)) if isinstance(info, Mapping) else index
        raise UserError(
            f"{source}: frame {frame} (data_list[{index}]) has no lidar_points.lidar_path; the info file "
            "must name each frame's LiDAR file: regenerate it with mmdet3d's tools/create_data.py (v2 "
            "infos)"
        )
    return path


def finite_points(pts: np.ndarray, source) -> np.ndarray:
    """The rows of ``pts`` whose values are all finite. Dropped rows are counted in a warning naming the file; a cloud
    with no finite point is a :class:`UserError` (it would train on NaN)."""
    ok = np.isfinite(pts).all(1)
    if ok.all():
        return pts
    bad = int((~ok).sum())
    if bad == len(pts):
        raise UserError(
            f"{source}: all {len(pts)} points are NaN or infinite; the point file is corrupt: re-extract "
            "it or drop the frame from the split"
        )
    warnings.warn(f"{source}: dropped {bad} of {len(pts)} points with NaN or infinite values", stacklevel=2)
    return pts[ok]


def collate_frames(frames: Sequence[dict]) -> dict:
    """Frames -> ``{key: [per-frame values]}`` (points / boxes / labels stay per-frame lists; no padding)."""
    if not frames:
        raise UserError("collate_frames: empty batch")
    keys = list(frames[0])
    return {k: [f[k] for f in frames] for k in keys}


# ---------------------------------------------------------------------------------------------------- records
class _FrameLoader:
    """Reads one record into a frame with the dataset conventions applied (picklable for DataLoader workers)."""

    def __init__(
        self,
        dataset: str,
        classes: Sequence[str],
        class_map: Mapping[str, str],
        z_shift: float,
        intensity: str,
        min_points: int,
        load_images: bool = False,
    ):
        self.dataset, self.classes, self.load_images = dataset, list(classes), load_images
        self.class_map, self.z_shift, self.intensity, self.min_points = dict(class_map), z_shift, intensity, min_points

    def label_of(self, name: str) -> int:
        cls = self.class_map.get(name, name.lower())
        return self.classes.index(cls) if cls in self.classes else -1

    def __call__(self, rec: dict) -> dict:
        raw = read_points(rec["points_path"], POINT_WIDTH[self.dataset])
        pts = finite_points(raw[:, :4], rec["points_path"]).copy()
        r = pts[:, 3]
        if self.intensity == "max":
            m = float(r.max())
            pts[:, 3] = r / m if m > 0 else 0.0
        elif self.intensity == "255":
            pts[:, 3] = r / 255.0
        elif self.intensity == "tanh":
            pts[:, 3] = np.tanh(r)
        pts[:, 3] = np.clip(pts[:, 3], 0.0, 1.0)
        labels = np.array([self.label_of(n) for n in rec["names"]], dtype=np.int64)
        keep = labels >= 0
        boxes = torch.from_numpy(np.asarray(rec["boxes"], dtype=np.float32).reshape(-1, 7)[keep].copy())
        labels = torch.from_numpy(labels[keep])
        points = torch.from_numpy(pts)
        extra = {}
        if "velocity" in rec:
            vel = np.asarray(rec["velocity"], np.float32).reshape(-1, 2)[keep]
            extra["velocity"] = torch.from_numpy(np.nan_to_num(vel))  # nuScenes: NaN for 2 % of boxes -> 0
        if self.z_shift:
            points[:, 2] += self.z_shift
            boxes[:, 2] += self.z_shift
        if self.min_points > 0 and len(boxes):
            ok = points_in_boxes(points, boxes).sum(0) >= self.min_points
            boxes, labels = boxes[ok], labels[ok]
            extra = {k: v[ok] for k, v in extra.items()}
        if self.load_images:
            extra.update(self._images(rec))
        return {
            "points": points,
            "boxes": boxes,
            "labels": labels,
            "frame_id": rec["frame_id"],
            "dataset": self.dataset,
            **extra,
        }

    def _images(self, rec: dict) -> dict:
        """``images`` uint8 [V, 3, H, W] (RGB) and ``lidar2img`` float32 [V, 4, 4] for the (z-shifted) points."""
        from PIL import Image

        if not rec.get("images"):
            raise UserError(f"frame {rec['frame_id']}: load_images is set but the dataset lists no camera images")
        imgs = []
        for p in rec["images"]:
            with Image.open(p) as im:
                imgs.append(torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1))
        if len({tuple(i.shape) for i in imgs}) != 1:
            raise UserError(
                f"frame {rec['frame_id']}: camera images differ in size "
                f"{sorted({tuple(i.shape) for i in imgs})}; resize them to one size first"
            )
        lidar2img = torch.as_tensor(np.asarray(rec["lidar2img"]), dtype=torch.float64)
        unshift = torch.eye(4, dtype=torch.float64)
        unshift[2, 3] = -self.z_shift  # the points were moved up by z_shift: undo it before projecting
        return {"images": torch.stack(imgs), "lidar2img": (lidar2img @ unshift).float()}


class DrivingFrames(Dataset):
    """Frames of one split: load -> augment (``transform``) -> range crop -> optional point shuffle."""

    def __init__(
        self,
        records: list[dict],
        loader: _FrameLoader,
        transform=None,
        point_cloud_range: list[float] | None = None,
        shuffle_points: bool = False,
        seed: int = 0,
    ):
        self.records, self.loader, self.transform = records, loader, transform
        self.point_cloud_range = None if point_cloud_range is None else torch.tensor(point_cloud_range)
        self.shuffle_points = shuffle_points
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        if self.transform is not None and hasattr(self.transform, "reseed"):
            self.transform.reseed(seed + 1)

    def __len__(self) -> int:
        return len(self.records)

    def raw(self, i: int) -> dict:
        """Frame ``i`` without augmentation, crop or shuffle."""
        return self.loader(self.records[i])

    def __getitem__(self, i: int) -> dict:
        return self.process(self.loader(self.records[i]))

    def process(self, frame: dict) -> dict:
        """Augment, range-crop and shuffle one loaded frame (a caller may replace its boxes first: pseudo-labels)."""
        if self.transform is not None:
            frame = self.transform(frame)
        if self.point_cloud_range is not None:
            frame = crop_to_range(frame, self.point_cloud_range)
        if self.shuffle_points:
            frame["points"] = frame["points"][torch.from_numpy(self.rng.permutation(len(frame["points"])))]
        return frame


def crop_to_range(frame: dict, pc_range: torch.Tensor) -> dict:
    """Drop points outside ``[x0, y0, z0, x1, y1, z1]`` and boxes whose centre is outside it in x/y."""
    pc_range = pc_range.to(frame["points"].dtype)
    p, b = frame["points"], frame["boxes"]
    keep_p = ((p[:, :3] >= pc_range[:3]) & (p[:, :3] < pc_range[3:])).all(1)
    keep_b = ((b[:, :2] >= pc_range[:2]) & (b[:, :2] < pc_range[3:5])).all(1)
    frame = dict(frame)
    frame["points"], frame["boxes"], frame["labels"] = p[keep_p], b[keep_b], frame["labels"][keep_b]
    if "velocity" in frame:
        frame["velocity"] = frame["velocity"][keep_b]
    return frame


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    info.dataset.reseed(int(torch.initial_seed() % 2**32))


# ------------------------------------------------------------------------------------------------ data modules
class DrivingDataModule(LightningDataModule):
    """Common machinery and the family's arguments, stated once; use :class:`KittiDataModule`,
    :class:`NuScenesDataModule` or :class:`WaymoDataModule` (each names its splits and intensity default and passes
    the rest through ``**kwargs``, which LightningCLI resolves to these arguments).

    ``point_cloud_range``: None follows the attached model's (``data_config()``; no model: no crop); a value set here
    must equal the model's. The other arguments: see the module docstring."""

    dataset_name = ""
    layout = ""

    def __init__(
        self,
        root: str,
        train_split: str | list[str],
        val_split: str | list[str],
        predict_split: str | list[str] | None = None,
        classes: list[str] | tuple[str, ...] = ("car",),
        class_map: dict[str, str] | None = None,
        z_shift: float = 0.0,
        intensity: str = "none",
        min_points: int = 1,
        point_cloud_range: list[float] | None = None,
        train_augmentations: list[dict] | None = None,
        shuffle_points: bool = True,
        load_interval: int = 1,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
        load_images: bool = False,
        gt_database_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()  # collects the subclass's arguments too (Lightning walks the __init__ frames)
        if not self.dataset_name:
            raise UserError(
                "DrivingDataModule is the family's base; use KittiDataModule, NuScenesDataModule or WaymoDataModule"
            )
        check_choice("intensity", intensity, INTENSITY_MODES)
        check_positive("batch_size", batch_size)
        check_positive("load_interval", load_interval)
        if not classes or len(set(classes)) != len(classes):
            raise UserError(f"classes must be a non-empty list of distinct names, got {list(classes)}")
        if point_cloud_range is not None and (
            len(point_cloud_range) != 6 or any(point_cloud_range[i] >= point_cloud_range[i + 3] for i in range(3))
        ):
            raise UserError(
                f"point_cloud_range must be [x0, y0, z0, x1, y1, z1] with mins < maxes, got {list(point_cloud_range)}"
            )
        if root is None:
            raise UserError(f"{type(self).__name__} needs root: {self.layout}")
        self.root = Path(root)
        self.classes = list(classes)
        self.class_map = dict(class_map or {})
        self.splits = {"train": train_split, "val": val_split, "predict": predict_split}
        self.point_cloud_range = None if point_cloud_range is None else [float(v) for v in point_cloud_range]
        self.train_augmentations = list(train_augmentations or [])
        self.shuffle_points, self.load_interval = shuffle_points, load_interval
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.load_images = load_images
        self.gt_database_dir = gt_database_dir
        self.loader = _FrameLoader(
            self.dataset_name, self.classes, self.class_map, float(z_shift), intensity, int(min_points), load_images
        )
        self.train_set = self.val_set = self.predict_set = None
        self._records: dict[str, list[dict]] = {}
        self._gt_db = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ---- records -------------------------------------------------------------------------------------------
    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise DataNotFoundError(f"{type(self).__name__}: root {self.root} does not exist; expected {self.layout}")

    def records(self, split: str) -> list[dict]:
        """The split's frame records (``frame_id``, ``points_path``, LiDAR ``boxes`` [M, 7], category ``names``)."""
        if split not in self._records:
            spec = self.splits[split]
            if spec is None:
                raise UserError(f"{type(self).__name__}: no {split}_split given; name an info file or split")
            self._check_root()
            recs = self._read_split(spec)[:: self.load_interval]
            if not recs:
                raise UserError(f"{type(self).__name__}: the {split} split {spec!r} under {self.root} has no frames")
            self._records[split] = recs
        return self._records[split]

    def _read_split(self, spec) -> list[dict]:
        raise NotImplementedError

    def _info_path(self, name: str) -> Path:
        p = Path(name)
        p = p if p.is_absolute() else self.root / p
        if not p.is_file():
            raise DataNotFoundError(f"{type(self).__name__}: info file {p} not found; expected {self.layout}")
        return p

    def _find_points(
        self, name: str, subdirs: Sequence[str], what: str = "point file", any_suffix: bool = False
    ) -> Path:
        base = Path(name).name
        for sub in subdirs:
            p = self.root / sub / base
            if p.is_file():
                return p
            if any_suffix:  # mmdet3d's Waymo infos name .jpg files that the test fixture stores as .png
                hits = sorted((self.root / sub).glob(Path(base).stem + ".*"))
                if hits:
                    return hits[0]
        raise DataNotFoundError(
            f"{type(self).__name__}: {what} {base} not found in "
            f"{', '.join(str(self.root / s) for s in subdirs)}; expected {self.layout}"
        )

    # ---- Lightning ------------------------------------------------------------------------------------------
    def gt_database(self) -> dict[str, list[dict]]:
        """Ground-truth database of the training split (built once; see ``driving_aug.build_gt_database``)."""
        if self._gt_db is None:
            loader = copy.copy(self.loader)
            loader.load_images = False  # the database holds points only
            frames = DrivingFrames(self.records("train"), loader)
            self._gt_db = build_gt_database(
                (frames.raw(i) for i in range(len(frames))),
                self.classes,
                self.gt_database_dir,
                [r["frame_id"] for r in frames.records],
            )
            log.info(
                "GT database: %s objects from %d training frames",
                {c: len(v) for c, v in self._gt_db.items()},
                len(frames),
            )
        return self._gt_db

    def frames(self, split: str, augment: bool | None = None) -> DrivingFrames:
        """The split as a dataset; training augmentations apply to ``"train"`` unless ``augment=False``."""
        augment = (split == "train") if augment is None else augment
        transform = None
        if augment and self.train_augmentations:
            transform = Compose(
                [build_augmentation(s, self.gt_database, self.classes) for s in self.train_augmentations]
            )
            transform.reseed(self.seed)
        return DrivingFrames(
            self.records(split),
            self.loader,
            transform,
            self.point_cloud_range,
            shuffle_points=augment and self.shuffle_points,
            seed=self.seed,
        )

    def _follow_model(self) -> None:
        """``point_cloud_range`` from the attached model when unset here (both set: they must agree)."""
        model = model_data_config(self).get("point_cloud_range")
        if model is not None:
            pcr = follow_model(self, "point_cloud_range", self.point_cloud_range, model)
            self.point_cloud_range = [float(v) for v in pcr]

    def setup(self, stage: str | None = None) -> None:
        self._follow_model()
        if stage in (None, "fit"):
            self.train_set = self.frames("train") if self.train_set is None else self.train_set
        if stage in (None, "fit", "validate", "test"):
            self.val_set = self.frames("val") if self.val_set is None else self.val_set
        if stage == "predict":
            self.predict_set = self.frames("predict") if self.predict_set is None else self.predict_set

    def _loader(self, ds: DrivingFrames, shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_frames,
            generator=g,
            worker_init_fn=_worker_init if self.num_workers else None,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        self.setup("predict")
        return self._loader(self.predict_set, shuffle=False)


class KittiDataModule(DrivingDataModule):
    """KITTI 3D object detection (Velodyne HDL-64E; 4-float points, camera-frame labels converted to LiDAR boxes)."""

    dataset_name = "kitti"
    layout = (
        "the KITTI object layout root/training/{velodyne,calib,label_2}/NNNNNN.{bin,txt} with "
        "root/ImageSets/<split>.txt (root may be the training folder itself; split 'all' takes every frame), "
        "or an mmdet3d info .pkl beside the velodyne files"
    )

    def __init__(
        self,
        root: str,
        train_split: str | list[str] = "train",
        val_split: str | list[str] = "val",
        predict_split: str | list[str] | None = None,
        intensity: str = "none",
        **kwargs,
    ):
        """The splits are ImageSets names, ``"all"``, lists of frame ids or info ``*.pkl`` files; ``kwargs``: the
        family's arguments (:class:`DrivingDataModule`)."""
        super().__init__(root, train_split, val_split, predict_split, intensity=intensity, **kwargs)

    def _training_dir(self) -> Path:
        for d in (self.root / "training", self.root):
            if (d / "velodyne").is_dir():
                return d
        raise DataNotFoundError(f"KittiDataModule: no velodyne folder under {self.root}; expected {self.layout}")

    def _read_split(self, spec) -> list[dict]:
        if isinstance(spec, str) and spec.endswith(".pkl"):
            return self._read_info(self._info_path(spec))
        d = self._training_dir()
        if isinstance(spec, str) and spec == "all":
            ids = sorted(p.stem for p in (d / "velodyne").glob("*.bin"))
        elif isinstance(spec, str):
            candidates = [self.root / "ImageSets" / f"{spec}.txt", d.parent / "ImageSets" / f"{spec}.txt"]
            f = next((c for c in candidates if c.is_file()), None)
            if f is None:
                raise DataNotFoundError(
                    f"KittiDataModule: split file {candidates[0]} not found; expected "
                    f"{self.layout}, or pass split 'all' or a list of frame ids"
                )
            ids = f.read_text().split()
        else:
            ids = [str(i) for i in spec]
        recs = []
        for fid in ids:
            calib = read_kitti_calib(d / "calib" / f"{fid}.txt")
            label = d / "label_2" / f"{fid}.txt"
            boxes, names = (
                kitti_label_boxes(read_kitti_label(label), calib)
                if label.is_file()
                else (np.zeros((0, 7), np.float32), [])
            )
            pts = d / "velodyne" / f"{fid}.bin"
            if not pts.is_file():
                raise DataNotFoundError(f"KittiDataModule: {pts} not found; expected {self.layout}")
            rec = {"frame_id": fid, "points_path": pts, "boxes": boxes, "names": names}
            if self.load_images:
                rec["images"] = [
                    self._find_points(
                        f"{fid}.png", [str(d.relative_to(self.root) / "image_2")], "image", any_suffix=True
                    )
                ]
                rec["lidar2img"] = kitti_lidar2img(calib)[None]
            recs.append(rec)
        return recs

    def _read_info(self, path: Path) -> list[dict]:
        recs = []
        for j, info in enumerate(load_info_pickle(path)["data_list"]):
            lidar = info_lidar_path(info, path, j)
            inst = [i for i in info.get("instances", []) if i["bbox_label_3d"] >= 0]
            lidar2cam = np.array(info["images"]["CAM2"]["lidar2cam"])
            cam = np.array([i["bbox_3d"] for i in inst], dtype=np.float64).reshape(-1, 7)
            rec = {
                "frame_id": str(info.get("sample_idx", info.get("sample_id"))).zfill(6),
                "points_path": self._find_points(lidar, ("training/velodyne", "training/velodyne_reduced", ".")),
                "boxes": camera_boxes_to_lidar(cam, lidar2cam).astype(np.float32),
                "names": [KITTI_CLASSES[i["bbox_label_3d"]] for i in inst],
            }
            if self.load_images:
                cam2 = info["images"]["CAM2"]
                rec["images"] = [self._find_points(cam2["img_path"], ("training/image_2", "."), "image")]
                rec["lidar2img"] = pad4(cam2["lidar2img"])[None]
            recs.append(rec)
        return recs


class NuScenesDataModule(DrivingDataModule):
    """nuScenes LiDAR (HDL-32E keyframes, 5-float points) with mmdet3d v2 infos; single sweep.

    ``with_velocity``: frames also carry ``velocity [M, 2]`` (m/s, LiDAR frame, NaN -> 0), moved by the augmentations,
    for the nuScenes velocity error (mAVE) of a detector that predicts none or some."""

    dataset_name = "nuscenes"
    layout = (
        "the nuScenes layout root/samples/LIDAR_TOP/*.pcd.bin (or the .pcd.bin files in root) with mmdet3d "
        "v2 info files root/nuscenes_infos_{train,val}.pkl (tools/create_data.py nuscenes)"
    )

    def __init__(
        self,
        root: str,
        train_split: str = "nuscenes_infos_train.pkl",
        val_split: str = "nuscenes_infos_val.pkl",
        predict_split: str | None = None,
        intensity: str = "max",
        with_velocity: bool = False,
        **kwargs,
    ):
        """The splits are mmdet3d info files; ``kwargs``: the family's arguments (:class:`DrivingDataModule`)."""
        super().__init__(root, train_split, val_split, predict_split, intensity=intensity, **kwargs)
        self.with_velocity = with_velocity

    def _read_split(self, spec) -> list[dict]:
        if not (isinstance(spec, str) and spec.endswith(".pkl")):
            raise UserError(f"NuScenesDataModule: a split is an mmdet3d info file name (*.pkl), got {spec!r}")
        path = self._info_path(spec)
        data = load_info_pickle(path)
        cats = data.get("metainfo", {}).get("categories")
        if not cats:
            raise UserError(f"{path}: metainfo.categories missing; not a nuScenes v2 info file")
        names_of = {v: k for k, v in cats.items()}
        recs = []
        for j, info in enumerate(data["data_list"]):
            lidar = info_lidar_path(info, path, j)
            inst = [i for i in info.get("instances", []) if i["bbox_label_3d"] >= 0]
            rec = {
                "frame_id": str(info.get("token", info.get("sample_idx"))),
                "points_path": self._find_points(lidar, ("samples/LIDAR_TOP", ".")),
                "boxes": np.array([i["bbox_3d"] for i in inst], dtype=np.float32).reshape(-1, 7),
                "names": [names_of[i["bbox_label_3d"]] for i in inst],
            }
            if self.load_images:
                cams = [c for c in NUSCENES_CAMERAS if c in info.get("images", {})]
                rec["images"] = [
                    self._find_points(info["images"][c]["img_path"], (f"samples/{c}", "."), "image") for c in cams
                ]
                rec["lidar2img"] = np.stack(
                    [pad4(info["images"][c]["cam2img"]) @ np.asarray(info["images"][c]["lidar2cam"]) for c in cams]
                )
            if self.with_velocity:
                rec["velocity"] = np.array(
                    [i.get("velocity", (np.nan, np.nan)) for i in inst], dtype=np.float32
                ).reshape(-1, 2)
            recs.append(rec)
        return recs


class WaymoDataModule(DrivingDataModule):
    """Waymo Open Dataset in mmdet3d's KITTI format (6-float points, vehicle frame, v2 infos)."""

    dataset_name = "waymo"
    layout = (
        "mmdet3d's Waymo KITTI format root/training/velodyne/*.bin (6 float32 per point) with "
        "root/waymo_infos_{train,val}.pkl (tools/create_data.py waymo)"
    )

    def __init__(
        self,
        root: str,
        train_split: str = "waymo_infos_train.pkl",
        val_split: str = "waymo_infos_val.pkl",
        predict_split: str | None = None,
        intensity: str = "tanh",
        **kwargs,
    ):
        """The splits are mmdet3d info files; ``kwargs``: the family's arguments (:class:`DrivingDataModule`)."""
        super().__init__(root, train_split, val_split, predict_split, intensity=intensity, **kwargs)

    def _read_split(self, spec) -> list[dict]:
        if not (isinstance(spec, str) and spec.endswith(".pkl")):
            raise UserError(f"WaymoDataModule: a split is an mmdet3d info file name (*.pkl), got {spec!r}")
        recs = []
        path = self._info_path(spec)
        for j, info in enumerate(load_info_pickle(path)["data_list"]):
            lidar = info_lidar_path(info, path, j)
            inst = [i for i in info.get("instances", []) if i["bbox_label_3d"] >= 0]
            boxes = np.array([i["bbox_3d"] for i in inst], dtype=np.float32).reshape(-1, 7)
            boxes[:, 2] += boxes[:, 5] / 2  # bottom -> gravity centre
            rec = {
                "frame_id": str(info["sample_idx"]),
                "points_path": self._find_points(lidar, ("training/velodyne", "validation/velodyne", ".")),
                "boxes": boxes,
                "names": [WAYMO_CLASSES[i["bbox_label_3d"]] for i in inst],
            }
            if self.load_images:
                cams = sorted(info.get("images", {}))
                rec["images"] = [
                    self._find_points(
                        info["images"][c]["img_path"], ("training/image_0", "."), "image", any_suffix=True
                    )
                    for c in cams
                ]
                rec["lidar2img"] = np.stack([pad4(info["images"][c]["lidar2img"]) for c in cams])
            recs.append(rec)
        return recs
