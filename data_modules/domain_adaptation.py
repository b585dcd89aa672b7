"""SSDA3D's two training sets over the ``zoo.data_modules.driving`` frames (``yinjunbo/SSDA3D:pcdet/datasets/
cutmix_dataset/waymo_nus_cutmix_dataset.py``, ``pcdet/datasets/nuscenes/nuscenes_mixup_dataset.py``; SSDA3D,
Wang et al., AAAI 2023).

- :class:`CutMixFrames` (Stage I): epoch = |source| + |target| items; item i is, with probability ``cutmix_prob``,
  the Point-CutMix of source frame ``i mod |S|`` and target frame ``i mod |T|``, else the plain source (i < |S|) or
  target frame. Each frame is augmented by its own domain's pipeline first.
- :class:`MixUpFrames` (Stage II): labelled (gt) + pseudo-labelled (ps) target frames, epoch = |gt| + |ps|; with
  probability ``mixup_prob`` the Point-MixUp of two frames (pair rule ``mixup_type``: ``"gt+ps_gt+ps"`` both from
  gt ∪ ps, ``"gt_gt+ps"`` the first from gt), else one frame: gt ``i mod |gt|`` with probability ``gt_prob``, else
  ps ``i mod |ps|``.
- :class:`PseudoLabelledFrames`: unlabelled target frames whose boxes are the Stage-I detections written by
  :class:`zoo.models.ssda3d.pseudo_labels.PseudoLabelWriter` (the JSON file :func:`zoo.pseudo_labels.read_pseudo_labels`
  reads), put in
  place before augmentation.

In both, an item left without a box is replaced by another random index (OpenPCDet ``prepare_data``).
:class:`SSDA3DDataModule` wires them from a target (and source) ``DrivingDataModule``; its point-cloud range (and the
target's and source's, where unset) follows the model (``zoo.sizes.follow_model``). The mixers are
:mod:`data_modules.point_mixing`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from zoo.errors import UserError, check_choice
from zoo.pseudo_labels import read_pseudo_labels
from zoo.sizes import follow_model, model_data_config

from .driving import _worker_init, collate_frames
from .point_mixing import point_cutmix, point_mixup

log = logging.getLogger(__name__)

__all__ = [
    "CutMixFrames",
    "MixUpFrames",
    "PseudoLabelledFrames",
    "SSDA3DDataModule",
]

_MAX_RESAMPLE = 50


class _Seeded(Dataset):
    """Own generator + ``reseed`` (DataLoader workers: ``data_modules.driving._worker_init``)."""

    parts: tuple = ()

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        for k, part in enumerate(self.parts):
            if hasattr(part, "reseed"):
                part.reseed(seed + 1 + k)


class CutMixFrames(_Seeded):
    """Stage I: source + target frames, a share Point-CutMix-ed (see the module docstring)."""

    def __init__(
        self,
        source: Dataset,
        target: Dataset,
        point_cloud_range: Sequence[float],
        cutmix_prob: float = 0.3,
        min_target_points: int = 10_000,
        seed: int = 0,
    ):
        super().__init__(seed)
        if not 0 <= cutmix_prob <= 1:
            raise UserError(f"cutmix_prob must lie in [0, 1], got {cutmix_prob}")
        if len(source) == 0 or len(target) == 0:
            raise UserError("Point-CutMix needs at least one source and one target training frame")
        self.source, self.target, self.parts = source, target, (source, target)
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.cutmix_prob, self.min_target_points = float(cutmix_prob), int(min_target_points)

    def __len__(self) -> int:
        return len(self.source) + len(self.target)

    def item(self, i: int) -> dict | None:
        if self.rng.random() < self.cutmix_prob:
            mixed = point_cutmix(
                self.source[i % len(self.source)],
                self.target[i % len(self.target)],
                self.point_cloud_range,
                self.rng,
                self.min_target_points,
            )
            if mixed is not None:
                mixed.pop("cutmix_region", None)
                return mixed
        return self.source[i] if i < len(self.source) else self.target[i - len(self.source)]

    def __getitem__(self, i: int) -> dict:
        frame = self.item(i)
        for _ in range(_MAX_RESAMPLE):
            if frame is not None and len(frame["boxes"]):
                return frame
            frame = self.item(int(self.rng.integers(len(self))))
        return frame


class PseudoLabelledFrames(Dataset):
    """Unlabelled target frames (a ``data_modules.driving.DrivingFrames``) with the boxes of a pseudo-label file.

    ``labels``: frame_id -> {"boxes": [[7]], "labels": [int]}
    (:func:`zoo.pseudo_labels.read_pseudo_labels`).
    Frames without an entry are dropped. The boxes replace the frame's own before its augmentation."""

    def __init__(self, frames, labels: dict[str, dict]):
        keep = [r for r in frames.records if str(r["frame_id"]) in labels]
        if not keep:
            raise UserError(
                "none of the unlabelled frames has pseudo-labels: run `zoo predict` with the Stage-I "
                "model on the same predict_split first (zoo.models.ssda3d.pseudo_labels)"
            )
        self.frames, self.records, self.labels = frames, keep, labels

    def reseed(self, seed: int) -> None:
        self.frames.reseed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        frame = self.frames.loader(self.records[i])
        pl = self.labels[str(frame["frame_id"])]
        frame["boxes"] = torch.tensor(pl["boxes"], dtype=torch.float32).reshape(-1, 7)
        frame["labels"] = torch.tensor(pl["labels"], dtype=torch.long).reshape(-1)
        return self.frames.process(frame)


