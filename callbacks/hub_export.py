"""Export (and optionally push) the trained model as a Hub folder when ``fit`` ends."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


class HubExport(Callback):
    """At the end of ``fit``, write ``dirpath`` as a Hub folder (config.json, model.safetensors, README.md).

    ``which="best"`` exports the ModelCheckpoint's best checkpoint when there is one, ``"last"`` the weights in
    memory at the end of training (the EMA weights when :class:`zoo.callbacks.EMA` is on). ``name`` is the registry
    name whose card to use (guessed from the module when omitted). When the trainer also runs
    :class:`zoo.callbacks.PredictionFigures`, its latest picture goes in as figure.png, shown on the card. Given
    ``repo_id``, the folder is then pushed with
    ``zoo.hub.push`` (needs a token).
    """

    def __init__(
        self,
        dirpath: str,
        which: str = "best",
        name: str | None = None,
        repo_id: str | None = None,
        revision: str | None = None,
        private: bool = False,
    ) -> None:
        if which not in ("best", "last"):
            raise ValueError(f"HubExport(which=...) must be 'best' or 'last', got {which!r}")
        self.dirpath, self.which, self.name = Path(dirpath), which, name
        self.repo_id, self.revision, self.private = repo_id, revision, private
        self.exported: Path | None = None

    @rank_zero_only
    def on_fit_end(self, trainer, pl_module) -> None:
        from zoo import hub

        module = pl_module
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        if self.which == "best" and best and Path(best).is_file():
            # this run's own checkpoint: its hyper-parameters are the ones pl_module was built with
            module, _, _ = hub.module_from_checkpoint(best, hub.class_path(pl_module), tuple(pl_module.hparams))
            log.info("HubExport: exporting best checkpoint %s", best)
        else:
            log.info("HubExport: exporting the weights at the end of training")
        was_training = module.training
        figure = _latest_figure(trainer)
        self.exported = hub.export(
            module, self.dirpath, name=self.name, overwrite=True, figure=figure
        )  # its own folder
        module.train(was_training)
        if self.repo_id:
            hub.push(self.exported, self.repo_id, revision=self.revision, private=self.private)


def _latest_figure(trainer) -> Path | None:
    """The last picture a :class:`zoo.callbacks.PredictionFigures` of this trainer wrote (embedded in the card)."""
    from .figures import PredictionFigures

    written = [p for cb in trainer.callbacks if isinstance(cb, PredictionFigures) for p in cb.written]
    return written[-1] if written and written[-1].is_file() else None
