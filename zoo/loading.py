"""Loading: a LightningModule with its weights from a registry name, a Hub repo, a local folder or a checkpoint.

Registry names load by the entry's weights status (``Entry.weights``): ``official`` -> the converted folder in the
zoo cache, else the authors' file downloaded and converted (:func:`zoo.convert.official_folder`); ``hub`` -> the Hub
repo at its pinned commit; ``pending`` / ``-`` -> an error that says how to produce the weights. Folders are read in
the Hub folder format (:mod:`zoo.hub_folder`); what a file names is built only through :mod:`zoo.trust`.
"""

from __future__ import annotations

from pathlib import Path

from zoo import registry
from zoo.checkpoints import load_weights_strict, model_state_dict, read_checkpoint, read_safetensors
from zoo.errors import UserError
from zoo.export import check_name, export
from zoo.hub_folder import CONFIG_NAME, REPO_ID, WEIGHTS_NAME, check_export_target, read_config, read_figure
from zoo.trust import build_entry, build_module

__all__ = ["create", "load", "load_entry", "load_folder", "load_hub", "module_from_checkpoint", "export_source"]


def create(name: str, pretrained: bool = False, **overrides):
    """Build a registered model (a LightningModule, eval mode); ``pretrained=True`` loads its weights."""
    entry = registry.get(name)
    if pretrained:
        return load_entry(entry, **overrides)
    return build_entry(entry, **overrides)


def _no_weights_hint(entry: registry.Entry) -> str:
    if entry.weights == "pending":
        return f"{entry.name} has no published weights yet (status 'pending'): {entry.weights_howto}"
    return (
        f"{entry.name} has no published weights (architecture only): build it with zoo.create({entry.name!r}) "
        "or load your own export with 'local-dir:PATH'."
    )


def load_entry(entry: registry.Entry, allowed_modules=(), allowed_init_args=(), **overrides):
    """A registry entry with its weights: official (converted, cached) -> Hub repo at its pinned commit."""
    if entry.weights == "official":
        from zoo.convert import official_folder

        return load_folder(official_folder(entry), **overrides)
    if entry.weights == "hub":
        return load_hub(
            entry.hub_repo,
            entry.revision,
            allowed_modules=allowed_modules,
            allowed_init_args=allowed_init_args,
            **overrides,
        )
    raise ValueError(_no_weights_hint(entry))


def load_folder(folder: str | Path, allowed_modules=(), allowed_init_args=(), **overrides):
    """The module in a Hub folder (``config.json`` + ``model.safetensors``), eval mode, weights loaded strictly."""
    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"{folder} is not a zoo Hub folder: {p.name} is missing (expected {CONFIG_NAME} + {WEIGHTS_NAME}; "
                "write one with `zoo export CKPT DIR`)."
            )
    return _build_from(read_config(cfg_path), w_path, str(folder), overrides, allowed_modules, allowed_init_args)


def _build_from(cfg: dict, weights: Path | str, source: str, overrides: dict, allowed_modules=(), allowed_init_args=()):
    if "module" not in cfg or not isinstance(cfg.get("init_args"), dict):
        raise UserError(f"{source}/config.json has no 'module'/'init_args': not a zoo Hub folder.")
    from_file = {k: v for k, v in cfg["init_args"].items() if k not in overrides}  # the caller's own values are trusted
    module = build_module(
        cfg["module"],
        {**cfg["init_args"], **overrides},
        allowed_modules,
        source=f"{source}/config.json",
        file_args=from_file,
        allowed_init_args=allowed_init_args,
    )
    load_weights_strict(module.model, read_safetensors(weights), source)
    return module.eval()


