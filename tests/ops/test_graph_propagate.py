"""zoo.ops.graph_propagate: the CSR SpMM Triton kernel (interpreted on the CPU) against torch.sparse.mm."""

from __future__ import annotations

import pytest
import torch

from zoo.ops import graph_propagate, graph_propagate_reference


def _graph(n, m, density, empty_rows=()):
    dense = (torch.rand(n, m) < density).float() * torch.randn(n, m)
    for r in empty_rows:
        dense[r] = 0
    return dense


@pytest.mark.parametrize(
    "n,m,f,density,empty_rows",
    [
        (23, 19, 37, 0.2, (0, 5)),  # ragged feature block, rows without neighbours
        (1, 1, 1, 1.0, ()),  # smallest
        (7, 90, 150, 0.9, ()),  # rows with more non-zeros than one BLOCK_K, two feature blocks
        (40, 40, 8, 0.05, (39,)),  # sparse square graph, last row empty
    ],
)
def test_kernel_matches_reference(n, m, f, density, empty_rows):
    dense = _graph(n, m, density, empty_rows)
    adj = dense.to_sparse_csr()
    x = torch.randn(m, f, requires_grad=True)
    w = torch.randn(n, f)
    ref = graph_propagate_reference(adj, x)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    out = graph_propagate(adj, x, impl="triton")
    (g_out,) = torch.autograd.grad((out * w).sum(), x)
    torch.testing.assert_close(out, dense @ x.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_out, dense.t() @ w, atol=1e-5, rtol=1e-5)  # the transpose product
    torch.testing.assert_close(g_out, g_ref, atol=1e-5, rtol=1e-5)


def test_coo_accepted_and_bad_inputs_rejected():
    dense = _graph(6, 6, 0.5)
    x = torch.randn(6, 3)
    torch.testing.assert_close(graph_propagate(dense.to_sparse(), x, impl="triton"), dense @ x, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="sparse"):
        graph_propagate(dense, x)
    with pytest.raises(ValueError, match="rows"):
        graph_propagate(dense.to_sparse_csr(), torch.randn(5, 3))
    adj = dense.to_sparse_csr().requires_grad_()
    with pytest.raises(ValueError, match="constant"):
        graph_propagate(adj, x, impl="triton")


@pytest.mark.parametrize("interpret", [True, False], ids=["kernel", "torch-math"])
def test_opcheck(interpret, monkeypatch):
    if not interpret:
        monkeypatch.delenv("TRITON_INTERPRET")
    adj = _graph(7, 5, 0.4, (2,)).to_sparse_csr()
    x = torch.randn(5, 6, requires_grad=True)
    arrays = (adj.crow_indices(), adj.col_indices(), adj.values())
    torch.library.opcheck(torch.ops.zoo.graph_propagate.default, (*arrays, x))
    torch.library.opcheck(torch.ops.zoo.graph_propagate_backward.default, (*arrays, torch.randn(7, 6), 5))
    adj_t = adj.to_dense().t().to_sparse_csr()
    t_arrays = (adj_t.crow_indices(), adj_t.col_indices(), adj_t.values())
    torch.library.opcheck(torch.ops.zoo.graph_propagate.default, (*arrays, x, *t_arrays))


@pytest.mark.parametrize("impl", ["triton", "reference"])
def test_given_transpose_serves_the_backward(impl):
    """``adj_t``: the backward multiplies by the caller's transpose (same values as building it), and uses it:
    a deliberately different "transpose" changes the gradient but not the output."""
    dense = _graph(12, 9, 0.3, (4,))
    adj = dense.to_sparse_csr()
    x = torch.randn(9, 5, requires_grad=True)
    w = torch.randn(12, 5)
    out = graph_propagate(adj, x, impl=impl, adj_t=dense.t().to_sparse_csr())
    (g,) = torch.autograd.grad((out * w).sum(), x)
    torch.testing.assert_close(out, dense @ x.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g, dense.t() @ w, atol=1e-5, rtol=1e-5)
    other = (2 * dense.t()).to_sparse_csr()
    out2 = graph_propagate(adj, x, impl=impl, adj_t=other)
    (g2,) = torch.autograd.grad((out2 * w).sum(), x)
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(g2, 2 * g, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="transpose"):
        graph_propagate(adj, x, impl=impl, adj_t=adj)


def test_compile_matches_eager():
    class SGC(torch.nn.Module):  # Â(ÂX)W, as in SGC with K = 2
        def __init__(self, adj):
            super().__init__()
            self.register_buffer("adj", adj)
            self.lin = torch.nn.Linear(6, 4)

        def forward(self, x):
            h = graph_propagate(self.adj, graph_propagate(self.adj, x, impl="triton"), impl="triton")
            return self.lin(h).log_softmax(-1)

    model = SGC(_graph(9, 9, 0.3).to_sparse_csr())
    x = torch.randn(9, 6)
    eager = model(x)
    g_eager = torch.autograd.grad(eager.sum(), model.lin.weight)[0]
    compiled = torch.compile(model)(x)
    g_compiled = torch.autograd.grad(compiled.sum(), model.lin.weight)[0]
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(g_compiled, g_eager)
