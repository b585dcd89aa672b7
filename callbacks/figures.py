"""Write a picture of what the model predicts at the end of ``predict`` and of each validation run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_only

from zoo.errors import UserError

log = logging.getLogger(__name__)

FIGURES_DIR = "figures"


class PredictionFigures(Callback):
    """Draw the first batch's predictions with :mod:`zoo.figures` and write ``<dirpath>/<stage>.png``.

    ``dirpath`` defaults to ``<trainer.default_root_dir>/figures``; ``stage`` is ``predict`` (``zoo predict``, at
    predict end) or ``val`` (each validation run of ``fit`` / ``validate``, the sanity check excepted; the latest
    overwrites the previous). The module hands over what to draw: ``figure_inputs(batch, outputs, max_items)``
    returns a figure spec (see :func:`zoo.figures.render`), computed once per run on the first batch.
    ``size`` is the PNG's (width, height) in pixels; ``max_items`` caps the frames / images / clips / queries drawn.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        size: Sequence[int] = (1200, 800),
        max_items: int = 4,
        on_predict: bool = True,
        on_validation: bool = True,
    ) -> None:
        from zoo.figures import _check_size

        self.size = _check_size(tuple(size))
        if not isinstance(max_items, int) or max_items < 1:
            raise UserError(f"PredictionFigures(max_items={max_items!r}) must be an integer >= 1")
        self.dirpath = dirpath
        self.max_items, self.on_predict, self.on_validation = max_items, on_predict, on_validation
        self._spec: dict | None = None
        self.written: list[Path] = []

    def path(self, trainer, stage: str) -> Path:
        return Path(self.dirpath or Path(trainer.default_root_dir) / FIGURES_DIR) / f"{stage}.png"

    def _capture(self, pl_module, outputs, batch) -> None:
        if batch is None:  # a batch whose every sample failed to decode: wait for the next one
            return
        hook = getattr(pl_module, "figure_inputs", None)
        if hook is None:
            raise UserError(
                f"{type(pl_module).__name__} draws no figure (it has no figure_inputs): remove "
                "zoo.callbacks.PredictionFigures from the trainer's callbacks"
            )
        # drawing must not change the run: no gradient, and the random streams (A-CLIP's random mask draws cells)
        # are put back as they were, so a run with the figures gives the same numbers as one without
        cuda = [pl_module.device.index or 0] if pl_module.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            self._spec = hook(batch, outputs, self.max_items)

    def _write(self, trainer, stage: str) -> None:
        from zoo.figures import render

        spec, self._spec = self._spec, None
        if spec is None:
            return
        path = render(spec, self.path(trainer, stage), self.size)
        self.written.append(path)
        log.info("PredictionFigures: wrote %s", path)

    # ---------------------------------------------------------------------------------------------- predict
    def on_predict_start(self, trainer, pl_module) -> None:
        self._spec = None

    @rank_zero_only
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.on_predict and self._spec is None and dataloader_idx == 0:
            self._capture(pl_module, outputs, batch)

    @rank_zero_only
    def on_predict_end(self, trainer, pl_module) -> None:
        self._write(trainer, "predict")

    # ---------------------------------------------------------------------------------------------- validation
    def on_validation_start(self, trainer, pl_module) -> None:
        self._spec = None

    @rank_zero_only
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.on_validation and not trainer.sanity_checking and self._spec is None and dataloader_idx == 0:
            self._capture(pl_module, outputs, batch)

    @rank_zero_only
    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._write(trainer, "val")
