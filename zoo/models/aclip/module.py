"""A-CLIP LightningModule: attentive masking, CLIP + SimCLR + online-to-EMA distillation, zero-shot and retrieval.

Yang et al., "Attentive Mask CLIP", ICCV 2023 (arXiv 2212.08653), Sec. 3; facts from the official code
(``microsoft/A-CLIP``: ``models.py`` ``ACLIP.forward``, ``losses.py`` ``ACLIPLoss``, ``main.py``).

One step, per image-text pair with three views (the data module's ``view1``, ``view2``: online crops with colour
augmentation; ``view3``: a zoomed-out crop containing both, no colour augmentation; ``boxes`` (B, 3, 4)):

1. EMA momentum update with the per-iteration cosine momentum m = 1 - (1 - m0)(1 + cos(pi t / T)) / 2, m0 = 0.996.
2. EMA image tower on v3 (all tokens, no gradient): CLS feature -> EMA BYOL projector (the target z) and the CLS
   attention averaged over all layers and heads (a g x g map).
3. For each online view: the map mapped into the view's box, 7 x 7 cells of 2 x 2 patches, the top 25 kept
   (``zoo.models.aclip.masking``): 100 of 196 tokens. ``masking: random`` keeps 25 random cells instead (ablation).
4. Online image tower on both masked views (batched), online text tower on the caption.
5. Loss (all contrastive terms on embeddings gathered across processes with gradients,
   ``all_gather(sync_grads=True)``)::

       L = 0.5 CLIP(I1, T) + 0.5 CLIP(I2, T) + 1.0 SimCLR(s1, s2; tau = 0.1) + 2.0 BYOL(p1, p2 -> z)

   CLIP(I, T) = (CE(s I T^T) + CE(s T I^T)) / 2 with L2-normalised rows, s = exp(logit_scale); SimCLR is SLIP's
   NT-Xent between the SimCLR-head outputs of the two views; BYOL = mean of 2 - 2 cos(p_k, z) over both views.
   ``release_simclr_same_view=True`` (the default) is the released code's pairing of view 1 with itself (the bug of
   microsoft/A-CLIP#4), which produced the paper's numbers; ``False`` pairs view 1 with view 2, as the paper intends.

``objective: clip`` is plain CLIP with the same towers (one full view, no EMA, no heads): the paper's baseline and the
bench comparison. AdamW (betas 0.9/0.98, eps 1e-8, wd 0.5; no decay on biases, parameters with ndim < 2 and names
containing ``ln`` / ``bn``: the official grouping), per-iteration warm-up (1 epoch from 1e-6) + cosine to 1e-5;
``logit_scale`` is clamped to [0, ln 100] after every optimizer step. Under DDP on GPUs the heads' BatchNorm should
be synchronised as in the paper: ``trainer.sync_batchnorm: true`` (the recipe configs set it).

Evaluation uses the EMA towers (``eval_towers = "ema"``, as the paper's numbers): zero-shot top-1/top-5 from class
names x prompt templates (``classnames``/``templates`` here or the data module's; unset: the release's 7 ImageNet
templates, ``"aclip"``; CLIP's 80 are ``"openai"``) and image<->text retrieval R@1/5/10
(``zoo.metrics.retrieval.CrossModalRetrieval``), both torchmetrics that accumulate across batches and processes.
When the evaluation data give the described object's box (``target_box``: the data module's cluttered digit scenes),
``val/target_kept`` / ``test/target_kept`` is the mean fraction of that object's patches the attentive rule keeps of
the whole image (top cells of the EMA tower's CLS attention; about ``keep_ratio`` when the attention ignores the
object): a diagnostic of the EMA attention the masks come from, logged in both masking arms.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from zoo.errors import UserError, check_choice
from zoo.models.aclip.masking import attentive_keep, box_patches, keep_random_cells, keep_top_cells, kept_fraction
from zoo.models.aclip.model import ACLIP
from zoo.models.aclip.sizes import DEFAULT, SIZES
from zoo.sizes import net_args
from zoo.training import TimmScheduled, warmup_cosine_epochs

log = logging.getLogger(__name__)

LOGIT_SCALE_MAX = math.log(100.0)
RELEASE_TEMPLATES = "aclip"  # zoo.metrics.zeroshot: templates.json's 7 ImageNet prompts


# ============================================================================================== losses
def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over a batch of pairs (row i of ``image`` matches row i of ``text``)."""
    image, text = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
    logits = logit_scale.float() * image @ text.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def simclr_loss(q: Tensor, k: Tensor, temperature: float = 0.1) -> Tensor:
    """SLIP's NT-Xent (``SIMCLRLoss``): for view-a row i the positive is view-b row i, the negatives all other rows
    of both views (self-similarity excluded); averaged over both directions."""
    q, k = F.normalize(q.float(), dim=-1), F.normalize(k.float(), dim=-1)
    n = q.shape[0]
    labels = torch.arange(n, device=q.device)
    self_mask = torch.eye(n, device=q.device, dtype=torch.bool)
    aa = (q @ q.T / temperature).masked_fill(self_mask, float("-inf"))
    bb = (k @ k.T / temperature).masked_fill(self_mask, float("-inf"))
    ab, ba = q @ k.T / temperature, k @ q.T / temperature
    return (F.cross_entropy(torch.cat([ab, aa], 1), labels) + F.cross_entropy(torch.cat([ba, bb], 1), labels)) / 2


