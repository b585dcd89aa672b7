"""LWSIS LightningModule: BoxInst (CondInst + box-supervised mask losses) with LWSIS's LiDAR-guided point loss and
graph consistency regularisation (Li, Yin, Shi, Li, Yang, Shen, AAAI 2023, arXiv 2212.03504;
official code Serenos/LWSIS, AdelaiDet-based, non-commercial licence: reimplemented from facts, not ported).

Training objective (paper §3, the official ``Base-BoxInst-nuscenes.yaml``), ``warm = min(step / 1000, 1)``:

    L = FCOS (focal cls + GIoU + centerness BCE) + L_prj + warm · L_pairwise
        + warm · (0.1 · L_point + 0.2 · L_gcr_geo + 0.15 · L_gcr_app)

- mask training proposals: the positive FCOS locations, at most ``topk_proposals`` (64) per image split evenly over
  its GT boxes, the best per GT by (class score × centerness);
- ``L_prj`` / ``L_pairwise``: BoxInst's projection dice and colour-affinity pairwise terms on the stride-4 mask
  logits (box masks on the pixels int(x1)..int(x2) as released, ``box_mask_continuous`` the float box; colour
  similarity of the byte-truncated stride-4 average in Lab, ``lab_from_float`` unrounded, ≥ 0.3, dilation 2; the
  bottom ``bottom_pixels_removed`` image rows carry no pairwise
  edges, a COCO artefact the official config keeps);
- ``L_point``: PLA point labels (``data_modules.instance_seg`` computes them once per dataset) sampled with
  ``grid_sample`` from the proposal's mask logits, weighted per GT by the min-max-normalised sqrt(area / 96²);
- ``L_gcr_*``: the proposal's mask probabilities at its GT's LiDAR nodes, pairwise edge loss over the geometric
  graph (3D distances, threshold 0.5) and the appearance graph (detached FPN P3 features, threshold 0.3, the
  similarity range over all node slots as released; ``gcr_valid_nodes_only`` over the valid ones), weighted
  by 1 − w. The edge term is the release's −log(p_j² + (1 − p_j)²) (``compute_lidar_sim_loss`` broadcasts both
  operands along one axis); ``gcr_pairwise`` evaluates the paper's −log(p_i p_j + (1 − p_i)(1 − p_j)) instead.
  w = (s − min s) / (max s − min s + 1e-5) as released (one GT box in the batch: w = 0); ``instance_weight_exact``
  is zoo's earlier exact min-max with w = 0.5 when all box sizes are equal.

``pla: false, gcr: false`` is plain BoxInst (the paper's baseline row). Inference (``forward`` in eval mode) is
CondInst's: FCOS detections, NMS, one dynamic mask per detection, no LWSIS cost.

Optimisation (detectron2 defaults of the config): SGD momentum 0.9, weight decay 1e-4, base lr 0.05 at batch 16,
linear warm-up over 1000 iterations from 0.001×, ×0.1 at the ``steps``; ``max_steps`` iterations.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from zoo.errors import UserError, check_positive
from zoo.models.lwsis import losses as L
from zoo.models.lwsis.model import SIZES_OF_INTEREST, CondInst, flatten_outputs
from zoo.models.lwsis.sizes import DEFAULT, SIZES
from zoo.sizes import net_args


class LWSISModule(LightningModule):
    """Args:
    size: "r50" | "r101" (:mod:`zoo.models.lwsis.sizes`); net: overrides of any
        :class:`~zoo.models.lwsis.model.CondInst` argument but ``num_classes`` (CPU demo, tests: ``depth``,
        ``backbone_channels``, ``stem_width``, ``fpn``, ...; ``box_activation``: "relu" (AdelaiDet's normalised FCOS
        regression, the paper recipe) | "exp" (the FCOS paper's exp(s·x), the CPU demo's: from random init on a few
        tiny boxes the ReLU branch can die); ``stride_in_3x3``: timm's ResNet layout instead of the release's
        detectron2 MSRA stride-in-1x1 bottleneck).
    num_classes: 10 nuScenes detection classes (checked against the data module's in ``setup``).
    pla, gcr: LWSIS's point loss / graph regulariser on (off: BoxInst).
    point_weight, geo_weight, app_weight: 0.1, 0.2, 0.15; loss_warmup_iters: 1000.
    geo_thresh, app_thresh: graph edge thresholds (0.5, 0.3).
    gcr_pairwise: the paper's pairwise GCR edge loss instead of the release's per-point collapse (default off).
    instance_weight_exact: exact min-max instance weights, 0.5 when all GT sizes are equal (zoo's earlier
        form) instead of the release's (s − min) / (max − min + 1e-5) (default off).
    box_mask_continuous: box masks from the float box (x1 <= x < x2, zoo's earlier form) instead of the
        release's integer pixel rows / columns int(x1) .. int(x2) inclusive (default off).
    lab_from_float: Lab colour similarity of the unrounded stride-4 average (zoo's earlier form) instead of the
        release's byte-truncated average (default off).
    gcr_valid_nodes_only: zoo's earlier GCR graphs: the appearance similarity range over the valid node pairs
        only and a self-edge for a single-node instance, instead of the release's range over all node slots
        (padding included) and no graph below 2 nodes (default off).
    pairwise_thresh, pairwise_dilation: 0.3, 2; bottom_pixels_removed: 10; topk_proposals: 64.
    lr, momentum, weight_decay, steps, max_steps, lr_warmup_iters: the schedule.
    img_size: (H, W) the network is evaluated at (the official 800 x 1344); ``example_input_array`` and the data
        module's ``image_size`` follow it (:meth:`data_config`).
    """

    @classmethod
    def bench_init_args(cls, init_args: dict, demo_init_args: dict) -> tuple[dict, str]:
        """``zoo bench --train`` without a GPU: the demo's CPU-size CondInst (its ``net``: narrow ResNet-18 layout,
        64-channel FPN; its image size and proposals) instead of ResNet-50 at 800x1344, which takes minutes per step
        on a CPU. With CUDA the entry's paper-size network is benchmarked as it is."""
        if torch.cuda.is_available():
            return {}, ""
        keys = ("net", "img_size", "topk_proposals")
        args = {k: demo_init_args[k] for k in keys if k in demo_init_args and init_args.get(k) != demo_init_args[k]}
        return args, "CPU-size model of configs/demo/lwsis.yaml (no CUDA: the paper size takes minutes per step)"

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        num_classes: int = 10,
        pla: bool = True,
        gcr: bool = True,
        point_weight: float = 0.1,
        geo_weight: float = 0.2,
        app_weight: float = 0.15,
        loss_warmup_iters: int = 1000,
        geo_thresh: float = 0.5,
        app_thresh: float = 0.3,
        gcr_pairwise: bool = False,
        instance_weight_exact: bool = False,
        box_mask_continuous: bool = False,
        lab_from_float: bool = False,
        gcr_valid_nodes_only: bool = False,
        pairwise_thresh: float = 0.3,
        pairwise_dilation: int = 2,
        bottom_pixels_removed: int = 10,
        topk_proposals: int = 64,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        steps: list[int] = (6000, 8000),
        max_steps: int = 10000,
        lr_warmup_iters: int = 1000,
        img_size: list[int] = (800, 1344),
    ):
        super().__init__()
        self.save_hyperparameters()
        for name in ("num_classes", "max_steps", "topk_proposals"):
            check_positive(name, getattr(self.hparams, name), where="LWSISModule")
        if lr <= 0:
            raise UserError(f"LWSISModule: lr must be > 0, got {lr}; the paper uses 0.05 at batch 16")
        if len(img_size) != 2 or any(s % 32 for s in img_size):
            raise UserError(f"img_size must be (H, W) with both multiples of 32 (the FPN's P5 stride), got {img_size}")
        allowed = set(inspect.signature(CondInst).parameters) - {"num_classes"}
        self.model = CondInst(
            num_classes=num_classes, **net_args(SIZES, size, net, where="LWSISModule", allowed=allowed)
        )
        self.example_input_array = torch.rand(1, 3, *img_size) * 255
        self._metrics = {}

    def data_config(self) -> dict:
        """What the data follows (``zoo.sizes.follow_model``): the image size the network is evaluated at."""
        return {"image_size": [int(v) for v in self.hparams.img_size]}

    def setup(self, stage: str | None = None) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        n = getattr(dm, "num_classes", None)
        if n is not None and n != self.model.num_classes:
            raise UserError(
                f"LWSISModule: the head has {self.model.num_classes} classes, the data module {n}; set "
                f"model.init_args.num_classes: {n}"
            )

    # ------------------------------------------------------------------------------------------------ inference
    def forward(self, images: torch.Tensor):
        """Training mode: the raw head outputs (:meth:`CondInst.forward`). Eval mode: per image the detections
        with their masks (``boxes``, ``scores``, ``labels``, ``masks`` bool [n, H, W], ``mask_probs``)."""
        if self.training:
            return self.model(images)
        return self.model.predict(images)

    # ------------------------------------------------------------------------------------------------ training
    def _warm(self) -> float:
        return min(self.global_step / max(self.hparams.loss_warmup_iters, 1), 1.0)

    def compute_losses(self, images: torch.Tensor, targets: list[dict], warm: float = 1.0) -> dict:
        hp = self.hparams
        model = self.model
        out = model(images)
        flat = flatten_outputs(out, model.strides)
        locs, level = flat["locations"], flat["level"]
        sizes = SIZES_OF_INTEREST[: model.num_levels - 1]
        matched, ltrb, labels, offset = [], [], [], 0
        for t in targets:
            m, r = L.fcos_targets(locs, level, t["boxes"], model.strides, sizes)
            matched.append(torch.where(m >= 0, m + offset, m))
            ltrb.append(r)
            labels.append(t["labels"])
            offset += t["boxes"].shape[0]
        all_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        b = images.shape[0]
        losses = L.fcos_losses(
            flat["logits"].reshape(-1, model.num_classes),
            flat["reg"].reshape(-1, 4),
            flat["ctr"].reshape(-1),
            locs.repeat(b, 1),
            torch.cat(matched),
            torch.cat(ltrb),
            all_labels,
        )
        # ---- proposals for mask training: positives, top-k per GT by cls score x centerness
        soi = model.soi().to(images.device)
        im_ids, loc_ids, gt_ids = [], [], []
        for i, t in enumerate(targets):
            g = t["boxes"].shape[0]
            m = matched[i]
            if g == 0 or not (m >= 0).any():
                continue
            k = max(hp.topk_proposals // g, 1)
            score = (
                flat["logits"][i].sigmoid().gather(1, all_labels[m.clamp(min=0)][:, None])[:, 0]
                * flat["ctr"][i].sigmoid()
            ).detach()
            for gi in torch.unique(m[m >= 0]).tolist():
                cand = (m == gi).nonzero()[:, 0]
                cand = cand[score[cand].topk(min(k, cand.numel())).indices]
                loc_ids.append(cand)
                im_ids.append(torch.full_like(cand, i))
                gt_ids.append(torch.full_like(cand, gi))
        zero = out["mask_feats"].sum() * 0 + sum(p.sum() for p in out["params"]) * 0
        names = ("loss_prj", "loss_pairwise", "loss_point", "loss_gcr_geo", "loss_gcr_app")
        if not loc_ids:
            losses.update({n: zero for n in names})
            return losses
        loc_ids, im_ids, gt_ids = torch.cat(loc_ids), torch.cat(im_ids), torch.cat(gt_ids)
        params = flat["params"][im_ids, loc_ids]
        logits = model.dynamic(out["mask_feats"], params, im_ids, locs[loc_ids], soi[level[loc_ids]])  # [R,1,h,w]
        gt_boxes = torch.cat([t["boxes"] for t in targets])
        h4, w4 = logits.shape[-2:]
        bmask = L.box_masks(gt_boxes[gt_ids], h4, w4, stride=4, continuous=hp.box_mask_continuous)
        probs = logits.sigmoid()[:, 0]
        losses["loss_prj"] = L.projection_loss(probs, bmask).mean()
        sim = L.color_similarity(images, 4, hp.pairwise_dilation, hp.lab_from_float)[..., :h4, :w4]  # [B, 8, h4, w4]
        if hp.bottom_pixels_removed > 0:
            rows = (torch.arange(h4, device=images.device) * 4 + 2) < images.shape[-2] - hp.bottom_pixels_removed
            sim = sim * rows[None, None, :, None]
        losses["loss_pairwise"] = warm * L.pairwise_loss(
            logits, sim[im_ids], bmask, hp.pairwise_thresh, hp.pairwise_dilation
        )
        weights = L.instance_weights(gt_boxes, hp.instance_weight_exact)[gt_ids]
        if hp.pla:
            coords = torch.cat([t["point_coords"] for t in targets])[gt_ids]
            plabels = torch.cat([t["point_labels"] for t in targets])[gt_ids]
            losses["loss_point"] = warm * hp.point_weight * L.point_loss(logits, coords, plabels, weights)
        else:
            losses["loss_point"] = zero
        if hp.gcr:
            xyz = torch.cat([t["node_xyz"] for t in targets])
            uv = torch.cat([t["node_uv"] for t in targets])
            valid = torch.cat([t["node_valid"] for t in targets])
            nodes = 1 if hp.gcr_valid_nodes_only else 2
            geo = L.geometric_graph(xyz, valid, hp.geo_thresh, nodes)
            p3 = out["p3"].detach()
            hp3, wp3 = p3.shape[-2:]
            g = torch.stack([uv[..., 0] / (8 * wp3), uv[..., 1] / (8 * hp3)], -1) * 2 - 1  # [G, N, 2]
            owner = torch.cat(
                [torch.full((t["boxes"].shape[0],), i, device=images.device) for i, t in enumerate(targets)]
            )
            feats = F.grid_sample(p3[owner], g[:, :, None, :], align_corners=False)[..., 0].transpose(1, 2)
            app = L.appearance_graph(feats, valid, hp.app_thresh, not hp.gcr_valid_nodes_only, nodes)
            node_logits = L.sample_logits(logits, uv[gt_ids], stride=4)
            q = hp.gcr_pairwise
            losses["loss_gcr_geo"] = warm * hp.geo_weight * L.graph_loss(node_logits, geo[gt_ids], weights, q)
            losses["loss_gcr_app"] = warm * hp.app_weight * L.graph_loss(node_logits, app[gt_ids], weights, q)
        else:
            losses["loss_gcr_geo"] = losses["loss_gcr_app"] = zero
        return losses

    def training_step(self, batch, batch_idx):
        images, targets = batch
        losses = self.compute_losses(images, targets, self._warm())
        total = sum(losses.values())
        bs = images.shape[0]
        for k, v in losses.items():
            self.log(f"train/{k}", v.detach(), batch_size=bs)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=bs)
        return total

    # ------------------------------------------------------------------------------------------------ evaluation
    def _metric(self, stage: str):
        if stage not in self._metrics:
            from zoo.metrics.instance_seg import MaskAP

            self._metrics[stage] = MaskAP().to("cpu")
        return self._metrics[stage]

    @staticmethod
    def _images(batch) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not torch.is_tensor(images) or images.dim() != 4:
            raise UserError("LWSIS predicts on images [B, 3, H, W] (RGB 0..255) or an (images, targets) batch")
        return images

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Per image the detections with their masks (``boxes``, ``scores``, ``labels``, ``masks``), on the CPU."""
        return [{k: v.cpu() for k, v in p.items()} for p in self.model.predict(self._images(batch))]

    def figure_inputs(self, batch, outputs=None, max_items: int = 4, score_threshold: float = 0.3) -> dict:
        """An instance-mask figure spec (:func:`zoo.figures.instance_masks`) of the first ``max_items`` images: the
        masks of the detections scoring >= ``score_threshold`` over the camera image."""
        images = self._images(batch)
        targets = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        preds = (
            outputs if isinstance(outputs, list) and outputs and "masks" in outputs[0] else self.predict_step(batch, 0)
        )
        items = []
        for i, p in enumerate(preds[:max_items]):
            keep = p["scores"] >= score_threshold
            gt = targets[i].get("boxes") if targets is not None and isinstance(targets[i], dict) else None
            items.append(
                {
                    "image": images[i].cpu(),
                    "masks": p["masks"][keep].cpu(),
                    "boxes": p["boxes"][keep].cpu(),
                    "scores": p["scores"][keep].cpu(),
                    "labels": p["labels"][keep].cpu(),
                    "name": f"image {i}",
                    "gt_boxes": gt.cpu() if gt is not None else None,
                }
            )
        method = "LWSIS" if self.hparams.pla or self.hparams.gcr else "BoxInst"
        return {
            "kind": "instance_masks",
            "images": items,
            "title": f"{method} instance masks (score >= {score_threshold}); dashed white: the box labels",
        }

    def _eval_step(self, batch, stage):
        images, targets = batch
        preds = self.model.predict(images)
        self._metric(stage).update(
            [{"masks": p["masks"].cpu(), "scores": p["scores"].cpu(), "labels": p["labels"].cpu()} for p in preds],
            [{"masks": t["masks"].cpu(), "labels": t["labels"].cpu()} for t in targets],
        )

    def _eval_end(self, stage):
        m = self._metric(stage)
        res = m.compute()
        m.reset()
        self.log(f"{stage}/mask_ap", float(res["map"]), sync_dist=True)
        self.log(f"{stage}/mask_ap50", float(res["map_50"]), sync_dist=True)
        self.log(f"{stage}/mask_ap75", float(res["map_75"]), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self):
        self._eval_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self):
        self._eval_end("test")

    # ------------------------------------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            if p.requires_grad:
                owner = self.model.get_submodule(n.rpartition(".")[0])  # detectron2: no decay on norm layers only
                (no_decay if p.ndim <= 1 and "norm" in type(owner).__name__.lower() else decay).append(p)
        opt = torch.optim.SGD(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            momentum=hp.momentum,
        )
        steps, warm = sorted(hp.steps), hp.lr_warmup_iters

        def factor(it):
            f = 0.1 ** sum(it >= s for s in steps)
            if it < warm:
                a = it / warm
                f *= 0.001 * (1 - a) + a
            return f

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
