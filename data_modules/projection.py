"""Camera geometry of LiDAR frames, method-independent: LiDAR points through a ``lidar2img`` matrix
(``K @ lidar2cam``, mmdet3d's convention) to pixels and depth, and a sanity check that a calibration belongs to the
image size it is used with. Used by the PLA label assignment (:mod:`data_modules.point_labels`) and the LWSIS
instance-segmentation data (:mod:`data_modules.instance_seg`).
"""

from __future__ import annotations

import numpy as np

from zoo.errors import UserError

__all__ = ["check_calibration", "project"]


def check_calibration(lidar2img: np.ndarray, image_size: tuple[int, int], source: str = "calibration") -> None:
    """The principal point of ``lidar2img``'s intrinsics must lie inside the image ``(H, W)``: a calibration made
    for another resolution (a resized image with the original ``cam2img``) is an error, not a silent misprojection."""
    m = np.asarray(lidar2img, dtype=np.float64)
    if m.shape not in ((4, 4), (3, 4)):
        raise UserError(f"{source}: lidar2img must be 3x4 or 4x4, got shape {m.shape}")
    # K = M[:3,:3] R^T with R orthonormal: the principal point is the projection of the camera axis
    kk = m[:3, :3] @ m[:3, :3].T  # = K K^T
    cx, cy = kk[0, 2] / kk[2, 2], kk[1, 2] / kk[2, 2]
    h, w = image_size
    if not (0 < cx < w and 0 < cy < h):
        raise UserError(
            f"{source}: the calibration's principal point ({cx:.0f}, {cy:.0f}) lies outside the "
            f"{w}x{h} image; the calibration belongs to another image size: scale cam2img by the resize "
            f"factor (or pass the original image size)"
        )


def project(points: np.ndarray, lidar2img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LiDAR ``points [N, >=3]`` -> (pixels ``[N, 2]``, depth ``[N]``) through a 3×4 / 4×4 ``lidar2img`` (float64;
    points behind the camera get depth <= 0 and meaningless pixels)."""
    m = np.eye(4)
    lid = np.asarray(lidar2img, dtype=np.float64)
    m[: lid.shape[0], : lid.shape[1]] = lid
    hom = np.asarray(points, dtype=np.float64)[:, :3] @ m[:3, :3].T + m[:3, 3]
    depth = hom[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = hom[:, :2] / depth[:, None]
    return uv, depth
