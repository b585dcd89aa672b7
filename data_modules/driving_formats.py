"""Readers for the published driving-dataset formats (LiDAR point files, KITTI calib / label text, mmdet3d infos).

- Point files: raw little-endian float32 rows. nuScenes ``samples/LIDAR_TOP/*.pcd.bin``: 5 values
  ``(x, y, z, intensity 0..255, ring)``; KITTI ``velodyne/*.bin``: 4 values ``(x, y, z, reflectance 0..1)``; Waymo
  in mmdet3d's KITTI format ``training/velodyne/*.bin``: 6 values ``(x, y, z, intensity, elongation, t)``.
- KITTI ``calib/*.txt``: ``key: floats`` lines (P0..P3 3×4, R0_rect 3×3, Tr_velo_to_cam 3×4, Tr_imu_to_velo 3×4).
- KITTI ``label_2/*.txt``: 15 fields per object (type, truncated, occluded, alpha, 2D bbox, h w l, bottom-centre
  location in the rectified camera-0 frame, rotation_y); boxes go to the LiDAR frame with
  :func:`camera_boxes_to_lidar` (mmdet3d >= 1.0 ``Box3DMode.CAM -> LIDAR``: centre by ``inv(R0_rect @ Tr_velo_to_cam)``,
  ``(dx, dy, dz) = (l, w, h)``, ``yaw = -rotation_y - π/2``) and are lifted from the bottom to the gravity centre.
- mmdet3d "v2" info pickles (``metainfo`` + ``data_list``; mmdet3d >= 1.1, ``tools/dataset_converters``): read with
  :class:`InfoUnpickler`, a restricted unpickler that admits numpy arrays / scalars / dtypes, ``_codecs.encode``
  and builtin containers only (the pattern of ``data_modules.graphs.PlanetoidUnpickler``) and refuses every other
  global, so a crafted pickle cannot run code.

All readers raise :class:`zoo.errors.UserError` (one line: the file, the problem, the fix) on malformed input.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np

from zoo.errors import DataNotFoundError, UserError
from zoo.safe_pickle import RestrictedUnpickler, builtin_globals, numpy_globals

__all__ = [
    "KITTI_CLASSES",
    "NUSCENES_CAMERAS",
    "POINT_WIDTH",
    "WAYMO_CLASSES",
    "InfoUnpickler",
    "camera_boxes_to_lidar",
    "kitti_label_boxes",
    "kitti_lidar2cam",
    "load_info_pickle",
    "read_kitti_calib",
    "read_kitti_label",
    "read_points",
    "wrap_angle",
]

#: float32 values per point of each dataset's LiDAR file
POINT_WIDTH = {"nuscenes": 5, "kitti": 4, "waymo": 6}
#: mmdet3d's class tuples for the ``bbox_label_3d`` indices of its KITTI / Waymo infos (nuScenes infos carry
#: their own ``metainfo.categories``)
KITTI_CLASSES = ("Pedestrian", "Cyclist", "Car", "Van", "Truck", "Person_sitting", "Tram", "Misc")
WAYMO_CLASSES = ("Car", "Pedestrian", "Cyclist")
#: the six nuScenes cameras in mmdet3d's order
NUSCENES_CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
KITTI_CALIB_REQUIRED = ("P2", "R0_rect", "Tr_velo_to_cam")
_CALIB_SHAPES = {
    "P0": (3, 4),
    "P1": (3, 4),
    "P2": (3, 4),
    "P3": (3, 4),
    "R0_rect": (3, 3),
    "Tr_velo_to_cam": (3, 4),
    "Tr_imu_to_velo": (3, 4),
}


# ----------------------------------------------------------------------------------------------------- points
def read_points(path: str | Path, width: int) -> np.ndarray:
    """Raw float32 point file -> ``[N, width]`` float32. Refuses a missing file, a size that is not a multiple of
    ``4 * width`` bytes (wrong dataset / truncated download) and an empty cloud."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"point file {path} not found")
    size = path.stat().st_size
    row = 4 * width
    if size % row:
        raise UserError(
            f"{path}: {size} bytes is not a multiple of {row} ({width} float32 values per point); "
            f"the file is truncated or belongs to another dataset (nuScenes 5, KITTI 4, Waymo 6 values)"
        )
    if size == 0:
        raise UserError(f"{path}: empty point cloud (0 points); re-extract the file or drop the frame from the split")
    return np.fromfile(path, dtype="<f4").reshape(-1, width).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------- info pickles