class MixUpFrames(_Seeded):
    """Stage II: labelled + pseudo-labelled target frames, a share Point-MixUp-ed (see the module docstring)."""

    def __init__(
        self,
        labelled: Dataset,
        pseudo: Dataset,
        mixup_prob: float = 0.6,
        gt_prob: float = 0.3,
        mixup_type: str = "gt+ps_gt+ps",
        alpha: float = 2.0,
        collision_check: bool = False,
        seed: int = 0,
        collision_margin: float = 0.1,
    ):
        super().__init__(seed)
        check_choice("mixup_type", mixup_type, ("gt+ps_gt+ps", "gt_gt+ps"))
        for name, v in (("mixup_prob", mixup_prob), ("gt_prob", gt_prob)):
            if not 0 <= v <= 1:
                raise UserError(f"{name} must lie in [0, 1], got {v}")
        if alpha <= 0:
            raise UserError(f"the Beta(alpha, alpha) of Point-MixUp needs alpha > 0, got {alpha}")
        if len(labelled) == 0 or len(pseudo) == 0:
            raise UserError("Point-MixUp needs labelled and pseudo-labelled frames (both splits are empty or missing)")
        self.gt, self.ps, self.parts = labelled, pseudo, (labelled, pseudo)
        self.mixup_prob, self.gt_prob, self.mixup_type = float(mixup_prob), float(gt_prob), mixup_type
        self.alpha, self.collision_check = float(alpha), bool(collision_check)
        if not collision_margin >= 0:
            raise UserError(f"collision_margin is a distance in metres >= 0, got {collision_margin}")
        self.collision_margin = float(collision_margin)

    def __len__(self) -> int:
        return len(self.gt) + len(self.ps)

    def _any(self, j: int) -> dict:
        return self.gt[j] if j < len(self.gt) else self.ps[j - len(self.gt)]

    def item(self, i: int) -> dict:
        if self.rng.random() > self.mixup_prob:
            if self.rng.random() < self.gt_prob:
                return self.gt[i % len(self.gt)]
            return self.ps[i % len(self.ps)]
        if self.mixup_type == "gt_gt+ps":
            f1 = self.gt[int(self.rng.integers(len(self.gt)))]
        else:
            f1 = self._any(int(self.rng.integers(len(self))))
        f2 = self._any(int(self.rng.integers(len(self))))
        return point_mixup(f1, f2, self.rng, self.alpha, self.collision_check, collision_margin=self.collision_margin)

    def __getitem__(self, i: int) -> dict:
        frame = self.item(i)
        for _ in range(_MAX_RESAMPLE):
            if len(frame["boxes"]):
                return frame
            frame = self.item(int(self.rng.integers(len(self))))
        return frame


def _instantiate(spec):
    """A data module, or its ``{"class_path": ..., "init_args": ...}`` (a config read without LightningCLI, e.g. by
    ``zoo bench``)."""
    if isinstance(spec, dict) and "class_path" in spec:
        from zoo.registry import import_class

        return import_class(spec["class_path"])(**(spec.get("init_args") or {}))
    return spec


