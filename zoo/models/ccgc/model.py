"""CCGC's network (Yang et al., "Cluster-guided Contrastive Graph Clustering Network", AAAI 2023, arXiv 2301.01098):
two parameter-unshared Siamese encoders over the Laplacian-smoothed attributes X̃ = H^t X.

Each encoder is one ``Linear(d -> dims)`` with bias and no activation (the official ``Encoder_Net``), its rows
L2-normalised: Z1 = normalize(X̃ W1 + b1), Z2 = normalize(X̃ W2 + b2). The two views come from the two weight sets
only (no graph augmentation). The clustering embedding is the fused E = (Z1 + Z2) / 2, on which K-means runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SiameseEncoders(nn.Module):
    """X̃ (N, in_features) -> (Z1, Z2), each (N, dims) with unit-norm rows."""

    def __init__(self, in_features: int, dims: int = 500):
        super().__init__()
        self.encoder_1 = nn.Linear(in_features, dims)
        self.encoder_2 = nn.Linear(in_features, dims)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.encoder_1(x), dim=1, p=2), F.normalize(self.encoder_2(x), dim=1, p=2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The fused node embedding E = (Z1 + Z2) / 2 (N, dims) used for clustering."""
        z1, z2 = self(x)
        return (z1 + z2) / 2
