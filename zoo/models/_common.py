"""Pieces several methods share: reading official checkpoints safely, and the image-classification evaluation
(top-1 / top-5 with torchmetrics). Nothing here is imported by the registry."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F


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
