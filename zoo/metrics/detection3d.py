"""3D detection metrics: nuScenes detection score (devkit algorithm) and KITTI-style BEV / 3D AP at 40 recall points.

Both are torchmetrics ``Metric`` s with the same interface::

    metric.update(preds=[{"boxes": [K, 7], "scores": [K], "labels": [K]}, ...],
                  targets=[{"boxes": [M, 7], "labels": [M]}, ...])   # one dict per frame, boxes as zoo.nn.boxes3d
    metric.compute() -> {"car/ap@0.5": tensor, ..., "mAP": tensor, "NDS": tensor}

States are flat float64 row tables (``dist_reduce_fx="cat"``) whose first column is a frame key unique across
processes (``local frame counter * world_size + rank``), so they accumulate across batches and devices.

:class:`NuScenesDetection` (Caesar et al., CVPR 2020, §4.1): the nuscenes-devkit's own ``accumulate`` (greedy
matching by descending score on BEV centre distance, a match iff distance ``<`` threshold), ``calc_ap`` (area under
precision above ``min_precision`` for recall above ``min_recall``, 101-point interpolation) and ``calc_tp`` on
``EvalBoxes`` of ``DetectionBox``, with the devkit's published ``detection_cvpr_2019`` configuration (loaded from the
JSON the devkit ships: thresholds 0.5/1/2/4 m, TP errors at 2 m, class ranges, mean-AP weight 5) restricted to our
classes; mAP, the mean TP errors and NDS come from the devkit's ``DetectionMetrics``. Differences from the full
benchmark, because frames here carry no ego pose / annotation attributes: the class range (e.g. 50 m for cars) is
measured from the LiDAR origin; boxes have no attribute unless ``attributes`` (indices into the devkit's
``ATTRIBUTE_NAMES``) are given, in which case the devkit's per-class default attribute (``vehicle.parked`` for
cars, as mmdet3d / OpenPCDet assign it) is used on both sides, so mAAE is 0 by construction; velocity is (0, 0)
unless ``velocity [K, 2]`` is given (SSDA3D does not predict velocity; with target velocities the mAVE is then
real). Traffic cones / barriers get NaN for the errors the devkit excludes. At most ``max_boxes_per_sample`` (500)
predictions per frame are kept, highest scores first (the devkit refuses more).

:class:`KittiDetection` (Geiger et al., CVPR 2012; 40 recall points as Simonelli et al., ICCV 2019): per class and
IoU threshold, predictions sorted by descending score are matched greedily to the unmatched ground-truth box of
highest IoU (:func:`zoo.nn.boxes3d.bev_iou` or :func:`~zoo.nn.boxes3d.iou3d`), a match iff IoU ``>`` threshold as in
the KITTI devkit; AP = mean over recall r in {1/40, ..., 40/40} of the maximum precision at recall >= r. KITTI's
difficulty levels and DontCare regions are not modelled (one "all boxes" level), so values are comparable to the
KITTI server's only in spirit. Classes without ground truth give NaN and are left out of the means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from zoo.errors import UserError
from zoo.nn.boxes3d import bev_iou, iou3d

__all__ = ["KittiDetection", "NuScenesDetection", "kitti_ap_r40"]

# nuScenes default attribute per class (mmdet3d NuScenesMetric.DefaultAttribute / OpenPCDet)
_DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked",
    "pedestrian": "pedestrian.moving",
    "trailer": "vehicle.parked",
    "truck": "vehicle.parked",
    "bus": "vehicle.moving",
    "motorcycle": "cycle.without_rider",
    "construction_vehicle": "vehicle.parked",
    "bicycle": "cycle.without_rider",
    "barrier": "",
    "traffic_cone": "",
}


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _FrameRows(Metric):
    """Shared state handling: per-frame predictions / targets as float64 rows keyed by a global frame key.

    pred rows: ``key, label, score, x, y, z, dx, dy, dz, yaw, vx, vy, attr``; target rows: ``key, label, x, ..., yaw,
    vx, vy, attr``; frame rows: ``key`` (frames without boxes still count)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, classes: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        if not classes or len(set(classes)) != len(classes):
            raise UserError(f"classes must be a non-empty list of distinct names, got {list(classes)}")
        self.classes = list(classes)
        self.add_state("pred_rows", default=[], dist_reduce_fx="cat")
        self.add_state("target_rows", default=[], dist_reduce_fx="cat")
        self.add_state("frame_keys", default=[], dist_reduce_fx="cat")
        self._frames_seen = 0

    def reset(self) -> None:
        super().reset()
        self._frames_seen = 0

    @staticmethod
    def _col(d: Mapping, key: str, n: int, width: int, default: float) -> Tensor:
        v = d.get(key)
        if v is None:
            return torch.full((n, width), default, dtype=torch.float64)
        return torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(n, width)

    def update(self, preds: Sequence[Mapping], targets: Sequence[Mapping]) -> None:
        if len(preds) != len(targets):
            raise UserError(
                f"update got {len(preds)} prediction dicts for {len(targets)} target dicts; pass one of each per frame"
            )
        rank, world = _rank_world()
        for p, t in zip(preds, targets):
            key = float(self._frames_seen * world + rank)
            self._frames_seen += 1
            pb = torch.as_tensor(p["boxes"]).detach().to("cpu", torch.float64).reshape(-1, 7)
            k = len(pb)
            if len(p["scores"]) != k or len(p["labels"]) != k:
                raise UserError(
                    f"prediction boxes/scores/labels lengths differ: {k}, {len(p['scores'])}, {len(p['labels'])}"
                )
            self.pred_rows.append(
                torch.cat(
                    [
                        torch.full((k, 1), key, dtype=torch.float64),
                        self._col(p, "labels", k, 1, 0),
                        self._col(p, "scores", k, 1, 0),
                        pb,
                        self._col(p, "velocity", k, 2, 0.0),
                        self._col(p, "attributes", k, 1, -1),
                    ],
                    1,
                ).to(self.device)
            )
            tb = torch.as_tensor(t["boxes"]).detach().to("cpu", torch.float64).reshape(-1, 7)
            m = len(tb)
            self.target_rows.append(
                torch.cat(
                    [
                        torch.full((m, 1), key, dtype=torch.float64),
                        self._col(t, "labels", m, 1, 0),
                        tb,
                        self._col(t, "velocity", m, 2, 0.0),
                        self._col(t, "attributes", m, 1, -1),
                    ],
                    1,
                ).to(self.device)
            )
            self.frame_keys.append(torch.tensor([key], dtype=torch.float64, device=self.device))

    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def cat(rows, width):
            if isinstance(rows, list) and not rows:
                return np.zeros((0, width))
            return dim_zero_cat(rows).cpu().numpy().reshape(-1, width)

        return cat(self.pred_rows, 13), cat(self.target_rows, 12), cat(self.frame_keys, 1)[:, 0]


