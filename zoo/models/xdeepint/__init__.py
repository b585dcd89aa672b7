"""xDeepInt (Yan & Li, DLP-KDD 2020, arXiv 2301.01089): registry entries (nothing heavy imported).

The entries name a size of ``sizes.py`` (``criteo``, ``avazu``). The networks are data-sized: the embedding tables
hold one K=16 row per kept feature value, and the vocabulary (values seen more than 20 times in the training split)
is known only after preprocessing the full dataset. The entries therefore leave ``vocab_sizes`` to the data module
(``CTRDataModule`` fills it in ``setup``), and ``params`` counts the data-independent part: the PIN matrices
(4 x (F h)^2) and the output layer (F + 1). No weights are published (``hub_repo`` None) until a model is trained on
the full data.
"""

from zoo.registry import Entry, Paper
from zoo.results import Arm, Claim, Protocol, ResultSpec, Variant

PAPER = Paper(
    title="xDeepInt: a Hybrid Architecture for Modeling the Vector-Wise and Bit-Wise Feature Interactions",
    arxiv="2301.01089",
    code="https://github.com/yanyachen/xDeepInt",
    venue="DLP-KDD 2020 (KDD 2020 workshop)",
    citation="""@inproceedings{yan2020xdeepint,
  title={xDeepInt: a Hybrid Architecture for Modeling the Vector-Wise and Bit-Wise Feature Interactions},
  author={Yan, Yachen and Li, Liubo},
  booktitle={Proceedings of the 2nd International Workshop on Deep Learning Practice for High-Dimensional Sparse Data (DLP-KDD 2020)},
  year={2020},
  eprint={2301.01089},
  archivePrefix={arXiv}
}""",  # noqa: E501 (BibTeX keeps each field on one line)
)

MODULE = "zoo.models.xdeepint.module.XDeepIntModule"
TINY = {"net": {"vocab_sizes": [3, 5, 4, 6], "num_fields": 4, "embed_dim": 4, "num_layers": 2, "num_subspaces": 2}}
_RECIPE = (
    "Sum-reduced sigmoid cross-entropy; G-FTRL (alpha 0.02, beta 1, lambda1 10, lambda2 10) on the embedding "
    "table, FTRL-Proximal (lr 0.02, power -0.5, l1 0.1, l2 0.1, accumulator 0.1) on the PIN and output "
    "weights; batch 4096, one epoch in file order; 80/20 row-index split (train iff i mod 1000 <= 800); "
    "evaluation batch 16384. Reference: yanyachen/xDeepInt xdeepint/experiment/criteo/nn1.py."
)
_LIMITS = (
    "Architecture only: no weights are published yet. The paper's result tables could not be retrieved, so "
    "no paper metrics are listed. The official code has no licence file; Criteo and Avazu data are under "
    "their competitions' research-only terms. `params` excludes the data-sized embedding tables "
    "(16 x (1 + kept values))."
)


# Our measured numbers live in results/xdeepint.csv. No full-data run exists here (only 200-row format samples and no
# network); the proof variants train the reference architecture on planted feature crosses
# (configs/xdeepint-proof.yaml).
_PROOF = "configs/xdeepint-proof.yaml"
_SETTING_B = (
    "--model.init_args.gftrl_alpha=0.05",
    "--model.init_args.gftrl_lambda1=0.1",
    "--model.init_args.ftrl_lr=0.05",
)
RESULTS = ResultSpec(
    task="tabular-classification",
    split="test",
    metrics={
        "auc": ("roc_auc", "AUC"),
        "logloss": ("log_loss", "LogLoss"),
        "nce": ("nce", "NCE"),
        "feature_sparsity": ("feature_sparsity", "feature sparsity"),
        "interaction_sparsity": ("interaction_sparsity", "interaction sparsity"),
    },
    protocols={
        "test": Protocol(
            "test split after the last epoch",
            {k: f"test/{k}" for k in ("auc", "logloss", "nce", "feature_sparsity", "interaction_sparsity")},
            stage="test",
        )
    },
    variants={
        "default": Variant("the entry's config on the full data (not run here: the data is not available offline)"),
        "proof-A": Variant(
            "planted-crosses proof, reference architecture h=16, setting A (G-FTRL lambda1 = lambda2 "
            "= 1); logistic regression on the same one-hot features: test AUC 0.615 (best of C = "
            ".01/.1/1, chosen on test)",
            config=_PROOF,
            dataset="synthetic-criteo",
        ),
        "proof-A-h1": Variant(
            "as proof-A with h=1 (vector-wise crossing)",
            ("--model.init_args.net.num_subspaces=1",),
            config=_PROOF,
            dataset="synthetic-criteo",
        ),
        "proof-B": Variant(
            "as proof-A with setting B (G-FTRL alpha 0.05, lambda1 0.1, lambda2 1; FTRL lr 0.05)",
            _SETTING_B,
            config=_PROOF,
            dataset="synthetic-criteo",
        ),
        "proof-B-h1": Variant(
            "setting B with h=1",
            (*_SETTING_B, "--model.init_args.net.num_subspaces=1"),
            config=_PROOF,
            dataset="synthetic-criteo",
        ),
    },
    dataset_names={
        "synthetic-criteo": "synthetic Criteo-format rows with planted 2nd/3rd-order crosses (100k)",
        "criteo": "Criteo",
        "avazu": "Avazu",
    },
    decimals=4,
)