def _hub_file(repo_id: str, filename: str, revision: str) -> str:
    """Cache first (no HTTP call when the file is cached), then a download; clear errors offline."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    cached = try_to_load_from_cache(repo_id, filename, revision=revision)
    if isinstance(cached, str):
        return cached
    how = (
        f"Download it once with network access (`hf download {repo_id} --revision {revision}`, or "
        f"zoo.load('hf-hub:{repo_id}@{revision}') online), or load a local copy with 'local-dir:PATH'."
    )
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(
            f"{filename} of {repo_id}@{revision} is not in the Hugging Face cache and HF_HUB_OFFLINE=1. {how}"
        )
    try:
        return hf_hub_download(repo_id, filename, revision=revision)
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(f"cannot fetch {filename} of {repo_id}@{revision}: {e}. {how}") from e


def load_hub(repo_id: str, revision: str = "main", allowed_modules=(), allowed_init_args=(), **overrides):
    """The module of Hub repo ``repo_id`` at ``revision`` (cached files first)."""
    cfg = read_config(_hub_file(repo_id, CONFIG_NAME, revision))
    weights = _hub_file(repo_id, WEIGHTS_NAME, revision)
    return _build_from(cfg, weights, f"hf-hub:{repo_id}@{revision}", overrides, allowed_modules, allowed_init_args)


def load(source: str, allowed_modules=(), allowed_init_args=(), **overrides):
    """Load a LightningModule (eval mode, weights loaded strictly) from:

    - a registry name (``emo-1m``) -> its weights by status: ``official`` (converted from the authors' file, cached),
      ``hub`` (its Hub repo at the pinned commit);
    - ``hf-hub:org/name[@revision]`` or a bare ``org/name`` repo id;
    - ``local-dir:PATH`` or an existing folder.

    A folder's ``config.json`` may only name a ``zoo.*`` LightningModule; ``allowed_modules`` (class paths or module
    prefixes) allows others the caller trusts. Its init args that name code, files or URLs (``EXTERNAL_INIT_ARGS``)
    are honoured only with a value zoo itself uses; ``allowed_init_args`` (init-arg names) allows others.
    """
    kw = dict(allowed_modules=allowed_modules, allowed_init_args=allowed_init_args, **overrides)
    source = str(source)
    if source.startswith("local-dir:"):
        path = Path(source[len("local-dir:") :]).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"local-dir: {path} is not a folder")
        return load_folder(path, **kw)
    if source.startswith("hf-hub:"):
        repo, _, rev = source[len("hf-hub:") :].partition("@")
        if not REPO_ID.match(repo):
            raise ValueError(f"{source!r}: {repo!r} is not a Hub repo id (expected 'org/name[@revision]')")
        return load_hub(repo, rev or "main", **kw)
    if Path(source).expanduser().is_dir():
        if REPO_ID.match(source) and "/" in source and not source.startswith((".", "/", "~")):
            raise ValueError(
                f"{source!r} is both a local folder and a Hub repo id; say which: 'local-dir:{source}' or "
                f"'hf-hub:{source}'."
            )
        return load_folder(Path(source).expanduser(), **kw)
    if "/" not in source and "\\" not in source:
        return load_entry(registry.get(source), **kw)  # unknown names raise with close matches
    if REPO_ID.match(source) and not source.startswith((".", "~")):
        return load_hub(source, "main", **kw)
    raise FileNotFoundError(
        f"{source!r} is neither a registry name, an existing folder, nor a Hub repo id 'org/name'. "
        "Use 'local-dir:PATH' for a folder or 'hf-hub:org/name@rev' for the Hub."
    )


def module_from_checkpoint(path: str | Path, module: str | None = None, allowed_init_args=(), build_only: bool = False):
    """Rebuild the LightningModule saved in a checkpoint (class path from the CLI's ``_class_path`` hparam, which
    must be a ``zoo.*`` LightningModule, or ``module``: the caller's explicit choice) and load its weights strictly.
    Hyper-parameters that name code, files or URLs are checked as a folder's init args
    (:func:`zoo.trust.check_init_args`; ``build_only``: the caller never sets the module up, e.g. ``zoo export``)."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{path} has no 'state_dict': not a Lightning checkpoint")
    hparams = dict(ckpt.get("hyper_parameters", {}) or {})
    cls_path = module or hparams.pop("_class_path", None)
    hparams.pop("_class_path", None)
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if cls_path is None:
        raise ValueError(
            f"{path} does not say which LightningModule it holds (no '_class_path' hyper-parameter); "
            "pass it: `zoo export CKPT DIR --module zoo.models.emo.module.EMOModule`."
        )
    mod = build_module(
        cls_path,
        hparams,
        allowed_modules=(module,) if module else (),
        source=f"checkpoint {path}" if not module else "--module",
        file_args=hparams,
        allowed_init_args=allowed_init_args,
        build_only=build_only,
    )
    load_weights_strict(mod.model, model_state_dict(ckpt, path), str(path))
    return mod.eval(), cls_path, hparams


def export_source(
    source: str,
    out_dir: str | Path,
    name: str | None = None,
    module: str | None = None,
    overwrite: bool = False,
    allowed_init_args=(),
    figure: str | Path | None = None,
) -> Path:
    """``zoo export``: SOURCE is a Lightning ``.ckpt`` or a registry name with weights (official or Hub), loaded and
    written with :func:`zoo.export.export`.

    The target is checked first (nothing is loaded for a refused target); ``name`` is checked against the model."""
    check_export_target(out_dir, overwrite)
    if figure is not None:
        read_figure(figure)  # checked before anything is loaded
    p = Path(source)
    if p.suffix == ".ckpt" or p.is_file():
        # only built and written out: a teacher / pretrained source it names goes into config.json unopened, where
        # loading the export checks it again
        mod, _, _ = module_from_checkpoint(p, module, allowed_init_args, build_only=True)
    else:
        entry = registry.get(source)
        if not entry.pretrained:
            raise ValueError(
                f"zoo export {entry.name}: the entry has no weights to export (status {entry.weights!r}); exporting it "
                "would write random weights under a card that names the entry's results. "
                + (_no_weights_hint(entry) if entry.weights == "pending" else "Export a trained .ckpt instead.")
            )
        mod = load_entry(entry)
        name = name or entry.name
    if name:
        check_name(mod, name)
    return export(mod, out_dir, name=name, overwrite=overwrite, figure=figure)
