"""Training helpers shared by the methods' LightningModules: batch scaling of the learning rate, the per-iteration
warm-up + cosine schedule (timm's ``CosineLRScheduler``), and top-1 / top-5 classification evaluation.

No-weight-decay parameter groups are timm's ``timm.optim.param_groups_weight_decay`` (weight decay on >= 2-D
weights, none on 1-D parameters, biases and the model's ``no_weight_decay()`` names), called by each module."""

from __future__ import annotations

import logging

import torch.nn.functional as F

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ learning rate
def scaled_lr(module, lr: float | None, blr: float, per: int = 256) -> float:
    """``lr`` when given, else the linear scaling rule ``blr x effective batch / per`` (effective batch = the data
    module's ``batch_size`` x world size x gradient accumulation). MAE/TinyMIM scale per 256 images, EMO per 512."""
    if lr is not None:
        return float(lr)
    trainer = module.trainer
    dm = getattr(trainer, "datamodule", None)
    bs = getattr(dm, "hparams", {}).get("batch_size") if dm is not None else None
    if bs is None:
        raise ValueError(
            f"cannot scale the learning rate by the batch size (lr = blr * batch / {per}): the data module has no "
            "'batch_size' hyper-parameter. Pass an absolute learning rate with model.init_args.lr."
        )
    batch = int(bs) * trainer.world_size * trainer.accumulate_grad_batches
    scaled = blr * batch / per
    log.info("lr = blr %.3g x effective batch %d / %d = %.3g", blr, batch, per, scaled)
    return scaled


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int, min_lr: float, warmup_lr: float = 0.0) -> dict:
    """The per-iteration schedule of MAE's ``lr_sched`` and of timm's training script, as Lightning's
    ``lr_scheduler`` config: linear warm-up ``warmup_lr -> lr`` over ``warmup_steps`` optimizer steps, then a
    half-cycle cosine ``lr -> min_lr`` until ``total_steps``, ``min_lr`` after. Each parameter group's ``lr`` is its
    peak; a group's ``lr_scale`` (timm's layer-wise decay groups) multiplies the whole curve, as in MAE.

    It is timm's ``CosineLRScheduler`` (``t_in_epochs=False``), stepped after every optimizer step with the global
    step by :meth:`TimmScheduled.lr_scheduler_step`, which the LightningModule must inherit."""
    from timm.scheduler import CosineLRScheduler

    for group in optimizer.param_groups:  # timm applies lr_scale itself: the groups must hold the unscaled lr
        group.setdefault("initial_lr", group["lr"] / group.get("lr_scale", 1.0))
    sched = CosineLRScheduler(
        optimizer,
        t_initial=max(1, total_steps - warmup_steps),
        lr_min=min_lr,
        warmup_t=warmup_steps,
        warmup_lr_init=warmup_lr,
        warmup_prefix=True,
        cycle_limit=1,
        t_in_epochs=False,
    )
    sched.step_update(0)  # the lr of the first step (timm sets it only when there is a warm-up)
    return {"scheduler": sched, "interval": "step"}


def warmup_cosine_epochs(
    module, optimizer, warmup_epochs: float, min_lr: float, warmup_lr: float = 0.0, epochs: int | None = None
) -> dict:
    """:func:`warmup_cosine` with the warm-up (and optionally the schedule's length, ``epochs``) given in epochs, as
    the papers' recipes state them: converted to optimizer steps with the trainer's ``estimated_stepping_batches``
    over ``max_epochs``. ``epochs`` longer than ``max_epochs`` stretches the cosine (a run cut short of its recipe)."""
    from zoo.errors import UserError

    trainer = module.trainer
    max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
    steps = max(1, int(trainer.estimated_stepping_batches))
    total = steps if epochs is None else int(round(steps / max_epochs * epochs))
    warmup = int(round(warmup_epochs * steps / max_epochs))
    if epochs is not None and warmup >= total:
        raise UserError(
            f"warmup_epochs={warmup_epochs} covers the whole schedule ({epochs} epochs): lower warmup_epochs or raise "
            "epochs/max_epochs."
        )
    return warmup_cosine(optimizer, total, warmup, min_lr, warmup_lr)


class TimmScheduled:
    """Mixin for LightningModules whose scheduler is a timm scheduler (:func:`warmup_cosine`): Lightning steps only
    torch schedulers by itself. Per-iteration schedules get the number of optimizer steps taken, per-epoch ones the
    epoch about to start, as timm's own training loop does (``step_update(num_updates)``, ``step(epoch + 1)``)."""

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if scheduler.t_in_epochs:
            scheduler.step(self.current_epoch + 1, metric)
        else:
            scheduler.step_update(self.global_step, metric)


# ------------------------------------------------------------------------------------ classification evaluation
class ClassificationEval:
    """Mixin for LightningModules whose ``forward`` gives logits and whose batches are ``(images, labels)``:
    ``val/acc1``, ``val/acc5`` (``test/...``) with torchmetrics, and the eval loss (plain cross-entropy)."""

    def init_classification_metrics(self, num_classes: int) -> None:
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy

        metrics = MetricCollection(
            {
                "acc1": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro"),
                "acc5": MulticlassAccuracy(num_classes=num_classes, top_k=min(5, num_classes), average="micro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def _eval_step(self, batch, metrics, stage: str) -> None:
        images, labels = batch
        logits = self(images)
        self.log(f"{stage}/loss", F.cross_entropy(logits.float(), labels), batch_size=images.shape[0])
        metrics.update(logits, labels)
        self.log_dict(metrics, prog_bar=True, batch_size=images.shape[0])

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, self.test_metrics, "test")
