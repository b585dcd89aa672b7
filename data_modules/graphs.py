"""Attributed graphs for deep graph clustering (CCGC, Yang et al., AAAI 2023, arXiv 2301.01098, and its family).

Datasets (``name``) and the published on-disk layouts expected under ``root``:

- ``cora``, ``citeseer`` (and other Planetoid graphs): ``ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}``, the
  Python-2 pickles of kimiyoung/planetoid. They are read with :class:`PlanetoidUnpickler`, which admits only the
  numpy / scipy.sparse / collections classes those files contain and refuses anything else. The test rows are stored
  permuted (``features[test_index] = stack(allx, tx)[sorted(test_index)]``); CiteSeer's 15 isolated test nodes are
  missing from ``tx``/``ty`` and are padded with zero feature rows and zero label rows (label 0 after argmax), as the
  CCGC loader does, so the graph has 3,327 nodes.
- ``bat``, ``eat``, ``uat``, ``amap``: ``<name>_feat.npy`` (N×d float), ``<name>_label.npy`` (N int),
  ``<name>_adj.npy`` (dense N×N 0/1) — the Awesome-Deep-Graph-Clustering release. Read with
  ``np.load(allow_pickle=False)``. UAT's adjacency is not in the shared copy (a dense 1190² matrix over the size
  limit): asking for UAT without ``uat_adj.npy`` raises and says where to get it.
- ``root=None``: Zachary's karate club from networkx (real, bundled): 34 members, 78 friendships, two communities
  (the ``club`` each member joined after the split), features = one-hot node identity. Logged when selected.

Laplacian smoothing (CCGC §"Graph filtering"): self-loops are removed from A, then Â = A + I, D̂ = diag(Â 1),
L̃ = I − D̂^{-1/2} Â D̂^{-1/2} and H = I − k L̃ with k = 1, i.e. H = D̂^{-1/2} Â D̂^{-1/2}; the smoothed attributes
X̃ = H^t X are computed once with ``t`` sparse products (``zoo.ops.graph_propagate``).

Every dataloader yields the same full-batch sample ``{"x": X̃ (N, d) float32, "y": labels (N,) int64}``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from zoo.errors import DataNotFoundError, UserError, check_positive
from zoo.safe_pickle import RestrictedUnpickler, builtin_globals, numpy_globals

log = logging.getLogger(__name__)

PLANETOID = ("cora", "citeseer", "pubmed")
NPY = ("bat", "eat", "uat", "amap")

# Published statistics (Awesome-Deep-Graph-Clustering dataset table, yueliu1999/Awesome-Deep-Graph-Clustering
# dataset/README.md). "edges" there is int(nnz(adj) / 2) of the released matrix, which counts self-loops of BAT/EAT as
# half an edge each.
PUBLISHED = {
    "cora": {"nodes": 2708, "features": 1433, "edges": 5278, "classes": 7},
    "citeseer": {"nodes": 3327, "features": 3703, "edges": 4552, "classes": 6},
    "amap": {"nodes": 7650, "features": 745, "edges": 119081, "classes": 8},
    "bat": {"nodes": 131, "features": 81, "edges": 1038, "classes": 4},
    "eat": {"nodes": 399, "features": 203, "edges": 5994, "classes": 4},
    "uat": {"nodes": 1190, "features": 239, "edges": 13599, "classes": 4},
    "karate": {"nodes": 34, "features": 34, "edges": 78, "classes": 2},
}


# --------------------------------------------------------------------------------------------- Planetoid pickles
class PlanetoidUnpickler(RestrictedUnpickler):
    """Unpickler for the Planetoid ``ind.*`` files: only numpy arrays/dtypes, scipy CSR matrices, ``defaultdict``
    and ``list`` may be referenced. Any other global (a function that would run code) is refused."""

    refusal = (
        "a Planetoid file holds only numpy arrays, scipy.sparse CSR matrices and a dict of lists. This file is "
        "not a Planetoid ind.* file (or was tampered with); re-download it from kimiyoung/planetoid."
    )

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file, source)
        import collections

        import scipy.sparse as sp

        self.allowed = {
            **numpy_globals(),
            **builtin_globals(("list",)),
            ("scipy.sparse.csr", "csr_matrix"): sp.csr_matrix,
            ("scipy.sparse._csr", "csr_matrix"): sp.csr_matrix,
            ("collections", "defaultdict"): collections.defaultdict,
        }


def restricted_load(path: str | Path):
    return PlanetoidUnpickler.load_file(Path(path))


def _planetoid_missing(name: str, root: Path, f: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name}: {f.name} not found under {root}. Expected the Planetoid layout "
        f"ind.{name}.{{x,y,tx,ty,allx,ally,graph,test.index}} (kimiyoung/planetoid:data/, e.g. ../shared/data/{name}); "
        "point root at that folder, or use root=None for the bundled karate club."
    )


def load_planetoid(name: str, root: str | Path):
    """(features (N, d) float32 dense, labels (N,) int64, adjacency scipy CSR (N, N) symmetric 0/1, no self-loops)."""
    import scipy.sparse as sp

    root = Path(root)
    objs = {}
    for part in ("x", "y", "tx", "ty", "allx", "ally", "graph"):
        f = root / f"ind.{name}.{part}"
        if not f.is_file():
            raise _planetoid_missing(name, root, f)
        objs[part] = restricted_load(f)
    f = root / f"ind.{name}.test.index"
    if not f.is_file():
        raise _planetoid_missing(name, root, f)
    test_index = np.array([int(line) for line in f.read_text().split()], dtype=np.int64)
    test_sorted = np.sort(test_index)
    tx, ty = objs["tx"], objs["ty"]
    if not (sp.issparse(tx) and sp.issparse(objs["allx"]) and isinstance(ty, np.ndarray)):
        raise ValueError(f"{name}: ind.{name}.tx/allx must be scipy sparse matrices and ty a numpy array")
    full_range = test_sorted[-1] - test_sorted[0] + 1
    if full_range != len(test_sorted):
        # CiteSeer: isolated test nodes absent from tx/ty -> zero rows at their positions (CCGC/Kipf loader)
        tx_ext = sp.lil_matrix((full_range, tx.shape[1]), dtype=tx.dtype)
        tx_ext[test_sorted - test_sorted[0], :] = tx
        ty_ext = np.zeros((full_range, ty.shape[1]), dtype=ty.dtype)
        ty_ext[test_sorted - test_sorted[0], :] = ty
        tx, ty = tx_ext.tocsr(), ty_ext
    features = sp.vstack((objs["allx"], tx)).tolil()
    features[test_index, :] = features[test_sorted, :]
    labels = np.vstack((objs["ally"], ty))
    labels[test_index, :] = labels[test_sorted, :]
    graph = objs["graph"]
    n = features.shape[0]
    rows, cols = [], []
    for node, nbrs in graph.items():
        for j in nbrs:
            rows.append(node)
            cols.append(j)
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if len(rows) and max(rows.max(), cols.max()) >= n:
        raise ValueError(f"{name}: ind.{name}.graph names node {max(rows.max(), cols.max())} but there are {n} rows")
    adj = _symmetric_binary(rows, cols, n)
    return np.asarray(features.todense(), dtype=np.float32), labels.argmax(1).astype(np.int64), adj


def _symmetric_binary(rows, cols, n):
    import scipy.sparse as sp

    a = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    return a.tocsr()


# --------------------------------------------------------------------------------------------- .npy layout
def load_npy_graph(name: str, root: str | Path):
    """``<name>_{feat,label,adj}.npy`` -> (features float32, labels int64, adjacency CSR symmetric 0/1 without
    self-loops)."""

    root = Path(root)
    paths = {k: root / f"{name}_{k}.npy" for k in ("feat", "label", "adj")}
    if not paths["adj"].is_file() and paths["feat"].is_file():
        if name == "uat":
            raise FileNotFoundError(
                f"uat: {paths['adj']} is absent. The shared copy of UAT has only uat_feat.npy and uat_label.npy: the "
                "dense 1190×1190 adjacency is over the copy's size limit and cannot be rebuilt from the one-hot degree "
                "features. Download uat.zip from the Awesome-Deep-Graph-Clustering release (Google Drive link in "
                "yueliu1999/Awesome-Deep-Graph-Clustering:dataset/README.md) and put uat_adj.npy beside the others."
            )
    for k, p in paths.items():
        if not p.is_file():
            raise FileNotFoundError(
                f"{name}: {p.name} not found under {root}. Expected layout: {name}_feat.npy (N×d), {name}_label.npy "
                f"(N,) and {name}_adj.npy (dense N×N) as released by Awesome-Deep-Graph-Clustering (e.g. "
                f"../shared/data/{name}); point root at that folder, or use root=None for the bundled karate club."
            )
    try:
        feat = np.load(paths["feat"], allow_pickle=False)
        label = np.load(paths["label"], allow_pickle=False)
        adj = np.load(paths["adj"], allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{name}: the .npy files under {root} must be plain numeric arrays ({e})") from e
    n = feat.shape[0]
    if feat.ndim != 2 or label.shape != (n,) or adj.shape != (n, n):
        raise ValueError(
            f"{name}: inconsistent shapes feat {feat.shape}, label {label.shape}, adj {adj.shape}; "
            "expected (N, d), (N,), (N, N)"
        )
    rows, cols = np.nonzero(adj)
    return feat.astype(np.float32), label.astype(np.int64), _symmetric_binary(rows, cols, n)


# --------------------------------------------------------------------------------------------- karate club
def load_karate():
    """Zachary's karate club (networkx): one-hot identity features, labels = the club joined (0 Mr. Hi, 1 Officer)."""
    import networkx as nx

    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    edges = np.array(list(g.edges()), dtype=np.int64)
    labels = np.array([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)], dtype=np.int64)
    return np.eye(n, dtype=np.float32), labels, _symmetric_binary(edges[:, 0], edges[:, 1], n)


