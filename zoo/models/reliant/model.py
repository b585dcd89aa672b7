"""RELIANT (Dong, Zhang, Yuan, Zou, Wang, Li, "RELIANT: Fair Knowledge Distillation for Graph Neural Networks",
SDM 2023, arXiv 2301.01150): networks and the fairness surrogate. No Lightning here.

- :func:`surrogate_indicator`: the smooth degree-9 Legendre surrogate h(p) of 1[p > 1/2] (paper §4.2);
- :func:`bias_penalty`: R_SP / R_EO, the squared group gap of mean h(p) summed over classes (paper §4.2);
- teachers :class:`GCNTeacher` (3 graph convolutions, 64 hidden) and :class:`SAGETeacher` (4 SAGE layers, 128 hidden,
  DGL's "gcn" aggregator = mean over neighbours and self), on PyTorch Geometric layers (official stu-gcn/ and CPF code);
- students :class:`PLPStudent` (CPF, Yang et al. WWW'21: parameterised label propagation with feature attention,
  mixed per node with a feature MLP through a learnable gate) and :class:`SGCStudent` (GraphAKD's SGC stack);
- :class:`FairStudent`: a student plus the input slot of the bias proxy (the node-mean of the learned proxy is kept as
  a buffer, which is what the student sees at inference, paper §4.3);
- GraphAKD's discriminators (logits, local-edge and global-summary embedding discriminators).

Shapes: N nodes, F features, C classes (2), E directed edges; ``edge_index`` (2, E) without self-loops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from zoo.errors import UserError, check_choice
from zoo.ops import GraphPropagation

# ------------------------------------------------------------------------------------------- graph helper
# The adjacencies built from each graph, kept as long as that graph's ``edge_index`` tensor lives (a weak reference
# to the tensor itself is the key, never its address): a graph allocated where a freed one was gets its own.
_ADJACENCIES = WeakIdKeyDictionary()


def adjacency(
    edge_index: torch.Tensor, num_nodes: int, self_loops: bool = False, normalize: bool = False
) -> torch.Tensor:
    """The (N, N) adjacency of ``edge_index`` as a torch sparse CSR tensor (row = target): binary, optionally with
    self-loops, or with ``normalize=True`` GCN's D^-1/2 (A + I) D^-1/2 (self-loops added, PyG's ``gcn_norm``). An
    already sparse input is returned unchanged. Message passing then runs as one sparse-dense product per layer
    (:func:`sym_propagate`), which on CPU is 10-100x faster than gather-scatter. Each is computed once per graph
    (full-batch training reuses one graph every epoch) and cached with the graph: for as long as the ``edge_index``
    tensor exists and is not modified in place."""
    if edge_index.layout != torch.strided:
        return edge_index
    cache = _ADJACENCIES.setdefault(edge_index, {})
    key = (edge_index._version, num_nodes, self_loops or normalize, normalize)
    adj = cache.get(key)
    if adj is None:
        from torch_geometric.utils import add_remaining_self_loops, coalesce, to_torch_csr_tensor

        if normalize:  # PyG's own normalisation, once per graph
            from torch_geometric.nn.conv.gcn_conv import gcn_norm

            ei, w = coalesce(*gcn_norm(edge_index, num_nodes=num_nodes, add_self_loops=True), num_nodes=num_nodes)
        else:
            ei = add_remaining_self_loops(edge_index, num_nodes=num_nodes)[0] if self_loops else edge_index
            ei, w = coalesce(ei, num_nodes=num_nodes), None
        adj = to_torch_csr_tensor(ei.flip(0), w, size=(num_nodes, num_nodes))  # row = target (adj_t)
        for stale in [k for k in cache if k[0] != edge_index._version]:  # modified in place since
            del cache[stale]
        cache[key] = adj
    return adj


def sym_propagate(propagate: GraphPropagation, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x`` for a CSR ``adj`` that equals its transpose (A + I, or GCN's normalised adjacency),
    differentiable w.r.t. ``x``, through the model's ``zoo.ops.GraphPropagation`` module (its ``impl``: the Triton
    kernel on CUDA under "auto", switched by ``zoo.callbacks.FusedKernels``); ``adj`` serves as its own transpose in
    the backward."""
    if adj.dtype != x.dtype:
        adj = adj.to(x.dtype)
    return propagate(adj, x, adj_t=adj)


