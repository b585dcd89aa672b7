"""RELIANT's adjacency cache: one normalised adjacency per graph, computed once, and never another graph's.

The cache used to be keyed on ``edge_index.data_ptr()`` without keeping the tensor alive, so a new graph allocated
at a freed graph's address (same shape, same version counter) got the freed graph's adjacency."""

from __future__ import annotations

import torch

from zoo.models.reliant.model import adjacency


def _dense_gcn_norm(edge_index, n):
    a = torch.zeros(n, n)
    a[edge_index[1], edge_index[0]] = 1.0  # row = target
    a = a + torch.eye(n)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


def test_a_new_graph_at_a_freed_graphs_address_gets_its_own_adjacency():
    n, e = 6, 6
    ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    star = torch.tensor([[0, 0, 0, 0, 0, 1], [1, 2, 3, 4, 5, 2]])
    memory = bytearray(2 * e * 8)  # both graphs live in this buffer: the second at the first one's address

    def graph_in_memory(edges):
        edge_index = torch.frombuffer(memory, dtype=torch.int64).view(2, e)
        edge_index.copy_(edges)
        return edge_index

    first = graph_in_memory(ring)
    address, version = first.data_ptr(), first._version
    torch.testing.assert_close(adjacency(first, n, normalize=True).to_dense(), _dense_gcn_norm(ring, n))
    del first  # freed: its cached adjacency goes with it
    second = graph_in_memory(star)
    assert (second.data_ptr(), second._version, second.shape) == (address, version, (2, e))  # what the old key saw
    torch.testing.assert_close(adjacency(second, n, normalize=True).to_dense(), _dense_gcn_norm(star, n))


def test_computed_once_per_graph_and_again_after_an_in_place_change():
    n = 5
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    adj = adjacency(edge_index, n, normalize=True)
    assert adjacency(edge_index, n, normalize=True) is adj  # the cached one
    assert adjacency(edge_index, n, self_loops=True) is not adj  # another kind, cached beside it
    edge_index[1, 3] = 0  # the graph changed in place
    torch.testing.assert_close(adjacency(edge_index, n, normalize=True).to_dense(), _dense_gcn_norm(edge_index, n))
