"""CMT LightningModule: set-prediction training of the Cross Modal Transformer with query denoising and
masked-modal training (Yan et al., ICCV 2023, arXiv 2301.01283, §3.4-3.5; ``junjie18/CMT:cmt_head.py``).

Objective, for every decoder layer l (all layers' heads are trained; keys ``loss_cls``/``loss_bbox`` for the last,
``d{l}.loss_*`` for the others):

- Hungarian matching per frame (:mod:`zoo.models.cmt.matching`): focal cost (2.0) + code-weighted L1 cost (0.25, first
  8 code dims);
- ``loss_cls`` = 2.0 · Σ sigmoid-focal(γ 2, α 0.25) / (num_pos + bg_cls_weight · num_neg);
- ``loss_bbox`` = 0.25 · Σ code_weights ⊙ |pred − code(GT)| / num_pos over the matched queries (non-finite targets,
  e.g. unknown velocities, dropped); GT boxes with a size <= 0 or a non-finite centre / size / yaw are dropped before
  matching with a warning that counts them (their log-size code would be NaN);
- DN-DETR denoising (``dn_loss_cls`` / ``dn_loss_bbox``): the jittered GT copies prepended as anchors predict their
  original box; focal normalised by N_dn·π/6·split³, L1 by N_dn, × ``dn_weight``.

Masked-modal training (:class:`ModalMask3D`, §3.5): per training frame s ~ U(0, 1): s > 1 − p_img -> all images
black (after normalisation: −mean/std); 1 − p_img − p_lidar < s <= 1 − p_img -> all points zeroed; else both kept.
So one fusion model serves CMT, and at test time either modality can be dropped (``drop_modality``, the paper's
robustness protocol, which zeroes that modality's input). ``modalities`` builds CMT ("fusion"), CMT-L ("lidar") or
CMT-C ("camera").

Optimisation (``configure_optimizers``): AdamW (wd 0.01), image backbone lr × 0.01 (weight decay × 5) and neck × 0.1
(as released), one-
cycle (cosine) to ``lr · peak_ratio`` at 40 % of the steps, down to ``lr · 1e-4``; β1 cycles 0.9 -> 0.805 -> 0.9
(mmcv's cyclic momentum, target ratio 0.8947); gradient clipping 35 is the trainer's ``gradient_clip_val``.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from zoo.errors import UserError, check_choice, check_positive
from zoo.models.cmt.matching import CODE_WEIGHTS, dn_cls_avg_factor, match, prepare_denoising
from zoo.models.cmt.model import CLASSES, CMT, encode_boxes
from zoo.models.cmt.sizes import DEFAULT, SIZES
from zoo.sizes import net_args

IMAGE_MEAN = (103.53, 116.28, 123.675)  # BGR, as released (caffe-style VoVNet / nuImages R50 init)
IMAGE_STD = (57.375, 57.12, 58.395)


class ModalMask3D:
    """Masked-modal training on a collated batch (``ModalMask3D``, mode "train"; applied per frame).

    Zeroed images are the normalised value of a black image, zeroed points are all-zero rows (they collapse into the
    voxel at the origin), exactly what the released transform (on raw data, before normalisation) produces.
    ``drop(batch, "camera" | "lidar")`` is the test-time variant.
    """

    def __init__(
        self,
        p_image_off: float = 0.25,
        p_lidar_off: float = 0.25,
        mean: Sequence[float] = IMAGE_MEAN,
        std: Sequence[float] = IMAGE_STD,
    ):
        if p_image_off < 0 or p_lidar_off < 0 or p_image_off + p_lidar_off > 1:
            raise UserError(
                f"ModalMask3D: p_image_off {p_image_off} and p_lidar_off {p_lidar_off} must be >= 0 and sum to <= 1"
            )
        self.p_image_off, self.p_lidar_off = p_image_off, p_lidar_off
        self.black = [-m / s for m, s in zip(mean, std)]

    def _black(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.black, dtype=images.dtype, device=images.device).view(3, 1, 1).expand_as(images)

    def __call__(self, batch: dict, generator: torch.Generator | None = None) -> tuple[dict, list[str]]:
        """-> (masked batch (a shallow copy), per frame "both" | "camera_off" | "lidar_off")."""
        out = dict(batch)
        n = len(batch["points"]) if batch.get("points") is not None else batch["images"].shape[0]
        s = torch.rand(n, generator=generator).tolist()
        states = []
        images = batch.get("images")
        points = list(batch["points"]) if batch.get("points") is not None else None
        if images is not None:
            images = images.clone()
        for i, si in enumerate(s):
            if si > 1 - self.p_image_off:
                states.append("camera_off")
                if images is not None:
                    images[i] = self._black(images[i])
            elif si > 1 - self.p_image_off - self.p_lidar_off:
                states.append("lidar_off")
                if points is not None:
                    points[i] = points[i] * 0
            else:
                states.append("both")
        out["images"], out["points"] = images, points
        return out, states

    def drop(self, batch: dict, modality: str) -> dict:
        check_choice("drop_modality", modality, ("camera", "lidar"))
        out = dict(batch)
        if modality == "camera" and batch.get("images") is not None:
            out["images"] = self._black(batch["images"]).clone()
        if modality == "lidar" and batch.get("points") is not None:
            out["points"] = [p * 0 for p in batch["points"]]
        return out


def sigmoid_focal_sum(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Σ sigmoid focal loss of logits [N, C] against labels [N] (label C = background: all-zero target)."""
    from torchvision.ops import sigmoid_focal_loss

    target = F.one_hot(labels, logits.shape[1] + 1)[:, :-1].to(logits.dtype)
    return sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="sum")


