"""SSDA3D LightningModule (Wang, Yin, Li, Frossard, Yang, Shen, AAAI 2023, arXiv 2212.02845; official code
``yinjunbo/SSDA3D``, built on OpenPCDet).

Both stages train the same CenterPoint detector (:mod:`zoo.models.ssda3d.model`) with CenterPoint's loss (heatmap
focal + 0.25 x L1 regression, :class:`zoo.nn.centerpoint.CenterHead`); what differs is the data
(:mod:`zoo.data_modules.domain_adaptation`):

- ``stage="inter"`` (Stage I, Inter-domain Adaptation): source (Waymo) + labelled target (nuScenes) frames, a share of
  them Point-CutMix-ed (``tools/cfgs/stage1_cutmix/*.yaml``);
- pseudo-labelling: ``zoo predict`` with the Stage-I weights on the unlabelled target pool; :meth:`predict_step`
  keeps the detections with score > ``pseudo_label_threshold`` (tau: 0.2 for 1/5/10 %, 0.3 for 20 %) and
  :class:`zoo.models.ssda3d.pseudo_labels.PseudoLabelWriter` writes them for Stage II;
- ``stage="intra"`` (Stage II, Intra-domain Generalisation): labelled + pseudo-labelled target frames, a share of them
  Point-MixUp-ed, initialised from the Stage-I weights (``init_weights``; ``tools/cfgs/stage2_mixup/*.yaml``).

Optimiser (OpenPCDet ``adam_onecycle``): Adam with decoupled weight decay 0.01 on every parameter
(``true_wd``, ``bn_wd``: torch's AdamW), betas (0.95 -> 0.85 cycled, 0.99); one-cycle LR per optimizer step, peak
1e-3 at 40 %, start peak / 10, end start / 1e4, cosine both ways (torch ``OneCycleLR``); grad-norm clip 10 is
``trainer.gradient_clip_val`` in the configs. Validation: nuScenes car AP / NDS or KITTI BEV / 3D AP with
``zoo.metrics.detection3d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

from zoo.errors import UserError, check_choice
from zoo.models.ssda3d.model import SSDA3DDetector
from zoo.models.ssda3d.sizes import DEFAULT, SIZES
from zoo.sizes import net_args

__all__ = ["SSDA3DModule", "example_batch", "network_arg_names"]

# CenterHead arguments the module sets itself: the label space and the training objective (heatmap + L1 loss)
_OBJECTIVE_ARGS = ("gaussian_overlap", "min_radius", "max_objs", "cls_weight", "loc_weight", "code_weights")
# CenterHead arguments SSDA3DDetector derives from its own (channels, grid)
_DERIVED_HEAD_ARGS = (
    "self",
    "in_channels",
    "num_classes",
    "shared_channels",
    "point_cloud_range",
    "voxel_size",
    "stride",
)


def network_arg_names() -> set[str]:
    """The detector's arguments a config may set under ``net`` (its own and the CenterHead's decoding ones), i.e.
    everything but the label space (``class_names``) and the objective, which are module arguments."""
    import inspect

    from zoo.nn.centerpoint import CenterHead

    det = {n for n, p in inspect.signature(SSDA3DDetector).parameters.items() if p.kind is not p.VAR_KEYWORD}
    head = set(inspect.signature(CenterHead.__init__).parameters) - set(_DERIVED_HEAD_ARGS)
    return (det | head) - {"num_classes", *_OBJECTIVE_ARGS}


def example_batch(point_cloud_range: Sequence[float], num_points: int = 2000, frames: int = 2, seed: int = 0) -> dict:
    """A collated batch of random clouds inside the range, each with one car box (example_input_array, bench)."""
    with torch.device("cpu"):  # also under a meta-device context (parameter counts)
        return _example_batch(point_cloud_range, num_points, frames, seed)


def _example_batch(point_cloud_range, num_points, frames, seed):
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor(point_cloud_range[:3], dtype=torch.float32)
    hi = torch.tensor(point_cloud_range[3:], dtype=torch.float32)
    pts, boxes = [], []
    for _ in range(frames):
        xyz = lo + torch.rand(num_points, 3, generator=g) * (hi - lo) * 0.999
        pts.append(torch.cat([xyz, torch.rand(num_points, 1, generator=g)], dim=1))
        c = (lo + hi) / 2
        boxes.append(torch.tensor([[float(c[0]), float(c[1]), float(c[2]), 4.0, 1.8, 1.6, 0.3]]))
    return {
        "points": pts,
        "boxes": boxes,
        "labels": [torch.zeros(1, dtype=torch.long) for _ in range(frames)],
        "frame_id": [f"example-{i}" for i in range(frames)],
        "dataset": ["example"] * frames,
    }


class SSDA3DModule(LightningModule):
    """CenterPoint trained the SSDA3D way. ``forward(batch)``: the head's maps in training mode, per-frame detections
    ``[{"boxes": [K, 7], "scores": [K], "labels": [K]}]`` in eval mode (``zoo.load(...)(batch)``).

    The network: ``size`` (``"voxel"`` | ``"pillar"``, :mod:`zoo.models.ssda3d.sizes`) with ``net`` overriding any
    argument of :class:`~zoo.models.ssda3d.model.SSDA3DDetector` or of the CenterHead's decoding
    (:func:`network_arg_names`); ``class_names`` fixes the head's classes. The module's own arguments: the CenterPoint
    objective (``gaussian_overlap`` ... ``code_weights``), the stage, pseudo-labelling and the optimiser.
    ``example_points``: points per cloud of ``example_input_array``. The data follows :meth:`data_config`."""

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        class_names: Sequence[str] = ("car",),
        gaussian_overlap: float = 0.1,
        min_radius: int = 2,
        max_objs: int = 500,
        cls_weight: float = 1.0,
        loc_weight: float = 0.25,
        code_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2),
        stage: str = "inter",
        init_weights: str | None = None,
        pseudo_label_threshold: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        moms: Sequence[float] = (0.95, 0.85),
        pct_start: float = 0.4,
        div_factor: float = 10.0,
        final_div_factor: float = 1e4,
        eval_metric: str = "nuscenes",
        example_points: int = 2000,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_choice("stage", stage, ("inter", "intra"))
        check_choice("eval_metric", eval_metric, ("nuscenes", "kitti"))
        for name, value in (("lr", lr), ("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if not value > 0:
                raise UserError(f"{name} must be > 0, got {value!r}")
        if not 0 < pct_start < 1:
            raise UserError(f"pct_start must lie in (0, 1), got {pct_start}")
        if len(moms) != 2:
            raise UserError(f"moms needs (max, min) beta1, got {list(moms)}")
        if not 0 <= pseudo_label_threshold < 1:
            raise UserError(f"pseudo_label_threshold (tau) must lie in [0, 1), got {pseudo_label_threshold}")
        if not class_names:
            raise UserError("class_names is empty: name the classes the head detects, e.g. [car]")
        args = net_args(SIZES, size, net, where="SSDA3DModule", allowed=network_arg_names())
        self.model = SSDA3DDetector(
            num_classes=len(class_names),
            gaussian_overlap=gaussian_overlap,
            min_radius=min_radius,
            max_objs=max_objs,
            cls_weight=cls_weight,
            loc_weight=loc_weight,
            code_weights=code_weights,
            **args,
        )
        self.example_input_array = (example_batch(self.model.point_cloud_range, example_points),)
        # spconv's CPU wheel has no backward (its backward launches CUDA kernels): the voxel model trains on a GPU only
        self.backward_needs_cuda = self.model.backbone == "voxel"
        self.val_metric = self.test_metric = None

    def data_config(self) -> dict:
        """What the data follows (``zoo.sizes.follow_model``): the network's point-cloud range and voxel size."""
        return {"point_cloud_range": list(self.model.point_cloud_range), "voxel_size": list(self.model.voxel_size)}

    # ------------------------------------------------------------------------------------------ setup
    def _metric(self):
        from zoo.metrics import detection3d

        names = list(self.hparams.class_names)
        if self.hparams.eval_metric == "nuscenes":
            return detection3d.NuScenesDetection(classes=names)
        return detection3d.KittiDetection(classes=names)

    def setup(self, stage: str | None = None):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        classes = getattr(dm, "classes", None)
        if classes is not None and list(classes) != list(self.hparams.class_names):
            raise UserError(
                f"the model detects {list(self.hparams.class_names)}, the data module's classes are "
                f"{list(classes)}: set model.init_args.class_names to the data's classes"
            )
        feats = getattr(dm, "num_point_features", None)
        if feats is not None and feats < self.model.num_point_features:
            raise UserError(f"the model reads {self.model.num_point_features} point features, the data has {feats}")
        if stage in ("fit", "validate"):
            self.val_metric = self._metric()
        if stage == "test":
            self.test_metric = self._metric()
        if stage == "fit" and self.hparams.init_weights and not getattr(self, "_initialised", False):
            self.load_initial_weights(self.hparams.init_weights)
            self._initialised = True

    def load_initial_weights(self, path: str) -> None:
        """Stage II starts from the Stage-I weights: a Lightning ``.ckpt`` (read with ``weights_only=True``) or a zoo
        Hub folder / ``model.safetensors``."""
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / "model.safetensors"
        if not p.is_file():
            raise UserError(
                f"init_weights {path!r} does not exist: give the Stage-I checkpoint (.ckpt) or exported "
                "folder (model.safetensors)"
            )
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
            state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        else:
            from zoo.hub import model_state_dict, read_checkpoint

            state = model_state_dict(read_checkpoint(p), p)
        if not state:
            raise UserError(f"{p} holds no 'model.*' weights of an SSDA3DModule")
        self.model.load_state_dict(state, strict=True)

    # ------------------------------------------------------------------------------------------ steps
    @staticmethod
    def _points(batch) -> list[torch.Tensor]:
        if isinstance(batch, dict):
            if "points" not in batch:
                raise UserError("the batch has no 'points': use zoo.data_modules.driving.collate_frames")
            pts = batch["points"]
        else:
            pts = batch
        return [pts] if torch.is_tensor(pts) else list(pts)

    @staticmethod
    def _check_finite(points: list[torch.Tensor], batch) -> None:
        """A frame whose cloud holds no point with finite x, y, z would train (or be scored) on an empty BEV map
        without a word: one UserError naming the frame. (Single non-finite points fall outside every cell and are
        dropped by the voxeliser.)"""
        for i, p in enumerate(points):
            if p.shape[0] and not bool(torch.isfinite(p[:, :3]).all(dim=1).any()):
                ids = batch.get("frame_id") if isinstance(batch, dict) else None
                name = ids[i] if ids is not None and i < len(ids) else f"#{i} of the batch"
                raise UserError(
                    f"frame {name}: every point has a NaN or infinite coordinate; fix or drop this "
                    "frame in the dataset (its point cloud is unusable)"
                )

    def forward(self, batch) -> Any:
        pts = self._points(batch)
        self._check_finite(pts, batch)
        if self.training:
            return self.model(pts)
        return self.model.detect(pts)

    def training_step(self, batch, batch_idx):
        pts = self._points(batch)
        self._check_finite(pts, batch)
        preds = self.model(pts)
        losses = self.model.head.loss(preds, batch["boxes"], batch["labels"])
        n = len(batch["boxes"])
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=n)
        self.log("train/hm_loss", losses["hm_loss"], batch_size=n)
        self.log("train/loc_loss", losses["loc_loss"], batch_size=n)
        return losses["loss"]

    def _eval_step(self, batch, metric, prefix):
        pts = self._points(batch)
        self._check_finite(pts, batch)
        maps = self.model(pts)
        preds = self.model.head.decode(maps)
        targets = [{"boxes": b, "labels": lab} for b, lab in zip(batch["boxes"], batch["labels"])]
        if metric is not None:
            metric.update(preds, targets)
        loss = self.model.head.loss(maps, batch["boxes"], batch["labels"])["loss"]
        self.log(f"{prefix}/loss", loss, batch_size=len(targets))
        return preds

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, self.val_metric, "val")

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, self.test_metric, "test")

    def _log_metric(self, metric, prefix):
        if metric is None:
            return
        values = metric.compute()
        self.log_dict({f"{prefix}/{k}": float(v) for k, v in values.items()})
        metric.reset()

    def on_validation_epoch_end(self):
        self._log_metric(self.val_metric, "val")

    def on_test_epoch_end(self):
        self._log_metric(self.test_metric, "test")

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Pseudo-labels: per frame the detections with score > tau (``pseudo_label_threshold``)."""
        pts = self._points(batch)
        self._check_finite(pts, batch)
        preds = self.model.detect(pts)
        ids = batch.get("frame_id") if isinstance(batch, dict) else None
        ids = ids if ids is not None else [f"{batch_idx}-{i}" for i in range(len(preds))]
        out = []
        for fid, p in zip(ids, preds):
            keep = p["scores"] > self.hparams.pseudo_label_threshold
            out.append(
                {
                    "frame_id": fid,
                    "boxes": p["boxes"][keep].cpu(),
                    "scores": p["scores"][keep].cpu(),
                    "labels": p["labels"][keep].cpu(),
                }
            )
        return out

    def figure_inputs(self, batch, outputs=None, max_items: int = 4) -> dict:
        """A BEV figure spec (:func:`zoo.figures.bev_boxes`) of the first ``max_items`` frames: points, the
        detections above ``pseudo_label_threshold`` (``predict_step``'s outputs when given) and the batch's boxes."""
        pts = self._points(batch)[:max_items]
        if outputs is None or not isinstance(outputs, list) or not outputs or "frame_id" not in outputs[0]:
            outputs = self.predict_step(batch, 0)
        gts = batch.get("boxes") if isinstance(batch, dict) else None
        frames = []
        for i, (p, o) in enumerate(zip(pts, outputs)):
            frames.append(
                {
                    "points": p.cpu(),
                    "pred_boxes": o["boxes"].cpu(),
                    "pred_scores": o["scores"].cpu(),
                    "gt_boxes": gts[i].cpu() if gts is not None else None,
                    "name": str(o["frame_id"]),
                }
            )
        return {
            "kind": "bev_boxes",
            "frames": frames,
            "point_cloud_range": list(self.model.point_cloud_range),
            "title": f"SSDA3D detections (score > {self.hparams.pseudo_label_threshold}) vs ground truth",
        }

    # ------------------------------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(
            self.model.parameters(), lr=hp.lr, betas=(hp.moms[0], 0.99), weight_decay=hp.weight_decay
        )
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=hp.lr,
            total_steps=max(total, 2),
            pct_start=hp.pct_start,
            anneal_strategy="cos",
            cycle_momentum=True,
            base_momentum=hp.moms[1],
            max_momentum=hp.moms[0],
            div_factor=hp.div_factor,
            final_div_factor=hp.final_div_factor,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
