"""zoo.callbacks.FusedKernels: per-instance, reversible switch of opted-in modules (the protocol), and its log.

The fit-with-kernels-equals-fit-without test runs the kernels in Triton's interpreter, so it lives in
tests/ops/test_fused_kernels_fit.py (whose conftest provides the interpreter)."""
from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.callbacks import FusedKernels
from zoo.callbacks.fused_kernels import apply_fused_kernels
from zoo.ops import GraphPropagation, LinearCrossEntropyLoss, RelationKLLoss


class SwappableHead(nn.Module):
    """Opts in by swap: its fused form is another module sharing its parameters."""

    fused_ops = ("fused_linear_cross_entropy",)

    def __init__(self, d=4, v=3, linear=None):
        super().__init__()
        self.linear = linear if linear is not None else nn.Linear(d, v)

    def forward(self, h, y):
        return nn.functional.cross_entropy(self.linear(h), y)

    def fused_equivalent(self, ops):
        return FusedHead(linear=self.linear)


class FusedHead(SwappableHead):
    def forward(self, h, y):
        from zoo.ops import fused_linear_cross_entropy

        return fused_linear_cross_entropy(h, self.linear.weight, self.linear.bias, y, impl="reference")


class Probe(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = nn.ModuleDict({
            "enc": nn.Linear(4, 4),
            "ce": LinearCrossEntropyLoss(),
            "prop": GraphPropagation(hops=2),
            "head": SwappableHead(),
        })
        self.seen = []

    def training_step(self, batch, _):
        x, y = batch
        # what is switched on while training (modules keep using the reference: the kernels are faked as
        # runnable in this test, see below)
        self.seen.append((self.model["ce"].ops_impl, type(self.model["head"]).__name__))
        return self.model["head"](self.model["enc"](x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module, callbacks):
    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, DataLoader(data, batch_size=4))
    return trainer


def test_switches_during_fit_and_restores_after(monkeypatch, caplog):
    # Pretend the kernels can run on this CPU so that the switch happens; forward still uses the reference here.
    monkeypatch.setattr("zoo.ops._dispatch.kernel_error", lambda device: None)
    module = Probe()
    other = LinearCrossEntropyLoss()
    head_before = module.model["head"]
    params_before = [id(p) for p in module.parameters()]
    with caplog.at_level(logging.INFO):
        _fit(module, [FusedKernels(ops="all")])
    assert module.seen and all(s == ("triton", "FusedHead") for s in module.seen)
    # restored: the instance attribute is gone (class default again), the original module is back, same params
    assert module.model["ce"].ops_impl == "reference" and "ops_impl" not in vars(module.model["ce"])
    assert module.model["head"] is head_before
    assert [id(p) for p in module.parameters()] == params_before
    assert other.ops_impl == "reference"  # other instances are never touched
    text = caplog.text
    assert "fused_linear_cross_entropy: Triton kernel in 2 module(s)" in text
    assert "graph_propagate: Triton kernel in 1 module(s): model.prop" in text
    assert "relation_kl: not used by this model" in text


def test_keeps_reference_and_says_why_when_kernels_cannot_run(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    module = Probe()
    cb = FusedKernels(ops=["graph_propagate"])
    _fit(module, [cb])
    assert all(s == ("reference", "SwappableHead") for s in module.seen)
    switch = apply_fused_kernels(module, ["graph_propagate"], "cpu")
    assert len(switch.report) == 1 and "graph_propagate: reference kept in 1 module(s)" in switch.report[0]
    assert "TRITON_INTERPRET" in switch.report[0]
    with pytest.raises(RuntimeError, match="strict=True"):
        apply_fused_kernels(module, ["graph_propagate"], "cpu", strict=True)
    assert module.model["prop"].ops_impl == "reference"


def test_ops_selection_and_bad_names(monkeypatch):
    monkeypatch.setattr("zoo.ops._dispatch.kernel_error", lambda device: None)
    net = nn.Sequential(RelationKLLoss(1.0, 1.0), GraphPropagation())
    switch = apply_fused_kernels(net, ["relation_kl"], "cuda")
    assert net[0].ops_impl == "triton" and net[1].ops_impl == "reference"
    switch.restore()
    assert net[0].ops_impl == "reference"
    with pytest.raises(ValueError, match="unknown op"):
        FusedKernels(ops=["flash_attention"])


def test_swap_must_share_parameters(monkeypatch):
    monkeypatch.setattr("zoo.ops._dispatch.kernel_error", lambda device: None)

    class BadHead(SwappableHead):
        def fused_equivalent(self, ops):
            return FusedHead()  # fresh parameters: optimizer and checkpoints would diverge

    net = nn.Sequential(BadHead())
    with pytest.raises(RuntimeError, match="sharing its parameters"):
        apply_fused_kernels(net, "all", "cuda")