def synthetic_cameras(
    num_views: int, height: int, width: int, focal: float | None = None, dtype=torch.float32
) -> torch.Tensor:
    """lidar2img [V, 4, 4] of ``num_views`` pinhole cameras at the LiDAR origin, yawed 360°/V apart (view 0 looks
    along +x), principal point at the image centre: [K 0; 0 1] @ lidar2cam (camera x right, y down, z forward)."""
    f = focal or width / 2
    k = torch.tensor([[f, 0, width / 2, 0], [0, f, height / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    base = torch.tensor([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.float64)
    out = []
    for v in range(num_views):
        a = 2 * math.pi * v / num_views
        rz = torch.eye(4, dtype=torch.float64)
        rz[0, 0], rz[0, 1], rz[1, 0], rz[1, 1] = math.cos(a), math.sin(a), -math.sin(a), math.cos(a)  # R(-a)
        out.append(k @ base @ rz)
    return torch.stack(out).to(dtype)


class CMTModule(LightningModule):
    """CMT / CMT-L / CMT-C (the network's ``modalities``) with the released objective and recipe (module docstring).

    The network is ``size`` (a released configuration, :mod:`zoo.models.cmt.sizes`) with the overrides ``net`` (any
    argument of :class:`~zoo.models.cmt.model.CMT`: ``modalities``, ``hidden_dim``, the release switches
    ``box_code_quirk``, ``clamp_query_anchors``, ...). ``img_backbone_kwargs`` (extra ``timm.create_model``
    keywords) is its own init arg, outside ``net``: it can name a file, and zoo's loader checks it by that name
    (``zoo.hub.EXTERNAL_INIT_ARGS``). The data module follows :meth:`data_config` (range, voxel and image sizes).

    ``forward(points, images, lidar2img)`` is the network's raw inference output (every layer's logits and codes,
    :class:`~zoo.models.cmt.model.CMT`); :meth:`detect` decodes the last layer into boxes.
    """

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        img_backbone_kwargs: dict | None = None,
        classes: Sequence[str] = CLASSES,
        # objective
        cls_weight: float = 2.0,
        bbox_weight: float = 0.25,
        code_weights: Sequence[float] = CODE_WEIGHTS,
        bg_cls_weight: float = 0.1,
        dn_groups: int = 10,
        dn_noise_scale: float = 1.0,
        dn_split: float = 0.75,
        dn_weight: float = 1.0,
        modal_mask: bool = True,
        p_image_off: float = 0.25,
        p_lidar_off: float = 0.25,
        drop_modality: str | None = None,
        max_num: int = 300,
        # optimisation
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        backbone_lr_mult: float = 0.01,
        backbone_decay_mult: float = 5.0,
        neck_lr_mult: float = 0.1,
        peak_ratio: float = 8.0,
        pct_start: float = 0.4,
        final_ratio: float = 1e-4,
        momentum_ratio: float = 0.8947,
    ):
        super().__init__()
        self.save_hyperparameters()
        if "img_backbone_kwargs" in (net or {}):
            raise UserError(
                "CMTModule: set img_backbone_kwargs as model.init_args.img_backbone_kwargs, not inside net (it may "
                "name a file, so zoo's loader checks it by that name)"
            )
        params = inspect.signature(CMT).parameters
        allowed = set(params) - {"img_backbone_kwargs"}
        args = copy.deepcopy(net_args(SIZES, size, net, where="CMTModule", allowed=allowed))
        num_classes = args.get("num_classes", params["num_classes"].default)
        check_positive("num_classes", num_classes, where="CMTModule")
        if len(classes) != num_classes:
            raise UserError(
                f"CMTModule: classes lists {len(classes)} names but the network has {num_classes} classes; give one "
                "name per class (or set model.init_args.net.num_classes)"
            )
        if len(code_weights) != 10:
            raise UserError(f"code_weights needs 10 numbers (one per code dim), got {len(code_weights)}")
        if drop_modality is not None:
            check_choice("drop_modality", drop_modality, ("camera", "lidar"))
        self.model = CMT(**args, img_backbone_kwargs=img_backbone_kwargs)
        self.modal_masker = ModalMask3D(p_image_off, p_lidar_off)
        self.metric = None
        self.dropped_boxes = 0  # target boxes dropped for a size <= 0 or non-finite values (see _targets)

    # ------------------------------------------------------------------------------------------ inputs
    @property
    def example_input_array(self):
        """A deterministic synthetic frame at this module's sizes: (points [list of [N, C]], images, lidar2img)."""
        net = self.model
        g = torch.Generator().manual_seed(0)
        lo = torch.tensor(net.pc_range[:3])
        hi = torch.tensor(net.pc_range[3:])
        pts = None
        if net.use_lidar:
            xyz = torch.rand(256, 3, generator=g) * (hi - lo) * 0.9 + lo * 0.9
            pts = [torch.cat([xyz, torch.rand(256, net.point_features - 3, generator=g)], dim=1)]
        images = l2i = None
        if net.use_camera:
            h, w = net.image_size
            images = torch.randn(1, net.num_views, 3, h, w, generator=g)
            l2i = synthetic_cameras(net.num_views, h, w)[None]
        return (pts, images, l2i)

    def forward(self, points=None, images=None, lidar2img=None):
        return self.model(points, images, lidar2img)

    def _inputs(self, batch: dict):
        cam, lid = self.model.use_camera, self.model.use_lidar
        return (
            batch.get("points") if lid else None,
            batch.get("images") if cam else None,
            batch.get("lidar2img") if cam else None,
        )

    def _targets(self, batch: dict):
        boxes = [b.float() for b in batch["boxes"]]
        if any(b.shape[-1] < 7 for b in boxes):
            raise UserError("CMT targets need boxes [M, 7 or 9] (x, y, z, dx, dy, dz, yaw[, vx, vy])")
        boxes = [
            b if b.shape[-1] >= 9 else torch.cat([b[:, :7], b.new_full((b.shape[0], 2), float("nan"))], 1)
            for b in boxes
        ]
        labels = [lab.long() for lab in batch["labels"]]
        if any(len(b) != len(lab) for b, lab in zip(boxes, labels)):
            raise UserError("CMT targets: every frame needs one label per box (boxes [M, 7 or 9], labels [M])")
        # the box code takes log(dx), log(dy), log(dz): a size <= 0 (or a non-finite centre / size / yaw) would be a
        # NaN regression target and matching cost; such boxes are dropped and counted, as SSDA3D drops its bad boxes
        keep = [torch.isfinite(b[:, :7]).all(dim=1) & (b[:, 3:6] > 0).all(dim=1) for b in boxes]
        dropped = sum(int((~k).sum()) for k in keep)
        if dropped:
            self.dropped_boxes += dropped
            total = sum(len(b) for b in boxes)
            warnings.warn(
                f"CMT: dropped {dropped} of {total} target boxes in this batch ({self.dropped_boxes} so far) "
                "with a size <= 0 or a non-finite centre/size/yaw; fix the dataset's boxes (dx, dy, dz > 0)",
                stacklevel=2,
            )
            boxes = [b[k] for b, k in zip(boxes, keep)]
            labels = [lab[k] for lab, k in zip(labels, keep)]
        return boxes, labels

    # ------------------------------------------------------------------------------------------ objective
    def layer_loss(self, cls: torch.Tensor, box: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]):
        """One decoder layer's (loss_cls, loss_bbox, matches) on the matching queries: cls [B, Q, C], box [B, Q, 10]."""
        hp = self.hparams
        b, q, c = cls.shape
        tgt_labels = torch.full((b, q), c, dtype=torch.long, device=cls.device)
        tgt_codes = box.new_zeros(b, q, 10)
        weights = box.new_zeros(b, q, 10)
        cw = box.new_tensor(hp.code_weights)
        matches = []
        for i in range(b):
            codes = encode_boxes(boxes[i], self.model.box_code_quirk)
            rows, cols = match(
                cls[i].detach(), box[i].detach(), labels[i], codes, hp.cls_weight, hp.bbox_weight, hp.code_weights
            )
            matches.append((rows, cols))
            tgt_labels[i, rows] = labels[i][cols]
            tgt_codes[i, rows] = codes[cols]
            weights[i, rows] = cw
        num_pos = sum(len(r) for r, _ in matches)
        avg = max(num_pos + hp.bg_cls_weight * (b * q - num_pos), 1.0)
        loss_cls = hp.cls_weight * sigmoid_focal_sum(cls.reshape(-1, c), tgt_labels.reshape(-1)) / avg
        finite = torch.isfinite(tgt_codes)
        w = weights * finite
        l1 = (box - tgt_codes.nan_to_num(0.0, 0.0, 0.0)).abs() * w
        loss_bbox = hp.bbox_weight * l1.sum() / max(num_pos, 1)
        return loss_cls, loss_bbox, matches

    def dn_loss(self, cls: torch.Tensor, box: torch.Tensor, dn) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoising losses of one layer: cls [B, P, C], box [B, P, 10] at the DN slots."""
        hp = self.hparams
        n = dn.labels.numel()
        if n == 0:
            z = cls.sum() * 0
            return z, z
        logits = cls[dn.batch_idx, dn.query_idx]
        pred = box[dn.batch_idx, dn.query_idx]
        loss_cls = hp.cls_weight * sigmoid_focal_sum(logits, dn.labels) / max(dn_cls_avg_factor(n, hp.dn_split), 1.0)
        tgt = encode_boxes(dn.boxes, self.model.box_code_quirk)
        w = box.new_tensor(hp.code_weights).expand_as(tgt) * torch.isfinite(tgt)
        loss_bbox = hp.bbox_weight * ((pred - tgt.nan_to_num(0.0, 0.0, 0.0)).abs() * w).sum() / n
        return hp.dn_weight * loss_cls, hp.dn_weight * loss_bbox

    def compute_losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        hp = self.hparams
        boxes, labels = self._targets(batch)
        dn = None
        kwargs = {}
        if hp.dn_groups > 0:
            dn = prepare_denoising(
                boxes,
                labels,
                self.model.num_query,
                self.model.num_classes,
                self.model.pc_range,
                hp.dn_groups,
                hp.dn_noise_scale,
                0.0,
                hp.dn_split,
                generator,
            )
            kwargs = {"dn_anchors": dn.anchors.to(self.device), "attn_mask": dn.attn_mask.to(self.device)}
        out = self.model(*self._inputs(batch), **kwargs)
        pad = dn.pad_size if dn is not None else 0
        losses = {}
        n_layers = out["cls"].shape[0]
        for layer in range(n_layers):
            prefix = "" if layer == n_layers - 1 else f"d{layer}."
            lc, lb, _ = self.layer_loss(out["cls"][layer, :, pad:], out["box"][layer, :, pad:], boxes, labels)
            losses[f"{prefix}loss_cls"], losses[f"{prefix}loss_bbox"] = lc, lb
            if dn is not None:
                dc, db = self.dn_loss(out["cls"][layer, :, :pad], out["box"][layer, :, :pad], dn)
                losses[f"{prefix}dn_loss_cls"], losses[f"{prefix}dn_loss_bbox"] = dc, db
        losses["loss"] = sum(losses.values())
        return losses

    def training_step(self, batch, batch_idx):
        if self.hparams.modal_mask and self.model.modalities == "fusion":
            batch, _ = self.modal_masker(batch)
        losses = self.compute_losses(batch)
        bs = len(batch["boxes"])
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        for k in ("loss_cls", "loss_bbox", "dn_loss_cls", "dn_loss_bbox"):
            if k in losses:
                self.log(f"train/{k}", losses[k], batch_size=bs)
        return losses["loss"]

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def detect(self, batch: dict) -> list[dict]:
        """Decoded last-layer detections per frame: {"boxes" [K, 9] (gravity centre, yaw, vx, vy), "scores",
        "labels"} (top ``max_num``, no NMS)."""
        out = self.model(*self._inputs(batch))
        return self.model.decode(out["cls"][-1], out["box"][-1], self.hparams.max_num)

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Per frame the decoded detections (:meth:`detect`, after ``drop_modality`` as in validation), on the CPU."""
        if self.hparams.drop_modality is not None:
            batch = self.modal_masker.drop(batch, self.hparams.drop_modality)
        return [{k: v.cpu() for k, v in d.items()} for d in self.detect(batch)]

    def figure_inputs(self, batch, outputs=None, max_items: int = 4, score_threshold: float = 0.3) -> dict:
        """A BEV figure spec (:func:`zoo.figures.bev_boxes`) of the first ``max_items`` frames: the LiDAR points
        (when the batch has them), the detections scoring >= ``score_threshold`` and the batch's boxes."""
        dets = (
            outputs if isinstance(outputs, list) and outputs and "scores" in outputs[0] else self.predict_step(batch, 0)
        )
        pts, gts = batch.get("points"), batch.get("boxes")
        frames = []
        for i, d in enumerate(dets[:max_items]):
            keep = d["scores"] >= score_threshold
            frames.append(
                {
                    "points": pts[i][:, :3].cpu() if pts is not None else None,
                    "pred_boxes": d["boxes"][keep].cpu(),
                    "pred_scores": d["scores"][keep].cpu(),
                    "gt_boxes": gts[i].cpu() if gts is not None else None,
                    "name": f"frame {i}",
                }
            )
        modal = self.model.modalities + (
            f", {self.hparams.drop_modality} dropped" if self.hparams.drop_modality else ""
        )
        return {
            "kind": "bev_boxes",
            "frames": frames,
            "point_cloud_range": list(self.model.pc_range),
            "title": f"CMT ({modal}) detections (score >= {score_threshold}) vs ground truth",
        }

    def _eval_step(self, batch, stage: str):
        hp = self.hparams
        if hp.drop_modality is not None:
            batch = self.modal_masker.drop(batch, hp.drop_modality)
        boxes, labels = self._targets(batch)
        out = self.model(*self._inputs(batch))
        cls, box = out["cls"][-1], out["box"][-1]
        loss_cls, loss_bbox, matches = self.layer_loss(cls, box, boxes, labels)
        bs = len(boxes)
        errs = []
        for i, (rows, cols) in enumerate(matches):
            if len(rows):
                errs.append(torch.linalg.vector_norm(box[i, rows, :2] - boxes[i][cols, :2], dim=1))
        if errs:
            self.log(f"{stage}/center_err", torch.cat(errs).mean(), batch_size=bs, prog_bar=stage == "val")
        self.log(f"{stage}/loss", loss_cls + loss_bbox, batch_size=bs)
        dets = self.model.decode(cls, box, hp.max_num)
        if self.metric is not None:
            self.metric.update(
                [
                    {
                        "boxes": d["boxes"][:, :7],
                        "scores": d["scores"],
                        "labels": d["labels"],
                        "velocity": d["boxes"][:, 7:9],
                    }
                    for d in dets
                ],
                [
                    {"boxes": b[:, :7], "labels": lab, "velocity": b[:, 7:9].nan_to_num(0.0)}
                    for b, lab in zip(boxes, labels)
                ],
            )

    def _start_metric(self):
        from zoo.metrics.detection3d import NuScenesDetection

        self.metric = NuScenesDetection(classes=list(self.hparams.classes)).to(self.device)

    def _end_metric(self, stage: str):
        if self.metric is None:
            return
        res = self.metric.compute()
        for k in ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE"):
            if k in res and torch.isfinite(torch.as_tensor(res[k])):
                self.log(f"{stage}/{k}", torch.as_tensor(res[k], dtype=torch.float32))
        self.metric = None

    def on_validation_epoch_start(self):
        self._start_metric()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._end_metric("val")

    def on_test_epoch_start(self):
        self._start_metric()

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self):
        self._end_metric("test")

    # ------------------------------------------------------------------------------------------ setup
    def data_config(self) -> dict:
        """What the data module follows (:func:`zoo.sizes.follow_model`): the point-cloud range and voxel size, and the
        image size (height, width) and view count the network was built for. A single-modality network states the
        other modality's values too (its size's; the network ignores that input, which the data may still read)."""
        net = self.model
        return {
            "point_cloud_range": list(net.pc_range),
            "voxel_size": list(net.voxel_size),
            "image_size": list(net.image_size),
            "num_views": net.num_views,
        }

    def setup(self, stage: str | None = None):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        classes = getattr(dm, "classes", None)
        if classes is not None and list(classes) != list(self.hparams.classes):
            raise UserError(
                f"the data module's classes {list(classes)} differ from the model's "
                f"{list(self.hparams.classes)}; set data classes to the model's"
            )

    def configure_optimizers(self):
        hp = self.hparams
        groups = {"backbone": [], "neck": [], "rest": []}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            key = "backbone" if name.startswith("img.backbone.") else "neck" if name.startswith("img.neck.") else "rest"
            groups[key].append(p)
        mult = {"backbone": hp.backbone_lr_mult, "neck": hp.neck_lr_mult, "rest": 1.0}
        decay = {"backbone": hp.backbone_decay_mult, "neck": 1.0, "rest": 1.0}
        params = [
            {"params": v, "lr": hp.lr * mult[k], "weight_decay": hp.weight_decay * decay[k]}
            for k, v in groups.items()
            if v
        ]
        opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, betas=(0.9, 0.999))
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1000
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=[g["lr"] * hp.peak_ratio for g in params],
            total_steps=max(total, 2),
            pct_start=hp.pct_start,
            anneal_strategy="cos",
            cycle_momentum=True,
            base_momentum=0.9 * hp.momentum_ratio,
            max_momentum=0.9,
            div_factor=hp.peak_ratio,
            final_div_factor=1.0 / hp.final_ratio,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    @classmethod
    def bench_init_args(cls, init_args: dict, demo_model: dict) -> tuple[dict, str]:
        """``zoo bench --train``: on a machine without CUDA, the CPU-size model of the demo config (its network
        arguments and image backbone over the entry's size; the entry's modalities and classes kept)."""
        if torch.cuda.is_available():
            return {}, ""
        demo = net_args(SIZES, demo_model.get("size", DEFAULT), demo_model.get("net"), where="CMTModule")
        net = {
            **(init_args.get("net") or {}),
            **{k: v for k, v in demo.items() if k not in ("modalities", "num_classes")},
        }
        over = {k: v for k, v in demo_model.items() if k not in ("size", "net", "classes", "drop_modality")}
        return {**over, "net": net}, "CPU size (no CUDA): the demo config's sizes, the entry's modalities"