class NuScenesDetection(_FrameRows):
    """nuScenes detection AP (0.5/1/2/4 m), TP errors and NDS through nuscenes-devkit (module docstring).

    ``classes``: the data module's class list (labels index it); every name must be a nuScenes detection class.
    ``filter_range``: drop boxes beyond the devkit's class range (distance from the LiDAR origin).
    Keys: ``<c>/ap@<d>``, ``<c>/ap``, ``<c>/{trans,scale,orient,vel,attr}_err``, ``mAP``, ``mATE``, ``mASE``,
    ``mAOE``, ``mAVE``, ``mAAE``, ``NDS``."""

    def __init__(self, classes: Sequence[str] = ("car",), filter_range: bool = True, **kwargs):
        super().__init__(classes, **kwargs)
        from zoo.extras import missing_extra_as_user_error

        with missing_extra_as_user_error("NuScenesDetection"):  # nuscenes-devkit is in no extra: the line says why
            from nuscenes.eval.detection.constants import DETECTION_NAMES

        bad = [c for c in self.classes if c not in DETECTION_NAMES]
        if bad:
            raise UserError(
                f"NuScenesDetection: {bad} are not nuScenes detection classes; use names from "
                f"{DETECTION_NAMES} (map your classes in the data module)"
            )
        self.filter_range = filter_range

    def config(self):
        """The devkit's ``detection_cvpr_2019`` ``DetectionConfig`` (its shipped JSON), restricted to ``classes``."""
        from nuscenes.eval.common.config import config_factory

        cfg = config_factory("detection_cvpr_2019")
        cfg.class_range = {c: cfg.class_range[c] for c in self.classes}
        cfg.class_names = cfg.class_range.keys()
        return cfg

    def _eval_boxes(self, rows: np.ndarray, keys: np.ndarray, is_pred: bool, cfg):
        from nuscenes.eval.common.data_classes import EvalBoxes
        from nuscenes.eval.detection.constants import ATTRIBUTE_NAMES
        from nuscenes.eval.detection.data_classes import DetectionBox

        boxes = EvalBoxes()
        for k in keys:
            boxes.add_boxes(f"{int(k)}", [])
        per_frame: dict[int, list] = {}
        for r in rows:
            name = self.classes[int(r[1])]
            b = r[3:10] if is_pred else r[2:9]
            if self.filter_range and np.hypot(b[0], b[1]) > cfg.class_range[name]:
                continue
            vel = r[10:12] if is_pred else r[9:11]
            attr_idx = int(r[12] if is_pred else r[11])
            attr = ATTRIBUTE_NAMES[attr_idx] if attr_idx >= 0 else _DEFAULT_ATTRIBUTE[name]
            yaw = float(b[6])
            box = DetectionBox(
                sample_token=f"{int(r[0])}",
                translation=tuple(float(v) for v in b[:3]),
                size=(float(b[4]), float(b[3]), float(b[5])),  # nuScenes wlh = (dy, dx, dz)
                rotation=(float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))),
                velocity=(float(vel[0]), float(vel[1])),
                ego_translation=tuple(float(v) for v in b[:3]),
                num_pts=-1,
                detection_name=name,
                detection_score=float(r[2]) if is_pred else -1.0,
                attribute_name=attr,
            )
            per_frame.setdefault(int(r[0]), []).append(box)
        for k, lst in per_frame.items():
            if is_pred and len(lst) > cfg.max_boxes_per_sample:
                lst = sorted(lst, key=lambda x: -x.detection_score)[: cfg.max_boxes_per_sample]
            boxes.add_boxes(f"{k}", lst)
        return boxes

    def compute(self) -> dict[str, Tensor]:
        from nuscenes.eval.common.utils import center_distance
        from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp
        from nuscenes.eval.detection.constants import TP_METRICS
        from nuscenes.eval.detection.data_classes import DetectionMetrics

        preds, targets, keys = self._tables()
        cfg = self.config()
        gt = self._eval_boxes(targets, keys, False, cfg)
        pr = self._eval_boxes(preds, keys, True, cfg)
        metrics = DetectionMetrics(cfg)
        out: dict[str, float] = {}
        for c in self.classes:
            mds = {}
            for th in cfg.dist_ths:
                mds[th] = accumulate(gt, pr, c, center_distance, th)
                ap = calc_ap(mds[th], cfg.min_recall, cfg.min_precision)
                metrics.add_label_ap(c, th, ap)
                out[f"{c}/ap@{th}"] = ap
            out[f"{c}/ap"] = float(np.mean([out[f"{c}/ap@{th}"] for th in cfg.dist_ths]))
            for name in TP_METRICS:
                if (c == "traffic_cone" and name in ("attr_err", "vel_err", "orient_err")) or (
                    c == "barrier" and name in ("attr_err", "vel_err")
                ):
                    tp = float("nan")
                else:
                    tp = calc_tp(mds[cfg.dist_th_tp], cfg.min_recall, name)
                metrics.add_label_tp(c, name, tp)
                out[f"{c}/{name}"] = tp
        out["mAP"] = metrics.mean_ap
        short = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE", "attr_err": "mAAE"}
        for name, err in metrics.tp_errors.items():
            out[short[name]] = err
        out["NDS"] = metrics.nd_score
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in out.items()}


