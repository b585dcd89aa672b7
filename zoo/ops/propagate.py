"""``zoo.ops.graph_propagate``: sparse CSR adjacency (N×M) times dense features (M×F).

The propagation step Â X of graph convolution (Kipf & Welling, ICLR 2017, Eq. 2), SGC's Â^K X (Wu et al., ICML
2019), label propagation, and CCGC's Laplacian smoothing of the features (Yang et al., AAAI 2023). The adjacency is a
constant (no gradient to its values); the gradient to X is the transpose product Âᵀ G, computed by the same kernel
on the CSR of Âᵀ: the caller's ``adj_t`` when it has one (a symmetric Â is its own transpose; a graph's cached
adjacency can carry it), else built in the backward by a stable sort of the column indices.

Kernel: one program per (row, feature block) walks the row's non-zeros BLOCK_K at a time, gathering the rows of X
they point to and accumulating in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.ops import _dispatch

try:  # Triton comes with torch's Linux CUDA wheels; without it only the reference runs (zoo.ops._dispatch says why)
    import triton.language as tl
except Exception:  # ImportError, or a broken install
    tl = None

OP = "graph_propagate"


def _as_csr(adj: Tensor) -> Tensor:
    if not isinstance(adj, Tensor) or adj.dim() != 2:
        raise ValueError(
            "zoo.ops.graph_propagate: adj must be a 2-D torch sparse tensor (CSR, or COO which is "
            f"converted), got {type(adj).__name__} {tuple(getattr(adj, 'shape', ()))}"
        )
    if adj.layout == torch.sparse_csr:
        return adj
    if adj.layout == torch.sparse_coo:
        return adj.coalesce().to_sparse_csr()
    raise ValueError(
        f"zoo.ops.graph_propagate: adj must be sparse (torch.sparse_csr or sparse_coo), got layout "
        f"{adj.layout}; convert a dense matrix with adj.to_sparse_csr()"
    )


def _check(adj: Tensor, x: Tensor):
    if not isinstance(x, Tensor) or x.dim() != 2 or x.layout != torch.strided:
        raise ValueError(
            f"zoo.ops.graph_propagate: x must be a dense (M, F) tensor, got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    if adj.shape[1] != x.shape[0]:
        raise ValueError(
            f"zoo.ops.graph_propagate: adj is {tuple(adj.shape)} but x has {x.shape[0]} rows "
            f"(need adj (N, M) and x (M, F))"
        )


def graph_propagate_reference(adj: Tensor, x: Tensor) -> Tensor:
    """The specification: ``torch.sparse.mm(adj, x)`` (differentiable w.r.t. x)."""
    adj = _as_csr(adj)
    _check(adj, x)
    return torch.sparse.mm(adj, x)


def graph_propagate(adj: Tensor, x: Tensor, impl: str = "auto", adj_t: Tensor | None = None) -> Tensor:
    """``adj @ x`` for a sparse (CSR or COO) N×M ``adj`` and dense M×F ``x``; differentiable w.r.t. ``x``.

    ``adj_t``: ``adj``'s transpose (M×N) when the caller has it (``adj`` itself when it is symmetric): the backward
    multiplies by it instead of transposing ``adj`` in every backward pass. ``impl``: see ``zoo.ops``."""
    adj = _as_csr(adj)
    _check(adj, x)
    if adj_t is not None:
        adj_t = _as_csr(adj_t)
        if tuple(adj_t.shape) != (adj.shape[1], adj.shape[0]):
            raise ValueError(
                f"zoo.ops.graph_propagate: adj_t must be adj's transpose, shape "
                f"{(adj.shape[1], adj.shape[0])}, got {tuple(adj_t.shape)}"
            )
    if _dispatch.resolve(OP, impl, adj, x) == "reference":
        if adj_t is None:
            return graph_propagate_reference(adj, x)
        return _SpMMGivenTranspose.apply(adj, adj_t, x)
    crow, col, values = _csr_arrays(adj)
    t_crow, t_col, t_values = _csr_arrays(adj_t) if adj_t is not None else (None, None, None)
    return torch.ops.zoo.graph_propagate(crow, col, values, x, t_crow, t_col, t_values)


class _SpMMGivenTranspose(torch.autograd.Function):
    """The reference ``adj @ x`` whose backward is ``adj_t @ grad`` with the given transpose."""

    @staticmethod
    def forward(ctx, adj, adj_t, x):
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad):
        return None, None, torch.sparse.mm(ctx.adj_t, grad) if ctx.needs_input_grad[2] else None


class GraphPropagation(_dispatch.OpModule):
    """Â^k X: ``hops`` sparse propagation steps with :func:`graph_propagate` (SGC's feature pre-processing, CCGC's
    smoothing, a GCN's Â). ``impl``: see ``zoo.ops``."""

    op = OP

    def __init__(self, hops: int = 1, impl: str = "reference"):
        super().__init__(impl)
        if hops < 0:
            raise ValueError(f"GraphPropagation: hops must be >= 0, got {hops}")
        self.hops = hops

    def forward(self, adj: Tensor, x: Tensor, adj_t: Tensor | None = None) -> Tensor:
        for _ in range(self.hops):
            x = graph_propagate(adj, x, impl=self.impl, adj_t=adj_t)
        return x

    def extra_repr(self) -> str:
        return f"hops={self.hops}, impl={self.impl}"


@torch.compiler.disable
def _csr_arrays(adj: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    # Dynamo cannot trace sparse-tensor accessors (their outputs are views of a sparse base): this runs eagerly,
    # and the op itself, on plain dense tensors, is traced.
    if adj.values().requires_grad:
        raise ValueError(
            "zoo.ops.graph_propagate(impl='triton') treats the adjacency as a constant; its values "
            "require grad — pass adj.detach() or use impl='reference'"
        )
    return adj.crow_indices().detach(), adj.col_indices().detach(), adj.values().detach()


# --------------------------------------------------------------------------------------------------------------
# Triton kernel (a plain function; zoo.ops._dispatch.jit decorates it).


def _spmm_kernel(CROW, COL, VAL, X, OUT, F, BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr):
    row = tl.program_id(0)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    f_ok = f < F
    start = tl.load(CROW + row)
    end = tl.load(CROW + row + 1)
    acc = tl.zeros([BLOCK_F], tl.float32)
    for k in range(start, end, BLOCK_K):
        ks = k + tl.arange(0, BLOCK_K)
        k_ok = ks < end
        cols = tl.load(COL + ks, mask=k_ok, other=0).to(tl.int64)
        vals = tl.load(VAL + ks, mask=k_ok, other=0.0).to(tl.float32)
        xs = tl.load(X + cols[:, None] * F + f[None, :], mask=k_ok[:, None] & f_ok[None, :], other=0.0)
        acc += tl.sum(vals[:, None] * xs.to(tl.float32), 0)
    tl.store(OUT + row.to(tl.int64) * F + f, acc.to(OUT.dtype.element_ty), mask=f_ok)


def _spmm(crow: Tensor, col: Tensor, val: Tensor, x: Tensor, n_rows: int) -> Tensor:
    x = x.contiguous()
    F = x.shape[1]
    out = x.new_empty((n_rows, F), dtype=torch.promote_types(x.dtype, val.dtype))
    if n_rows == 0 or F == 0:
        return out
    if _dispatch.kernel_error(x.device) is not None:  # inside the op on CPU without the interpreter: torch math
        rows = torch.repeat_interleave(torch.arange(n_rows, device=x.device), crow.diff(), output_size=col.numel())
        out.zero_().index_add_(0, rows, (val[:, None] * x[col]).to(out.dtype))
        return out
    block_f = min(128, max(16, _dispatch.next_pow2(F)))
    block_k = 16 if x.device.type == "cuda" else 32
    grid = (n_rows, _dispatch.cdiv(F, block_f))
    _dispatch.jit(_spmm_kernel)[grid](
        crow.contiguous(), col.contiguous(), val.contiguous(), x, out, F, BLOCK_K=block_k, BLOCK_F=block_f
    )
    return out


def _transpose_csr(crow: Tensor, col: Tensor, val: Tensor, n_cols: int):
    """CSR arrays of the transpose (M×N) of an N×M CSR matrix."""
    n_rows = crow.numel() - 1
    rows = torch.repeat_interleave(
        torch.arange(n_rows, device=col.device, dtype=col.dtype), crow.diff(), output_size=col.numel()
    )
    order = torch.sort(col, stable=True).indices
    counts = torch.zeros(n_cols, dtype=crow.dtype, device=crow.device).index_add_(
        0, col.to(torch.int64), torch.ones_like(col, dtype=crow.dtype)
    )
    t_crow = torch.cat([crow.new_zeros(1), counts.cumsum(0)])
    return t_crow, rows[order], val[order]


@torch.library.custom_op("zoo::graph_propagate", mutates_args=())
def _graph_propagate_op(
    crow_indices: Tensor,
    col_indices: Tensor,
    values: Tensor,
    x: Tensor,
    t_crow_indices: Tensor | None = None,
    t_col_indices: Tensor | None = None,
    t_values: Tensor | None = None,
) -> Tensor:
    """CSR @ x; the ``t_*`` arrays (the transpose's CSR, or None) serve the backward only."""
    return _spmm(crow_indices, col_indices, values, x, crow_indices.numel() - 1)


@_graph_propagate_op.register_fake
def _(crow_indices, col_indices, values, x, t_crow_indices=None, t_col_indices=None, t_values=None):
    return x.new_empty((crow_indices.shape[0] - 1, x.shape[1]), dtype=torch.promote_types(x.dtype, values.dtype))


@torch.library.custom_op("zoo::graph_propagate_backward", mutates_args=())
def _graph_propagate_backward_op(
    crow_indices: Tensor, col_indices: Tensor, values: Tensor, grad: Tensor, n_cols: int
) -> Tensor:
    t_crow, t_col, t_val = _transpose_csr(crow_indices, col_indices, values, n_cols)
    return _spmm(t_crow, t_col, t_val, grad, n_cols)


@_graph_propagate_backward_op.register_fake
def _(crow_indices, col_indices, values, grad, n_cols):
    return grad.new_empty((n_cols, grad.shape[1]))


def _setup_context(ctx, inputs, output):
    crow, col, val, x, t_crow, t_col, t_val = inputs
    ctx.save_for_backward(crow, col, val, t_crow, t_col, t_val)
    ctx.x_meta = (x.shape[0], x.dtype)


def _backward(ctx, grad):
    crow, col, val, t_crow, t_col, t_val = ctx.saved_tensors
    n_cols, dtype = ctx.x_meta
    if t_crow is not None:  # the caller's transpose
        gx = torch.ops.zoo.graph_propagate(t_crow, t_col, t_val, grad)
    else:
        gx = torch.ops.zoo.graph_propagate_backward(crow, col, val, grad, n_cols)
    return None, None, None, gx.to(dtype), None, None, None


_graph_propagate_op.register_autograd(_backward, setup_context=_setup_context)