def load_graph(name: str, root: str | Path | None):
    """(features, labels, adjacency) for ``name`` under ``root``; ``root=None`` -> the karate club."""
    if root is None:
        return load_karate()
    name = name.lower()
    if name in PLANETOID:
        return load_planetoid(name, root)
    if name in NPY:
        return load_npy_graph(name, root)
    raise ValueError(
        f"unknown graph {name!r}: choose one of {', '.join(PLANETOID + NPY)} (with root), or root=None "
        "for the karate club"
    )


# --------------------------------------------------------------------------------------------- filter
def normalized_adjacency(adj) -> torch.Tensor:
    """H = D̂^{-1/2} (A + I) D̂^{-1/2} as a torch CSR float32 tensor; self-loops of ``adj`` are dropped first."""
    import scipy.sparse as sp

    a = sp.csr_matrix(adj, dtype=np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    a_hat = a + sp.eye(a.shape[0], format="csr")
    d_inv_sqrt = np.power(np.asarray(a_hat.sum(1)).ravel(), -0.5)
    h = sp.diags(d_inv_sqrt) @ a_hat @ sp.diags(d_inv_sqrt)
    h = h.tocsr()
    h.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": informational
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(h.indptr.astype(np.int64)),
            torch.from_numpy(h.indices.astype(np.int64)),
            torch.from_numpy(h.data.astype(np.float32)),
            size=h.shape,
            check_invariants=True,
        )


