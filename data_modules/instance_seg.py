"""Camera instance segmentation on nuScenes with LiDAR weak labels (LWSIS): nuInsSeg when present, else the nuScenes
cameras + 3D boxes + LiDAR with box-hull evaluation masks.

Layout under ``root``: an mmdet3d v2 info pickle (``info``, read with the restricted
:class:`data_modules.driving_formats.InfoUnpickler`) whose frames name their LIDAR_TOP ``.pcd.bin`` and the six camera
JPEGs with their calibration (``images[CAM].cam2img`` 3×3, ``lidar2cam`` 4×4, ``sample_data_token``); files are
looked up under ``root/samples/<CAM or LIDAR_TOP>/`` and in ``root`` itself (the layout of
``shared/data/nuscenes_demo``). One sample = one camera image.

- **nuInsSeg** (``nuinsseg``: the path of the devkit's ``nuinsseg.json`` table, or found as
  ``root/v1.0-*/nuinsseg.json``; or the COCO json of its converter, images matched by file name): records
  ``{token, sample_data_token, category_name, bbox_corners [x1, y1, x2, y2], filename, instance_mask}`` with the
  mask as COCO RLE (``{"size": [900, 1600], "counts": ...}``) or polygons
  (list of flat xy lists) on the 1600×900 image. Each record is matched to the PLA instance of the same class with
  the highest 2D-box IoU (≥ 0.3); the supervision box is the mask's tight box (the official ``tbox_refine`` sets),
  the evaluation mask is the human mask. Records without a LiDAR match keep box + mask, with ignore points.
  Polygons of fewer than 3 points are dropped (a record left without one is skipped, and counted in a warning).
- **No nuInsSeg file** (as in ``shared/data``): the GT boxes are the projected 3D boxes (extent of the in-front
  corners clipped to the image) and the evaluation masks are the convex hulls of the projected 3D box corners,
  ``mask_source = "box-hull"``: they exercise the mask-AP path, they are not object masks.

PLA (:func:`data_modules.point_labels.point_label_assignment`) runs once per image at the original resolution when the
dataset is set up (``cache``: an ``.npz``-free in-memory cache per data module; ``cache_dir`` also writes it as
``pla-<camera token>.pt`` via ``torch.save`` of plain tensors, read back with ``weights_only=True``). Images are then
resized to ``image_size`` (H, W; unset, the attached model's ``data_config()``) and the points / boxes scaled with
them; points that leave the image become ignore
(−1). Per instance the batch carries ``num_points`` PLA points (the first of the stored K, shuffled at sampling) and
up to ``max_nodes`` in-box + ``max_nodes`` out-of-box LiDAR nodes for GCR.

Batches: ``(images [B, 3, H, W] float 0..255, targets)`` with one dict per image: ``boxes [G, 4]``, ``labels [G]``,
``point_coords [G, P, 2]``, ``point_labels [G, P]``, ``node_xyz [G, 2·max_nodes, 3]``, ``node_uv [G, 2·max_nodes, 2]``,
``node_valid [G, 2·max_nodes]``, ``masks [G, H, W]`` bool (evaluation), ``mask_source``, ``camera``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataNotFoundError, UserError, check_positive
from zoo.files import path_inside, safe_file_name
from zoo.nuscenes import CAMERAS
from zoo.sizes import follow_model, model_data_config

from . import point_labels
from .driving import info_lidar_path
from .driving_formats import load_info_pickle, read_points
from .projection import project

__all__ = [
    "InstanceSegImages",
    "MultiScaleCollate",
    "NuScenesInstanceSegDataModule",
    "KITTI_TO_NUSCENES",
    "box_hull",
    "box_hull_mask",
    "collate",
    "kitti_frames",
    "load_nuinsseg",
]

NUSCENES_CLASSES = (
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
)
# nuScenes general categories -> detection classes (nuInsSeg's category_name values)
_NUSCENES_MAP = {
    "vehicle.car": "car",
    "vehicle.truck": "truck",
    "vehicle.trailer": "trailer",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.construction": "construction_vehicle",
    "vehicle.bicycle": "bicycle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "movable_object.barrier": "barrier",
}

# KITTI object types -> nuScenes detection classes (nuScenes "car" includes vans; its bicycle boxes include the rider);
# Tram, Misc and DontCare have no nuScenes class and are left out
KITTI_TO_NUSCENES = {
    "Car": "car",
    "Van": "car",
    "Truck": "truck",
    "Pedestrian": "pedestrian",
    "Person_sitting": "pedestrian",
    "Cyclist": "bicycle",
}


def kitti_frames(root: str | Path) -> list[dict]:
    """Every frame of a KITTI folder with its image_2 camera: the official layout
    ``[training/]{velodyne,image_2,calib,label_2}/NNNNNN.*`` (every velodyne file), or mmdet3d info pickles beside
    the files (each ``*.pkl`` in ``root``). Records of :class:`data_modules.driving.KittiDataModule`: ``frame_id``,
    ``points_path``, LiDAR ``boxes [M, 7]``, KITTI type ``names``, ``images`` [image_2], ``lidar2img [1, 4, 4]``."""
    from .driving import KittiDataModule

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"KITTI root {root} not found; expected {KittiDataModule.layout}")
    reader = KittiDataModule(str(root), load_images=True)
    pkls = sorted(root.glob("*.pkl"))
    return [r for p in pkls for r in reader._read_split(p.name)] if pkls else reader._read_split("all")


def box_hull(corners_uv: np.ndarray, corners_depth: np.ndarray) -> np.ndarray:
    """Convex hull ``[V, 2]`` (pixels) of the in-front projected corners of one 3D box (empty when degenerate)."""
    from scipy.spatial import ConvexHull

    pts = corners_uv[corners_depth > 0]
    if len(pts) < 3:
        return np.zeros((0, 2), np.float32)
    try:
        return pts[ConvexHull(pts).vertices].astype(np.float32)
    except Exception:  # noqa: BLE001 - scipy's QhullError: a degenerate (collinear) projection
        return np.zeros((0, 2), np.float32)


def box_hull_mask(hull: np.ndarray, image_size: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """A convex polygon ``hull [V, 2]`` (pixels, multiplied by ``scale`` (sx, sy)) rasterised to ``[H, W]`` bool
    (PIL's polygon fill, clipped to the image)."""
    from PIL import Image, ImageDraw

    h, w = image_size
    if len(hull) < 3:
        return np.zeros((h, w), dtype=bool)
    im = Image.new("1", (w, h), 0)
    ImageDraw.Draw(im).polygon([(float(x) * scale[0], float(y) * scale[1]) for x, y in hull], fill=1)
    return np.asarray(im, dtype=bool)


def _number_list(poly) -> bool:
    return isinstance(poly, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in poly
    )


def _decode(m, h: int, w: int, where: str) -> np.ndarray | None:
    """A COCO RLE (dict; ``counts`` a string, bytes or an uncompressed list) or polygons (list of flat xy lists)
    -> ``[h, w]`` bool; ``None`` when no polygon has the 3 points (6 numbers, an even count) a region needs: such
    annotations are dropped and counted, as detectron2's ``load_coco_json`` does. Non-numeric coordinates and
    malformed RLEs are a :class:`UserError`."""
    from pycocotools import mask as mask_utils

    if isinstance(m, dict):
        rle = dict(m)
        size, counts = rle.get("size"), rle.get("counts")
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)) or not (
            isinstance(counts, (str, bytes)) or (isinstance(counts, list) and _number_list(counts))
        ):
            raise UserError(
                f"{where}: a COCO RLE needs size [height, width] and counts (a string or a list of "
                f"integers), got keys {sorted(rle)}; re-export the masks with pycocotools' mask.encode"
            )
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(rle, *size)
        elif isinstance(counts, str):
            rle["counts"] = counts.encode()
        return mask_utils.decode(rle).astype(bool)
    if isinstance(m, list):
        for j, poly in enumerate(m):
            if not _number_list(poly):
                raise UserError(
                    f"{where}: polygon {j} must be a flat list of numeric x, y coordinates, got "
                    f"{str(poly)[:60]}; fix the segmentation (COCO polygons are [[x1, y1, x2, y2, ...]])"
                )
        polys = [[float(v) for v in poly] for poly in m if len(poly) >= 6 and len(poly) % 2 == 0]
        if not polys:
            return None
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
    raise UserError(f"{where}: the mask must be COCO RLE (dict) or polygons (list), got {type(m).__name__}")


