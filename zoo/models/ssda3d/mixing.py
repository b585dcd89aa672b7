"""Point-CutMix and Point-MixUp live in the data layer, :mod:`zoo.data_modules.point_mixing` (they augment frames in
the data pipeline); this re-export keeps ``zoo.models.ssda3d.mixing`` importable."""

from zoo.data_modules.point_mixing import *  # noqa: F403
from zoo.data_modules.point_mixing import __all__  # noqa: F401
