"""SSDA3D pseudo-labels (``yinjunbo/SSDA3D:tools/eval_utils/generate_pseudo_labels.py``): the
Stage-I model runs once over the unlabelled target pool (no augmentation) and its detections with score > tau become
those frames' boxes in Stage II.

``zoo predict --config configs/ssda3d-...-pseudo.yaml --ckpt_path STAGE1.ckpt`` runs
:meth:`zoo.models.ssda3d.module.SSDA3DModule.predict_step` (which applies tau) and this callback writes one JSON file
(no pickle; the format is :mod:`zoo.pseudo_labels`, whose :func:`~zoo.pseudo_labels.read_pseudo_labels` Stage II's
data module uses). Boxes are in the frame's coordinates as the target data module delivers them (after its
``z_shift``), which is how Stage II reads them back (:class:`zoo.data_modules.domain_adaptation.PseudoLabelledFrames`).
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from zoo.errors import UserError
from zoo.pseudo_labels import write_pseudo_labels

__all__ = ["PseudoLabelWriter"]


class PseudoLabelWriter(BasePredictionWriter):
    """Collects ``predict_step`` outputs and writes ``output`` (a path; relative paths live under
    ``trainer.default_root_dir``) at the end of ``zoo predict``. Multi-device runs write one file per rank
    (``<name>.rank<k>.json``) that :func:`zoo.pseudo_labels.read_pseudo_labels` reads together.

    ``threshold``: tau, applied here on top of the module's ``pseudo_label_threshold`` (``zoo predict --ckpt_path``
    restores the Stage-I run's init args, so the module's own tau is the one it was trained with); None keeps the
    module's."""

    def __init__(self, output: str = "pseudo_labels.json", threshold: float | None = None):
        super().__init__(write_interval="epoch")
        if threshold is not None and not 0 <= threshold < 1:
            raise UserError(f"PseudoLabelWriter threshold (tau) must lie in [0, 1), got {threshold}")
        self.output, self.threshold = output, threshold

    def path(self, trainer) -> Path:
        p = Path(self.output).expanduser()
        if not p.is_absolute():
            p = Path(trainer.default_root_dir) / p
        if trainer.world_size > 1:
            p = p.with_name(f"{p.stem}.rank{trainer.global_rank}{p.suffix}")
        return p

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        frames = {}
        batches = (
            predictions[0]
            if predictions
            and isinstance(predictions[0], list)
            and predictions[0]
            and isinstance(predictions[0][0], list)
            else predictions
        )
        hp = pl_module.hparams
        tau = float(hp.pseudo_label_threshold)
        if self.threshold is not None:
            tau = max(tau, float(self.threshold))
        for batch in batches:
            for f in batch:
                keep = f["scores"] > tau
                frames[str(f["frame_id"])] = {
                    "boxes": f["boxes"][keep].tolist(),
                    "scores": f["scores"][keep].tolist(),
                    "labels": f["labels"][keep].tolist(),
                }
        p = write_pseudo_labels(self.path(trainer), hp.class_names, tau, frames)
        n = sum(len(v["labels"]) for v in frames.values())
        print(f"pseudo-labels: {n} boxes (score > {tau}) on {len(frames)} frames -> {p}")
