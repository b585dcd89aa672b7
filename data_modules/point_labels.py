"""PLA, Point Label Assignment (LWSIS, Li et al., AAAI 2023, arXiv 2212.03504, §3.2; the facts of
``Serenos/LWSIS:tools/utils.py`` ``remove_overlap`` / ``random_sample_balance`` and the nuInsSeg converter,
reimplemented): LiDAR points + calibration + 3D boxes + image size -> per-instance 2D point labels.

PLA is label generation, not part of the network or the loss: it runs once per camera image when
:class:`data_modules.instance_seg.NuScenesInstanceSegDataModule` is set up (as the release runs it offline in its
nuInsSeg converter), so it lives in the data layer; the camera geometry it uses is :mod:`data_modules.projection`.

One call of :func:`point_label_assignment` handles one camera image:

1. project the LiDAR points with ``lidar2img`` (4×4 = K · lidar2cam); keep depth > 1 m and 1 < u < W − 1,
   1 < v < H − 1; truncate the pixels to integers as released (``subpixel`` keeps them);
2. depth-guided occlusion filter (:func:`occlusion_filter`, ``mode="window"``; ``mode="simple"`` skips it):
   30×30 px windows (rows from 200 in steps of 5, columns in steps of 10) over the sparse depth image; in a window
   with (d_max − d_min)/d_min ≥ 0.25 the points with (d − d_min)/d_min < 0.25 are "near", the others "far", and
   the far points whose column lies within [min near column − 15, max near column + 15] are deleted (seen through a
   foreground object by the LiDAR-camera parallax); windows whose nearest point sits on the window's last row are
   skipped. As released, the points' integer pixels are rasterised into a depth image and the windows are visited
   in order, each on the depth image left by the ones before (``vectorised=True``: zoo's earlier form, every window
   on the unfiltered image, all at once);
3. per 3D box visible in the image (a corner in front of the camera and inside the image, nuScenes
   ``BoxVisibility.ANY``): 2D box = extent of the projected in-front corners clipped to the image; foreground =
   kept points inside the 3D box; background = kept points outside it whose projection lies inside the 2D box
   shrunk by a 1 px margin;
4. balanced sampling (:func:`balanced_sample`): K/2 fg + K/2 bg, without replacement when a set is large enough,
   with replacement otherwise; an empty set is filled with synthetic pixels (fg: uniform in a square of side
   min(w, h)/2 around the box centre; bg: a square of side min(w, h)/5 at the box's top-left corner) labelled like
   the set, as released (``ignore_synthetic``: −1, the official ``random_sample_balance2/3`` variants); shuffled.

Outputs per instance: ``point_coords [K, 2]`` (pixel x, y), ``point_labels [K]`` (1, 0, −1), ``in_rows`` /
``out_rows`` ``[≤ max_rows, 6]`` = (x, y, z, intensity, u, v) of the fg / bg LiDAR points (GCR's nodes), ``box2d``,
the box index. Thresholds are in pixels of the original 1600×900 nuScenes images: run PLA before any resize.
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.errors import UserError
from zoo.nn.boxes3d import box_corners, points_in_boxes

from .projection import check_calibration, project

__all__ = ["balanced_sample", "check_calibration", "occlusion_filter", "point_label_assignment", "project"]


def occlusion_filter(
    uv: np.ndarray,
    depth: np.ndarray,
    image_size: tuple[int, int],
    window: int = 30,
    row_start: int = 200,
    row_step: int = 5,
    col_step: int = 10,
    ratio: float = 0.25,
    margin: int = 15,
    vectorised: bool = False,
) -> np.ndarray:
    """Keep mask ``[N]`` of the depth-window occlusion filter (module docstring, step 2). ``uv [N, 2]`` pixels of
    points already inside the image, ``depth [N]`` metres (> 0). Default: the release's sequential pass
    (:func:`_occlusion_filter_sequential`); ``vectorised``: zoo's earlier all-windows-at-once form."""
    if not vectorised:
        return _occlusion_filter_sequential(uv, depth, image_size, window, row_start, row_step, col_step, ratio, margin)
    n = len(depth)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    h, w = image_size
    col = np.floor(uv[:, 0]).astype(np.int64)
    row = np.floor(uv[:, 1]).astype(np.int64)
    n_r = max((h - window - row_start) // row_step + 1, 0)
    n_c = max((w - window) // col_step + 1, 0)
    if n_r == 0 or n_c == 0:
        return keep
    # windows containing each point: row starts r0 with r0 <= row < r0 + window
    pts, wins, r0s = [], [], []
    kr, kc = -(-window // row_step), -(-window // col_step)
    a_hi = np.floor((row - row_start) / row_step).astype(np.int64)
    b_hi = np.floor(col / col_step).astype(np.int64)
    for da in range(kr):
        a = a_hi - da
        ok_a = (a >= 0) & (a < n_r) & (row >= row_start + a * row_step) & (row < row_start + a * row_step + window)
        for db in range(kc):
            b = b_hi - db
            ok = ok_a & (b >= 0) & (b < n_c) & (col >= b * col_step) & (col < b * col_step + window)
            idx = np.nonzero(ok)[0]
            pts.append(idx)
            wins.append(a[idx] * n_c + b[idx])
            r0s.append(row_start + a[idx] * row_step)
    p, win, r0 = np.concatenate(pts), np.concatenate(wins), np.concatenate(r0s)
    if len(p) == 0:
        return keep
    nw = n_r * n_c
    d = depth[p]
    dmin = np.full(nw, np.inf)
    np.minimum.at(dmin, win, d)
    dmax = np.full(nw, -np.inf)
    np.maximum.at(dmax, win, d)
    # the window's nearest point on its last row -> skip the window
    at_min = d == dmin[win]
    last_row = np.zeros(nw, dtype=bool)
    np.logical_or.at(last_row, win[at_min], (row[p] == r0 + window - 1)[at_min])
    with np.errstate(divide="ignore", invalid="ignore"):  # empty windows: inf / inf
        active = ((dmax - dmin) / dmin >= ratio) & ~last_row
    near = (d - dmin[win]) / dmin[win] < ratio
    cmin = np.full(nw, np.iinfo(np.int64).max)
    cmax = np.full(nw, np.iinfo(np.int64).min)
    np.minimum.at(cmin, win[near], col[p][near])
    np.maximum.at(cmax, win[near], col[p][near])
    c = col[p]
    delete = active[win] & ~near & (c >= cmin[win] - margin) & (c <= cmax[win] + margin)
    keep[p[delete]] = False
    return keep


def _occlusion_filter_sequential(uv, depth, image_size, window, row_start, row_step, col_step, ratio, margin):
    """As released (``tools/utils.py: remove_overlap`` on the depth image of the nuInsSeg converter): the points are
    rasterised into a depth image at their integer pixels (a later point overwrites an earlier one on the same pixel);
    windows are visited row by row (tops ``row_start``, ``row_start + row_step``, ... while top < H − window − 1; lefts
    0, ``col_step``, ... while left < W − window − 1) and each sees the deletions of the windows before it; a window
    is skipped when the first (row-major) pixel holding its minimum depth is on its last row. A point is dropped when
    the pixel it was last written to has been cleared."""
    h, w = image_size
    keep = np.ones(len(depth), dtype=bool)
    if len(depth) == 0:
        return keep
    col, row = uv[:, 0].astype(np.int64), uv[:, 1].astype(np.int64)
    img = np.zeros((h, w))
    img[row, col] = depth
    owner = np.zeros((h, w), dtype=np.int64)
    owner[row, col] = np.arange(len(depth))
    before = img > 0
    for top in range(row_start, h - window - 1, row_step):
        band = img[top : top + window]
        if np.count_nonzero(band) <= 1:
            continue
        for left in range(0, w - window - 1, col_step):
            win = band[:, left : left + window]
            r, c = np.nonzero(win)
            if len(r) <= 1:
                continue
            d = win[r, c]
            dmin = d.min()
            if (d.max() - dmin) / dmin < ratio or r[np.argmax(d == dmin)] == window - 1:
                continue
            near = (d - dmin) / dmin < ratio
            cols = c + left
            lo, hi = cols[near].min() - margin, cols[near].max() + margin
            far = ~near & (cols >= lo) & (cols <= hi)
            win[r[far], c[far]] = 0.0
    keep[owner[before & (img == 0)]] = False
    return keep


def balanced_sample(fg_uv: np.ndarray, bg_uv: np.ndarray, box2d, k: int, rng, ignore_synthetic: bool = False):
    """K/2 fg + K/2 bg pixels (module docstring, step 4) -> (coords ``[K, 2]``, labels ``[K]``), shuffled.

    As released (``tools/utils.py: random_sample_balance``), and with the same draws in the same order, so a
    ``np.random.RandomState`` seeded like the release's global ``np.random`` reproduces its samples: per set
    ``choice(n, K/2, replace=n < K/2)``; an empty set is replaced by K/2 synthetic pixels (``rand(K/2, 2)``; fg: a
    square of side min(w, h)/2 centred on the box, bg: a square of side min(w, h)/5 at its top-left corner) drawn
    through ``choice(K/2, K/2, replace=False)`` and labelled like the set (1 / 0); then ``shuffle``.
    ``ignore_synthetic``: label the synthetic pixels −1 (ignored by the point loss; the ``random_sample_balance2/3``
    variants and zoo's earlier behaviour). ``rng``: ``np.random.Generator`` or ``np.random.RandomState``."""
    half = k // 2
    x1, y1, x2, y2 = box2d
    side = min(x2 - x1, y2 - y1)
    rows = []
    for uv, lab in ((fg_uv, 1), (bg_uv, 0)):
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if len(uv) == 0:
            if lab == 1:
                uv = (rng.random((half, 2)) - 0.5) * side / 2 + np.array([(x1 + x2) / 2, (y1 + y2) / 2])
            else:
                uv = rng.random((half, 2)) * side / 5 + np.array([x1, y1])
            idx = rng.choice(half, half, replace=False)
            lab = -1 if ignore_synthetic else lab
        else:
            idx = rng.choice(len(uv), half, replace=len(uv) < half)
        rows.append(np.concatenate([uv[idx], np.full((half, 1), lab)], 1))
    rows = np.concatenate(rows)
    rng.shuffle(rows)
    return rows[:, :2].astype(np.float32), rows[:, 2].astype(np.int64)


def _rows(points, uv, sel, max_rows, rng):
    idx = np.nonzero(sel)[0]
    if len(idx) > max_rows:
        idx = np.sort(rng.choice(idx, size=max_rows, replace=False))
    inten = points[idx, 3] if points.shape[1] > 3 else np.zeros(len(idx))
    return np.concatenate([points[idx, :3], inten[:, None], uv[idx]], 1).astype(np.float32)


def point_label_assignment(
    points: np.ndarray,
    lidar2img: np.ndarray,
    boxes: np.ndarray,
    image_size: tuple[int, int],
    num_points: int = 100,
    mode: str = "window",
    max_rows: int = 100,
    min_depth: float = 1.0,
    seed: int | None = 0,
    return_debug: bool = False,
    ignore_synthetic: bool = False,
    subpixel: bool = False,
    **filter_args,
) -> list[dict] | tuple[list[dict], dict]:
    """PLA for one image. ``points [N, >=3]`` LiDAR frame (x, y, z[, intensity]); ``lidar2img`` 4×4;
    ``boxes [M, 7]`` LiDAR boxes; ``image_size (H, W)`` the size the calibration is for. Returns one dict per
    visible box (``index``, ``box2d`` [x1, y1, x2, y2], ``point_coords``, ``point_labels``, ``in_rows``,
    ``out_rows``, ``num_fg``, ``num_bg``); with ``return_debug`` also the kept / deleted point indices.
    As released, the visible points' pixels are truncated to integers (``subpixel``: keep them fractional, zoo's
    earlier form); ``ignore_synthetic`` / ``vectorised`` (in ``filter_args``): see :func:`balanced_sample` /
    :func:`occlusion_filter`."""
    if mode not in ("window", "simple"):
        raise UserError(f"PLA mode must be 'window' (occlusion filter) or 'simple', got {mode!r}")
    if num_points < 2 or num_points % 2:
        raise UserError(f"PLA num_points must be an even number >= 2 (K/2 fg + K/2 bg), got {num_points}")
    check_calibration(lidar2img, image_size)
    points = np.asarray(points, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 7)
    h, w = image_size
    rng = np.random.default_rng(seed)
    uv, depth = project(points, lidar2img)
    vis = (depth > min_depth) & (uv[:, 0] > 1) & (uv[:, 0] < w - 1) & (uv[:, 1] > 1) & (uv[:, 1] < h - 1)
    if not subpixel:  # the release casts the projected pixels to int16 after the visibility test
        uv = np.where(vis[:, None], np.trunc(uv), uv)
    idx = np.nonzero(vis)[0]
    if mode == "window" and len(idx):
        k = occlusion_filter(uv[idx], depth[idx], image_size, **filter_args)
        deleted, idx = idx[~k], idx[k]
    else:
        deleted = np.zeros(0, dtype=np.int64)
    pts, puv = points[idx], uv[idx]
    inside = (
        points_in_boxes(torch.from_numpy(pts[:, :3]), torch.from_numpy(boxes)).numpy()
        if len(boxes)
        else np.zeros((len(pts), 0), dtype=bool)
    )
    corners = box_corners(torch.from_numpy(boxes).double()).numpy().reshape(-1, 3) if len(boxes) else np.zeros((0, 3))
    cuv, cdepth = project(corners, lidar2img)
    cuv, cdepth = cuv.reshape(-1, 8, 2), cdepth.reshape(-1, 8)
    out = []
    for m in range(len(boxes)):
        front = cdepth[m] > 0
        on_img = front & (cuv[m, :, 0] >= 0) & (cuv[m, :, 0] < w) & (cuv[m, :, 1] >= 0) & (cuv[m, :, 1] < h)
        if not on_img.any():
            continue
        c = cuv[m][front]
        x1, y1 = max(c[:, 0].min(), 0.0), max(c[:, 1].min(), 0.0)
        x2, y2 = min(c[:, 0].max(), float(w)), min(c[:, 1].max(), float(h))
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        fg = inside[:, m]
        in_2d = (puv[:, 0] > x1 + 1) & (puv[:, 0] < x2 - 1) & (puv[:, 1] > y1 + 1) & (puv[:, 1] < y2 - 1)
        bg = ~fg & in_2d
        coords, labels = balanced_sample(puv[fg], puv[bg], (x1, y1, x2, y2), num_points, rng, ignore_synthetic)
        out.append(
            {
                "index": m,
                "box2d": np.array([x1, y1, x2, y2], dtype=np.float32),
                "point_coords": coords,
                "point_labels": labels,
                "in_rows": _rows(pts, puv, fg, max_rows, rng),
                "out_rows": _rows(pts, puv, bg, max_rows, rng),
                "num_fg": int(fg.sum()),
                "num_bg": int(bg.sum()),
            }
        )
    if return_debug:
        return out, {"visible": np.nonzero(vis)[0], "kept": idx, "deleted": deleted}
    return out