class InfoUnpickler(RestrictedUnpickler):
    """Unpickler for mmdet3d / OpenPCDet info files: only numpy arrays, scalars and dtypes, ``_codecs.encode``
    (protocol-2 bytes) and builtin containers may be referenced; any other global is refused."""

    refusal = (
        "an mmdet3d info file holds only dicts, lists and numpy values. The file is not an info pickle (or was "
        "tampered with); regenerate it with mmdet3d's tools/create_data.py"
    )
    error = UserError

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file, source)
        import _codecs

        self.allowed = {**numpy_globals(), **builtin_globals(), ("_codecs", "encode"): _codecs.encode}


def load_info_pickle(path: str | Path) -> dict:
    """An mmdet3d v2 info file (``{"metainfo": ..., "data_list": [...]}``) read with :class:`InfoUnpickler`."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"info file {path} not found")
    with open(path, "rb") as f:
        try:
            obj = InfoUnpickler(io.BufferedReader(f), source=str(path)).load()
        except UserError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise UserError(f"{path}: not a readable info pickle ({type(e).__name__}: {e}); regenerate it") from None
    if isinstance(obj, dict) and "infos" in obj and "data_list" not in obj:
        raise UserError(
            f"{path}: an mmdet3d < 1.1 info file ('infos' list); convert it to the v2 format with "
            f"mmdet3d's tools/dataset_converters/update_infos_to_v2.py"
        )
    if not isinstance(obj, dict) or not isinstance(obj.get("data_list"), list):
        raise UserError(f"{path}: expected an mmdet3d v2 info dict with a 'data_list' list, got {type(obj).__name__}")
    return obj


# ----------------------------------------------------------------------------------------------------- KITTI
def read_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    """KITTI object ``calib/NNNNNN.txt`` -> ``{"P0".."P3": [3, 4], "R0_rect": [3, 3], "Tr_velo_to_cam": [3, 4],
    "Tr_imu_to_velo": [3, 4]}`` (float64); P2, R0_rect and Tr_velo_to_cam are required."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"calibration file {path} not found (KITTI layout: training/calib/NNNNNN.txt)")
    calib = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, values = line.partition(":")
        key = key.strip()
        if not sep:
            raise UserError(f"{path}:{lineno}: expected 'KEY: floats', got {line[:40]!r}")
        try:
            arr = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            raise UserError(f"{path}:{lineno}: non-numeric value in {key}") from None
        shape = _CALIB_SHAPES.get(key)
        if shape is not None:
            if arr.size != shape[0] * shape[1]:
                raise UserError(f"{path}:{lineno}: {key} has {arr.size} values, expected {shape[0] * shape[1]}")
            arr = arr.reshape(shape)
        calib[key] = arr
    missing = [k for k in KITTI_CALIB_REQUIRED if k not in calib]
    if missing:
        raise UserError(
            f"{path}: calibration lacks {', '.join(missing)}; a KITTI object calib file has P0-P3, "
            f"R0_rect, Tr_velo_to_cam and Tr_imu_to_velo lines (re-download data_object_calib.zip)"
        )
    return calib


