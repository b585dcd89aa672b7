"""Moved to :mod:`zoo.data_modules.domain_adaptation` (configs name ``zoo.data_modules.SSDA3DDataModule``); this
re-export keeps the old class paths of earlier configs working."""

from zoo.data_modules.domain_adaptation import CutMixFrames, MixUpFrames, PseudoLabelledFrames, SSDA3DDataModule  # noqa: F401
