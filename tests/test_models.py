"""Registry-wide model tests (as timm's test_models): every registered model is checked the same way.

- a tiny version (the entry's ``tiny_overrides``): forward, backward, every trainable parameter gets a finite
  gradient, no NaN in the outputs;
- the paper-size version on the meta device: the parameter count equals the entry's ``params`` exactly;
- export -> load round trip gives identical outputs; the model card renders and its metadata parses back.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo import hub, registry

NAMES = zoo.list_models()


def _inputs(module):
    ex = module.example_input_array
    assert ex is not None, f"{type(module).__name__} sets no example_input_array"
    return ex if isinstance(ex, tuple) else (ex,)


def _float_tensors(out):
    if torch.is_tensor(out):
        if out.is_floating_point():
            yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _float_tensors(v)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _float_tensors(v)


def test_registry_is_populated():
    """Every method folder (``zoo/models/<method>/``) contributes entries of its own modules; names are unique and
    well formed (``method-size[.tag]``, lower case), and every name resolves to its own entry."""
    import pkgutil
    import re

    import zoo.models

    folders = sorted(i.name for i in pkgutil.iter_modules(zoo.models.__path__) if i.ispkg)
    assert len(folders) >= 12, folders
    entries = registry.all_entries()
    for folder in folders:
        own = [e.name for e in entries if e.module.startswith(f"zoo.models.{folder}.")]
        assert own, f"zoo/models/{folder}/ registers no entry (its __init__.py's ENTRIES)"
    assert len(NAMES) == len(set(NAMES)) == len(entries), "a name is registered twice"
    for name in NAMES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+(\.[a-z0-9]+(-[a-z0-9]+)*)?", name), (
            f"{name}: not method-size[.tag]"
        )
        e = registry.get(name)
        assert e.name == name and name.split("-", 1)[0] == e.method
        assert e.module.startswith("zoo.models."), f"{name}: {e.module} is not a zoo.models class path"


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_complete(name):
    e = registry.get(name)
    assert e.name == name and "-" in name, "names are method-size[.tag]"
    assert e.paper.title and e.license
    assert e.params is not None, f"{name}: registry entry must state the exact parameter count"
    cls = registry.import_class(e.module)
    assert hasattr(cls, "training_step"), f"{e.module} is not a LightningModule"
    for m in (*e.paper_metrics, *e.our_metrics):
        assert m.task and m.dataset and m.metric and isinstance(m.value, (int, float))
    for m in e.our_metrics:
        assert m.protocol, f"{name}: our measured metrics must say how they were measured"


@pytest.mark.parametrize("name", NAMES)
def test_paper_size_parameter_count_on_meta(name):
    e = registry.get(name)
    with torch.device("meta"):
        module = zoo.create(name)
    n = sum(p.numel() for p in module.model.parameters())
    assert n == e.params, f"{name}: {n:,} parameters, the paper/released model has {e.params:,}"


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    e = registry.get(name)
    module = zoo.create(name, **e.tiny_overrides)
    module.train()
    out = module(*_inputs(module))
    outs = list(_float_tensors(out))
    assert outs, f"{name}: forward returned no floating tensor"
    for o in outs:
        assert torch.isfinite(o).all(), f"{name}: non-finite output"
    if getattr(module, "backward_needs_cuda", False) and not torch.cuda.is_available():
        pytest.skip(f"{name}: forward checked; its backward needs CUDA (spconv's CPU wheel has no backward)")
    loss = sum(o.float().sum() for o in outs)
    loss.backward()
    missing = [n for n, p in module.model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient reached {missing[:5]}"
    bad = [n for n, p in module.model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad[:5]}"


@pytest.mark.parametrize("name", NAMES)
def test_export_load_roundtrip(name, tmp_path):
    torch.manual_seed(0)
    e = registry.get(name)
    module = zoo.create(name, **e.tiny_overrides)
    inputs = _inputs(module)
    with torch.no_grad():
        ref = list(_float_tensors(module(*inputs)))
    folder = hub.export(module, tmp_path / "hub", name=name)
    loaded = zoo.load(f"local-dir:{folder}")
    assert not loaded.training, "zoo.load returns eval mode"
    with torch.no_grad():
        got = list(_float_tensors(loaded(*inputs)))
    assert len(got) == len(ref)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_card_metadata_parses_back(name):
    from huggingface_hub import ModelCard

    e = registry.get(name)
    card = ModelCard(str(hub.make_card(e)))
    data = card.data.to_dict()
    assert data["library_name"] == "zoo"
    results = data.get("model-index", [{}])[0].get("results", []) if e.paper_metrics or e.our_metrics else []
    values = sorted(m["value"] for r in results for m in r["metrics"])
    assert values == sorted(m.value for m in (*e.paper_metrics, *e.our_metrics))
    assert "(paper)" in str(card) or not e.paper_metrics
    assert e.paper.title in card.text
