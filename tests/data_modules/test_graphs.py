"""Deep-graph-clustering loaders: published counts on the shared data, the restricted unpickler, the karate club,
clear errors."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

from zoo.data_modules.graphs import (
    PUBLISHED,
    GraphClusteringDataModule,
    load_graph,
    restricted_load,
)


@pytest.mark.parametrize("name", ["cora", "citeseer", "bat", "eat"])
def test_published_counts(shared_data, name):
    feat, labels, adj = load_graph(name, shared_data / name)
    pub = PUBLISHED[name]
    assert feat.shape == (pub["nodes"], pub["features"]) and feat.dtype == np.float32
    assert labels.shape == (pub["nodes"],) and int(labels.max()) + 1 == pub["classes"] and labels.min() == 0
    assert adj.shape == (pub["nodes"], pub["nodes"])
    assert (adj != adj.T).nnz == 0, "the adjacency is symmetric"
    assert adj.diagonal().sum() == 0, "self-loops are dropped (the filter adds them back)"
    if name in ("cora", "citeseer"):
        assert adj.nnz // 2 == pub["edges"]
    else:
        # the published count is int(nnz / 2) of the released dense matrix, self-loops included
        raw = np.load(shared_data / name / f"{name}_adj.npy")
        assert int(np.count_nonzero(raw) / 2) == pub["edges"]
        assert adj.nnz // 2 == {"bat": 1003, "eat": 5993}[name]  # SOURCE.md: undirected non-self edges


def test_citeseer_isolated_test_nodes_padded(shared_data):
    feat, labels, _ = load_graph("citeseer", shared_data / "citeseer")
    zero_rows = np.flatnonzero(feat.sum(1) == 0)
    test_index = np.loadtxt(shared_data / "citeseer" / "ind.citeseer.test.index", dtype=np.int64)
    padded = sorted(set(range(test_index.min(), test_index.max() + 1)) - set(test_index.tolist()))
    assert len(padded) == 15
    assert set(padded) <= set(zero_rows.tolist()) and (labels[padded] == 0).all()


def test_cora_class_sizes(shared_data):
    _, labels, _ = load_graph("cora", shared_data / "cora")
    # Cora's well-known class sizes (Sen et al. 2008, Planetoid order)
    assert sorted(np.bincount(labels).tolist()) == sorted([351, 217, 418, 818, 426, 298, 180])


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "ind.cora.x"
    bad.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle global .*system"):
        restricted_load(bad)
    assert not marker.exists()
    # builtins that would run code through a reduce are refused too
    bad.write_bytes(pickle.dumps(eval, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"global (__builtin__|builtins)\.eval"):
        restricted_load(bad)


def test_restricted_unpickler_reads_the_planetoid_files(shared_data):
    import scipy.sparse as sp

    x = restricted_load(shared_data / "cora" / "ind.cora.x")
    y = restricted_load(shared_data / "cora" / "ind.cora.y")
    graph = restricted_load(shared_data / "cora" / "ind.cora.graph")
    assert sp.issparse(x) and x.shape == (140, 1433)
    assert isinstance(y, np.ndarray) and y.shape == (140, 7) and (y.sum(1) == 1).all()
    assert len(graph) == 2708 and all(isinstance(v, list) for v in graph.values())


def test_missing_files_name_the_layout(tmp_path, shared_data):
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.\{x,y,tx,ty,allx,ally,graph,test\.index\}"):
        load_graph("cora", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"bat_feat\.npy .*bat_label\.npy .*bat_adj\.npy"):
        load_graph("bat", tmp_path)
    with pytest.raises(FileNotFoundError, match="uat_adj.npy is absent"):
        load_graph("uat", shared_data / "uat")
    with pytest.raises(ValueError, match="unknown graph 'pokec'"):
        load_graph("pokec", tmp_path)


def test_npy_refuses_pickled_arrays_and_bad_shapes(tmp_path, shared_data):
    for k in ("feat", "label", "adj"):
        shutil.copy(shared_data / "bat" / f"bat_{k}.npy", tmp_path / f"bat_{k}.npy")
    np.save(tmp_path / "bat_label.npy", np.array([{"x": 1}] * 131, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="plain numeric arrays"):
        load_graph("bat", tmp_path)
    np.save(tmp_path / "bat_label.npy", np.zeros(130, dtype=np.int64))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        load_graph("bat", tmp_path)


def test_karate_data_module():
    dm = GraphClusteringDataModule(name="karate", root=None, t=2)
    dm.setup()
    assert (dm.num_nodes, dm.num_features, dm.num_edges, dm.num_classes) == (34, 34, 78, 2)
    assert dm.dataset_name == "karate"
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (34, 34) and batch["x"].dtype == torch.float32
    assert batch["y"].dtype == torch.int64 and torch.bincount(batch["y"]).tolist() == [17, 17]
    # H^t applied to the identity features: every row sums to a positive value and the filter is symmetric
    np.testing.assert_allclose(batch["x"].numpy(), batch["x"].numpy().T, atol=1e-6)


def test_data_module_on_bat(shared_data):
    dm = GraphClusteringDataModule(name="bat", root=str(shared_data / "bat"))
    batch = next(iter(dm.val_dataloader()))
    assert batch["x"].shape == (131, 81) and batch["y"].shape == (131,)
    assert dm.num_classes == 4 and dm.dataset_name == "bat"
