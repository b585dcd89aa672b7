"""EMO golden tests: zoo's EMO network (stem, iRMB with strided-window EW-MHSA, stages, head) and the official
checkpoint converter against zhangzjn/EMO's model/emo.py run unchanged (tests/fixtures/emo/README.md says how the
fixtures were made): a reduced-width network whose official state dict is stored, and EMO-1M / EMO-2M at paper size
with weights replayed from a seeded recipe over the official key names. Official keys are converted with
``zoo.models.emo.convert.convert_state_dict`` and loaded strictly, so the converter is under test too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "emo"

# the reduced-width network of the fixture (official kwargs in the README; norms, activations, kernels as EMO-1M)
REDUCED = dict(
    depths=(2, 2, 2, 2),
    stem_dim=8,
    embed_dims=(16, 24, 40, 48),
    exp_ratios=(2.0, 2.5, 3.0, 3.5),
    dim_heads=(8, 8, 20, 24),
    window_sizes=3,
    num_classes=10,
)


@pytest.fixture(scope="module")
def reduced():
    from safetensors.torch import load_file

    return load_file(FIXTURES / "emo_reduced_official.safetensors")


@pytest.fixture(scope="module")
def paper():
    from safetensors.torch import load_file

    return load_file(FIXTURES / "emo_paper_official.safetensors")


@pytest.fixture(scope="module")
def official_keys():
    return json.loads((FIXTURES / "emo_official_keys.json").read_text())


def close(name, got, want, rtol=1e-5, atol=1e-5):
    diff = (got.detach() - want).abs().max().item()
    print(f"{name}: max |Δ| zoo vs official = {diff:.2e} (max |x| {want.abs().max():.2f})")
    torch.testing.assert_close(got.detach(), want, rtol=rtol, atol=atol)


def recipe(keys_shapes, seed: int) -> dict[str, torch.Tensor]:
    """The fixture's weight recipe over official key names, in the official state-dict order (numpy's legacy
    RandomState stream is frozen, so the replay is exact): BN statistics, norm affines, biases perturbed, conv /
    linear weights N(0, 1 / fan_in)."""
    rs = np.random.RandomState(seed)
    out = {}
    for key, shape in keys_shapes:
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.int64)
            continue
        if key.endswith("running_var"):
            v = rs.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            v = 0.1 * rs.standard_normal(shape)
        elif len(shape) == 1:
            v = 1.0 + 0.1 * rs.standard_normal(shape)
        else:
            v = rs.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        out[key] = torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(shape))
    return out


def recipe_input(shape, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))


def _network(module):
    """The EMO network inside a registry entry's LightningModule (found by class, whatever the attribute name)."""
    from zoo.models.emo.model import EMO

    return next(m for m in module.modules() if isinstance(m, EMO))


def _load_official(net, official_state):
    from zoo.models.emo.convert import convert_state_dict

    converted = convert_state_dict(official_state)
    net.load_state_dict(converted, strict=True)
    return net.eval()


def _stages(net, x):
    with torch.no_grad():
        return net.forward_intermediates(x, indices=(0, 1, 2, 3, 4)), net(x)


def test_reduced_network_matches_official(reduced):
    """Reduced-width EMO (window 3 so that stage 3 has 2x2 strided windows over a padded 4x4 map and stage 4 one
    padded window; two heads in both attention stages): stage 0-4 outputs and logits, official weights through the
    converter."""
    from zoo.models.emo.model import EMO

    state = {k.removeprefix("official."): v for k, v in reduced.items() if k.startswith("official.")}
    net = _load_official(EMO(**REDUCED), state)
    feats, logits = _stages(net, reduced["input"])
    for s, f in enumerate(feats):
        close(f"reduced stage {s}", f, reduced[f"stage{s}"])
    close("reduced logits", logits, reduced["logits"])


def test_reduced_network_paper_form_matches_official(reduced):
    """attn_pre=False (value projection first, attention over the values: the paper's text) with the same weights."""
    from zoo.models.emo.model import EMO

    state = {k.removeprefix("official."): v for k, v in reduced.items() if k.startswith("official.")}
    net = _load_official(EMO(**REDUCED, attn_pre=False), state)
    with torch.no_grad():
        close("reduced logits (attn_pre=False)", net(reduced["input"]), reduced["logits_attn_pre_false"])


def test_converter_round_trip_on_official_keys(reduced, official_keys):
    """convert_state_dict then to_official_state_dict gives back the official key set (paper sizes and reduced)."""
    from zoo.models.emo.convert import convert_state_dict, to_official_state_dict

    state = {k.removeprefix("official."): v for k, v in reduced.items() if k.startswith("official.")}
    sets = [set(state)] + [{k for k, _ in ks} for ks in official_keys.values()]
    for keys in sets:
        fake = {k: torch.zeros(1) if not k.endswith(("running_mean", "running_var")) else torch.ones(1) for k in keys}
        assert set(to_official_state_dict(convert_state_dict(fake))) == keys


@pytest.mark.parametrize("size, seed", [("1m", 1), ("2m", 2)])
def test_paper_size_network_matches_official(paper, official_keys, size, seed):
    """EMO-1M / EMO-2M as registered (1000 classes) on 2x3x240x240: stage 3 (15x15 -> padded 21x21, 3x3 strided
    windows) and stage 4 (8x8 -> 14x14, 2x2 windows); stage 0-3 compared on their top-left 8x8, stage 4 and logits
    whole."""
    import zoo

    net = _network(zoo.create(f"emo-{size}"))
    _load_official(net, recipe(official_keys[f"emo_{size}"], seed))
    feats, logits = _stages(net, recipe_input((2, 3, 240, 240), 100 + seed))
    for s in range(4):
        close(f"EMO-{size.upper()} stage {s}", feats[s][:, :, :8, :8], paper[f"emo_{size}.stage{s}_crop"])
    close(f"EMO-{size.upper()} stage 4", feats[4], paper[f"emo_{size}.stage4"])
    close(f"EMO-{size.upper()} logits", logits, paper[f"emo_{size}.logits"])
