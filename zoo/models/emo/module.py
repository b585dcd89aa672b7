"""EMO's LightningModule: ImageNet classification with the paper's recipe.

The recipe is the effective values of the official ``resources/EMO_*/log_train.txt``. Objective: label-smoothing
cross-entropy (0.1). Optimizer: AdamW (β 0.9/0.999, ε 1e-8, weight decay 0.05, none on 1-D parameters and biases).
Learning rate: ``lr``, or ``blr`` × effective batch / 512 (the official trainer's linear scaling: 1.5e-3 per 512 ->
6e-3 at batch 2048); per-iteration schedule: linear warm-up from ``warmup_lr`` over ``warmup_epochs``, then cosine
down to ``min_lr`` at the end of ``epochs`` (default: the trainer's ``max_epochs``). EMA of the weights (decay
0.9998) and gradient clipping (5.0) belong to the trainer: the ``zoo.callbacks.EMA`` callback and
``trainer.gradient_clip_val`` in configs/emo.yaml. Metrics: top-1 / top-5 (torchmetrics), logged as ``val/acc1``,
``val/acc5`` (``test/...`` in testing).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from zoo.errors import check_fits_data, check_positive
from zoo.models.emo.model import EMO
from zoo.models.emo.sizes import DEFAULT, SIZES
from zoo.sizes import net_args
from zoo.training import ClassificationEval, TimmScheduled, scaled_lr, warmup_cosine_epochs


class EMOModule(TimmScheduled, ClassificationEval, LightningModule):
    """EMO-{1M,2M,5M,6M} (``size``) trained for classification; ``forward`` gives logits [B, num_classes].

    Args:
        size: ``emo_1m`` | ``emo_2m`` | ``emo_5m`` | ``emo_6m`` (:data:`zoo.models.emo.sizes.SIZES`: the released
            models' stage layouts and drop-path rates).
        net: overrides of :class:`~zoo.models.emo.model.EMO`'s arguments (``drop_path_rate``, ``window_sizes`` (7
            for classification), ``attn_pre`` (``True`` as released, see ``iRMB``), a smaller layout for tests).
        num_classes: classifier width (the data's label set; checked against the data module in ``setup``).
        img_size: the training/evaluation input side (the network itself is resolution-free): the data module's
            ``image_size`` follows it (:meth:`data_config`), and it sets the example input.
        label_smoothing, lr / blr, weight_decay, betas, eps, warmup_epochs, warmup_lr, min_lr, epochs: the recipe.
    """

    # a classifier: the label set is the module's (num_classes), and it returns logits, not feature maps
    _NOT_NET = ("num_classes", "features_only", "out_indices")

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        num_classes: int = 1000,
        img_size: int = 224,
        label_smoothing: float = 0.1,
        lr: float | None = None,
        blr: float = 1.5e-3,
        weight_decay: float = 0.05,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_epochs: float = 20,
        warmup_lr: float = 1e-6,
        min_lr: float = 1e-6,
        epochs: int | None = None,
    ) -> None:
        super().__init__()
        check_positive(
            "num_classes",
            num_classes,
            where="EMOModule",
            fix="set model.init_args.num_classes to the number of classes (1000 for ImageNet)",
        )
        check_positive("img_size", img_size, where="EMOModule")
        allowed = set(inspect.signature(EMO).parameters) - set(self._NOT_NET)
        self.net_kwargs = net_args(SIZES, size, net, where="EMOModule", allowed=allowed)
        self.save_hyperparameters()
        self.model = EMO(**self.net_kwargs, num_classes=num_classes)
        self.init_classification_metrics(num_classes)
        self.example_input_array = torch.randn(2, 3, img_size, img_size)

    def data_config(self) -> dict[str, Any]:
        """What the data module follows (``zoo.sizes.follow_model``): the input side."""
        return {"image_size": self.hparams.img_size}

    def setup(self, stage: str) -> None:
        # a head narrower than the data's label set fails mid-step (a CUDA assert / an index error): refuse here
        super().setup(stage)
        check_fits_data(self, "num_classes", self.hparams.num_classes, "num_classes", exact=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    # ------------------------------------------------------------------------------------------------ steps
    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def predict_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).softmax(-1)

    # -------------------------------------------------------------------------------------------- optimizer
    def param_groups(self) -> list[dict[str, Any]]:
        """timm's two groups: weight decay on >= 2-D weights, none on 1-D parameters and biases (as trained); the
        decayed group first (the optimizer state layout of earlier checkpoints)."""
        from timm.optim import param_groups_weight_decay

        groups = param_groups_weight_decay(
            self.model, self.hparams.weight_decay, no_weight_decay_list=self.model.no_weight_decay()
        )
        return sorted(groups, key=lambda g: g["weight_decay"] == 0.0)

    def configure_optimizers(self):
        hp = self.hparams
        lr = scaled_lr(self, hp.lr, hp.blr, per=512)
        opt = torch.optim.AdamW(self.param_groups(), lr=lr, betas=tuple(hp.betas), eps=hp.eps)
        sched = warmup_cosine_epochs(
            self,
            opt,
            hp.warmup_epochs,
            hp.min_lr,
            hp.warmup_lr,
            epochs=hp.epochs or max(1, self.trainer.max_epochs or 1),
        )
        return {"optimizer": opt, "lr_scheduler": sched}
