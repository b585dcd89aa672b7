"""What ``zoo bench`` runs on and reports: the device, the demo config (its ``data:`` section and the data module it
names), samples per batch, and the common columns of a row (timing figures, environment, parameter count)."""

from __future__ import annotations

import inspect
import statistics
from pathlib import Path
from typing import Any

import torch

from zoo.version import __version__


def _device(device: str | None) -> torch.device:
    if device:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is available here; use --device cpu")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _timing(times: list[float], samples: list[int]) -> dict:
    return {
        "samples_per_s": sum(samples) / sum(times),
        "step_ms_median": statistics.median(times) * 1e3,
        "step_ms_min": min(times) * 1e3,
        "step_ms_max": max(times) * 1e3,
    }


def _env(dev: torch.device) -> dict:
    return {"device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__, "zoo": __version__}


def _params(net: torch.nn.Module) -> int:
    net = getattr(net, "model", net)  # a zoo LightningModule: its network (the registry's `params`)
    return sum(p.numel() for p in net.parameters())


def _timm_net(name: str, **kw):
    import timm

    try:
        return timm.create_model(name, pretrained=False, **kw)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(
                f"unknown timm model {name!r}: timm.list_models('*{name[:6]}*') lists the names (zoo bench timm:<name>)"
            ) from None
        raise


def _config_roots() -> list[Path]:
    roots = [Path.cwd() / "configs", Path(__file__).resolve().parents[2] / "configs"]
    return [r for i, r in enumerate(roots) if r.is_dir() and r.resolve() not in {x.resolve() for x in roots[:i]}]


def _read_yaml(path: Path) -> dict:
    import yaml
    from omegaconf import OmegaConf

    text = Path(path).read_text()
    cfg = yaml.safe_load(text) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} is not a LightningCLI config (a YAML mapping with model: and data:)")
    # ${trainer.default_root_dir}/... as `zoo fit` resolves it (jsonargparse's omegaconf mode)
    return OmegaConf.to_container(OmegaConf.create(cfg), resolve=True) if "${" in text else cfg


def demo_config(entry) -> tuple[Path, dict]:
    """The demo config of a registry entry: the ``configs/demo/*.yaml`` whose model class is the entry's, else
    ``configs/demo/<method>.yaml``; read from the current directory's ``configs/`` or the checkout's."""
    roots = _config_roots()
    for root in roots:
        # the method's own demo first (demo/aclip.yaml before its variant demo/aclip-random-mask.yaml)
        files = sorted((root / "demo").glob("*.yaml"), key=lambda p: (p.stem != entry.method, p.name))
        for path in files:
            cfg = _read_yaml(path)
            if (cfg.get("model") or {}).get("class_path") == entry.module and cfg.get("data"):
                return path, cfg
        path = root / "demo" / f"{entry.method}.yaml"
        if path.is_file():
            return path, _read_yaml(path)
    raise FileNotFoundError(
        f"zoo bench --train: no demo config for {entry.name} (configs/demo/{entry.method}.yaml, looked in "
        f"{', '.join(map(str, roots)) or 'no configs/ folder'}): run it from the zoo repository's root, or pass "
        "--config FILE (a LightningCLI YAML whose data: section to train on)"
    )


def _accepts(cls, name: str) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _data_section(cfg: dict, path: Path | str) -> tuple[Any, dict]:
    from zoo.registry import import_class

    data = cfg.get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(f"{path} has no data: section with a class_path (zoo bench --train draws its batches from it)")
    return import_class(data["class_path"]), dict(data.get("init_args") or {})


def follow_model_data(data_cls, dargs: dict, facts: dict, explicit: dict) -> list[str]:
    """Data follows the model (``zoo.sizes``): each fact of the module's ``data_config()`` that the data class takes
    and the caller did not set (``explicit``) replaces the demo config's value. Returns a note per value taken."""
    notes = []
    for key, value in facts.items():
        if value is None or key in explicit or not _accepts(data_cls, key):
            continue
        old = dargs.get(key)
        notes.append(f"{key}={value} from the model" + (f" (demo {old})" if old is not None and old != value else ""))
        dargs[key] = value
    return notes


def module_data_config(cfg: dict) -> dict:
    """``data_config()`` of a config's model, built on the meta device (no weights, no time); ``{}`` when the model
    states none or cannot be built there (then the data module's own error says what to set)."""
    from zoo.registry import import_class

    model = cfg.get("model")
    if not isinstance(model, dict) or "class_path" not in model:
        return {}
    cls = import_class(model["class_path"])
    if not callable(getattr(cls, "data_config", None)):
        return {}
    try:
        with torch.device("meta"):
            module = cls(**dict(model.get("init_args") or {}))
    except Exception:  # noqa: BLE001  (a teacher file, a tokenizer...: the data module then names what is missing)
        return {}
    return dict(module.data_config() or {})


def _ragged(v) -> bool:
    """A list of tensors of different shapes: one per sample (a list of equal shapes is a batch's parts)."""
    return (
        isinstance(v, (list, tuple))
        and len(v) > 1
        and all(torch.is_tensor(t) for t in v)
        and len({tuple(t.shape) for t in v}) > 1
    )


def _count(batch) -> tuple[int, str]:
    """Samples in one batch and their unit (see the module docstring)."""
    if hasattr(batch, "num_nodes") and hasattr(batch, "edge_index"):  # a PyG graph
        return int(batch.num_nodes), "nodes"
    if isinstance(batch, dict):
        if "input_ids" in batch and "gold_starts" in batch:  # one coreference document
            return 1, "docs"
        if "x" in batch and torch.is_tensor(batch["x"]):
            return int(batch["x"].shape[0]), "nodes"
        per_sample = [v for v in batch.values() if _ragged(v)]
        if per_sample:  # collated as per-sample lists (LiDAR frames of different sizes)
            return len(per_sample[0]), "samples"
        batch = list(batch.values())
    if torch.is_tensor(batch):
        return int(batch.shape[0]), "samples"
    if isinstance(batch, (list, tuple)):
        for b in batch:
            if torch.is_tensor(b):
                return int(b.shape[0]), "images" if b.dim() == 4 else "rows"
    return 1, "batches"