class SSDA3DDataModule(LightningDataModule):
    """The data of one SSDA3D stage over driving data modules (``zoo.data_modules.*DataModule``).

    ``target``: the target domain (its train split = the labelled frames, val split = evaluation, predict split = the
    unlabelled pool); ``source``: the source domain (Stage I). ``stage="inter"`` trains on :class:`CutMixFrames`
    (``source`` None: the labelled target alone, the paper's "labelled target only" baseline); ``stage="intra"`` on
    :class:`MixUpFrames` with ``pseudo_labels`` (the file ``zoo predict`` wrote). Validation and prediction use the
    target module's loaders. ``batch_size`` / ``num_workers`` / ``seed`` here govern the training loader.
    ``point_cloud_range``: None follows the model (the target's range when that is set; the two must agree).
    """

    def __init__(
        self,
        target: LightningDataModule,
        source: LightningDataModule | None = None,
        stage: str = "inter",
        cutmix_prob: float = 0.3,
        min_target_points: int = 10_000,
        pseudo_labels: str | None = None,
        mixup_prob: float = 0.6,
        gt_prob: float = 0.3,
        mixup_type: str = "gt+ps_gt+ps",
        mixup_alpha: float = 2.0,
        collision_check: bool = False,
        collision_margin: float = 0.1,
        point_cloud_range: Sequence[float] | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch_size must be a whole number >= 1 (frames per training batch), got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise UserError(f"num_workers must be a whole number >= 0, got {num_workers!r}")
        target, source = _instantiate(target), _instantiate(source)
        check_choice("stage", stage, ("inter", "intra"))
        if stage == "intra" and not pseudo_labels:
            raise UserError(
                "stage 'intra' (Point-MixUp) needs pseudo_labels: the file `zoo predict` wrote with the "
                "Stage-I model (zoo.models.ssda3d.pseudo_labels.PseudoLabelWriter)"
            )
        if source is not None and list(source.classes) != list(target.classes):
            raise UserError(
                f"source classes {list(source.classes)} differ from target classes "
                f"{list(target.classes)}: map both to the same names (class_map)"
            )
        self.target, self.source, self.stage = target, source, stage
        self.classes = list(target.classes)
        self.point_cloud_range = None if point_cloud_range is None else [float(v) for v in point_cloud_range]
        self.kw = dict(
            cutmix_prob=cutmix_prob,
            min_target_points=min_target_points,
            mixup_prob=mixup_prob,
            gt_prob=gt_prob,
            mixup_type=mixup_type,
            alpha=mixup_alpha,
            collision_check=collision_check,
            collision_margin=collision_margin,
        )
        self.pseudo_labels = pseudo_labels
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_set = None

    def _follow_model(self) -> None:
        """The point-cloud range: this module's, else the target's, else the attached model's (they must agree); then
        the target's and source's when theirs is unset (they crop their frames to it)."""
        own = self.point_cloud_range
        if own is None:
            own = getattr(self.target, "point_cloud_range", None)
        model = model_data_config(self).get("point_cloud_range")
        if own is not None or model is not None:
            own = [float(v) for v in follow_model(self, "point_cloud_range", own, model)]
        for part in (self.target, self.source):
            if own is not None and part is not None and hasattr(part, "point_cloud_range"):
                part.point_cloud_range = [
                    float(v) for v in follow_model(part, "point_cloud_range", part.point_cloud_range, own)
                ]
        self.point_cloud_range = own
        if self.stage == "inter" and self.source is not None and own is None:
            raise UserError(
                "Point-CutMix sizes its region from the point-cloud range: attach the model (zoo fit) or set "
                "data.init_args.point_cloud_range"
            )

    def setup(self, stage: str | None = None) -> None:
        self._follow_model()
        if stage in (None, "fit") and self.train_set is None:
            kw = self.kw
            target = self.target.frames("train")
            if self.stage == "inter":
                self.train_set = (
                    target
                    if self.source is None
                    else CutMixFrames(
                        self.source.frames("train"),
                        target,
                        self.point_cloud_range,
                        kw["cutmix_prob"],
                        kw["min_target_points"],
                        self.seed,
                    )
                )
            else:
                pseudo = PseudoLabelledFrames(
                    self.target.frames("predict", augment=True), read_pseudo_labels(self.pseudo_labels, self.classes)
                )
                self.train_set = MixUpFrames(
                    target,
                    pseudo,
                    kw["mixup_prob"],
                    kw["gt_prob"],
                    kw["mixup_type"],
                    kw["alpha"],
                    kw["collision_check"],
                    self.seed,
                    kw["collision_margin"],
                )
            log.info("SSDA3D %s training set: %d items", self.stage, len(self.train_set))

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            collate_fn=collate_frames,
            generator=g,
            worker_init_fn=_worker_init if self.num_workers else None,
        )

    def val_dataloader(self) -> DataLoader:
        return self.target.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.target.test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.target.predict_dataloader()
