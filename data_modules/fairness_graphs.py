"""Fairness benchmark graphs used by RELIANT (Dong et al., SDM 2023, arXiv 2301.01150): node tables with a binary
label and a binary sensitive attribute, an undirected graph, and the splits the RELIANT code uses.

Datasets (``name``) and the published on-disk layout expected under ``root`` (the NIFTY / RELIANT repository files):

- ``bail`` (Recidivism): ``bail.csv`` (label RECID, sensitive WHITE) and ``split/{train,val,test}_split.npy``;
  edges from ``bail_edges.txt`` when present, otherwise rebuilt with the NIFTY similarity rule (threshold 0.6).
- ``credit``: ``credit.csv`` (label NoDefaultNextMonth, sensitive Age); edges from ``credit_edges.txt`` when present,
  otherwise rebuilt (threshold 0.7, column ``Single`` left out as in NIFTY's loader). The rebuilt graph is much
  sparser than RELIANT's: we measured 137,377 undirected edges against the 1,421,858 of RELIANT's ``credit.npz``
  (2,873,716 DGL edges in its logs), which is not public, so credit results on the rebuilt graph are not comparable
  with the paper's.
- ``german``: ``german.csv`` + ``german_edges.txt`` (label GoodCustomer, sensitive Gender).
- ``dblp_fair_small`` (RELIANT's "small" DBLP): ``edgelist.txt``, ``labels.txt``, ``sens.txt``, ``split/*.npy`` and the
  node features ``X.npz`` (arrays data,row,col,shape). The features are not in the shared copy; without them the
  loader raises and says so.
- ``synthetic`` (or ``root=None``): :func:`synthetic_fair_graph`, a documented generator with a planted sensitive
  attribute correlated with the labels and the edges, so demos and tests run anywhere.

The similarity rule (NIFTY, Agarwal et al. UAI 2021; RELIANT ``src/CPF-master/data/utils.py``): over the raw
feature columns (all but the label), s_ij = 1 / (1 + ||x_i - x_j||_2); node i links to every j != i with
s_ij > t * max_{k != i} s_ik. The directed pairs are symmetrised. Rebuilt edge lists are cached (``cache_dir``, default
``~/.cache/zoo/fairness_graphs``) because the shared data folders are read-only.

Feature processing: bail rows are L1-normalised (``normalize`` in RELIANT's utils); german keeps raw values with
LoanAmount, Age and LoanDuration min-max scaled to [-1, 1] (RELIANT's loader). Credit's RELIANT file (``credit.npz``)
is not public, so credit takes NIFTY's processing of the same CSV (``feature_norm``: every column min-max scaled to
[-1, 1], the sensitive column kept raw): L1-normalising credit's rows, as for bail, leaves the bill and payment amounts
(up to 10^6) and flattens every other column to ~1e-5, and the GCN teacher then never beats its first epoch (test AUC
0.57). The sensitive column stays in the features (as in RELIANT).

Splits: bail and DBLP read the shipped files; credit and german are rebuilt with the RELIANT code's rule (per class,
Python ``random.shuffle`` under ``random.seed(20)`` for credit / ``random.seed(0)`` for german; train = first
min(50%, 500) of each class, val = 50-75%, test = 75-100%), which reproduces the same indices.

Every dataset becomes one ``torch_geometric.data.Data`` (full-batch training): ``x`` (N, F) float, ``edge_index``
(2, 2E) both directions, no self-loops (the models add them), ``y`` (N,) long, ``sens`` (N,) long, boolean
``train_mask``/``val_mask``/``test_mask``. Every dataloader yields that one graph.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from zoo.errors import DataNotFoundError, UserError, check_positive

log = logging.getLogger(__name__)

DATASETS = ("bail", "credit", "german", "dblp_fair_small", "synthetic")

# Published sizes. Undirected non-self edges of bail/credit/DBLP come from the RELIANT README logs' DGL edge counts
# (directed, self-loops included): (E - N) / 2; german's from its shipped file. (NIFTY's published counts.)
PUBLISHED = {
    "bail": {"nodes": 18876, "edges": 311870, "dgl_edges": 642616},
    "credit": {"nodes": 30000, "edges": 1421858, "dgl_edges": 2873716},
    "german": {"nodes": 1000, "edges": 21742},
    "dblp_fair_small": {"nodes": 39424, "edges": 52460, "dgl_edges": 144344},
}

_LAYOUT = {
    "bail": "bail.csv and split/{train,val,test}_split.npy (bail_edges.txt optional: rebuilt when absent)",
    "credit": "credit.csv (credit_edges.txt optional: rebuilt when absent)",
    "german": "german.csv and german_edges.txt (rebuilt when absent)",
    "dblp_fair_small": "edgelist.txt, labels.txt, sens.txt, split/{train,val,test}_split.npy and X.npz",
}


def _missing(name: str, root: Path, what: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name}: {what} not found under {root}. Expected layout: {_LAYOUT[name]} (the NIFTY/RELIANT repository "
        f"files, e.g. ../shared/data/{name}). Point root at that folder, or use root=None for the synthetic graph."
    )


# ------------------------------------------------------------------------------------------------ edges
def build_relationship(x: np.ndarray, thresh: float, chunk: int = 512) -> np.ndarray:
    """NIFTY's similarity graph: directed pairs (i, j), j != i, with s_ij > thresh * max_{k != i} s_ik,
    s = 1 / (1 + euclidean distance), computed in float64 over row chunks (the full N x N matrix of credit would
    take 7 GB). Returns an int64 array (M, 2)."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    n = xt.shape[0]
    out = []
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        # exact pairwise differences (no ||a||^2 + ||b||^2 - 2ab shortcut): the threshold test is sensitive to it
        d = torch.cdist(xt[rows], xt, compute_mode="donot_use_mm_for_euclid_dist")
        s = 1.0 / (1.0 + d)
        s[torch.arange(len(rows)), rows] = -1.0  # self is excluded from both the max and the neighbours
        max_sim = s.max(dim=1, keepdim=True).values
        r, c = torch.nonzero(s > thresh * max_sim, as_tuple=True)
        out.append(torch.stack([rows[r], c], 1))
    return torch.cat(out).numpy().astype(np.int64)


