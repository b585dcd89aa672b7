"""A-CLIP under DDP: Lightning's ``ddp`` strategy with 2 CPU processes (gloo). The contrastive terms gather the
embeddings of both processes with gradients (``all_gather(sync_grads=True)``), so every process computes the loss of
the concatenated batch: the CLIP and SimCLR terms equal the single-process values on all 8 pairs, the per-process
BYOL terms average to the single-process one, and each process's embedding gradients are the world size times the
single-process gradients of its rows (DDP's gradient averaging then gives the single-process parameter gradients)."""

from __future__ import annotations

import inspect
import textwrap

import pytest
import torch

COMMON = """
import torch
from zoo.models.aclip.module import ACLIPModule, aclip_loss

B, D = 4, 8  # per-process batch; 2 processes -> 8 pairs
KEYS = ("image1", "image2", "text", "ssl1", "ssl2", "pred1", "pred2", "target")
TINY = dict(img_size=32, patch_size=8, vision_width=32, vision_depth=1, vision_heads=2, embed_dim=16,
            context_length=8, vocab_size=64, text_width=16, text_heads=2, text_layers=1, ssl_mlp_dim=32,
            ssl_emb_dim=8, byol_hidden_dim=32, byol_dim=8)

def batch_outputs():
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(2 * B, D, generator=g) for k in KEYS}
"""

SCRIPT = (
    COMMON
    + """
import sys
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

class Probe(ACLIPModule):
    # the module's own objective (and its gather) on fixed embeddings: this process's rows of the 8 pairs
    def training_step(self, batch, batch_idx):
        r = self.global_rank
        self.leaves = {k: v[r * B:(r + 1) * B].clone().requires_grad_(k != "target")
                       for k, v in batch_outputs().items()}
        losses = self.objective({**self.leaves, "logit_scale": torch.tensor(10.0)})
        self.result = {k: v.detach() for k, v in losses.items()}
        return losses["loss"] + 0.0 * self.model.logit_scale

    def on_after_backward(self):
        self.result.update({"grad_" + k: v.grad for k, v in self.leaves.items() if v.grad is not None})

    def configure_optimizers(self):
        return torch.optim.SGD([self.model.logit_scale], lr=0.0)

model = Probe(net=TINY)
trainer = Trainer(accelerator="cpu", strategy="ddp_find_unused_parameters_true", devices=2, max_steps=1,
                  logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(model, DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1))
assert trainer.world_size == 2
torch.save(model.result, sys.argv[1] + f".rank{trainer.global_rank}")
"""
)


@pytest.mark.slow  # two processes that import torch + Lightning + timm + open_clip: about 20 s on two shared cores
def test_gathered_loss_under_ddp_equals_the_single_process_loss(tmp_path, run_script):
    out = tmp_path / "res"
    run_script("ddp_aclip.py", SCRIPT, str(out), timeout=300)
    ranks = [torch.load(f"{out}.rank{r}", weights_only=True) for r in (0, 1)]

    ns: dict = {}
    exec(compile(textwrap.dedent(COMMON), "<common>", "exec"), ns)
    full = {k: v.requires_grad_(k != "target") for k, v in ns["batch_outputs"]().items()}
    # the module's default pairing (the release's SimCLR of view 1 with itself, release_simclr_same_view)
    same_view = inspect.signature(ns["ACLIPModule"]).parameters["release_simclr_same_view"].default
    single = ns["aclip_loss"]({**full, "logit_scale": torch.tensor(10.0)}, same_view=same_view)
    single["loss"].backward()
    B = ns["B"]
    for r, res in enumerate(ranks):
        for term in ("clip", "simclr"):  # the gathered terms: the loss of all 8 pairs in every process
            torch.testing.assert_close(res[term], single[term].detach(), msg=f"rank {r} {term}")
        for k in ("image1", "image2", "text", "ssl1", "ssl2", "pred1", "pred2"):
            assert (full[k].grad is None) == ("grad_" + k not in res), f"rank {r} {k}: used in one run only"
            if full[k].grad is not None:
                torch.testing.assert_close(res["grad_" + k], 2 * full[k].grad[r * B : (r + 1) * B], msg=f"rank {r} {k}")
    torch.testing.assert_close((ranks[0]["byol"] + ranks[1]["byol"]) / 2, single["byol"].detach())
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, single["loss"].detach())
    assert not torch.allclose(ranks[0]["byol"], ranks[1]["byol"])  # the processes did see different rows
