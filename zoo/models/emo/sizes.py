"""EMO's published sizes, stated once (plain data: the registry reads it without importing torch).

``SIZES[name]`` are the keyword arguments of :class:`zoo.models.emo.model.EMO` for the four ImageNet-1k models of
Zhang et al., "Rethinking Mobile Block for Efficient Attention-based Models" (ICCV 2023, arXiv 2301.01146), Table 2
(EMO-1M/2M/5M/6M), with the stage layouts of the official ``model/emo.py`` (``EMO_1M`` ... ``EMO_6M``; the timm port
uses the same values) and the drop-path rate of each model's official config (``configs/emo/emo_*.py``; 0.04036 for
1M, 0.05 otherwise). Everything else (stem width 24, norms, activations, kernel sizes, attention in stages 3-4,
window 7, ``attn_pre=True``) is shared and is the constructor's default.
"""

SIZES = {
    "emo_1m": dict(
        depths=(2, 2, 8, 3),
        embed_dims=(32, 48, 80, 168),
        exp_ratios=(2.0, 2.5, 3.0, 3.5),
        dim_heads=(16, 16, 20, 21),
        drop_path_rate=0.04036,
    ),
    "emo_2m": dict(
        depths=(3, 3, 9, 3),
        embed_dims=(32, 48, 120, 200),
        exp_ratios=(2.0, 2.5, 3.0, 3.5),
        dim_heads=(16, 16, 20, 20),
        drop_path_rate=0.05,
    ),
    "emo_5m": dict(
        depths=(3, 3, 9, 3),
        embed_dims=(48, 72, 160, 288),
        exp_ratios=(2.0, 3.0, 4.0, 4.0),
        dim_heads=(24, 24, 32, 32),
        drop_path_rate=0.05,
    ),
    "emo_6m": dict(
        depths=(3, 3, 9, 3),
        embed_dims=(48, 72, 160, 320),
        exp_ratios=(2.0, 3.0, 4.0, 5.0),
        dim_heads=(16, 24, 20, 32),
        drop_path_rate=0.05,
    ),
}
DEFAULT = "emo_1m"