def read_kitti_label(path: str | Path) -> list[dict]:
    """KITTI ``label_2/NNNNNN.txt`` -> one dict per object: ``type``, ``truncated``, ``occluded``, ``alpha``,
    ``bbox`` [4], ``dimensions`` (h, w, l), ``location`` (x, y, z bottom centre, rectified camera 0), ``rotation_y``
    and ``score`` (results files only)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"label file {path} not found (KITTI layout: training/label_2/NNNNNN.txt)")
    objects = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) not in (15, 16):
            raise UserError(f"{path}:{lineno}: {len(f)} fields, a KITTI label line has 15 (16 with a score)")
        try:
            v = [float(x) for x in f[1:]]
        except ValueError:
            raise UserError(f"{path}:{lineno}: non-numeric field in {line[:60]!r}") from None
        objects.append(
            {
                "type": f[0],
                "truncated": v[0],
                "occluded": int(v[1]),
                "alpha": v[2],
                "bbox": v[3:7],
                "dimensions": v[7:10],
                "location": v[10:13],
                "rotation_y": v[13],
                "score": v[14] if len(v) == 15 else None,
            }
        )
    return objects


def _pad4(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def kitti_lidar2cam(calib: dict[str, np.ndarray]) -> np.ndarray:
    """``R0_rect @ Tr_velo_to_cam`` as 4×4: Velodyne -> rectified camera 0 (mmdet3d's ``lidar2cam``)."""
    return _pad4(calib["R0_rect"]) @ _pad4(calib["Tr_velo_to_cam"])


def kitti_lidar2img(calib: dict[str, np.ndarray], camera: str = "P2") -> np.ndarray:
    """``P2 @ R0_rect @ Tr_velo_to_cam`` as 4×4: Velodyne -> image_2 pixels (times depth)."""
    return _pad4(calib[camera]) @ kitti_lidar2cam(calib)


def pad4(m) -> np.ndarray:
    """A 3×3 / 3×4 matrix padded to 4×4 with the identity."""
    return _pad4(np.asarray(m, dtype=np.float64))


def camera_boxes_to_lidar(boxes_cam: np.ndarray, lidar2cam: np.ndarray) -> np.ndarray:
    """Camera-frame boxes ``[M, 7] (x, y, z, l, h, w, ry)`` with ``(x, y, z)`` the bottom centre (KITTI labels,
    mmdet3d ``CameraInstance3DBoxes``) -> LiDAR boxes ``[M, 7] (x, y, z, dx=l, dy=w, dz=h, yaw)`` with z at the
    gravity centre and ``yaw = -ry - π/2`` wrapped to [-π, π)."""
    boxes_cam = np.asarray(boxes_cam, dtype=np.float64).reshape(-1, 7)
    cam2lidar = np.linalg.inv(np.asarray(lidar2cam, dtype=np.float64))
    loc = np.concatenate([boxes_cam[:, :3], np.ones((len(boxes_cam), 1))], 1) @ cam2lidar.T
    length, h, w = boxes_cam[:, 3], boxes_cam[:, 4], boxes_cam[:, 5]
    yaw = -boxes_cam[:, 6] - np.pi / 2
    yaw = yaw - np.floor(yaw / (2 * np.pi) + 0.5) * 2 * np.pi
    return np.stack([loc[:, 0], loc[:, 1], loc[:, 2] + h / 2, length, w, h, yaw], 1)


def kitti_label_boxes(objects: list[dict], calib: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """KITTI label objects (DontCare dropped) -> (LiDAR boxes ``[M, 7]`` float32, type names)."""
    keep = [o for o in objects if o["type"] != "DontCare"]
    if not keep:
        return np.zeros((0, 7), np.float32), []
    cam = np.array(
        [[*o["location"], o["dimensions"][2], o["dimensions"][0], o["dimensions"][1], o["rotation_y"]] for o in keep]
    )
    return camera_boxes_to_lidar(cam, kitti_lidar2cam(calib)).astype(np.float32), [o["type"] for o in keep]


def wrap_angle(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a / (2 * math.pi) + 0.5) * 2 * math.pi
