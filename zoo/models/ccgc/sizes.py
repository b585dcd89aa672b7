"""CCGC's published sizes (plain data, no torch): one per graph of the paper's Table 1 that the shared data holds.

The network (``model.SiameseEncoders``) is two unshared ``Linear(in_features -> dims)`` encoders, so a size is the
graph's attribute dimension d with the embedding width 500 of the official code (xihongyang1999/CCGC@aec8ad8
``train.py``: ``--dims 500``; the attribute dimensions are those of the released Cora / CiteSeer / BAT / EAT files).
"""

DIMS = 500

SIZES = {
    "cora": {"in_features": 1433, "dims": DIMS},
    "citeseer": {"in_features": 3703, "dims": DIMS},
    "bat": {"in_features": 81, "dims": DIMS},
    "eat": {"in_features": 203, "dims": DIMS},
}
DEFAULT = "cora"