def reverse_edge_index(adj: torch.Tensor) -> torch.Tensor:
    """For a CSR matrix with a symmetric pattern: position of entry (u, v) for every entry (v, u)."""
    crow, col = adj.crow_indices(), adj.col_indices()
    n = crow.shape[0] - 1
    row = torch.repeat_interleave(torch.arange(n, device=col.device), crow[1:] - crow[:-1])
    key = row * n + col  # ascending: CSR is sorted by row, then column
    return torch.searchsorted(key, col * n + row)


# ------------------------------------------------------------------------------------------- surrogate, penalty
def surrogate_indicator(p: torch.Tensor) -> torch.Tensor:
    """h(p) = 1/2 + P1(x)/2 - P3(x)/8 + P5(x)/16 - 5 P7(x)/128 + 7 P9(x)/256 with x = 2p - 1 (Legendre P_n):
    the truncated Legendre series of the step 1[p > 1/2] on [0, 1]; h(0)=0.0742, h(.5)=.5, h(1)=0.9258."""
    x = 2 * p - 1
    x2 = x * x
    p1 = x
    p3 = (5 * x2 - 3) * x / 2
    p5 = ((63 * x2 - 70) * x2 + 15) * x / 8
    p7 = (((429 * x2 - 693) * x2 + 315) * x2 - 35) * x / 16
    p9 = ((((12155 * x2 - 25740) * x2 + 18018) * x2 - 4620) * x2 + 315) * x / 128
    return 0.5 + p1 / 2 - p3 / 8 + p5 / 16 - 5 * p7 / 128 + 7 * p9 / 256


def bias_penalty(
    probs: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None, metric: str = "sp"
) -> torch.Tensor:
    """R_SP (metric="sp") or R_EO (metric="eo", nodes with y = 1 only) over the nodes selected by ``mask``:
    sum_c ( mean_{s=0} h(p_c) - mean_{s=1} h(p_c) )^2.  probs: (N, C) class probabilities."""
    sel = mask.bool()
    if metric == "eo":
        if labels is None:
            raise UserError("bias_penalty(metric='eo') needs the labels; pass labels= (ΔEO is measured on y = 1).")
        sel = sel & (labels == 1)
    elif metric != "sp":
        check_choice("metric", metric, ("sp", "eo"), where="bias_penalty")
    h = surrogate_indicator(probs)
    g0, g1 = sel & (sens == 0), sel & (sens == 1)
    if not g0.any() or not g1.any():
        return probs.sum() * 0.0  # one group is absent: no gap to penalise
    return (h[g0].mean(0) - h[g1].mean(0)).pow(2).sum()


# ------------------------------------------------------------------------------------------- teachers
def gcn_layer(propagate: GraphPropagation, conv, x: torch.Tensor, adj_norm: torch.Tensor) -> torch.Tensor:
    """PyG ``GCNConv.forward`` (Â x W + b) with the normalised adjacency Â computed once (:func:`adjacency` with
    ``normalize=True``) instead of by ``gcn_norm`` in every call; same parameters, same result."""
    out = sym_propagate(propagate, adj_norm, conv.lin(x))
    return out if conv.bias is None else out + conv.bias


def sgc_layer(propagate: GraphPropagation, conv, x: torch.Tensor, adj_norm: torch.Tensor) -> torch.Tensor:
    """PyG ``SGConv.forward`` (Â^K x W + b) with the normalised adjacency computed once; same parameters, same
    result."""
    for _ in range(conv.K):
        x = sym_propagate(propagate, adj_norm, x)
    return conv.lin(x)


