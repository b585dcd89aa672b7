"""PLA (LWSIS §3.2) runs in the data pipeline and lives in the data layer: :mod:`zoo.data_modules.point_labels`
(label assignment) and :mod:`zoo.data_modules.projection` (camera geometry). This re-export keeps
``zoo.models.lwsis.pla`` importable."""

from zoo.data_modules.point_labels import (  # noqa: F401
    __all__,
    balanced_sample,
    check_calibration,
    occlusion_filter,
    point_label_assignment,
    project,
)
