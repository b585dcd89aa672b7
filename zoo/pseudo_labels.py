"""The SSDA3D pseudo-label file (Stage II's labels of the unlabelled target frames, as
``yinjunbo/SSDA3D:tools/eval_utils/generate_pseudo_labels.py`` produces them): one JSON file (no pickle), written at
the end of ``zoo predict`` by the method's callback (:class:`zoo.models.ssda3d.pseudo_labels.PseudoLabelWriter`) and
read back by Stage II's data module (``zoo.data_modules.SSDA3DDataModule``); both go through this module, neither
imports the other.

``{"format": "zoo-ssda3d-pseudo-labels/1", "classes": [...], "threshold": tau,
"frames": {frame_id: {"boxes": [[x, y, z, dx, dy, dz, yaw], ...], "scores": [...], "labels": [...]}}}``.
Multi-device runs write one file per rank (``<name>.rank<k>.json``), read together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from zoo.errors import DataNotFoundError, UserError

__all__ = ["PSEUDO_LABEL_FORMAT", "read_pseudo_labels", "write_pseudo_labels"]

PSEUDO_LABEL_FORMAT = "zoo-ssda3d-pseudo-labels/1"


def write_pseudo_labels(path: str | Path, classes: Sequence[str], threshold: float, frames: dict[str, dict]) -> Path:
    """Write ``frames`` (frame_id -> {"boxes", "scores", "labels"}, plain lists) to ``path`` (folders created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    out = {"format": PSEUDO_LABEL_FORMAT, "classes": list(classes), "threshold": threshold, "frames": frames}
    p.write_text(json.dumps(out))
    return p


def read_pseudo_labels(path: str | Path, classes: Sequence[str] | None = None) -> dict[str, dict]:
    """frame_id -> {"boxes", "scores", "labels"} from one file (or its per-rank siblings); checks the classes."""
    p = Path(path).expanduser()
    files = [p] if p.is_file() else sorted(p.parent.glob(f"{p.stem}.rank*{p.suffix}"))
    if not files:
        raise DataNotFoundError(
            f"pseudo-label file {p} not found: write it with `zoo predict` and the "
            "PseudoLabelWriter callback (configs/ssda3d-*-pseudo.yaml)"
        )
    frames: dict[str, dict] = {}
    for f in files:
        try:
            data = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{f} is not a pseudo-label JSON file ({e})") from e
        if not isinstance(data, dict) or data.get("format") != PSEUDO_LABEL_FORMAT:
            raise UserError(f"{f} is not a {PSEUDO_LABEL_FORMAT} file (written by zoo.models.ssda3d.pseudo_labels)")
        if classes is not None and list(data["classes"]) != list(classes):
            raise UserError(f"{f} labels classes {data['classes']}, the data module has {list(classes)}")
        frames.update(data["frames"])
    return frames
