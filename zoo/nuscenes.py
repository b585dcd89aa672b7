"""nuScenes facts that methods and data modules share (neither imports the other): the 10 detection classes in the
order mmdetection3d's nuScenes configs (and CMT's release) index them, and the six camera channels. Imports nothing."""

DETECTION_CLASSES = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
