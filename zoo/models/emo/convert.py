"""Official EMO checkpoints (``zhangzjn/EMO`` ``resources/EMO_*/net.pth``) -> zoo's EMO state_dict.

The official model wraps every conv in a ``ConvNormAct`` whose conv is ``.conv`` and norm ``.norm``, keeps the stem
and the stage-0 block in ``stage0`` and the LayerNorm2d around an ``nn.LayerNorm`` (``.norm.norm``); key names from
the fvcore tables in the official training logs (``resources/EMO_*/log_train.txt``). Ours
(``zoo.models.emo.model.EMO``):

=====================================  ======================================
official                               zoo
=====================================  ======================================
``stage0.0.convs.0.0.*``               ``stem.conv.*``       (3x3/2 conv, with bias)
``stage0.0.convs.0.1.*``               ``stem.bn.*``
``stage0.1.*``                         ``stages.0.0.*``      (stage-0 iRMB)
``stage{i}.{j}.*`` (i = 1..4)          ``stages.{i}.{j}.*``
``*.norm.norm.*`` (LayerNorm2d)        ``*.norm.*``
``*.qk.conv.*`` / ``*.v.conv.*``       ``*.qk.*`` / ``*.v.*``
``*.proj.conv.*``                      ``*.proj.*``
``*.conv_local.norm.*``                ``*.conv_local.bn.*``
``*.se.conv_reduce/conv_expand.*``     ``*.se.fc1/fc2.*``
``norm.norm.*``, ``head.*``            ``norm.*``, ``head.*``
=====================================  ======================================

``zoo.load("emo-1m")`` downloads, converts and caches the official file by itself (the entry's ``official_url``,
``zoo/convert.py``). Command line for a local file (read as plain tensors only, ``torch.load(weights_only=True)``)::

    python -m zoo.models.emo.convert resources/EMO_1M/net.pth emo-1m out/emo-1m
"""

from __future__ import annotations

import re
from pathlib import Path

from zoo import convert as _convert

# applied in order to each key (after the stage0 / stageN prefixes are mapped)
_SUFFIXES = (
    (re.compile(r"\.norm\.norm\."), ".norm."),
    (re.compile(r"^norm\.norm\."), "norm."),
    (re.compile(r"\.(qk|v|proj)\.conv\."), r".\1."),
    (re.compile(r"\.conv_local\.norm\."), ".conv_local.bn."),
    (re.compile(r"\.se\.conv_reduce\."), ".se.fc1."),
    (re.compile(r"\.se\.conv_expand\."), ".se.fc2."),
)
_PREFIXES = (
    (re.compile(r"^stage0\.0\.convs\.0\.0\."), "stem.conv."),
    (re.compile(r"^stage0\.0\.convs\.0\.1\."), "stem.bn."),
    (re.compile(r"^stage0\.1\."), "stages.0.0."),
    (re.compile(r"^stage([1-9])\.(\d+)\."), r"stages.\1.\2."),
)
_CONTAINERS = ("net_E", "net", "state_dict", "model")  # net_E: the EMA weights, the ones the paper reports


def _unwrap(official: dict) -> dict:
    for key in _CONTAINERS:
        if key in official and isinstance(official[key], dict):
            return official[key]
    return official


def convert_key(key: str) -> str:
    """One official key -> its zoo name (see the module table)."""
    if key.startswith("module."):
        key = key[len("module.") :]
    for pattern, repl in _PREFIXES:
        key, n = pattern.subn(repl, key)
        if n:
            break
    for pattern, repl in _SUFFIXES:
        key = pattern.sub(repl, key)
    return key


def convert_state_dict(official: dict) -> dict:
    """An official EMO checkpoint (a bare state_dict, or a training checkpoint with ``net_E`` / ``net``) -> zoo
    keys. ``net_E`` (EMA) is preferred when both are present. Tensors are shared, not copied."""
    state = _unwrap(official)
    if not isinstance(state, dict) or not state:
        raise ValueError("not an EMO checkpoint: expected a dict of tensors (a bare state_dict or under 'net'/'net_E')")
    if not any(k.removeprefix("module.").startswith("stage0.") for k in state):
        raise ValueError(
            f"not an official EMO checkpoint: no 'stage0.*' keys (first keys: {sorted(state)[:5]}). zoo checkpoints "
            "load with zoo.load; official ones have stage0.0.convs.0.0.weight, stage1.0.norm.weight, ..."
        )
    return {convert_key(k): v for k, v in state.items()}


def to_official_state_dict(state: dict) -> dict:
    """The inverse of :func:`convert_state_dict`: zoo keys -> official names (a bare state_dict). LayerNorm2d
    layers are told from BatchNorm ones by their lack of running statistics."""
    ln_prefixes = {k.rsplit(".", 1)[0] for k in state if k.endswith("norm.weight")} - {
        k.rsplit(".", 1)[0] for k in state if k.endswith("norm.running_mean")
    }
    out = {}
    for key, value in state.items():
        k = key
        prefix, _, leaf = k.rpartition(".")
        if prefix in ln_prefixes:  # LayerNorm2d wraps nn.LayerNorm officially
            k = f"{prefix}.norm.{leaf}"
        k = re.sub(r"\.(qk|v|proj)\.(weight|bias)$", r".\1.conv.\2", k)
        k = k.replace(".conv_local.bn.", ".conv_local.norm.").replace(".se.fc1.", ".se.conv_reduce.")
        k = k.replace(".se.fc2.", ".se.conv_expand.")
        k = re.sub(r"^stem\.conv\.", "stage0.0.convs.0.0.", k)
        k = re.sub(r"^stem\.bn\.", "stage0.0.convs.0.1.", k)
        k = re.sub(r"^stages\.0\.0\.", "stage0.1.", k)
        k = re.sub(r"^stages\.([1-9])\.(\d+)\.", r"stage\1.\2.", k)
        out[k] = value
    return out


def read_official(path: str | Path) -> dict:
    """Read an official checkpoint safely (plain tensors only) and convert it to zoo keys."""
    return _convert.read_official(path, convert_state_dict, "zhangzjn/EMO: resources/EMO_1M/net.pth")


def load_official(path: str | Path, name: str):
    """Build the registry entry ``name`` and load an official checkpoint into it strictly."""
    return _convert.load_official(path, name, read_official)


def main(argv: list[str] | None = None) -> int:
    return _convert.converter_main(argv, load_official, "EMO (net.pth)", "emo-1m, emo-2m, emo-5m or emo-6m")


if __name__ == "__main__":
    raise SystemExit(main())