class GCNTeacher(nn.Module):
    """CPF's GCN teacher (n_layers=1): GraphConv(F->64, ReLU) -> GraphConv(64->64, ReLU) -> GraphConv(64->C);
    dropout before every layer but the first. ``forward`` returns logits (N, C); ``embed`` the 64-d hidden states."""

    def __init__(
        self,
        in_features: int,
        hidden: int = 64,
        num_classes: int = 2,
        num_layers: int = 3,
        dropout: float = 0.8,
        propagate_impl: str = "auto",
    ):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.propagate = GraphPropagation(impl=propagate_impl)

        dims = [in_features] + [hidden] * (num_layers - 1) + [num_classes]
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    def embed(self, x, edge_index):
        adj = adjacency(edge_index, x.shape[0], normalize=True)
        h = x
        for i, conv in enumerate(self.convs[:-1]):
            if i > 0:
                h = F.dropout(h, self.dropout, self.training)
            h = F.relu(gcn_layer(self.propagate, conv, h, adj))
        return h

    def first_layer(self, x, edge_index):
        """The first layer's output after its ReLU (64-d): the ``emb`` the release's GCN keeps and train_dgl.py saves
        as GraphAKD's teacher embedding (CPF-master/models/GCN.py ``self.emb``)."""
        return F.relu(gcn_layer(self.propagate, self.convs[0], x, adjacency(edge_index, x.shape[0], normalize=True)))

    def forward(self, x, edge_index):
        h = F.dropout(self.embed(x, edge_index), self.dropout, self.training)
        return gcn_layer(self.propagate, self.convs[-1], h, adjacency(edge_index, x.shape[0], normalize=True))


