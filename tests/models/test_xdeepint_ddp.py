"""xDeepInt under DDP: Lightning's ``ddp`` strategy with 2 CPU processes (gloo) trains with G-FTRL + FTRL-Proximal and
ends with the same weights as one process that sees both ranks' batches at once (``loss_reduction="mean"``: DDP
averages the ranks' gradients). Sharding strategies are refused at setup with the strategies that work."""

from __future__ import annotations

import textwrap

import pytest
import torch

from zoo.errors import UserError
from zoo.models.xdeepint.module import XDeepIntModule

VOCAB = [5, 7, 4, 6]
INIT = dict(
    net=dict(vocab_sizes=VOCAB, num_fields=4, embed_dim=4, num_layers=2, num_subspaces=2),
    loss_reduction="mean",
    gftrl_alpha=0.5,
    gftrl_lambda1=0.01,
    gftrl_lambda2=0.1,
    ftrl_lr=0.5,
    ftrl_l1=0.01,
    ftrl_l2=0.01,
)

# Shared by the DDP script and the in-process reference: data, model and trainer settings.
COMMON = f"""
import torch
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from zoo.models.xdeepint.module import XDeepIntModule

class Data(LightningDataModule):
    # 64 rows in file order; under DDP rank r reads rows r, r + 2, ... (both ranks' batch k = rows 16k..16k+15)

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        ids = torch.stack([torch.randint(0, v + 1, (64,), generator=g) for v in {VOCAB!r}], 1)
        ds = TensorDataset(ids, ((ids[:, 0] % 2) ^ (ids[:, 1] > 3)).float())
        sampler = DistributedSampler(ds, shuffle=False) if torch.distributed.is_initialized() else None
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler)

def run(strategy, devices, batch_size):
    seed_everything(0)
    model = XDeepIntModule(**{INIT!r})
    trainer = Trainer(accelerator="cpu", strategy=strategy, devices=devices, max_epochs=2, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      use_distributed_sampler=False)
    trainer.fit(model, datamodule=Data(batch_size))
    return trainer, model
"""

SCRIPT = (
    COMMON
    + """
import sys
from safetensors.torch import save_file
trainer, model = run("ddp", 2, 8)
assert trainer.world_size == 2 and not model.model.embedding.table.sparse
if trainer.global_rank == 0:
    save_file({k: v.contiguous() for k, v in model.model.state_dict().items()}, sys.argv[1])
"""
)


@pytest.mark.slow  # two processes that import torch + Lightning: about 20 s on two shared cores
def test_ddp_two_cpu_processes_match_one_process(tmp_path, run_script):
    out = tmp_path / "ddp.safetensors"
    run_script("ddp_xdeepint.py", SCRIPT, str(out))
    from safetensors.torch import load_file

    ddp = load_file(str(out))

    ns: dict = {}
    exec(compile(textwrap.dedent(COMMON), "<common>", "exec"), ns)
    _, single = ns["run"]("auto", 1, 16)  # one process, both ranks' batches together
    assert single.model.embedding.table.sparse, "one device keeps the sparse embedding gradients"
    ref = single.model.state_dict()
    assert ddp.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)
    # G-FTRL did its job in both: some rows were selected away, the rest moved
    emb = ref["embedding.table.weight"][1:]
    assert (emb.norm(dim=1) == 0).any() and (emb.norm(dim=1) > 0).any()


def test_sharding_strategies_are_refused_with_the_ones_that_work():
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    m = XDeepIntModule(**INIT)
    m._trainer = SimpleNamespace(strategy=FSDPStrategy(), datamodule=None)
    with pytest.raises(UserError, match=r"FSDPStrategy.*ddp, ddp_spawn or zoo_ddp"):
        m.setup("fit")
    adam = XDeepIntModule(**{**INIT, "optimizer": "adam"})
    adam._trainer = SimpleNamespace(strategy=FSDPStrategy(), datamodule=None)
    adam.setup("fit")  # Adam has no row groups: nothing to refuse
    assert not adam.model.embedding.table.sparse