def undirected_pairs(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """Unique undirected non-self pairs (i < j) of an edge list: what RELIANT's symmetrisation keeps."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    e = e[e[:, 0] != e[:, 1]]
    lo, hi = np.minimum(e[:, 0], e[:, 1]), np.maximum(e[:, 0], e[:, 1])
    key = np.unique(lo * num_nodes + hi)
    return np.stack([key // num_nodes, key % num_nodes], 1)


def _cache_dir(cache_dir) -> Path:
    p = (
        Path(cache_dir)
        if cache_dir
        else Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")) / "fairness_graphs"
    )
    p.mkdir(parents=True, exist_ok=True)
    return p


def _edges(name: str, root: Path, feats: np.ndarray, thresh: float, cache_dir, rebuild: bool = False) -> np.ndarray:
    f = root / f"{name}_edges.txt"
    if f.is_file() and not rebuild:
        return np.loadtxt(f).astype(np.int64).reshape(-1, 2)
    digest = hashlib.sha1(np.ascontiguousarray(feats, dtype=np.float64).tobytes()).hexdigest()[:12]
    cached = _cache_dir(cache_dir) / f"{name}_edges_t{thresh}_{digest}.npy"
    if cached.is_file():
        return np.load(cached)
    log.info(
        "%s: %s absent; rebuilding the edge list with the NIFTY similarity rule (threshold %s)", name, f.name, thresh
    )
    e = build_relationship(feats, thresh)
    np.save(cached, e)
    return e


# ------------------------------------------------------------------------------------------------ splits
def reliant_split(
    labels: np.ndarray, seed: int, label_number: int = 1000, train_frac: float = 0.5, val_end: float = 0.75
):
    """The RELIANT/NIFTY per-class split with Python's ``random`` (same calls, same order: same indices)."""
    random.seed(seed)
    idx0, idx1 = np.where(labels == 0)[0], np.where(labels == 1)[0]
    random.shuffle(idx0)
    random.shuffle(idx1)
    tr = np.append(
        idx0[: min(int(train_frac * len(idx0)), label_number // 2)],
        idx1[: min(int(train_frac * len(idx1)), label_number // 2)],
    )
    va = np.append(
        idx0[int(train_frac * len(idx0)) : int(val_end * len(idx0))],
        idx1[int(train_frac * len(idx1)) : int(val_end * len(idx1))],
    )
    te = np.append(idx0[int(val_end * len(idx0)) :], idx1[int(val_end * len(idx1)) :])
    return tr, va, te


def _row_normalize(x: np.ndarray) -> np.ndarray:
    s = x.sum(1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(s != 0, 1.0 / s, 0.0)
    return x * inv


def feature_norm(x: np.ndarray, keep: int | None = None) -> np.ndarray:
    """NIFTY's ``feature_norm``: each column min-max scaled to [-1, 1] (constant columns -> -1); column ``keep`` (the
    sensitive attribute) is left raw."""
    mn, mx = x.min(0), x.max(0)
    out = 2 * (x - mn) / np.where(mx > mn, mx - mn, 1.0) - 1
    if keep is not None:
        out[:, keep] = x[:, keep]
    return out


def _read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def _to_data(name, x, edges, y, sens, tr, va, te):
    from torch_geometric.data import Data

    n = len(y)
    und = undirected_pairs(edges, n)
    ei = torch.from_numpy(np.concatenate([und, und[:, ::-1]]).T.copy())
    masks = []
    for idx in (tr, va, te):
        m = torch.zeros(n, dtype=torch.bool)
        m[torch.as_tensor(np.asarray(idx, dtype=np.int64))] = True
        masks.append(m)
    return Data(
        x=torch.as_tensor(np.asarray(x, dtype=np.float32)),
        edge_index=ei.long(),
        y=torch.as_tensor(np.array(y, dtype=np.int64)),
        sens=torch.as_tensor(np.array(sens, dtype=np.int64)),
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
        name=name,
    )


# ------------------------------------------------------------------------------------------------ loaders
def load_bail(root, cache_dir=None, rebuild_edges: bool = False):
    root = Path(root)
    if not (root / "bail.csv").is_file():
        raise _missing("bail", root, "bail.csv")
    df = _read_csv(root / "bail.csv")
    header = [c for c in df.columns if c != "RECID"]
    raw = df[header].to_numpy(np.float64)
    edges = _edges("bail", root, raw, 0.6, cache_dir, rebuild_edges)
    try:
        tr, va, te = (np.load(root / "split" / f"{s}_split.npy") for s in ("train", "val", "test"))
    except FileNotFoundError:
        raise _missing("bail", root, "split/{train,val,test}_split.npy") from None
    return _to_data("bail", _row_normalize(raw), edges, df["RECID"].to_numpy(), df["WHITE"].to_numpy(), tr, va, te)


def load_credit(root, cache_dir=None, rebuild_edges: bool = False):
    root = Path(root)
    if not (root / "credit.csv").is_file():
        raise _missing("credit", root, "credit.csv")
    df = _read_csv(root / "credit.csv")
    header = [c for c in df.columns if c not in ("NoDefaultNextMonth", "Single")]
    raw = df[header].to_numpy(np.float64)
    edges = _edges("credit", root, raw, 0.7, cache_dir, rebuild_edges)
    y = df["NoDefaultNextMonth"].to_numpy()
    tr, va, te = reliant_split(y, seed=20, label_number=1000)
    return _to_data("credit", feature_norm(raw, keep=header.index("Age")), edges, y, df["Age"].to_numpy(), tr, va, te)


def german_features(df):
    """German's feature table as RELIANT builds it (before the edge rule, which runs on these values)."""
    df = df.copy()
    df["Gender"] = (df["Gender"] == "Female").astype(np.int64)
    for c in ("LoanAmount", "Age", "LoanDuration"):
        df[c] = 2 * (df[c] - df[c].min()) / (df[c].max() - df[c].min()) - 1
    header = [c for c in df.columns if c not in ("GoodCustomer", "OtherLoansAtStore", "PurposeOfLoan")]
    return df, header


def load_german(root, cache_dir=None, rebuild_edges: bool = False):
    root = Path(root)
    if not (root / "german.csv").is_file():
        raise _missing("german", root, "german.csv")
    df, header = german_features(_read_csv(root / "german.csv"))
    raw = df[header].to_numpy(np.float64)
    edges = _edges("german", root, raw, 0.8, cache_dir, rebuild_edges)
    y = (df["GoodCustomer"].to_numpy() == 1).astype(np.int64)
    tr, va, te = reliant_split(y, seed=0, label_number=1000)
    return _to_data("german", raw, edges, y, df["Gender"].to_numpy(), tr, va, te)


def load_dblp_fair_small(root, cache_dir=None, rebuild_edges: bool = False):
    root = Path(root)
    for f in ("edgelist.txt", "labels.txt", "sens.txt"):
        if not (root / f).is_file():
            raise _missing("dblp_fair_small", root, f)
    labels = np.loadtxt(root / "labels.txt")[:, 1]
    sens = np.loadtxt(root / "sens.txt")[:, 1]
    edges = np.loadtxt(root / "edgelist.txt", dtype=np.int64)
    y, s = (labels == 3).astype(np.int64), (sens == 2).astype(np.int64)
    tr, va, te = (np.load(root / "split" / f"{k}_split.npy").astype(np.int64) for k in ("train", "val", "test"))
    xf = root / "X.npz"
    if not xf.is_file():
        raise FileNotFoundError(
            f"dblp_fair_small: the node features X.npz are missing under {root} (the shared copy has the graph, "
            "labels, sensitive attribute and split only: X.npz is > 4 MiB in yushundong/RELIANT:data/small/). Put "
            "X.npz (arrays data,row,col,shape) there, or use load_dblp_fair_small_graph() for the graph without "
            "features."
        )
    import scipy.sparse as sp

    z = np.load(xf, allow_pickle=False)
    x = sp.csr_matrix((z["data"], (z["row"], z["col"])), shape=tuple(z["shape"])).toarray()
    return _to_data("dblp_fair_small", x, edges, y, s, tr, va, te)


def load_dblp_fair_small_graph(root):
    """DBLP's graph, labels, sensitive attribute and split with an empty (N, 0) feature matrix (counts, checks)."""
    root = Path(root)
    labels = np.loadtxt(root / "labels.txt")[:, 1]
    sens = np.loadtxt(root / "sens.txt")[:, 1]
    edges = np.loadtxt(root / "edgelist.txt", dtype=np.int64)
    tr, va, te = (np.load(root / "split" / f"{k}_split.npy").astype(np.int64) for k in ("train", "val", "test"))
    return _to_data(
        "dblp_fair_small",
        np.zeros((len(labels), 0)),
        edges,
        (labels == 3).astype(np.int64),
        (sens == 2).astype(np.int64),
        tr,
        va,
        te,
    )


def synthetic_fair_graph(
    num_nodes: int = 1000,
    num_features: int = 16,
    seed: int = 0,
    bias: float = 0.1,
    homophily: float = 0.5,
    avg_degree: float = 10.0,
):
    """A small attributed graph with a planted sensitive attribute (documented generator).

    - s_i ~ Bernoulli(0.5); y_i ~ Bernoulli(0.5 + bias/2) if s_i = 1 else Bernoulli(0.5 - bias/2): the base rates of
      the two groups differ by ``bias``;
    - features (``num_features`` >= 8): column 0 is s itself (as WHITE in bail), columns 1..4 carry y (+-0.7 plus unit
      Gaussian noise: the signal a fair student can use), columns 5..7 carry s (+-0.5 plus noise: proxies of the
      sensitive attribute), the rest is noise. The last two columns (which the CPF variant of RELIANT overwrites with
      its proxy) are noise;
    - edges: each node draws ~``avg_degree``/2 partners; with probability ``homophily`` the partner has the same s,
      otherwise with probability 1/2 the same y, otherwise any node: the graph spreads both group and label
      information (undirected, deduplicated, no self-loops);
    - split: per class 50% / 25% / 25% (shuffled with ``seed``).
    """
    if num_features < 8:
        raise ValueError("synthetic_fair_graph needs num_features >= 8")
    rng = np.random.default_rng(seed)
    n = num_nodes
    s = rng.integers(0, 2, n)
    y = (rng.random(n) < np.where(s == 1, 0.5 + bias / 2, 0.5 - bias / 2)).astype(np.int64)
    x = rng.normal(0, 1, (n, num_features))
    x[:, 0] = s
    x[:, 1:5] += 0.7 * (2 * y[:, None] - 1)
    x[:, 5:8] += 0.5 * (2 * s[:, None] - 1)
    m = int(n * avg_degree / 2)
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    u = rng.random(m)
    by_s = [np.where(s == g)[0] for g in (0, 1)]
    by_y = [np.where(y == g)[0] for g in (0, 1)]
    for g in (0, 1):
        sel = (u < homophily) & (s[src] == g)
        dst[sel] = rng.choice(by_s[g], sel.sum())
        sel = (u >= homophily) & (u < homophily + (1 - homophily) / 2) & (y[src] == g)
        dst[sel] = rng.choice(by_y[g], sel.sum())
    edges = np.stack([src, dst], 1)
    idx = rng.permutation(n)
    tr, va, te = [], [], []
    for c in (0, 1):
        ic = idx[y[idx] == c]
        a, b = int(0.5 * len(ic)), int(0.75 * len(ic))
        tr.append(ic[:a]), va.append(ic[a:b]), te.append(ic[b:])
    return _to_data("synthetic", x, edges, y, s, *(np.concatenate(v) for v in (tr, va, te)))


LOADERS = {"bail": load_bail, "credit": load_credit, "german": load_german, "dblp_fair_small": load_dblp_fair_small}


def load_fair_graph(name: str, root=None, cache_dir=None, **synthetic_kwargs):
    if root is None or name == "synthetic":
        log.info(
            "FairGraphDataModule: root=None -> the synthetic fairness graph (synthetic_fair_graph, %s)",
            synthetic_kwargs or "defaults",
        )
        return synthetic_fair_graph(**synthetic_kwargs)
    if name not in LOADERS:
        raise UserError(f"unknown fairness graph {name!r}; choose one of {', '.join(DATASETS)} (data.init_args.name).")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _missing(name, root, "the dataset folder")
    return LOADERS[name](root, cache_dir=cache_dir)


class FairGraphDataModule(LightningDataModule):
    """One fairness graph, full batch: every dataloader yields the same ``Data`` object (masks select the nodes).

    Args:
        name: bail | credit | german | dblp_fair_small | synthetic.
        root: the dataset folder (published layout, see the module docstring); ``None`` selects the synthetic graph.
        cache_dir: where rebuilt edge lists are cached (default ``~/.cache/zoo/fairness_graphs``).
        synthetic_nodes, synthetic_seed: size and seed of the synthetic graph.
    """

    def __init__(
        self,
        name: str = "synthetic",
        root: str | None = None,
        cache_dir: str | None = None,
        synthetic_nodes: int = 1000,
        synthetic_seed: int = 0,
    ):
        super().__init__()
        if name not in DATASETS:
            raise UserError(f"unknown fairness graph {name!r}; choose one of {', '.join(DATASETS)}")
        if root is not None and name != "synthetic" and not Path(root).expanduser().is_dir():
            raise _missing(name, Path(root).expanduser(), "the dataset folder")
        check_positive("synthetic_nodes", synthetic_nodes, minimum=10, where="FairGraphDataModule")
        self.name, self.root, self.cache_dir = name, root, cache_dir
        self.synthetic_nodes, self.synthetic_seed = synthetic_nodes, synthetic_seed
        self.data = None

    def prepare_data(self):
        # rebuild (and cache) missing edge lists once, before any worker needs them
        if self.root is not None and self.name != "synthetic":
            load_fair_graph(self.name, self.root, self.cache_dir)

    def setup(self, stage: str | None = None):
        if self.data is None:
            self.data = load_fair_graph(
                self.name,
                self.root,
                self.cache_dir,
                **(
                    {"num_nodes": self.synthetic_nodes, "seed": self.synthetic_seed}
                    if self.root is None or self.name == "synthetic"
                    else {}
                ),
            )

    @property
    def num_features(self) -> int:
        self.setup()
        return int(self.data.num_features)

    @property
    def num_nodes(self) -> int:
        self.setup()
        return int(self.data.num_nodes)

    @property
    def num_classes(self) -> int:
        self.setup()
        return int(self.data.y.max()) + 1

    def _loader(self):
        self.setup()
        return DataLoader([self.data], batch_size=None, collate_fn=None)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()

    def test_dataloader(self):
        return self._loader()

    def predict_dataloader(self):
        return self._loader()