class SAGETeacher(nn.Module):
    """CPF's GraphSAGE teacher (n_layers=2): SAGEConv(F->128) -> 2x SAGEConv(128->128) -> SAGEConv(128->C), DGL's
    "gcn" aggregator ((sum of neighbours + self) / (deg + 1), one weight + bias), ReLU and dropout between layers and
    dropout on the input.

    ``aggregator``: ``"dgl_gcn"`` (default, the release) is DGL's ``SAGEConv(..., "gcn")`` on the release's graph,
    which already holds self-loops (CPF-master data/utils.py adds I): the node itself is counted twice,
    h_i = W ((sum_{j in N(i) + i} x_j + x_i) / (deg_i + 2)) + b. ``"mean"`` (zoo's earlier form): the mean over the
    neighbours and the node once, PyG's SAGEConv(aggr="mean", root_weight=False) on the graph with self-loops."""

    def __init__(
        self,
        in_features: int,
        hidden: int = 128,
        num_classes: int = 2,
        num_layers: int = 4,
        dropout: float = 0.5,
        propagate_impl: str = "auto",
        aggregator: str = "dgl_gcn",
    ):
        super().__init__()
        from torch_geometric.nn import SAGEConv

        check_choice("aggregator", aggregator, SAGE_AGGREGATORS, where="SAGETeacher")
        self.self_twice = aggregator == "dgl_gcn"
        self.propagate = GraphPropagation(impl=propagate_impl)

        dims = [in_features] + [hidden] * (num_layers - 1) + [num_classes]
        self.convs = nn.ModuleList(SAGEConv(a, b, aggr="mean", root_weight=False) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    def embed(self, x, edge_index):
        ei = adjacency(edge_index, x.shape[0], self_loops=True)
        h = F.dropout(x, self.dropout, self.training)
        for conv in self.convs[:-1]:
            h = F.relu(sage_layer(self.propagate, conv, h, ei, self.self_twice))
            h = F.dropout(h, self.dropout, self.training)
        return h, ei

    def first_layer(self, x, edge_index):
        """The first layer's output before its activation (128-d): the release's ``emb`` (CPF-master
        models/GraphSAGE.py), GraphAKD's teacher embedding. Input dropout as in training mode."""
        ei = adjacency(edge_index, x.shape[0], self_loops=True)
        return sage_layer(self.propagate, self.convs[0], F.dropout(x, self.dropout, self.training), ei, self.self_twice)

    def forward(self, x, edge_index):
        h, ei = self.embed(x, edge_index)
        return sage_layer(self.propagate, self.convs[-1], h, ei, self.self_twice)


SAGE_AGGREGATORS = ("dgl_gcn", "mean")
TEACHER_EMBEDDINGS = ("first_layer", "penultimate")


def sage_layer(
    propagate: GraphPropagation, conv, x: torch.Tensor, adj_loops: torch.Tensor, self_twice: bool = False
) -> torch.Tensor:
    """PyG ``SAGEConv(aggr="mean", root_weight=False).forward`` on the binary adjacency with self-loops: mean of the
    neighbours (and self), then ``lin_l``. The mean is (A + I) x / deg with the symmetric product of
    :func:`sym_propagate` (its backward reuses the CSR arrays); same parameters, same result. ``self_twice``: DGL's
    "gcn" aggregator on a graph that has self-loops, ((A + I) x + x) / (deg + 1)."""
    deg = adj_loops.crow_indices().diff().to(x.dtype).clamp(min=1)
    agg = sym_propagate(propagate, adj_loops, x)
    if self_twice:
        agg, deg = agg + x, deg + 1
    return conv.lin_l(agg / deg.unsqueeze(1))


def build_teacher(arch: str, in_features: int, num_classes: int = 2, **kw) -> nn.Module:
    if arch == "gcn":
        return GCNTeacher(in_features, num_classes=num_classes, **kw)
    if arch == "sage":
        return SAGETeacher(in_features, num_classes=num_classes, **kw)
    check_choice("teacher arch", arch, ("gcn", "sage"), where="build_teacher")


def teacher_embedding(teacher: nn.Module, x, edge_index, which: str = "first_layer") -> torch.Tensor:
    """The teacher embedding GraphAKD distils: ``"first_layer"`` (the release: its models' ``emb``, the first layer's
    output) or ``"penultimate"`` (zoo's earlier choice: the input of the last layer)."""
    check_choice("teacher embedding", which, TEACHER_EMBEDDINGS, where="teacher_embedding")
    if which == "first_layer":
        return teacher.first_layer(x, edge_index)
    out = teacher.embed(x, edge_index)
    return out[0] if isinstance(out, tuple) else out


# ------------------------------------------------------------------------------------------- students
class FeatureMLP(nn.Module):
    """CPF's MLP2: ``num_layers`` Linear layers, dropout before each, ReLU between."""

    def __init__(self, num_layers: int, in_features: int, hidden: int, out_features: int, dropout: float):
        super().__init__()
        dims = [in_features] + [hidden] * (num_layers - 1) + [out_features]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        for i, lin in enumerate(self.linears):
            x = lin(self.dropout(x))
            if i < len(self.linears) - 1:
                x = F.relu(x)
        return x


class PLPStudent(nn.Module):
    """CPF student, inductive PLP ("ind") with a feature MLP (CPF eq. for f_v; RELIANT src/CPF-master/models/PLP.py).

    One shared propagation layer is applied ``num_layers - 1`` times to the label matrix h (initialised to the
    one-hot training labels and 1/C elsewhere):
        a_uv   = softmax_{u in N(v) + v}( <attn, dropout(x_u)> )       (feature attention, source side only)
        h_v'   = ReLU( sigmoid(g_v) * sum_u a_uv h_u + sigmoid(-g_v) * MLP(x_v) )   (per-node learnable gate g_v)
        h_v'   = one-hot label for training nodes (clamped)
    The last h is the output (treated as logits). The gate g is a per-node parameter (N, 1): the student is
    transductive on its graph. ``label_init`` and ``train_mask`` are buffers filled from the data (``set_labels``)."""

    def __init__(
        self,
        in_features: int,
        num_nodes: int,
        num_classes: int = 2,
        num_layers: int = 10,
        emb_dim: int = 64,
        mlp_layers: int = 2,
        feat_drop: float = 0.8,
        attn_drop: float = 0.2,
        propagate_impl: str = "auto",
    ):
        super().__init__()
        self.propagate = GraphPropagation(impl=propagate_impl)
        self.num_layers = num_layers
        self.attn = nn.Parameter(torch.empty(1, in_features))
        nn.init.xavier_normal_(self.attn, gain=nn.init.calculate_gain("relu"))
        self.gate = nn.Parameter(torch.zeros(num_nodes, 1))
        self.mlp = FeatureMLP(mlp_layers, in_features, emb_dim, num_classes, feat_drop)
        self.feat_drop, self.attn_drop = nn.Dropout(feat_drop), nn.Dropout(attn_drop)
        self.register_buffer("label_init", torch.full((num_nodes, num_classes), 1.0 / num_classes))
        self.register_buffer("train_mask", torch.zeros(num_nodes, dtype=torch.bool))

    @torch.no_grad()
    def set_labels(self, y: torch.Tensor, train_mask: torch.Tensor):
        if y.shape[0] != self.label_init.shape[0]:
            raise UserError(
                f"PLPStudent was built for {self.label_init.shape[0]} nodes, the graph has {y.shape[0]}: "
                "set num_nodes to the graph's node count."
            )
        init = torch.full_like(self.label_init, 1.0 / self.label_init.shape[1])
        init[train_mask] = F.one_hot(y[train_mask], self.label_init.shape[1]).to(init.dtype)
        self.label_init.copy_(init)
        self.train_mask.copy_(train_mask)

    def forward(self, x, edge_index):
        n = x.shape[0]
        if n != self.gate.shape[0]:
            raise UserError(
                f"PLPStudent has per-node gates for {self.gate.shape[0]} nodes, got {n} nodes; set "
                "num_nodes to the graph's node count."
            )
        base = adjacency(edge_index, n, self_loops=True)
        crow, col, ones = base.crow_indices(), base.col_indices(), base.values().to(x.dtype)
        adj = torch.sparse_csr_tensor(crow, col, ones, base.shape)
        if getattr(self, "_reverse_for", None) is not base:
            self._reverse, self._reverse_for = reverse_edge_index(base), base
        rev = self._reverse
        gate = torch.sigmoid(self.gate)
        clamp = self.train_mask.unsqueeze(1)
        h = self.label_init
        p = self.attn_drop.p
        for _ in range(self.num_layers - 1):
            # The attention logit depends on the source only, so the edge softmax factorises:
            # a_uv = w_u / sum_{u' in N(v)} w_u' with w = exp(el - max el). Attention dropout (applied to a_uv, as
            # DGL's edge_softmax + dropout) masks edges of the numerator only.
            el = (self.feat_drop(x) * self.attn).sum(-1)
            w = torch.exp(el - el.max()).unsqueeze(1)
            denom = self.propagate(adj, w, adj_t=adj)
            if self.training and p > 0:  # the dropped edges: a matrix with A's pattern, not symmetric
                vals = (torch.rand(ones.shape[0], device=x.device) >= p).to(x.dtype) / (1 - p)
                dropped = torch.sparse_csr_tensor(crow, col, vals, adj.shape)
                num = self.propagate(dropped, w * h, adj_t=torch.sparse_csr_tensor(crow, col, vals[rev], adj.shape))
            else:  # no attention dropout: symmetric values
                num = self.propagate(adj, w * h, adj_t=adj)
            h = F.relu(gate * (num / denom) + (1 - gate) * self.mlp(x))  # sigmoid(-g) = 1 - sigmoid(g)
            h = torch.where(clamp, self.label_init, h)
        return h


class SGCStudent(nn.Module):
    """GraphAKD's student: SGConv(F->64, K=1) -> ReLU -> dropout -> SGConv(64->64, K=k) -> ReLU (embedding) ->
    dropout -> SGConv(64->C, K=1). ``forward`` returns logits; ``forward_with_embedding`` also the 64-d embedding."""

    def __init__(
        self,
        in_features: int,
        hidden: int = 64,
        num_classes: int = 2,
        k: int = 1,
        dropout: float = 0.5,
        propagate_impl: str = "auto",
    ):
        super().__init__()
        from torch_geometric.nn import SGConv

        self.propagate = GraphPropagation(impl=propagate_impl)

        self.convs = nn.ModuleList(
            [SGConv(in_features, hidden, K=1), SGConv(hidden, hidden, K=k), SGConv(hidden, num_classes, K=1)]
        )
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self):
        """DGL's SGConv initialisation, which the official student uses: Xavier-uniform weights, zero biases (PyG's
        default draws the biases from U(+-1/sqrt(fan_in)); on bail's L1-normalised features, entries ~0.05, those
        random biases swamp the node signal and the student at lr 1e-4 barely leaves a constant prediction)."""
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.lin.weight)
            nn.init.zeros_(conv.lin.bias)

    def forward_with_embedding(self, x, edge_index):
        adj = adjacency(edge_index, x.shape[0], normalize=True)  # SGConv's self-loops + symmetric normalisation
        h = self.dropout(F.relu(sgc_layer(self.propagate, self.convs[0], x, adj)))
        emb = F.relu(sgc_layer(self.propagate, self.convs[1], h, adj))
        return sgc_layer(self.propagate, self.convs[2], self.dropout(emb), adj), emb

    def forward(self, x, edge_index):
        return self.forward_with_embedding(x, edge_index)[0]


