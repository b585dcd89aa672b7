"""Outputs of every registry entry on a fixed input, with weights that do not depend on construction order.

The house refactors (sizes stated once, modules taking a size name, layers moved) must not change any network:
``tests/test_entry_snapshot.py`` rebuilds every entry at its ``tiny_overrides``, fills every parameter from a
generator seeded by the tensor's *name* (so reordering submodule construction changes nothing, renaming a parameter
does), feeds the input stored at the snapshot's commit and compares the outputs with the stored summary.
The paper-size network's printed module tree (on the meta device) is compared by its hash.

``python tests/entry_snapshot.py --write`` rewrites ``tests/fixtures/entry_snapshot/`` (only when a network change
is intended: say so in the commit).
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "entry_snapshot"
HEAD = 16  # leading values kept per output tensor


def fill_by_name(module: torch.nn.Module) -> None:
    """Every floating parameter (and batch-norm statistics) from a generator seeded by crc32 of its state-dict name.
    Other buffers (label tables, masks, anchors) keep what the seeded construction gave them."""
    params = {id(p) for p in module.parameters()}
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if not torch.is_tensor(t) or not t.is_floating_point() or t.numel() == 0:
                continue
            if id(t) not in params and not name.endswith(("running_mean", "running_var")):
                continue
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            u = torch.rand(t.shape, generator=g, dtype=torch.float64) * 2 - 1
            if "running_var" in name:
                v = 1 + 0.5 * u.abs()
            elif t.dim() >= 2:
                v = u / (t[0].numel() ** 0.5)
            else:
                v = 0.5 * u
            t.copy_(v.to(t.dtype))


def float_tensors(out):
    if torch.is_tensor(out):
        if out.is_floating_point():
            yield out
    elif isinstance(out, dict):
        for k in sorted(out, key=str):
            yield from float_tensors(out[k])
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from float_tensors(v)


def summary(out) -> list[dict]:
    rows = []
    for t in float_tensors(out):
        d = t.detach().double()
        rows.append(
            {
                "shape": list(d.shape),
                "sum": d.sum().item(),
                "abs_sum": d.abs().sum().item(),
                "head": d.flatten()[:HEAD].tolist(),
            }
        )
    return rows


def architecture(name: str) -> str:
    """sha256 of the paper-size network's printed module tree (built on the meta device: no memory, no time)."""
    import hashlib

    import zoo

    with torch.device("meta"):
        module = zoo.create(name)
    return hashlib.sha256(repr(module.model).encode()).hexdigest()


def build(name: str):
    import zoo
    from zoo import registry

    torch.manual_seed(0)
    module = zoo.create(name, **registry.get(name).tiny_overrides)
    fill_by_name(module)
    module.eval()
    return module


def run(module, inputs):
    torch.manual_seed(0)
    with torch.no_grad():
        return module(*inputs)


def write() -> None:
    import zoo

    FIXTURES.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    out = {}
    for name in zoo.list_models():
        module = build(name)
        ex = module.example_input_array
        inputs = ex if isinstance(ex, tuple) else (ex,)
        torch.save(inputs, FIXTURES / f"{name}.pt")
        out[name] = {"architecture": architecture(name), "outputs": summary(run(module, inputs))}
        print(name, len(out[name]), flush=True)
    (FIXTURES / "outputs.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/entry_snapshot.py --write")
    write()