def kitti_ap_r40(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """AP over 40 recall points from detections sorted by descending score (``tp`` 0/1) and the GT count."""
    if num_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.asarray(tp, dtype=np.float64)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall, precision = ctp / num_gt, ctp / (ctp + cfp)
    ap = 0.0
    for r in np.linspace(1 / 40, 1.0, 40):
        mask = recall >= r - 1e-12
        ap += precision[mask].max() if mask.any() else 0.0
    return ap / 40


class KittiDetection(_FrameRows):
    """KITTI-style BEV / 3D AP at 40 recall points with our rotated IoU (module docstring).

    Keys: ``<c>/ap_bev@<t>``, ``<c>/ap_3d@<t>`` for every threshold ``t`` in ``iou_thresholds``, ``mAP_bev@<t>``,
    ``mAP_3d@<t>`` (means over classes with ground truth), and ``mAP`` = ``mAP_3d`` at the first threshold."""

    def __init__(self, classes: Sequence[str] = ("car",), iou_thresholds: Sequence[float] = (0.7, 0.5), **kwargs):
        super().__init__(classes, **kwargs)
        if not iou_thresholds or any(not 0 < t < 1 for t in iou_thresholds):
            raise UserError(f"iou_thresholds must be in (0, 1), got {list(iou_thresholds)}")
        self.iou_thresholds = [float(t) for t in iou_thresholds]

    def _match(self, preds: np.ndarray, targets: np.ndarray, ci: int, kind: str) -> tuple[np.ndarray, dict]:
        """Scores of class-``ci`` predictions and, per threshold, their 0/1 true-positive flags."""
        p = preds[preds[:, 1] == ci]
        t = targets[targets[:, 1] == ci]
        iou_fn = bev_iou if kind == "bev" else iou3d
        tps = {th: np.zeros(len(p)) for th in self.iou_thresholds}
        for key in np.unique(p[:, 0]):
            pi = np.nonzero(p[:, 0] == key)[0]
            gt = t[t[:, 0] == key]
            if len(gt) == 0:
                continue
            pi = pi[np.argsort(-p[pi, 2], kind="stable")]
            iou = iou_fn(torch.from_numpy(p[pi, 3:10]), torch.from_numpy(gt[:, 2:9])).numpy()
            for th in self.iou_thresholds:
                taken = np.zeros(len(gt), dtype=bool)
                for row, idx in enumerate(pi):
                    cand = np.where(taken, -1.0, iou[row])
                    j = int(cand.argmax())
                    if cand[j] > th:
                        taken[j] = True
                        tps[th][idx] = 1.0
        return p[:, 2], tps

    def compute(self) -> dict[str, Tensor]:
        preds, targets, _ = self._tables()
        out: dict[str, float] = {}
        for kind in ("bev", "3d"):
            matched = [self._match(preds, targets, ci, kind) for ci in range(len(self.classes))]
            for th in self.iou_thresholds:
                vals = []
                for ci, c in enumerate(self.classes):
                    scores, tps = matched[ci]
                    ap = kitti_ap_r40(scores, tps[th], int((targets[:, 1] == ci).sum()))
                    out[f"{c}/ap_{kind}@{th}"] = ap
                    vals.append(ap)
                vals = [v for v in vals if not np.isnan(v)]
                out[f"mAP_{kind}@{th}"] = float(np.mean(vals)) if vals else float("nan")
        out["mAP"] = out[f"mAP_3d@{self.iou_thresholds[0]}"]
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in out.items()}