def load_nuinsseg(path: str | Path) -> dict[str, list[dict]]:
    """nuInsSeg masks -> records grouped by ``sample_data_token`` (the ``nuinsseg.json`` table) or by image file name
    (the COCO export of ``nuinsseg_converter.py``: ``images`` with ``file_name`` / ``height`` / ``width``,
    ``annotations`` with ``segmentation``, ``categories`` by name), each with its decoded ``mask`` bool and its
    detection-class index (records of other classes are dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"nuInsSeg table {path} not found (nuinsseg.json from the nuInsSeg devkit, placed in "
            "v1.0-trainval/ or v1.0-mini/, or the COCO json its converter writes)"
        )
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e}); re-download nuinsseg.json") from None
    out: dict[str, list[dict]] = {}
    degenerate: list[str] = []

    def add(key, name, mask, token, where):
        if mask is None:
            degenerate.append(where)
            return
        name = _NUSCENES_MAP.get(name, name)
        if name in NUSCENES_CLASSES:
            out.setdefault(key, []).append({"label": NUSCENES_CLASSES.index(name), "mask": mask, "token": token})

    if isinstance(records, dict) and "annotations" in records and "images" in records:  # the COCO export
        cats = {c["id"]: c["name"] for c in records.get("categories", [])}
        for j, im in enumerate(records["images"]):
            if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
                raise UserError(
                    f"{path}: images[{j}] lacks its id or file_name (COCO format: every image has id, "
                    "file_name, height, width); re-run nuinsseg_converter.py"
                )
        images = {im["id"]: im for im in records["images"]}
        for i, ann in enumerate(records["annotations"]):
            im = images.get(ann.get("image_id"))
            if im is None or "segmentation" not in ann:
                raise UserError(f"{path}: annotation {i} lacks a known image_id or its segmentation (COCO format)")
            mask = _decode(ann["segmentation"], im.get("height", 900), im.get("width", 1600), f"{path}: annotation {i}")
            add(
                Path(im["file_name"]).name, cats.get(ann.get("category_id"), ""), mask, ann.get("id"), f"annotation {i}"
            )
        _warn_degenerate(path, degenerate)
        return out
    if not isinstance(records, list):
        raise UserError(
            f"{path}: expected a JSON list of records (nuScenes table format) or a COCO dict with images "
            f"and annotations, got {type(records).__name__}"
        )
    for i, r in enumerate(records):
        missing = [k for k in ("sample_data_token", "category_name", "instance_mask") if k not in r]
        if missing:
            raise UserError(
                f"{path}: record {i} lacks {', '.join(missing)}; a nuInsSeg record has token, "
                "sample_data_token, category_name, bbox_corners, filename, instance_mask"
            )
        mask = _decode(r["instance_mask"], r.get("height", 900), r.get("width", 1600), f"{path}: record {i}")
        add(r["sample_data_token"], r["category_name"], mask, r.get("token"), f"record {i}")
    _warn_degenerate(path, degenerate)
    return out


def _warn_degenerate(path: Path, where: list[str]) -> None:
    if where:
        warnings.warn(
            f"{path}: skipped {len(where)} mask(s) without a polygon of at least 3 points (e.g. "
            f"{', '.join(where[:3])})",
            stacklevel=3,
        )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)

    def area(x):
        return (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])

    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


class InstanceSegImages(Dataset):
    """Prepared camera images (PLA done): item -> ``(image [3, H, W], target dict)`` (module docstring)."""

    def __init__(self, items: list[dict], image_size: tuple[int, int], num_points: int, max_nodes: int):
        self.items, self.image_size, self.num_points, self.max_nodes = items, tuple(image_size), num_points, max_nodes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        it = self.items[i]
        h, w = self.image_size
        with Image.open(it["image_path"]) as im:
            im = im.convert("RGB")
            ow, oh = im.size
            img = torch.from_numpy(np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.float32).copy())
        sx, sy = w / ow, h / oh
        scale = torch.tensor([sx, sy])
        g = len(it["labels"])
        boxes = torch.from_numpy(it["boxes"]).float() * torch.tensor([sx, sy, sx, sy])
        coords = torch.from_numpy(it["point_coords"][:, : self.num_points]).float() * scale
        plabels = torch.from_numpy(it["point_labels"][:, : self.num_points]).long()
        outside = (coords[..., 0] < 0) | (coords[..., 0] >= w) | (coords[..., 1] < 0) | (coords[..., 1] >= h)
        plabels[outside] = -1
        n = 2 * self.max_nodes
        xyz, uv, valid = torch.zeros(g, n, 3), torch.zeros(g, n, 2), torch.zeros(g, n, dtype=torch.bool)
        for j, (rin, rout) in enumerate(zip(it["in_rows"], it["out_rows"])):
            rows = np.concatenate([rin[: self.max_nodes], rout[: self.max_nodes]])
            k = len(rows)
            xyz[j, :k] = torch.from_numpy(rows[:, :3])
            uv[j, :k] = torch.from_numpy(rows[:, 4:6]) * scale
            valid[j, :k] = True
        if not g:
            masks = torch.zeros(0, h, w, dtype=torch.bool)
        elif "hulls" in it:  # box-hull masks, rasterised at the training size
            masks = torch.from_numpy(np.stack([box_hull_mask(hl, (h, w), (sx, sy)) for hl in it["hulls"]]))
        else:  # nuInsSeg masks at the original size
            masks = torch.from_numpy(it["masks"])[:, None].float()
            masks = torch.nn.functional.interpolate(masks, size=(h, w), mode="nearest")[:, 0] > 0.5
        return img.permute(2, 0, 1).contiguous(), {
            "boxes": boxes,
            "labels": torch.from_numpy(it["labels"]).long(),
            "point_coords": coords,
            "point_labels": plabels,
            "node_xyz": xyz,
            "node_uv": uv,
            "node_valid": valid,
            "masks": masks,
            "mask_source": it["mask_source"],
            "camera": it["camera"],
        }


def collate(batch):
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]


class MultiScaleCollate:
    """detectron2's ``ResizeShortestEdge`` for training, per batch: a short side drawn from ``scales`` (the long side
    capped at ``max_size``), images resized bilinearly and zero-padded to multiples of 32; boxes, PLA points and GCR
    node pixels scaled with them (masks: nearest)."""

    def __init__(self, scales, max_size: int = 1333, seed: int = 0):
        self.scales, self.max_size = list(scales), max_size
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch):
        import torch.nn.functional as F

        images, targets = collate(batch)
        targets = [dict(t) for t in targets]  # new dicts: the dataset's items stay as they are
        h, w = images.shape[-2:]
        s = float(self.rng.choice(self.scales)) / min(h, w)
        s = min(s, self.max_size / max(h, w))
        nh, nw = round(h * s), round(w * s)
        ph, pw = -(-nh // 32) * 32, -(-nw // 32) * 32
        out = F.pad(
            F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False), (0, pw - nw, 0, ph - nh)
        )
        sx, sy = nw / w, nh / h
        for t in targets:
            t["boxes"] = t["boxes"] * torch.tensor([sx, sy, sx, sy])
            t["point_coords"] = t["point_coords"] * torch.tensor([sx, sy])
            t["node_uv"] = t["node_uv"] * torch.tensor([sx, sy])
            m = t["masks"][:, None].float()
            m = F.interpolate(m, size=(nh, nw), mode="nearest") if len(m) else m.new_zeros(0, 1, nh, nw)
            t["masks"] = F.pad(m, (0, pw - nw, 0, ph - nh))[:, 0] > 0.5
        return out, targets


def _check_image_size(image_size) -> list[int]:
    if len(image_size) != 2 or any(int(v) != v or v <= 0 or v % 32 for v in image_size):
        raise UserError(f"image_size must be (H, W), multiples of 32, got {list(image_size)}")
    return [int(v) for v in image_size]


class NuScenesInstanceSegDataModule(LightningDataModule):
    """nuScenes cameras with LWSIS weak labels (module docstring).

    Args:
        root: folder with the info pickle, LiDAR and camera files.
        info: the info pickle's file name (or path) in ``root``; ``None``: the only ``*.pkl`` in ``root``.
        nuinsseg: path of ``nuinsseg.json``; ``None``: ``root/v1.0-*/nuinsseg.json`` when it exists, else box hulls.
        train_frames / val_frames: frame indices of the info's ``data_list`` (``None``: all; the demo has one frame
            and trains and evaluates on the same six images, an overfitting check, said so in its config).
        cameras: camera names to use. image_size: (H, W), multiples of 32; ``None`` follows the model attached to the
            trainer (``data_config()``: LWSIS's ``img_size``), a value set here must equal it.
        num_points: PLA points per instance fed to the loss (20); pla_points: points stored per instance (K = 100);
        pla_mode: "window" (occlusion filter) | "simple"; max_nodes: in / out LiDAR nodes per instance (100).
        min_box_px: GT boxes smaller than this (px, at ``image_size``) on either side are dropped.
        repeat: the training set is repeated this many times per epoch (tiny data); batch_size, num_workers.
        train_scales: multi-scale training, short sides drawn per batch (the paper: 640-800), long side capped at
            ``max_size`` (1333), padded to multiples of 32 (:class:`MultiScaleCollate`); ``None``: ``image_size``.
        kitti_roots: KITTI folders (:func:`kitti_frames`) whose frames add their image_2 camera image, numbered
            after the nuScenes frames (``train_frames`` / ``val_frames`` count them), KITTI types mapped to the
            nuScenes classes (:data:`KITTI_TO_NUSCENES`), box-hull evaluation masks; resized to ``image_size`` like
            the nuScenes images (KITTI's 1242x375 is wider: its aspect changes). ``None``: nuScenes only.
    """

    def __init__(
        self,
        root: str,
        info: str | None = None,
        nuinsseg: str | None = None,
        train_frames: list[int] | None = None,
        val_frames: list[int] | None = None,
        cameras: list[str] = CAMERAS,
        image_size: list[int] | None = None,
        num_points: int = 20,
        pla_points: int = 100,
        pla_mode: str = "window",
        max_nodes: int = 100,
        min_box_px: float = 2.0,
        repeat: int = 1,
        batch_size: int = 2,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        train_scales: list[int] | None = None,
        max_size: int = 1333,
        kitti_roots: list[str] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        for name in ("num_points", "pla_points", "max_nodes", "repeat", "batch_size"):
            check_positive(name, getattr(self.hparams, name))
        if num_points > pla_points:
            raise UserError(f"num_points ({num_points}) exceeds the stored pla_points ({pla_points}); lower num_points")
        self.image_size = None if image_size is None else _check_image_size(image_size)
        bad = [c for c in cameras if c not in CAMERAS]
        if bad:
            raise UserError(f"unknown camera(s) {bad}; nuScenes cameras are {list(CAMERAS)}")
        self.num_classes = len(NUSCENES_CLASSES)
        self.classes = NUSCENES_CLASSES
        self._items: list[dict] | None = None
        self._frames: dict[str, list[int]] = {}

    # ---------------------------------------------------------------------------------------------- reading
    def _root(self) -> Path:
        root = Path(self.hparams.root).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(
                f"data root {root} not found; expected an mmdet3d v2 info pickle with the LiDAR "
                "and camera files beside it or under samples/<SENSOR>/"
            )
        return root

    def _info_path(self) -> Path:
        root = self._root()
        if self.hparams.info:
            p = Path(self.hparams.info)
            return p if p.is_absolute() else root / p
        pkls = sorted(root.glob("*.pkl"))
        if len(pkls) != 1:
            raise DataNotFoundError(f"{root}: found {len(pkls)} *.pkl files; name the info pickle with info=")
        return pkls[0]

    def _find(self, name: str, sensor: str) -> Path:
        root = self._root()
        name = Path(name).name
        for p in (root / "samples" / sensor / name, root / name):
            if p.is_file():
                return p
        raise DataNotFoundError(f"{name} not found under {root}/samples/{sensor}/ or {root}/")

    def _nuinsseg_path(self) -> Path | None:
        if self.hparams.nuinsseg:
            return Path(self.hparams.nuinsseg)
        found = sorted(self._root().glob("v1.0-*/nuinsseg.json"))
        return found[0] if found else None

    def prepare_items(self) -> list[dict]:
        """PLA + GT per camera image, once per data module (the cache)."""
        if self._items is not None:
            return self._items
        hp = self.hparams
        info_path = self._info_path()
        info = load_info_pickle(info_path)
        cats = info.get("metainfo", {}).get("categories", {n: i for i, n in enumerate(NUSCENES_CLASSES)})
        names = {v: k for k, v in cats.items()}
        ns_path = self._nuinsseg_path()
        ns = load_nuinsseg(ns_path) if ns_path else None
        items = []
        for fi, frame in enumerate(info["data_list"]):
            points = read_points(self._find(info_lidar_path(frame, info_path, fi), "LIDAR_TOP"), 5)
            inst = [x for x in frame.get("instances", []) if names.get(x.get("bbox_label_3d", -1)) in NUSCENES_CLASSES]
            boxes3d = np.array([x["bbox_3d"] for x in inst], dtype=np.float32).reshape(-1, 7)
            labels3d = np.array([NUSCENES_CLASSES.index(names[x["bbox_label_3d"]]) for x in inst], dtype=np.int64)
            for cam in hp.cameras:
                c = frame["images"].get(cam)
                if c is None:
                    continue
                k4 = np.eye(4)
                k4[:3, :3] = np.asarray(c["cam2img"], dtype=np.float64)
                lidar2img = k4 @ np.asarray(c["lidar2cam"], dtype=np.float64)
                token = c.get("sample_data_token", f"{fi}-{cam}")
                img_path = self._find(c["img_path"], cam)
                recs = (ns.get(token) or ns.get(Path(c["img_path"]).name, [])) if ns is not None else None
                items.append(self._image_item(points, lidar2img, boxes3d, labels3d, img_path, token, fi, cam, recs))
        fi = len(info["data_list"])  # KITTI frames are numbered after the nuScenes ones
        for kitti_root in hp.kitti_roots or ():
            for rec in kitti_frames(kitti_root):
                keep = [j for j, n in enumerate(rec["names"]) if n in KITTI_TO_NUSCENES]
                labels3d = np.array(
                    [NUSCENES_CLASSES.index(KITTI_TO_NUSCENES[rec["names"][j]]) for j in keep], np.int64
                )
                token = f"kitti-{Path(kitti_root).name}-{rec['frame_id']}"
                items.append(
                    self._image_item(
                        read_points(rec["points_path"], 4),
                        rec["lidar2img"][0],
                        rec["boxes"][keep].reshape(-1, 7),
                        labels3d,
                        Path(rec["images"][0]),
                        token,
                        fi,
                        "CAM2",
                        None,
                    )
                )
                fi += 1
        self._items = items
        return items

    def _image_item(self, points, lidar2img, boxes3d, labels3d, img_path, token, fi, cam, ns_records) -> dict:
        """PLA + GT of one camera image (``ns_records``: its nuInsSeg records, ``None`` without nuInsSeg)."""
        from PIL import Image

        from zoo.nn.boxes3d import box_corners

        hp = self.hparams
        image_size = self._follow_model()
        with Image.open(img_path) as im:
            ow, oh = im.size
        cache_dir = Path(hp.cache_dir) if hp.cache_dir else None
        cached = path_inside(cache_dir, f"pla-{safe_file_name(token)}.pt") if cache_dir else None
        if cached is not None and cached.is_file():
            pla = [
                {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in d.items()}
                for d in torch.load(cached, weights_only=True)
            ]
        else:
            pla = point_labels.point_label_assignment(
                points,
                lidar2img,
                boxes3d,
                (oh, ow),
                num_points=hp.pla_points,
                mode=hp.pla_mode,
                max_rows=hp.max_nodes,
                seed=hp.seed + fi,
            )
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.save(
                    [{k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in d.items()} for d in pla],
                    cached,
                )
        corners = box_corners(torch.from_numpy(boxes3d).double()).numpy().reshape(-1, 3)
        cuv, cdep = project(corners, lidar2img)
        cuv, cdep = cuv.reshape(-1, 8, 2), cdep.reshape(-1, 8)
        sx, sy = image_size[1] / ow, image_size[0] / oh
        keep = [
            d
            for d in pla
            if min((d["box2d"][2] - d["box2d"][0]) * sx, (d["box2d"][3] - d["box2d"][1]) * sy) >= hp.min_box_px
        ]
        if ns_records is not None:
            item = self._nuinsseg_item(ns_records, keep, labels3d, hp.pla_points)
        else:
            item = {
                "boxes": np.stack([d["box2d"] for d in keep]) if keep else np.zeros((0, 4), np.float32),
                "labels": labels3d[[d["index"] for d in keep]],
                "hulls": [box_hull(cuv[d["index"]], cdep[d["index"]]) for d in keep],
                "point_coords": np.stack([d["point_coords"] for d in keep])
                if keep
                else np.zeros((0, hp.pla_points, 2), np.float32),
                "point_labels": np.stack([d["point_labels"] for d in keep])
                if keep
                else np.zeros((0, hp.pla_points), np.int64),
                "in_rows": [d["in_rows"] for d in keep],
                "out_rows": [d["out_rows"] for d in keep],
                "mask_source": "box-hull",
            }
        item.update({"image_path": img_path, "camera": cam, "frame": fi})
        return item

    @staticmethod
    def _nuinsseg_item(records, pla, labels3d, k):
        from pycocotools import mask as mask_utils

        boxes, labels, masks, coords, plabels, rin, rout = [], [], [], [], [], [], []
        pboxes = np.stack([d["box2d"] for d in pla]) if pla else np.zeros((0, 4))
        plab = labels3d[[d["index"] for d in pla]] if pla else np.zeros(0, np.int64)
        used = set()
        for r in records:
            if not r["mask"].any():
                continue  # the converter skips empty masks
            x, y, w, h = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(r["mask"].astype(np.uint8))))
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
            j = -1
            if len(pboxes):
                iou = _iou(box[None], pboxes)[0]
                iou[(plab != r["label"]) | np.isin(np.arange(len(iou)), list(used))] = 0
                j = int(iou.argmax()) if iou.max() >= 0.3 else -1
            boxes.append(box)
            labels.append(r["label"])
            masks.append(r["mask"])
            if j >= 0:
                used.add(j)
                d = pla[j]
                coords.append(d["point_coords"])
                plabels.append(d["point_labels"])
                rin.append(d["in_rows"])
                rout.append(d["out_rows"])
            else:
                coords.append(np.zeros((k, 2), np.float32))
                plabels.append(np.full(k, -1, np.int64))
                rin.append(np.zeros((0, 6), np.float32))
                rout.append(np.zeros((0, 6), np.float32))
        g = len(boxes)
        return {
            "boxes": np.stack(boxes) if g else np.zeros((0, 4), np.float32),
            "labels": np.array(labels, dtype=np.int64),
            "masks": np.stack(masks) if g else np.zeros((0, 900, 1600), bool),
            "point_coords": np.stack(coords) if g else np.zeros((0, k, 2), np.float32),
            "point_labels": np.stack(plabels) if g else np.zeros((0, k), np.int64),
            "in_rows": rin,
            "out_rows": rout,
            "mask_source": "nuinsseg",
        }

    # ---------------------------------------------------------------------------------------------- splits
    def _subset(self, frames) -> list[dict]:
        items = self.prepare_items()
        return items if frames is None else [it for it in items if it["frame"] in set(frames)]

    def dataset(self, split: str) -> InstanceSegImages:
        hp = self.hparams
        items = self._subset(hp.train_frames if split == "train" else hp.val_frames)
        if split == "train":
            items = [it for it in items if len(it["labels"])] * hp.repeat
        return InstanceSegImages(items, self._follow_model(), hp.num_points, hp.max_nodes)

    def _follow_model(self) -> list[int]:
        """``image_size``: the one set here, else the attached model's (``zoo.sizes.follow_model``)."""
        model = model_data_config(self).get("image_size")
        self.image_size = _check_image_size(follow_model(self, "image_size", self.image_size, model))
        return self.image_size

    def setup(self, stage: str | None = None) -> None:
        self.prepare_items()
        self._follow_model()

    def _loader(self, split, shuffle):
        ds = self.dataset(split)
        if len(ds) == 0:
            raise UserError(f"the {split} split has no images with annotated objects; check train_frames/cameras")
        g = torch.Generator().manual_seed(self.hparams.seed)
        fn = collate
        if split == "train" and self.hparams.train_scales:
            fn = MultiScaleCollate(self.hparams.train_scales, self.hparams.max_size, self.hparams.seed)
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            collate_fn=fn,
            num_workers=self.hparams.num_workers,
            generator=g,
        )

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("val", False)