def byol_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean of 2 - 2 cos(p, z) over rows; the target carries no gradient."""
    return (2 - 2 * F.cosine_similarity(pred.float(), target.detach().float(), dim=-1)).mean()


def aclip_loss(
    out: dict[str, Tensor],
    gather: Callable[[Tensor], Tensor] = lambda x: x,
    clip_weight: float = 0.5,
    simclr_weight: float = 1.0,
    byol_weight: float = 2.0,
    temperature: float = 0.1,
    same_view: bool = False,
) -> dict[str, Tensor]:
    """The A-CLIP objective from the step's outputs: ``image1``, ``image2`` (B, D), ``text`` (B, D), ``ssl1``,
    ``ssl2`` (B, 256), ``pred1``, ``pred2``, ``target`` (B, 256), ``logit_scale`` (the exp'ed scale). ``gather``
    concatenates a tensor over processes with gradients (identity in one process)."""
    text = gather(out["text"])
    scale = out["logit_scale"]
    clip1 = clip_loss(gather(out["image1"]), text, scale)
    clip2 = clip_loss(gather(out["image2"]), text, scale)
    s1 = gather(out["ssl1"])
    s2 = s1 if same_view else gather(out["ssl2"])
    simclr = simclr_loss(s1, s2, temperature)
    byol = (byol_loss(out["pred1"], out["target"]) + byol_loss(out["pred2"], out["target"])) / 2
    loss = clip_weight * (clip1 + clip2) + simclr_weight * simclr + byol_weight * byol
    return {"loss": loss, "clip": (clip1 + clip2) / 2, "simclr": simclr, "byol": byol}


def momentum_at(step: int, total: int, base: float = 0.996, end: float = 1.0) -> float:
    """Per-iteration cosine momentum: ``base`` at step 0 -> ``end`` at ``total`` (MoCo v3's ``adjust_moco_momentum``
    with fractional epochs, as A-CLIP's main.py)."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return end - (end - base) * (1 + math.cos(math.pi * t)) / 2


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """A-CLIP's grouping (main.py): no decay for parameters with ndim < 2 or names containing 'bias', 'ln', 'bn';
    timm's ``param_groups_weight_decay`` with those name patterns -> ``[no-decay group, decay group]``."""
    from timm.optim import param_groups_weight_decay

    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=("*bias*", "*ln*", "*bn*"))


# ============================================================================================== module
class ACLIPModule(TimmScheduled, LightningModule):
    """A-CLIP (see the module docstring); ``forward(images, text)`` gives the EMA towers' normalised embeddings in
    eval mode.

    ``size``: ``b16`` | ``l16`` | ``s16`` (:data:`zoo.models.aclip.sizes.SIZES`, the official ``ACLIP_VIT*16``);
    ``net``: overrides of :class:`zoo.models.aclip.model.ACLIP`'s arguments (a smaller network for demos and tests).
    The data module's ``image_size`` and ``context_length`` follow the network (:meth:`data_config`).
    """

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        objective: str = "aclip",
        masking: str = "attentive",
        mask_unit: int = 2,
        keep_ratio: float = 0.5,
        clip_weight: float = 0.5,
        simclr_weight: float = 1.0,
        byol_weight: float = 2.0,
        simclr_temperature: float = 0.1,
        release_simclr_same_view: bool = True,
        momentum: float = 0.996,
        lr: float = 5e-4,
        min_lr: float = 1e-5,
        warmup_lr: float = 1e-6,
        warmup_epochs: float = 1.0,
        weight_decay: float = 0.5,
        betas: Sequence[float] = (0.9, 0.98),
        eps: float = 1e-8,
        classnames: Sequence[str] | str | None = None,
        templates: Sequence[str] | str | None = None,
    ) -> None:
        super().__init__()
        allowed = set(inspect.signature(ACLIP).parameters) - {"eval_towers"}  # eval_towers follows the objective
        self.net_kwargs = net_args(SIZES, size, net, where="ACLIPModule", allowed=allowed)
        self.save_hyperparameters()
        check_choice("objective", objective, ("aclip", "clip"))
        check_choice("masking", masking, ("attentive", "random"))
        for name, value in (("lr", lr), ("simclr_temperature", simclr_temperature), ("mask_unit", mask_unit)):
            if not value > 0:
                raise UserError(f"{name}={value}: must be > 0")
        if not 0.0 < keep_ratio < 1.0:
            raise UserError(
                f"keep_ratio={keep_ratio}: the kept fraction of masking units must be in (0, 1) (paper 0.5)"
            )
        if not 0.0 <= momentum <= 1.0:
            raise UserError(f"momentum={momentum}: the EMA momentum must be in [0, 1] (paper 0.996)")
        img_size, patch_size = self.net_kwargs["img_size"], self.net_kwargs["patch_size"]
        if img_size % patch_size or (img_size // patch_size) % mask_unit:
            raise UserError(
                f"img_size={img_size}, patch_size={patch_size}: the {img_size // patch_size}-patch grid "
                f"must split into {mask_unit}x{mask_unit}-patch masking units (mask_unit)"
            )
        self.model = ACLIP(**self.net_kwargs, eval_towers="ema" if objective == "aclip" else "online")
        if objective == "clip":  # plain CLIP trains no head: frozen, so DDP and the optimizer never wait for them
            for head in (self.model.image_mlp, self.model.byol_projector, self.model.byol_predictor):
                head.requires_grad_(False)
        self.grid = img_size // patch_size
        vocab_size, context_length = self.net_kwargs["vocab_size"], self.net_kwargs["context_length"]
        text = torch.randint(1, vocab_size - 1, (2, context_length), generator=torch.Generator().manual_seed(0))
        text[:, -1] = vocab_size - 1  # EOT: the largest id
        self.example_input_array = (torch.randn(2, 3, img_size, img_size), text)
        self._zs_weights: Tensor | None = None

    # ------------------------------------------------------------------ inference
    def forward(self, images: Tensor, text: Tensor | None = None) -> dict[str, Tensor]:
        return self.model(images, text)

    def tokenizer(self):
        from zoo.text.clip import clip_tokenizer

        return clip_tokenizer(self.net_kwargs["context_length"])

    def data_config(self) -> dict[str, Any]:
        """What the data module follows (``zoo.sizes.follow_model``): the views' side and the text context."""
        return {"image_size": self.net_kwargs["img_size"], "context_length": self.net_kwargs["context_length"]}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        # image size and context length: the data module follows data_config() and refuses a conflicting value
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy

        from zoo.metrics.retrieval import CrossModalRetrieval
        from zoo.metrics.zeroshot import resolve_classnames, resolve_templates

        names = self.hparams.classnames if self.hparams.classnames is not None else getattr(dm, "classnames", None)
        self.classnames = resolve_classnames(names)
        templates = self.hparams.templates if self.hparams.templates is not None else getattr(dm, "templates", None)
        # unset anywhere: the release's 7 templates (main.py's validate_zeroshot), not CLIP's 80
        self.templates = resolve_templates(templates if templates is not None else RELEASE_TEMPLATES)
        if self.classnames is not None and not hasattr(self, "zs_metrics"):
            c = len(self.classnames)
            self.zs_metrics = MetricCollection(
                {
                    "zeroshot_top1": MulticlassAccuracy(num_classes=c, top_k=1, average="micro"),
                    "zeroshot_top5": MulticlassAccuracy(num_classes=c, top_k=min(5, c), average="micro"),
                }
            )
        if not hasattr(self, "retrieval"):
            self.retrieval = CrossModalRetrieval(ks=(1, 5, 10), query="text", gallery="image")
        if not hasattr(self, "target_kept"):
            from torchmetrics import MeanMetric

            self.target_kept = MeanMetric()

    # ------------------------------------------------------------------ objective
    def _gather(self, x: Tensor) -> Tensor:
        """Concatenate ``x`` over processes with gradients (Lightning's ``all_gather(sync_grads=True)``)."""
        if self._trainer is None or self.trainer.world_size <= 1:
            return x
        return self.all_gather(x, sync_grads=True).flatten(0, 1)

    def on_fit_start(self) -> None:
        self._total_steps = max(1, int(self.trainer.estimated_stepping_batches))

    def momentum(self) -> float:
        """The EMA momentum of the current optimizer step (cosine over the fit's optimizer steps)."""
        total = getattr(self, "_total_steps", None)
        if total is None:
            total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        return momentum_at(self.global_step, total, self.hparams.momentum)

    def keep_indices(self, scores: Tensor, boxes: Tensor) -> Tensor:
        """(2B, K) kept patches of view 1 then view 2: attentive (mapped through the boxes) or random cells."""
        hp = self.hparams
        B = scores.shape[0]
        if hp.masking == "random":
            return keep_random_cells(2 * B, self.grid, hp.mask_unit, hp.keep_ratio, device=scores.device)
        return torch.cat(
            [attentive_keep(scores, boxes[:, k], boxes[:, 2], self.grid, hp.mask_unit, hp.keep_ratio) for k in (0, 1)]
        )

    def step_outputs(self, batch: dict) -> dict[str, Tensor]:
        """The A-CLIP step's tensors (steps 1-4 of the module docstring) for :func:`aclip_loss`."""
        net = self.model
        if self.training:
            net.momentum_update(self.momentum())
        with torch.no_grad():
            cls_e, scores = net.visual_ema.forward_cls_attention(batch["view3"])
            target = net.byol_projector_ema(cls_e)
        keep = self.keep_indices(scores, batch["boxes"])
        B = batch["view1"].shape[0]
        cls = net.visual.forward_cls(torch.cat([batch["view1"], batch["view2"]]), keep)
        image = cls @ net.image_projection
        ssl = net.image_mlp(cls)
        pred = net.byol_predictor(net.byol_projector(cls))
        return {
            "image1": image[:B],
            "image2": image[B:],
            "text": net.encode_text(batch["text"], ema=False),
            "ssl1": ssl[:B],
            "ssl2": ssl[B:],
            "pred1": pred[:B],
            "pred2": pred[B:],
            "target": target,
            "logit_scale": net.logit_scale.exp(),
        }

    def objective(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        hp = self.hparams
        return aclip_loss(
            out,
            self._gather,
            hp.clip_weight,
            hp.simclr_weight,
            hp.byol_weight,
            hp.simclr_temperature,
            hp.release_simclr_same_view,
        )

    def training_step(self, batch, batch_idx):
        if batch is None:  # every image of the batch failed to decode: skip the step (Lightning allows None)
            return None
        B = batch["text"].shape[0]
        if self.hparams.objective == "clip":  # plain CLIP: one full view, no EMA, no heads
            net = self.model
            loss = clip_loss(
                self._gather(net.encode_image(batch["view1"])),
                self._gather(net.encode_text(batch["text"], ema=False)),
                net.logit_scale.exp(),
            )
            self.log_dict({"train/loss": loss, "train/clip": loss}, prog_bar=True, batch_size=B)
            return loss
        losses = self.objective(self.step_outputs(batch))
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=B)
        self.log("train/logit_scale", self.model.logit_scale.exp(), batch_size=B)
        self.log("train/momentum", self.momentum(), batch_size=B)
        return losses["loss"]

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        with torch.no_grad():  # official main.py: clamp after every step
            self.model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)

    # ------------------------------------------------------------------ evaluation
    def _eval_start(self) -> None:
        self._zs_weights = None
        if getattr(self, "classnames", None) is not None:
            from zoo.metrics.zeroshot import zero_shot_weights

            self._zs_weights = zero_shot_weights(
                self.model, self.tokenizer(), self.classnames, self.templates, device=self.device
            )

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """The normalised embeddings of the eval towers (``image_embeds``; ``text_embeds`` when the batch has text)."""
        if batch is None:  # every image of the batch failed to decode
            return None
        return {k: v.cpu() for k, v in self.model(batch["image"], batch.get("text")).items()}

    def figure_inputs(self, batch, outputs=None, max_items: int = 4) -> dict:
        """A kept-tokens figure spec (:func:`zoo.figures.kept_tokens`) of the first ``max_items`` images: the tokens
        the online encoder would keep of the whole image (:meth:`keep_indices` with every view box = the image, so
        ``masking: random`` draws random cells) and the EMA encoder's CLS attention that ranks them."""
        images = batch["image"][:max_items]
        _, scores = self.model.visual_ema.forward_cls_attention(images)
        size = self.net_kwargs["img_size"]
        full = torch.tensor([0, 0, size, size], device=images.device).expand(len(images), 3, 4)
        keep = self.keep_indices(scores, full)[: len(images)]
        items = [
            {"image": images[i].cpu(), "keep": keep[i].cpu(), "scores": scores[i].cpu(), "name": f"image {i}"}
            for i in range(len(images))
        ]
        hp = self.hparams
        return {
            "kind": "kept_tokens",
            "images": items,
            "grid": self.grid,
            "title": f"A-CLIP {hp.masking} mask: keep ratio {hp.keep_ratio}, {hp.mask_unit}x{hp.mask_unit} cells",
        }

    def target_kept_fraction(self, images: Tensor, boxes: Tensor) -> Tensor:
        """(B,) fraction of the described object's patches (``boxes`` (B, 4) in image pixels: the data's
        ``target_box``) that the attentive rule keeps of the whole image: the top cells of the EMA tower's CLS
        attention (in either masking arm, so that it measures the attention; a random mask keeps about
        ``keep_ratio`` of any object). Logged as ``val/target_kept`` / ``test/target_kept``."""
        hp = self.hparams
        _, scores = self.model.visual_ema.forward_cls_attention(images)
        keep = keep_top_cells(scores.reshape(-1, self.grid, self.grid), hp.mask_unit, hp.keep_ratio)
        return kept_fraction(keep, box_patches(boxes, self.grid, self.net_kwargs["img_size"]))

    def _eval_step(self, batch: dict | None, stage: str) -> None:
        if batch is None:  # every image of the batch failed to decode (counted by the data module)
            return
        out = self.model(batch["image"], batch["text"])  # eval mode: the EMA towers, normalised
        labels = batch.get("label")
        if self._zs_weights is not None and labels is not None:
            from zoo.metrics.zeroshot import zero_shot_logits

            known = labels >= 0
            if bool(known.any()):
                self.zs_metrics.update(zero_shot_logits(out["image_embeds"][known], self._zs_weights), labels[known])
        if batch.get("target_box") is not None and self.hparams.objective == "aclip":
            self.target_kept.update(self.target_kept_fraction(batch["image"], batch["target_box"]))
        index = batch.get("index")
        if index is not None and bool((index >= 0).any()):
            pair = index >= 0
            self.retrieval.update(out["image_embeds"][pair], out["text_embeds"][pair], index[pair], index[pair])

    def _eval_end(self, stage: str) -> None:
        if self._zs_weights is not None and getattr(self, "zs_metrics", None) is not None:
            self.log_dict({f"{stage}/{k}": v for k, v in self.zs_metrics.compute().items()}, prog_bar=True)
            self.zs_metrics.reset()
        if self.retrieval.update_count:
            self.log_dict({f"{stage}/{k}": v for k, v in self.retrieval.compute().items()})
        self.retrieval.reset()
        if getattr(self, "target_kept", None) is not None and self.target_kept.update_count:
            self.log(f"{stage}/target_kept", self.target_kept.compute())
            self.target_kept.reset()

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(
            weight_decay_groups(self.model, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps
        )
        return {
            "optimizer": opt,
            "lr_scheduler": warmup_cosine_epochs(self, opt, hp.warmup_epochs, hp.min_lr, hp.warmup_lr),
        }