ENTRIES = [
    Entry(
        name="xdeepint-criteo",
        module=MODULE,
        init_args={"size": "criteo"},
        paper=PAPER,
        license="other",
        description="xDeepInt, the reference Criteo configuration: 38 fields (I1..I12 log-binned, C1..C26), K=16, "
        "4 residual linear PIN layers with 16 subspaces (bit-wise crossing), field-weighted output.",
        preprocess={
            "dataset": "criteo",
            "integer_fields": "I1..I12, bin = floor(ln(x^2+1)), 64 buckets",
            "categorical_min_count": 20,
            "split": "train iff (row mod 1000) <= 800",
        },
        pipeline_tag="tabular-classification",
        datasets=("criteo",),
        tags=("ctr", "click-through-rate", "feature-interactions", "ftrl", "recommendation"),
        params=1_478_695,  # 4 PIN layers of (38 x 16)^2 + output 39 (+ embeddings sized by the data)
        config="configs/xdeepint-criteo.yaml",
        results=RESULTS,
        recipe=_RECIPE,
        limitations=_LIMITS,
        tiny_overrides=TINY,
    ),
    Entry(
        name="xdeepint-avazu",
        module=MODULE,
        init_args={"size": "avazu"},
        paper=PAPER,
        license="other",
        description="xDeepInt on Avazu with the Criteo architecture (K=16, L=4, h=16): 23 fields (hour-of-day, "
        "weekday and the 21 categorical columns). The paper's Avazu settings are not public; ours.",
        preprocess={
            "dataset": "avazu",
            "fields": "hour -> hour_of_day, weekday; 21 categorical columns",
            "categorical_min_count": 20,
            "split": "train iff (row mod 1000) <= 800",
        },
        pipeline_tag="tabular-classification",
        datasets=("avazu",),
        tags=("ctr", "click-through-rate", "feature-interactions", "ftrl", "recommendation"),
        params=541_720,  # 4 PIN layers of (23 x 16)^2 + output 24 (+ embeddings sized by the data)
        config="configs/xdeepint-avazu.yaml",
        recipe=_RECIPE.replace(
            "Reference: ", "Same recipe as the reference Criteo run (the Avazu one is not public): "
        ),
        limitations=_LIMITS,
        tiny_overrides=TINY,
    ),
]

# The paper's central claim in miniature (zoo list --claims; the card's "Claim in miniature").
CLAIM = Claim(
    claim="Polynomial interaction layers learn bounded-order feature interactions that a linear model cannot, "
    "without a jointly trained DNN.",
    paper="",
    metric="test/auc",
    arms=(
        Arm("xDeepInt", "xdeepint"),
        Arm("logistic regression", "xdeepint", "lr", ("--model.init_args.net.num_layers=0",)),
    ),
    design="configs/demo/xdeepint.yaml: 100k synthetic Criteo-format rows whose labels come from planted 2nd- and "
    "3rd-order feature crosses plus a first-order part (data_modules/ctr.py), 3 PIN layers, G-FTRL + FTRL, two "
    "epochs. The baseline is the same module with no PIN layer: its logit is linear in the one-hot features "
    "(logistic regression), trained by the same optimisers. The paper's datasets are real Criteo / Avazu logs.",
    decimals=4,
)
