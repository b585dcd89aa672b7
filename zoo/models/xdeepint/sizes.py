"""xDeepInt's sizes, stated once (plain data, no torch): :class:`~zoo.models.xdeepint.model.XDeepInt`'s arguments.

``criteo`` is the reference configuration of the official code (yanyachen/xDeepInt
``xdeepint/experiment/criteo/nn1.py``): F = 38 fields (I1..I12 log-binned + C1..C26), K = 16, L = 4 PIN layers,
h = 16 subspaces, linear aggregation, no dropout. ``avazu`` is the same architecture on zoo's 23 Avazu fields
(hour-of-day, weekday and the 21 categorical columns): the paper gives no Avazu settings.

``vocab_sizes`` (the embedding tables) is not part of a size: it depends on the preprocessed data and is filled from the
data module in ``XDeepIntModule.setup`` (a ``net`` override can still give it, as the tests' tiny network does).
"""

_REFERENCE = {"embed_dim": 16, "num_layers": 4, "num_subspaces": 16, "activation": None, "dropout": 0.0}

SIZES = {
    "criteo": {"num_fields": 38, **_REFERENCE},
    "avazu": {"num_fields": 23, **_REFERENCE},
}
DEFAULT = "criteo"
