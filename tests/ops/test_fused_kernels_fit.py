"""A small model trained with zoo.callbacks.FusedKernels (all three kernels, in Triton's interpreter) follows the
same loss curve and ends at the same weights as without it (the reference ops)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.callbacks import FusedKernels
from zoo.ops import GraphPropagation, LinearCrossEntropyLoss, RelationKLLoss


class TinyDistillGraph(pl.LightningModule):
    """Propagate node features over a fixed graph, classify them with a fused-CE head, and distil token relations
    from a frozen random teacher: one module per zoo op."""

    def __init__(self, adj):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("adj", adj)
        self.enc = nn.Linear(6, 8)
        self.head = nn.Linear(8, 7)
        for p in self.parameters():
            nn.init.normal_(p, std=0.3, generator=g)
        self.teacher = torch.randn(1, 2, 10, 4, generator=g)
        self.prop = GraphPropagation(hops=2)
        self.ce = LinearCrossEntropyLoss()
        self.relation = RelationKLLoss(student_scale=0.5, teacher_scale=0.5)
        self.losses, self.impls = [], set()

    def training_step(self, batch, _):
        x, y = batch
        h = self.prop(self.adj, self.enc(x)).tanh()  # (10 nodes, 8)
        q = h.view(1, 10, 2, 4).transpose(1, 2)  # (B=1, H=2, N=10, d=4)
        loss = self.ce(h, self.head.weight, self.head.bias, y) + self.relation(q, q, self.teacher, self.teacher)
        self.losses.append(loss.item())
        self.impls.update((self.prop.impl, self.ce.impl, self.relation.impl))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)


def _fit(callbacks):
    g = torch.Generator().manual_seed(1)
    adj = (torch.rand(10, 10, generator=g) < 0.3).float() + torch.eye(10)
    adj = (adj / adj.sum(1, keepdim=True)).to_sparse_csr()
    x, y = torch.randn(10, 6, generator=g), torch.randint(0, 7, (10,), generator=g)
    y[3] = -100
    model = TinyDistillGraph(adj)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    loader = DataLoader(TensorDataset(x[None], y[None]), batch_size=None)  # one full-graph batch per step
    trainer.fit(model, loader)
    return model


def test_fit_with_fused_kernels_matches_reference():
    ref = _fit([])
    cb = FusedKernels()
    fused = _fit([cb])
    assert ref.impls == {"reference"} and fused.impls == {"triton"}  # the kernels ran in the fused fit
    assert len(ref.losses) == 5 and ref.losses[-1] < ref.losses[0]  # it trains
    torch.testing.assert_close(torch.tensor(fused.losses), torch.tensor(ref.losses), atol=1e-5, rtol=1e-5)
    for (name, a), b in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")
    assert fused.ce.impl == fused.prop.impl == fused.relation.impl == "reference"  # restored