class FairStudent(nn.Module):
    """A student with RELIANT's proxy input slot (paper §4.3).

    ``proxy_slot``: "none" (plain KD, raw features), "replace" (CPF variant: the proxy replaces the last two feature
    columns) or "append" (GraphAKD variant: the proxy is appended). Without an explicit ``proxy`` the slot holds the
    buffer ``proxy_mean`` broadcast to every node: the same two values for all nodes, which carry no group information
    (this is the input at evaluation/inference)."""

    def __init__(self, student: nn.Module, proxy_slot: str = "none"):
        super().__init__()
        if proxy_slot not in ("none", "replace", "append"):
            check_choice("proxy_slot", proxy_slot, ("none", "replace", "append"), where="FairStudent")
        self.student, self.proxy_slot = student, proxy_slot
        self.register_buffer("proxy_mean", torch.full((2,), 0.5))

    def student_input(self, x, proxy=None):
        if self.proxy_slot == "none":
            return x
        if proxy is None:
            proxy = self.proxy_mean
        if proxy.dim() == 1:
            proxy = proxy.unsqueeze(0).expand(x.shape[0], -1)
        keep = x[:, :-2] if self.proxy_slot == "replace" else x
        return torch.cat([keep, proxy.to(x.dtype)], 1)

    def forward(self, x, edge_index, proxy=None):
        return self.student(self.student_input(x, proxy), edge_index)

    def forward_with_embedding(self, x, edge_index, proxy=None):
        return self.student.forward_with_embedding(self.student_input(x, proxy), edge_index)


