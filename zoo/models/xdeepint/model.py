"""xDeepInt: polynomial interaction network with subspace crossing (Yan & Li, "xDeepInt: a Hybrid Architecture for
Modeling the Vector-Wise and Bit-Wise Feature Interactions", DLP-KDD 2020; arXiv 2301.01089; official TF code
yanyachen/xDeepInt). Paper §3 (PIN layers, subspace crossing); xdeepint/src/ of the official code.

Shapes (B = batch, F = fields, K = embedding size, h = subspaces, d = K / h):

- :class:`FieldEmbedding`: ids (B, F), 0 = missing / unseen -> X0 (B, F, K). One table holds every field's values
  (per-field offsets); row 0 is a padding row fixed at zero, which reproduces TF's ``embedding_column`` that ignores
  out-of-vocabulary ids (their embedding contributes zero).
- :func:`to_subspaces` / :func:`from_subspaces`: subspace crossing (§1.4). Every embedding is cut into h sub-vectors
  of size d and the sub-vectors are stacked along the field axis, subspace-major as in the TF code:
  (B, F, K) -> (B, d, h*F) -- the paper's X0' in R^{d x (F h)}, columns = "fields".
- :class:`PINLayer`: one Polynomial Interaction Network layer, residual form (§1.3, the paper's eq. for X_l):
  X_l = X_{l-1} o (sigma(dropout(X0) W_{l-1}) + 1),  W_{l-1} in R^{(F h) x (F h)}, no bias, Glorot-uniform init.
  The aggregation always reads X0 (never X_{l-1}); with sigma = identity, X_L holds every vector-wise polynomial
  term of order 1 .. L+1 of the (sub-)embeddings.
- Output layer (§1.5): O = X_L back in (B, F, K); logit = sum_k (sum_f w_f O[:, f, k] + b) -- one weight per field
  shared over the K coordinates, and the bias added per coordinate (so effectively K*b, as in the reference).

There is no DNN branch and no nonlinearity in the reference configuration (activation None, dropout 0, L = 4,
h = K = 16, F = 38 on Criteo).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "FieldEmbedding",
    "PINLayer",
    "XDeepInt",
    "to_subspaces",
    "from_subspaces",
    "ACTIVATIONS",
]

ACTIVATIONS = {
    None: nn.Identity,
    "linear": nn.Identity,
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}


class FieldEmbedding(nn.Module):
    """Per-field embeddings in one table. ``vocab_sizes[f]`` = number of kept values of field f; field f's local
    ids 1..V_f map to rows offset_f + 1 .. offset_f + V_f, local id 0 (missing / unseen) to the zero row 0.

    Init: truncated normal, std 1/sqrt(K) (TF ``embedding_column`` default), padding row zero.
    """

    def __init__(self, vocab_sizes: Sequence[int], embed_dim: int):
        super().__init__()
        if any(int(v) < 0 for v in vocab_sizes):
            raise ValueError(f"vocab_sizes must be >= 0, got {list(vocab_sizes)}")
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        offsets = torch.tensor([0, *self.vocab_sizes[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Embedding(1 + sum(self.vocab_sizes), embed_dim, padding_idx=0)
        self.reset_parameters()

    def reset_parameters(self):
        std = 1.0 / math.sqrt(self.table.embedding_dim)
        nn.init.trunc_normal_(self.table.weight, std=std, a=-2 * std, b=2 * std)
        with torch.no_grad():
            self.table.weight[0].zero_()

    def global_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.where(ids > 0, ids + self.offsets, torch.zeros_like(ids))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, F, K)
        return self.table(self.global_ids(ids))


def to_subspaces(x: torch.Tensor, h: int) -> torch.Tensor:
    """(B, F, K) -> (B, K/h, h*F): sub-vector i of every field becomes "field" i*F + f (subspace-major)."""
    b, f, k = x.shape
    return x.reshape(b, f, h, k // h).permute(0, 3, 2, 1).reshape(b, k // h, h * f)


def from_subspaces(x: torch.Tensor, h: int) -> torch.Tensor:
    """Inverse of :func:`to_subspaces`: (B, K/h, h*F) -> (B, F, K)."""
    b, d, hf = x.shape
    return x.reshape(b, d, h, hf // h).permute(0, 3, 2, 1).reshape(b, hf // h, h * d)


class PINLayer(nn.Module):
    """X_l = X_{l-1} o (1 + sigma(dropout(X0') W)) on the (B, d, F*h) layout; W is a bias-free Linear over the field
    axis (``linear.weight`` = W^T: output "field" j aggregates sum_i W[i, j] X0'[:, :, i])."""

    def __init__(self, width: int, activation: str | None = None, dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown PIN activation {activation!r}; choose one of {sorted(map(str, ACTIVATIONS))}")
        self.linear = nn.Linear(width, width, bias=False)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.linear.weight)

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.act(self.linear(self.dropout(x0))))


class XDeepInt(nn.Module):
    """Embedding -> subspace crossing -> L residual PIN layers -> field-weighted output. Returns logits (B,).

    ``vocab_sizes=None`` builds the network without embedding tables (their size depends on the data); call
    :meth:`build_embedding` once the vocabulary is known (the Lightning module does it in ``setup``).
    """

    def __init__(
        self,
        vocab_sizes: Sequence[int] | None,
        num_fields: int,
        embed_dim: int = 16,
        num_layers: int = 4,
        num_subspaces: int = 16,
        activation: str | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if embed_dim % num_subspaces:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_subspaces ({num_subspaces})")
        if vocab_sizes is not None and len(vocab_sizes) != num_fields:
            raise ValueError(f"vocab_sizes has {len(vocab_sizes)} fields but num_fields = {num_fields}")
        self.num_fields, self.embed_dim, self.num_subspaces = num_fields, embed_dim, num_subspaces
        self.embedding = FieldEmbedding(vocab_sizes, embed_dim) if vocab_sizes is not None else None
        width = num_fields * num_subspaces
        self.pin = nn.ModuleList(PINLayer(width, activation, dropout) for _ in range(num_layers))
        self.output = nn.Linear(num_fields, 1)
        nn.init.xavier_uniform_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def build_embedding(self, vocab_sizes: Sequence[int]) -> None:
        if len(vocab_sizes) != self.num_fields:
            raise ValueError(f"vocab_sizes has {len(vocab_sizes)} fields but the model has {self.num_fields}")
        self.embedding = FieldEmbedding(vocab_sizes, self.embed_dim).to(self.output.weight.device)

    def interactions(self, x0: torch.Tensor) -> torch.Tensor:
        """X0 (B, F, K) -> X_L (B, F, K)."""
        h = self.num_subspaces
        x0s = to_subspaces(x0, h)
        x = x0s
        for layer in self.pin:
            x = layer(x, x0s)
        return from_subspaces(x, h)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            raise RuntimeError(
                "XDeepInt has no embedding tables yet: build it with vocab_sizes=[...] or call "
                "build_embedding(vocab_sizes) (XDeepIntModule does this from the data module)."
            )
        if ids.dim() != 2 or ids.shape[1] != self.num_fields:
            raise ValueError(f"expected ids of shape (batch, {self.num_fields}), got {tuple(ids.shape)}")
        o = self.interactions(self.embedding(ids))  # (B, F, K)
        return self.output(o.transpose(1, 2)).squeeze(-1).sum(-1)
