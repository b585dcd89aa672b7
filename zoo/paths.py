"""Files of the zoo checkout that zoo reads by their repository path (``configs/...``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["find_config"]


def find_config(path: str) -> Path | None:
    """A config named relative to the repository (``configs/ccgc-cora.yaml``): from the current directory, else from
    the checkout zoo runs from (a source tree or an editable install); ``None`` when neither has it."""
    for candidate in (Path(path), Path(__file__).resolve().parents[1] / path):
        if candidate.is_file():
            return candidate
    return None
