"""Building blocks shared by two or more methods (DESIGN.md): reading official checkpoints safely, learning-rate
scaling, image-classification evaluation (top-1 / top-5 with torchmetrics). Nothing here is imported by the registry."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ official checkpoints
def read_official(path: str | Path, convert: Callable[[dict], dict], where: str) -> dict:
    """Read an official checkpoint as plain tensors (``torch.load(weights_only=True)``) and ``convert`` it to zoo
    keys. ``where``: where the official files are published (named when the file is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {path} does not exist ({where})")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path} could not be read with torch.load(weights_only=True) ({type(e).__name__}); only plain tensor "
            "checkpoints are accepted (the official files are)."
        ) from e
    return convert(raw)


def load_official(path: str | Path, name: str, read: Callable[[str | Path], dict]):
    """Build the registry entry ``name`` and load an official checkpoint (read by ``read``) into it strictly."""
    import zoo
    from zoo.hub import load_weights_strict

    module = zoo.create(name)
    load_weights_strict(module.model, read(path), str(path))
    return module.eval()


def converter_main(argv: list[str] | None, load: Callable[[str, str], object], what: str, names: str) -> int:
    """``python -m zoo.models.<method>.convert CHECKPOINT NAME OUT_DIR``: convert and export a Hub folder."""
    p = argparse.ArgumentParser(description=f"Convert an official {what} checkpoint into a zoo Hub folder.")
    p.add_argument("checkpoint", help=f"official {what} checkpoint file")
    p.add_argument("name", help=f"registry name: {names}")
    p.add_argument("out_dir", help="Hub folder to write (config.json, model.safetensors, README.md)")
    ns = p.parse_args(argv)
    from zoo.hub import export

    print(export(load(ns.checkpoint, ns.name), ns.out_dir, name=ns.name))
    return 0


# ------------------------------------------------------------------------------------ learning-rate scaling
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


# -------------------------------------------------------------------------------- classification evaluation
class ClassificationEval:
    """Mixin for LightningModules whose ``forward`` gives logits and whose batches are ``(images, labels)``:
    ``val/acc1``, ``val/acc5`` (``test/...``) with torchmetrics, and the eval loss (plain cross-entropy)."""

    def init_classification_metrics(self, num_classes: int) -> None:
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy

        metrics = MetricCollection({
            "acc1": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro"),
            "acc5": MulticlassAccuracy(num_classes=num_classes, top_k=min(5, num_classes), average="micro"),
        })
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