# ------------------------------------------------------------------------------------------- GraphAKD discriminators
class LogitsDiscriminator(nn.Module):
    """Residual MLP on logits with C + 1 outputs (C class scores + real/fake), GraphAKD's logits_D."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.lin = nn.Linear(num_classes, num_classes)
        self.out = nn.Linear(num_classes, num_classes + 1, bias=False)

    def forward(self, logits, temperature: float = 1.0):
        return self.out(F.relu(logits + self.lin(logits / temperature)))


class LocalEmbDiscriminator(nn.Module):
    """Edge-wise bilinear score <diag(d) e_u, e_v> * scale on L2-normalised embeddings (GraphAKD's local_emb_D).
    ``self_loops``: score the self-loop edges too (default: the release's graph holds them, stu-gcn/data/utils.py
    adds I before building the DGL graph); ``False``: the graph's own edges only (zoo's earlier form)."""

    def __init__(self, hidden: int, self_loops: bool = True):
        super().__init__()
        self.self_loops = self_loops
        self.d = nn.Parameter(torch.ones(hidden))
        self.scale = nn.Parameter(torch.full((1,), 0.5))

    def forward(self, emb, edge_index):
        """Scores of every directed edge (E,), in the CSR order of :func:`adjacency` (row = target) when
        ``edge_index`` is given as (2, E) or as that CSR tensor: one sampled dense-dense product instead of
        gathering two (E, hidden) matrices."""
        e = F.normalize(emb, p=2, dim=1)
        adj = adjacency(edge_index, emb.shape[0], self_loops=self.self_loops).to(e.dtype)  # values ignored (beta=0)
        return torch.sparse.sampled_addmm(adj, e * self.d, e.T, beta=0.0).values() * self.scale


class GlobalEmbDiscriminator(nn.Module):
    """Node vs graph-summary score <diag(d) e_v, summary> * scale (GraphAKD's global_emb_D)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.d = nn.Parameter(torch.ones(hidden))
        self.scale = nn.Parameter(torch.full((1,), 0.5))

    def forward(self, emb, summary):
        return (F.normalize(emb, p=2, dim=1) * self.d) @ summary * self.scale
