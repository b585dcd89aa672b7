"""One reported number (:class:`Metric`): the data class the registry's entries and the results files share.

A module of its own so that :mod:`zoo.registry` (entries carry the paper's metrics) and :mod:`zoo.results` (which
turns ``results/<method>.csv`` rows into metrics) both import it and neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric"]


@dataclass(frozen=True)
class Metric:
    """One reported number, enough to write a ``model-index`` result on a model card.

    ``task``: a Hub task id (``image-classification``); ``dataset``: a Hub dataset id or a short name;
    ``metric``: a metric id (``accuracy``, ``top-5``, ``nmi``...); ``value``: in the unit the paper uses
    (percent for accuracy); ``protocol`` says how it was obtained when it matters (seeds, epoch choice).
    """

    task: str
    dataset: str
    dataset_name: str
    metric: str
    value: float
    split: str = "validation"
    name: str | None = None
    protocol: str | None = None