def laplacian_smoothing(adj, features, t: int) -> torch.Tensor:
    """X̃ = H^t X (CCGC Eq. of the graph filter, k = 1): ``t`` sparse products of the normalised adjacency."""
    from zoo.ops import graph_propagate

    if t < 0:
        raise UserError(f"t (number of filter applications) must be >= 0, got {t}; set data.init_args.t (CCGC: 4).")
    h = adj if isinstance(adj, torch.Tensor) else normalized_adjacency(adj)
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    for _ in range(t):
        x = graph_propagate(h, x)
    return x


# --------------------------------------------------------------------------------------------- DataModule
class _FullGraph(torch.utils.data.Dataset):
    def __init__(self, sample):
        self.sample = sample

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return self.sample


class GraphClusteringDataModule(LightningDataModule):
    """One attributed graph, full batch: every step sees ``{"x": H^t X, "y": labels}``.

    Args:
        name: ``cora``, ``citeseer``, ``bat``, ``eat``, ``uat``, ``amap`` (ignored when ``root`` is None).
        root: folder with the dataset's files (layouts in the module docstring); None -> Zachary's karate club.
        t: number of Laplacian-smoothing applications (CCGC code default 4).
    """

    def __init__(self, name: str = "cora", root: str | None = None, t: int = 4):
        super().__init__()
        if root is not None and not Path(root).expanduser().is_dir():
            raise DataNotFoundError(
                f"GraphClusteringDataModule: the data folder {root} does not exist; point data.init_args.root at the "
                f"folder holding ind.{name}.{{x,y,tx,ty,allx,ally,graph,test.index}} (Planetoid) or "
                f"{name}_{{feat,label,adj}}.npy, or use root=null for the bundled karate club."
            )
        check_positive("t", t, minimum=0, where="GraphClusteringDataModule")
        self.save_hyperparameters()
        self.name, self.root, self.t = name, root, t
        self.features = self.labels = self.adj = self.smoothed = None

    def setup(self, stage: str | None = None):
        if self.smoothed is not None:
            return
        if self.root is None:
            log.info(
                "GraphClusteringDataModule: root=None -> Zachary's karate club (networkx, 34 nodes, 2 communities)%s",
                "" if self.name in (None, "karate") else f"; name={self.name!r} is ignored without a root",
            )
        features, labels, adj = load_graph(self.name, self.root)
        self.features = torch.from_numpy(features)
        self.labels = torch.from_numpy(labels)
        self.adj = adj
        self.smoothed = laplacian_smoothing(adj, features, self.t)

    @property
    def dataset_name(self) -> str:
        return "karate" if self.root is None else self.name.lower()

    @property
    def num_nodes(self) -> int:
        self.setup()
        return self.smoothed.shape[0]

    @property
    def num_features(self) -> int:
        self.setup()
        return self.smoothed.shape[1]

    @property
    def num_classes(self) -> int:
        self.setup()
        return int(self.labels.max()) + 1

    @property
    def num_edges(self) -> int:
        """Undirected edges without self-loops."""
        self.setup()
        return int(self.adj.nnz // 2)

    def train_dataloader(self):
        """The whole graph as one sample; every stage sees the same full batch (transductive clustering)."""
        self.setup()
        return DataLoader(_FullGraph({"x": self.smoothed, "y": self.labels}), batch_size=None)

    val_dataloader = test_dataloader = predict_dataloader = train_dataloader
