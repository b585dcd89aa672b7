"""Point-cloud augmentations for LiDAR detection: each a callable ``frame -> frame`` that moves the boxes with the
points (frames as in :mod:`data_modules.driving`: ``points [N, 4]``, ``boxes [M, 7]``, ``labels [M]``, optional
``velocity [M, 2]``, which is flipped, rotated and scaled with the boxes, and optional ``lidar2img [V, 4, 4]``, updated
so that the moved points still project onto the same pixels; images themselves are not altered).

- :class:`GlobalFlip`: mirror about the x axis (``y -> -y``, ``yaw -> -yaw``) and/or the y axis (``x -> -x``,
  ``yaw -> π - yaw``), each with probability ``prob`` (OpenPCDet ``random_flip_along_x/y``).
- :class:`GlobalRotation`: rotate points and boxes about +z by ``θ ~ U(range)`` (``yaw += θ``).
- :class:`GlobalScaling`: scale xyz and box sizes by ``s ~ U(range)``.
- :class:`GlobalTranslation`: shift xyz by ``N(0, std)`` per axis.
- :class:`GTSampling`: paste objects from a ground-truth database (points inside each training box, stored once
  relative to the box centre by :func:`build_gt_database`) at their recorded positions, ``sample_groups[c]`` minus the
  frame's own count per class, rejecting candidates whose BEV box overlaps a box already in the frame or an earlier
  candidate (BEV IoU > 0), and removing the frame's points inside pasted boxes (mmdet3d ``DataBaseSampler``,
  OpenPCDet ``gt_sampling``).

Each augmentation owns a ``numpy.random.Generator`` (``seed``); :meth:`reseed` gives DataLoader workers distinct
streams (``DrivingDataModule`` does so in its ``worker_init_fn``). :func:`build_augmentation` turns a YAML spec
``{"type": "GlobalRotation", "range": [-0.785, 0.785]}`` into one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from zoo.errors import UserError
from zoo.files import path_inside, safe_file_name
from zoo.nn.boxes3d import bev_iou, limit_period, points_in_boxes

__all__ = [
    "Compose",
    "GTSampling",
    "GlobalFlip",
    "GlobalRotation",
    "GlobalScaling",
    "GlobalTranslation",
    "build_augmentation",
    "build_gt_database",
]


class _Augmentation:
    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)


def _copy(frame: dict) -> dict:
    return dict(frame)


def _move_cameras(frame: dict, transform: torch.Tensor) -> None:
    """Points moved by the 4×4 ``transform``: keep ``lidar2img`` mapping them to the same pixels."""
    if "lidar2img" in frame:
        m = frame["lidar2img"]
        frame["lidar2img"] = (m.double() @ torch.linalg.inv(transform.double())).to(m.dtype)


class GlobalFlip(_Augmentation):
    """Mirror the scene about the x axis (``"x"``: y -> -y) and/or the y axis (``"y"``: x -> -x)."""

    def __init__(self, axes: Sequence[str] = ("x", "y"), prob: float = 0.5, seed: int | None = None):
        super().__init__(seed)
        bad = [a for a in axes if a not in ("x", "y")]
        if bad or not 0 <= prob <= 1:
            raise UserError(f"GlobalFlip: axes must be 'x' / 'y' and prob in [0, 1], got axes={list(axes)} prob={prob}")
        self.axes, self.prob = tuple(axes), prob

    def apply(self, frame: dict, axis: str) -> dict:
        frame = _copy(frame)
        p, b = frame["points"].clone(), frame["boxes"].clone()
        if axis == "x":
            p[:, 1], b[:, 1], b[:, 6] = -p[:, 1], -b[:, 1], -b[:, 6]
        else:
            p[:, 0], b[:, 0], b[:, 6] = -p[:, 0], -b[:, 0], math.pi - b[:, 6]
        b[:, 6] = limit_period(b[:, 6])
        frame["points"], frame["boxes"] = p, b
        if "velocity" in frame:
            v = frame["velocity"].clone()
            v[:, 1 if axis == "x" else 0] *= -1
            frame["velocity"] = v
        _move_cameras(frame, torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0] if axis == "x" else [-1.0, 1.0, 1.0, 1.0])))
        return frame

    def __call__(self, frame: dict) -> dict:
        for axis in self.axes:
            if self.rng.random() < self.prob:
                frame = self.apply(frame, axis)
        return frame


def _check_range(name: str, rng: Sequence[float]) -> tuple[float, float]:
    if len(rng) != 2 or rng[0] > rng[1]:
        raise UserError(f"{name}: range must be [low, high] with low <= high, got {list(rng)}")
    return float(rng[0]), float(rng[1])


class GlobalRotation(_Augmentation):
    """Rotate about +z by ``θ ~ U(range)`` radians (default ±π/4, SSDA3D / CenterPoint)."""

    def __init__(self, range: Sequence[float] = (-math.pi / 4, math.pi / 4), seed: int | None = None):
        super().__init__(seed)
        self.range = _check_range("GlobalRotation", range)

    @staticmethod
    def apply(frame: dict, angle: float) -> dict:
        frame = _copy(frame)
        c, s = math.cos(angle), math.sin(angle)
        p, b = frame["points"].clone(), frame["boxes"].clone()
        x, y = p[:, 0].clone(), p[:, 1].clone()
        p[:, 0], p[:, 1] = c * x - s * y, s * x + c * y
        bx, by = b[:, 0].clone(), b[:, 1].clone()
        b[:, 0], b[:, 1] = c * bx - s * by, s * bx + c * by
        b[:, 6] = limit_period(b[:, 6] + angle)
        frame["points"], frame["boxes"] = p, b
        if "velocity" in frame:
            v = frame["velocity"]
            frame["velocity"] = torch.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], 1)
        rz = torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
        _move_cameras(frame, rz)
        return frame

    def __call__(self, frame: dict) -> dict:
        return self.apply(frame, float(self.rng.uniform(*self.range)))


class GlobalScaling(_Augmentation):
    """Scale coordinates and box sizes by ``s ~ U(range)`` (default [0.9, 1.1])."""

    def __init__(self, range: Sequence[float] = (0.9, 1.1), seed: int | None = None):
        super().__init__(seed)
        self.range = _check_range("GlobalScaling", range)
        if self.range[0] <= 0:
            raise UserError(f"GlobalScaling: scale factors must be > 0, got {list(range)}")

    @staticmethod
    def apply(frame: dict, scale: float) -> dict:
        frame = _copy(frame)
        p, b = frame["points"].clone(), frame["boxes"].clone()
        p[:, :3] *= scale
        b[:, :6] *= scale
        frame["points"], frame["boxes"] = p, b
        if "velocity" in frame:  # OpenPCDet global_scaling scales the velocity columns too
            frame["velocity"] = frame["velocity"] * scale
        _move_cameras(frame, torch.diag(torch.tensor([scale, scale, scale, 1.0], dtype=torch.float64)))
        return frame

    def __call__(self, frame: dict) -> dict:
        return self.apply(frame, float(self.rng.uniform(*self.range)))


class GlobalTranslation(_Augmentation):
    """Shift points and boxes by ``N(0, std²)`` per axis (CMT: std 0.5 m on x, y, z)."""

    def __init__(self, std: Sequence[float] = (0.5, 0.5, 0.5), seed: int | None = None):
        super().__init__(seed)
        if len(std) != 3 or min(std) < 0:
            raise UserError(f"GlobalTranslation: std must be 3 non-negative numbers, got {list(std)}")
        self.std = tuple(float(s) for s in std)

    def __call__(self, frame: dict) -> dict:
        t = torch.as_tensor(self.rng.normal(0.0, self.std), dtype=frame["points"].dtype)
        frame = _copy(frame)
        p, b = frame["points"].clone(), frame["boxes"].clone()
        p[:, :3] += t
        b[:, :3] += t.to(b.dtype)
        frame["points"], frame["boxes"] = p, b
        shift = torch.eye(4, dtype=torch.float64)
        shift[:3, 3] = t.double()
        _move_cameras(frame, shift)
        return frame


# ------------------------------------------------------------------------------------------------ GT sampling
def build_gt_database(
    frames: Iterable[dict],
    classes: Sequence[str],
    out_dir: str | Path | None = None,
    frame_ids: Sequence[str] | None = None,
) -> dict[str, list[dict]]:
    """Ground-truth database from (un-augmented) training frames: for every box, the points inside it, stored once
    relative to the box centre. -> ``{class name: [{"points": FloatTensor[K, C] (xyz relative to the centre),
    "num_points": K, "box": FloatTensor[7], "frame_id": str[, "velocity": FloatTensor[2]]}, ...]}``.

    With ``out_dir`` the points go to disk instead (one raw float32 file per object, ``<frame>_<class>_<i>.bin``, as
    mmdet3d's ``gt_database``; objects hold ``"path"`` instead of ``"points"`` and are read when pasted) and the index
    to ``out_dir/index.json``; a later call with the same frames and classes reads that index back instead of
    rebuilding (a different split or class list is refused: use another folder). ``frame_ids`` (the frames' ids in
    order) lets that check run before any frame is loaded; without it the frames are listed first."""
    if out_dir is not None:
        if frame_ids is None:
            frames = list(frames)
            frame_ids = [f["frame_id"] for f in frames]
        out_dir = Path(out_dir)
        key = {"classes": list(classes), "frames": list(frame_ids)}
        index = out_dir / "index.json"
        if index.is_file():
            saved = json.loads(index.read_text())
            if saved["key"] != key:
                raise UserError(
                    f"GT database {out_dir} was built from other frames or classes; delete it or point "
                    f"gt_database_dir at a new folder"
                )
            return {
                c: [
                    {
                        **o,
                        "box": torch.tensor(o["box"]),
                        "path": path_inside(out_dir, o["path"]),
                        **({"velocity": torch.tensor(o["velocity"])} if "velocity" in o else {}),
                    }
                    for o in objs
                ]
                for c, objs in saved["db"].items()
            }
        out_dir.mkdir(parents=True, exist_ok=True)
    db: dict[str, list[dict]] = {c: [] for c in classes}
    for frame in frames:
        boxes, points = frame["boxes"], frame["points"]
        if len(boxes) == 0:
            continue
        inside = points_in_boxes(points, boxes)  # [N, M]
        for m in range(len(boxes)):
            pts = points[inside[:, m]].clone()
            pts[:, :3] -= boxes[m, :3]
            cls = classes[int(frame["labels"][m])]
            obj = {
                "num_points": len(pts),
                "box": boxes[m].clone(),
                "frame_id": frame["frame_id"],
                "width": pts.shape[1],
            }
            if "velocity" in frame:
                obj["velocity"] = frame["velocity"][m].clone()
            if out_dir is None:
                obj["points"] = pts
            else:
                stem = safe_file_name(f"{frame['frame_id']}_{cls}_{m}")  # frame ids come from the info file
                obj["path"] = path_inside(out_dir, f"{stem}.bin")
                pts.numpy().astype("<f4").tofile(obj["path"])
            db[cls].append(obj)
    if out_dir is not None:

        def plain(o):
            return {
                **{k: v for k, v in o.items() if k not in ("box", "path", "velocity")},
                "box": o["box"].tolist(),
                "path": o["path"].name,
                **({"velocity": o["velocity"].tolist()} if "velocity" in o else {}),
            }

        tmp = out_dir / "index.json.tmp"
        tmp.write_text(json.dumps({"key": key, "db": {c: [plain(o) for o in objs] for c, objs in db.items()}}))
        tmp.replace(out_dir / "index.json")
    return db


def _object_points(obj: dict) -> torch.Tensor:
    if "points" in obj:
        return obj["points"]
    return torch.from_numpy(np.fromfile(obj["path"], dtype="<f4").reshape(-1, obj["width"]))


class GTSampling(_Augmentation):
    """Paste database objects into a frame without collisions (see the module docstring).

    ``database``: from :func:`build_gt_database`; ``classes``: the data module's class list (frame labels index
    it); ``sample_groups``: target number of objects per class name after pasting; ``min_points``: database objects
    with fewer points are never pasted (mmdet3d ``filter_by_min_points``, 5 in SSDA3D)."""

    def __init__(
        self,
        database: Mapping[str, list[dict]],
        classes: Sequence[str],
        sample_groups: Mapping[str, int],
        min_points: int = 5,
        seed: int | None = None,
    ):
        super().__init__(seed)
        unknown = [c for c in sample_groups if c not in classes]
        if unknown:
            raise UserError(
                f"GTSampling: sample_groups names {unknown}, which are not among the data module's "
                f"classes {list(classes)}; use those names"
            )
        self.classes = list(classes)
        self.sample_groups = {c: int(n) for c, n in sample_groups.items()}
        self.pool = {c: [o for o in database.get(c, []) if o["num_points"] >= min_points] for c in sample_groups}

    def __call__(self, frame: dict) -> dict:
        boxes, labels = frame["boxes"], frame["labels"]
        new_boxes, new_points, new_labels, new_vel = [], [], [], []
        placed = boxes
        for cls, target in self.sample_groups.items():
            ci = self.classes.index(cls)
            need = target - int((labels == ci).sum())
            pool = self.pool[cls]
            if need <= 0 or not pool:
                continue
            pick = self.rng.choice(len(pool), size=min(need, len(pool)), replace=False)
            cand = torch.stack([pool[i]["box"] for i in pick]).to(boxes.dtype)
            hit_existing = (bev_iou(cand, placed) > 0).any(1) if len(placed) else torch.zeros(len(cand), dtype=bool)
            self_iou = bev_iou(cand, cand)
            accepted: list[int] = []
            for k in range(len(cand)):
                if hit_existing[k] or any(self_iou[k, j] > 0 for j in accepted):
                    continue
                accepted.append(k)
            for k in accepted:
                obj = pool[pick[k]]
                pts = _object_points(obj).clone().to(frame["points"].dtype)
                pts[:, :3] += cand[k, :3].to(pts.dtype)
                new_points.append(pts)
                new_boxes.append(cand[k])
                new_labels.append(ci)
                new_vel.append(obj.get("velocity", torch.zeros(2)))
            if accepted:
                placed = torch.cat([placed, cand[accepted]])
        if not new_boxes:
            return frame
        added = torch.stack(new_boxes)
        points = frame["points"]
        points = points[~points_in_boxes(points, added).any(1)]
        frame = _copy(frame)
        frame["points"] = torch.cat([points, *new_points])
        frame["boxes"] = torch.cat([boxes, added])
        frame["labels"] = torch.cat([labels, torch.tensor(new_labels, dtype=labels.dtype)])
        if "velocity" in frame:
            frame["velocity"] = torch.cat([frame["velocity"], torch.stack(new_vel).to(frame["velocity"].dtype)])
        return frame


# -------------------------------------------------------------------------------------------------- composing
class Compose:
    """Apply augmentations in order; :meth:`reseed` gives each its own stream derived from one seed."""

    def __init__(self, transforms: Sequence[Callable[[dict], dict]]):
        self.transforms = list(transforms)

    def reseed(self, seed: int) -> None:
        seq = np.random.SeedSequence(seed)
        for t, child in zip(self.transforms, seq.spawn(len(self.transforms))):
            if hasattr(t, "reseed"):
                t.reseed(int(child.generate_state(1)[0]))

    def __call__(self, frame: dict) -> dict:
        for t in self.transforms:
            frame = t(frame)
        return frame

    def __len__(self) -> int:
        return len(self.transforms)


_TYPES = {
    "GlobalFlip": GlobalFlip,
    "GlobalRotation": GlobalRotation,
    "GlobalScaling": GlobalScaling,
    "GlobalTranslation": GlobalTranslation,
    "GTSampling": GTSampling,
}


def build_augmentation(
    spec: Mapping | Callable, gt_database: Callable[[], Mapping] | None = None, classes: Sequence[str] = ()
) -> Callable[[dict], dict]:
    """``{"type": NAME, **kwargs}`` (NAME one of GlobalFlip, GlobalRotation, GlobalScaling, GlobalTranslation,
    GTSampling) -> the augmentation; callables pass through. GTSampling gets ``database=gt_database()`` and
    ``classes``."""
    if callable(spec):
        return spec
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise UserError(f"augmentation spec {spec!r} must be a mapping with a 'type' key, one of {sorted(_TYPES)}")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    cls = _TYPES.get(spec["type"])
    if cls is None:
        raise UserError(f"unknown augmentation type {spec['type']!r}; choose one of {sorted(_TYPES)}")
    if cls is GTSampling:
        if gt_database is None:
            raise UserError(
                "GTSampling needs a ground-truth database built from a training split; "
                "use it through a DrivingDataModule's train_augmentations"
            )
        return GTSampling(database=gt_database(), classes=classes, **kwargs)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UserError(f"augmentation {spec['type']}: {e}") from None
