"""A ModelCheckpoint whose ties go to the later epoch."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class LatestBestCheckpoint(ModelCheckpoint):
    """Lightning's :class:`~lightning.pytorch.callbacks.ModelCheckpoint`, except that a monitored value equal to the
    best one replaces it (``>=`` for ``mode="max"``, ``<=`` for ``"min"``; Lightning keeps the earlier checkpoint).

    Selection by validation accuracy often ties on small or imbalanced validation sets (a majority-class predictor
    and a later model with the same count of correct nodes). Papers' loops written as ``if acc_val >= best: save``
    (RELIANT's and CPF's teacher training, for one) keep the later model; with Lightning's strict comparison the
    first epoch's majority-class predictor can win instead (we saw it on German and Credit)."""

    def check_monitor_top_k(self, trainer, current=None) -> bool:
        if current is None:
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        op = {"min": torch.le, "max": torch.ge}[self.mode]
        better = op(current, self.best_k_models[self.kth_best_model_path])
        return trainer.strategy.reduce_boolean_decision(bool(better))
