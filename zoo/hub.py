"""Hub folders, loading, model cards and pushing.

A Hub folder (a Hub repo, a local folder, or a snapshot in the huggingface_hub cache) holds:

- ``config.json``: zoo version, registry name, the LightningModule's class path and init args, preprocessing;
- ``model.safetensors``: the state_dict of ``module.model`` (the plain network);
- ``README.md``: the model card (YAML metadata + text).

Nothing here ever unpickles data from a Hub or a folder: weights come from safetensors, Lightning
checkpoints are read with ``torch.load(weights_only=True)``. Nothing named in a file is imported or called
unchecked either: a class path from ``config.json`` (``module``) or a checkpoint (``_class_path``) is built only when
it is a ``zoo.*`` LightningModule subclass or the caller allowed it (``allowed_modules=``, ``zoo export --module``);
the prefix is checked before anything is imported, the class before it is called. Init args that name code, files or
URLs (:data:`EXTERNAL_INIT_ARGS`: encoders by Hub id or module spec, teachers, pretrained weights) are honoured from a
file only with a value zoo itself uses (the class default, a registry entry's) or when the caller allows them
(``allowed_init_args=``).

Registry names load by the entry's weights status (``Entry.weights``): ``official`` -> the converted folder in the
zoo cache, else the authors' file downloaded and converted (``zoo/convert.py``); ``hub`` -> the Hub repo at its
pinned commit; ``pending`` / ``-`` -> an error that says how to produce the weights.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from zoo import registry
from zoo.errors import UserError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FIGURE_NAME = "figure.png"  # optional: a picture of the run's predictions (zoo.callbacks.PredictionFigures)
FIGURE_MAX_BYTES = 20 * 2**20
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
TRUSTED_PREFIX = "zoo."


class WeightsMismatchError(RuntimeError):
    """The weights do not fit the model (missing, unexpected or differently shaped tensors)."""


class UntrustedClassError(UserError):
    """A file names a class zoo will not import or call (not a ``zoo.*`` LightningModule, not allowed by the user)."""


class UntrustedInitArgError(UserError):
    """A file sets an init arg that names code, a file or a URL (:data:`EXTERNAL_INIT_ARGS`) the user did not allow."""


# Init args of zoo's LightningModules that name something outside the saved folder: code (module specs), files
# (checkpoints, folders) or downloads (Hub ids, URLs). Survey of zoo/models/*/module.py; a subclass inherits its
# bases' entries. A value from a file (config.json, a checkpoint's hyper-parameters) is honoured only when zoo itself
# would use it (:func:`_zoo_uses`) or the caller allows the arg by name (``allowed_init_args``).
EXTERNAL_INIT_ARGS: dict[str, dict[str, str]] = {
    "zoo.models.mmc_coref.module.MMCCorefModule": {
        "encoder": "the transformers encoder and tokenizer to load (a Hub id, a folder or a pkg:PACKAGE/SUB spec)"
    },
    "zoo.models.cmt.module.CMTModule": {
        "img_backbone_kwargs": "keyword arguments of timm.create_model, which may name a checkpoint file or config"
    },
    "zoo.models.reliant.module.ReliantModule": {
        "teacher": "the teacher model to load (a zoo source, a folder or a .ckpt)"
    },
    "zoo.models.simvtp.module.SimVTPModule": {
        "init_from": "the weights to start pre-training from (a file, a folder, a Hub name or a zoo source)",
        "text_init": "the BERT model whose text embeddings to load (a folder, a Hub id or a pkg: spec)",
    },
    "zoo.models.simvtp.module.SimVTPRetrievalModule": {
        "pretrained": "the pre-training weights to start from (a file, a folder, a Hub name or a zoo source)"
    },
    "zoo.models.ssda3d.module.SSDA3DModule": {
        "init_weights": "the Stage-I weights to start from (a .ckpt or an exported folder)"
    },
    "zoo.models.tinymim.module.TinyMIMDistillModule": {
        "teacher": "the teacher to load (a zoo source, a .ckpt, an official .pth file or URL)"
    },
    "zoo.models.tinymim.module.ViTFinetuneModule": {
        "pretrained": "the pre-trained weights to start from (a zoo source, a .ckpt, an official .pth file or URL)"
    },
}
# Of those, the ones ``__init__`` itself resolves (the rest are opened only in ``setup`` / ``configure_model``, which
# building a module to export its weights never runs).
BUILD_TIME_INIT_ARGS: dict[str, tuple[str, ...]] = {
    "zoo.models.mmc_coref.module.MMCCorefModule": ("encoder",),  # its config, when encoder_config is not given
    "zoo.models.cmt.module.CMTModule": ("img_backbone_kwargs",),
}
# timm.create_model keywords that read a file or a download (CMT's img_backbone_kwargs)
_TIMM_FILE_KWARGS = frozenset({"checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"})
# teacher specs that load nothing: a quick teacher trained in setup (ReliantModule)
_BUILT_HERE = ("fit:gcn", "fit:sage")


# --------------------------------------------------------------------------------------------- building
def _allowed(path: str, allowed_modules) -> bool:
    return path.startswith(TRUSTED_PREFIX) or any(
        path == a or path.startswith(a.rstrip(".") + ".") for a in (allowed_modules or ())
    )


def trusted_class(module_path: str, allowed_modules=(), source: str = "a file"):
    """The LightningModule class at ``module_path``, refused before import unless it is under ``zoo.`` or in
    ``allowed_modules`` (class paths or module prefixes), and refused before any call unless it is a LightningModule
    subclass."""
    path = str(module_path)
    if not _CLASS_PATH.match(path):
        raise UntrustedClassError(f"{source} names {path!r} as its LightningModule: not a class path 'pkg.mod.Class'.")
    if not _allowed(path, allowed_modules):
        raise UntrustedClassError(
            f"{source} names {path!r} as its LightningModule, which is not a zoo LightningModule; zoo only builds "
            "zoo.* classes from a file, so nothing was imported or run. Only if this file comes from someone you "
            "trust and it holds a LightningModule of a package you installed, allow that class: "
            "zoo.load(..., allowed_modules=['pkg.module.YourLightningModule']) or "
            "`zoo export CKPT DIR --module pkg.module.YourLightningModule`."
        )
    cls = registry.import_class(path)
    from lightning.pytorch import LightningModule

    if not (isinstance(cls, type) and issubclass(cls, LightningModule)):
        raise UntrustedClassError(
            f"{source} names {path!r}, which is a {type(cls).__name__}, not a LightningModule subclass: refusing to "
            "call it."
        )
    return cls


def _external_args(cls, build_only: bool = False) -> dict[str, str]:
    """:data:`EXTERNAL_INIT_ARGS` of ``cls`` and its bases; ``build_only``: those ``__init__`` resolves."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        path = f"{base.__module__}.{base.__qualname__}"
        args = EXTERNAL_INIT_ARGS.get(path, {})
        out.update({k: v for k, v in args.items() if not build_only or k in BUILD_TIME_INIT_ARGS.get(path, ())})
    return out


def _zoo_uses(cls, arg: str, value) -> bool:
    """Whether zoo itself builds ``cls`` with ``arg=value``: unset, the class default, a registry entry's value (or
    its tiny test override), a registry name or a dict of sizes for a teacher, a quick teacher trained in setup, timm
    keywords that name no file."""
    import inspect

    if value is None or value == "":
        return True
    param = inspect.signature(cls.__init__).parameters.get(arg)
    if param is not None and param.default is not inspect.Parameter.empty and value == param.default:
        return True
    path = f"{cls.__module__}.{cls.__qualname__}"
    for e in registry.all_entries():
        if e.module == path and value in (e.init_args.get(arg), (e.tiny_overrides or {}).get(arg)):
            return True
    if arg == "img_backbone_kwargs":
        return isinstance(value, dict) and not (set(value) & _TIMM_FILE_KWARGS)
    if arg == "teacher":
        if isinstance(value, dict):  # TinyMIM: ViT sizes of a randomly initialised teacher
            return True
        return isinstance(value, str) and (value in _BUILT_HERE or value in registry.list_models())
    return False


def check_init_args(
    cls,
    file_args: dict[str, Any],
    allowed_init_args=(),
    source: str = "a file",
    allow_hint: str | None = None,
    build_only: bool = False,
) -> None:
    """Refuse, before ``cls`` is built, an init arg from a file that names code, a file or a URL
    (:data:`EXTERNAL_INIT_ARGS`) with a value zoo itself does not use, unless the caller allows that arg by name.
    ``allow_hint``: how the caller allows one (``{arg}`` is filled in); default: the ``zoo.load`` keywords.
    ``build_only``: the module is only built (to export its weights), never set up: only the args ``__init__``
    resolves (:data:`BUILD_TIME_INIT_ARGS`) are checked; the others go into the export, where loading checks them."""
    hint = allow_hint or (
        "zoo.load(..., allowed_init_args=[{arg!r}]) or `zoo export CKPT DIR --allow-init-arg "
        "{arg}`, or give the value yourself: zoo.load(..., {arg}=...)"
    )
    for arg, what in _external_args(cls, build_only).items():
        if arg in file_args and arg not in (allowed_init_args or ()) and not _zoo_uses(cls, arg, file_args[arg]):
            raise UntrustedInitArgError(
                f"{source} sets {arg}={file_args[arg]!r}: {what}; zoo does not import, open or download what a file "
                f"names, so nothing was loaded. If you trust this file, allow it: {hint.format(arg=arg)}."
            )


def build_module(
    module_path: str,
    init_args: dict[str, Any],
    allowed_modules=(),
    source: str = "a file",
    file_args: dict[str, Any] | None = None,
    allowed_init_args=(),
    build_only: bool = False,
):
    """Build the trusted class at ``module_path`` (:func:`trusted_class`) from ``init_args``; ``file_args``: the init
    args that came from a file, checked by :func:`check_init_args` first."""
    cls = trusted_class(module_path, allowed_modules, source)
    check_init_args(cls, file_args or {}, allowed_init_args, source, build_only=build_only)
    try:
        return cls(**init_args)
    except TypeError as e:
        raise TypeError(f"cannot build {module_path} from init args {sorted(init_args)}: {e}") from e


def create(name: str, pretrained: bool = False, **overrides):
    """Build a registered model (a LightningModule, eval mode); ``pretrained=True`` loads its weights."""
    entry = registry.get(name)
    if pretrained:
        return load_entry(entry, **overrides)
    module = build_module(entry.module, {**entry.init_args, **overrides}, source=f"registry entry {entry.name}")
    return module.eval()


def _no_weights_hint(entry: registry.Entry) -> str:
    if entry.weights == "pending":
        how = entry.weights_note or _pending_default(entry)
        return f"{entry.name} has no published weights yet (status 'pending'): {how}"
    return (
        f"{entry.name} has no published weights (architecture only): build it with zoo.create({entry.name!r}) "
        "or load your own export with 'local-dir:PATH'."
    )


def _pending_default(entry: registry.Entry) -> str:
    cfg = entry.config or f"configs/{entry.method}.yaml"
    return (
        f"train it with `zoo fit --config {cfg}`, then `zoo export CKPT DIR --name {entry.name}` and load "
        "'local-dir:DIR'" + (f"; `zoo push DIR {entry.hub_repo}` publishes it." if entry.hub_repo else ".")
    )


def load_entry(entry: registry.Entry, allowed_modules=(), allowed_init_args=(), **overrides):
    """A registry entry with its weights: official (converted, cached) -> Hub repo at its pinned commit."""
    if entry.weights == "official":
        from zoo import convert

        return convert.load_entry(entry, **overrides)
    if entry.weights == "hub":
        return load_hub(
            entry.hub_repo,
            entry.revision,
            allowed_modules=allowed_modules,
            allowed_init_args=allowed_init_args,
            **overrides,
        )
    raise ValueError(_no_weights_hint(entry))


def load_weights_strict(model, state: dict, source: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with one error that lists every problem."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or shapes:

        def few(xs):
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8} more)" if len(xs) > 8 else "")

        lines = [f"weights from {source} do not fit {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {few(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {few(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): {few(shapes)}")
        lines.append(
            "  Is this a checkpoint of another model or size? Check config.json's 'name'/'init_args', or convert "
            "official weights with zoo.models.<method>.convert.convert_state_dict."
        )
        raise WeightsMismatchError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def _read_safetensors(path: str | Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); re-download or re-export it.") from e


def load_folder(folder: str | Path, allowed_modules=(), allowed_init_args=(), **overrides):
    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"{folder} is not a zoo Hub folder: {p.name} is missing (expected {CONFIG_NAME} + {WEIGHTS_NAME}; "
                "write one with `zoo export CKPT DIR`)."
            )
    return _build_from(_read_config(cfg_path), w_path, str(folder), overrides, allowed_modules, allowed_init_args)


def _read_config(path) -> dict:
    try:
        cfg = json.loads(Path(path).read_text())
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); re-download or re-export the folder.") from e
    if not isinstance(cfg, dict):
        raise UserError(f"{path} holds a JSON {type(cfg).__name__}, not an object: not a zoo config.json.")
    return cfg


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
    load_weights_strict(module.model, _read_safetensors(weights), source)
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
    cfg = _read_config(_hub_file(repo_id, CONFIG_NAME, revision))
    weights = _hub_file(repo_id, WEIGHTS_NAME, revision)
    return _build_from(cfg, weights, f"hf-hub:{repo_id}@{revision}", overrides, allowed_modules, allowed_init_args)


def load(source: str, allowed_modules=(), allowed_init_args=(), **overrides):
    """Load a LightningModule (eval mode, weights loaded strictly) from:

    - a registry name (``emo-1m``) -> its weights by status: ``official`` (converted from the authors' file, cached),
      ``hub`` (its Hub repo at the pinned commit);
    - ``hf-hub:org/name[@revision]`` or a bare ``org/name`` repo id;
    - ``local-dir:PATH`` or an existing folder.

    A folder's ``config.json`` may only name a ``zoo.*`` LightningModule; ``allowed_modules`` (class paths or module
    prefixes) allows others the caller trusts. Its init args that name code, files or URLs (:data:`EXTERNAL_INIT_ARGS`)
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
        if not _REPO_ID.match(repo):
            raise ValueError(f"{source!r}: {repo!r} is not a Hub repo id (expected 'org/name[@revision]')")
        return load_hub(repo, rev or "main", **kw)
    if Path(source).expanduser().is_dir():
        if _REPO_ID.match(source) and "/" in source and not source.startswith((".", "/", "~")):
            raise ValueError(
                f"{source!r} is both a local folder and a Hub repo id; say which: 'local-dir:{source}' or "
                f"'hf-hub:{source}'."
            )
        return load_folder(Path(source).expanduser(), **kw)
    if "/" not in source and "\\" not in source:
        return load_entry(registry.get(source), **kw)  # unknown names raise with close matches
    if _REPO_ID.match(source) and not source.startswith((".", "~")):
        return load_hub(source, "main", **kw)
    raise FileNotFoundError(
        f"{source!r} is neither a registry name, an existing folder, nor a Hub repo id 'org/name'. "
        "Use 'local-dir:PATH' for a folder or 'hf-hub:org/name@rev' for the Hub."
    )


# --------------------------------------------------------------------------------------------- export
def read_checkpoint(path: str | Path) -> dict:
    """A Lightning ``.ckpt`` read safely (``weights_only=True``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError/RuntimeError with long messages
        raise ValueError(
            f"{path} could not be read as a weights-only Lightning checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Only plain tensors and Python values are accepted."
        ) from e


def module_from_checkpoint(path: str | Path, module: str | None = None, allowed_init_args=(), build_only: bool = False):
    """Rebuild the LightningModule saved in a checkpoint (class path from the CLI's ``_class_path`` hparam, which
    must be a ``zoo.*`` LightningModule, or ``module``: the caller's explicit choice) and load its weights strictly.
    Hyper-parameters that name code, files or URLs are checked as a folder's init args (:func:`check_init_args`;
    ``build_only``: the caller never sets the module up, e.g. ``zoo export``)."""
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


def model_state_dict(ckpt: dict, path: str | Path = "the checkpoint") -> dict:
    """The ``module.model`` weights of a Lightning checkpoint read with :func:`read_checkpoint`: its ``state_dict``
    entries under ``model.``, prefix stripped."""
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"{path} has no 'state_dict': not a Lightning checkpoint")
    return {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}


def class_path(module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _init_args(module) -> dict[str, Any]:
    hp = dict(getattr(module, "hparams", {}) or {})
    hp = {k: v for k, v in hp.items() if not k.startswith("_")}
    json.dumps(hp)  # init args must be JSON-able; fail here, not at load time
    return hp


def _find_entry(module, name: str | None) -> registry.Entry | None:
    if name:
        return registry.get(name)
    cp, hp = class_path(module), _init_args(module)
    for e in registry.all_entries():
        if e.module == cp and all(hp.get(k) == v for k, v in e.init_args.items()):
            return e
    return None


_EXPORT_FILES = {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME}  # always written


def _export_files(folder: Path) -> set[str]:
    """The regular files a zoo export in ``folder`` may hold: the three it always writes, and ``figure.png`` only
    where its config.json records ``"figure": "figure.png"`` (zoo wrote it)."""
    try:
        cfg = json.loads((Path(folder) / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        cfg = {}
    figure = isinstance(cfg, dict) and cfg.get("figure") == FIGURE_NAME
    return _EXPORT_FILES | ({FIGURE_NAME} if figure else set())


def is_export(folder: Path) -> bool:
    """A folder zoo wrote: its config.json says ``"library": "zoo"``."""
    try:
        cfg = json.loads((Path(folder) / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("library") == "zoo"


def check_export_target(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse any target whose replacement could lose data: a file, a link, the current folder or one above it, a
    folder that is not a zoo export or holds other files; an existing export only with ``overwrite``. An absent or
    empty folder is fine. Returns the absolute path (links not followed)."""
    out_dir = Path(os.path.abspath(Path(out_dir).expanduser()))
    fix = "choose a new or empty folder"
    if out_dir.is_symlink():
        raise ValueError(f"export target {out_dir} is a symbolic link: refusing to replace it; {fix}.")
    if not out_dir.exists():
        return out_dir
    if not out_dir.is_dir():
        raise ValueError(f"export target {out_dir} is a file, not a folder: refusing to replace it; {fix}.")
    cwd = Path(os.getcwd())
    if out_dir == cwd or out_dir in cwd.parents:
        raise ValueError(f"export target {out_dir} is the current folder or holds it: {fix}, e.g. {out_dir}/export.")
    contents = sorted(p.name for p in out_dir.iterdir())
    if not contents:
        return out_dir
    if not is_export(out_dir):
        raise ValueError(
            f"export target {out_dir} already exists and is not a zoo export (no config.json written by zoo; it holds "
            f"{', '.join(contents[:5])}{' ...' if len(contents) > 5 else ''}): refusing to replace it; {fix}."
        )
    foreign = [c for c in contents if c not in _export_files(out_dir)]
    if foreign:
        raise ValueError(
            f"export target {out_dir} is a zoo export but also holds files zoo did not write ({', '.join(foreign[:5])}"
            f"): refusing to delete them; move them away or {fix}."
        )
    odd = [c for c in contents if (out_dir / c).is_symlink() or not (out_dir / c).is_file()]
    if odd:  # zoo writes three (four with a figure) regular files; a folder or link under their names is the user's
        raise ValueError(
            f"export target {out_dir} holds {', '.join(odd)}, which is not a regular file as zoo writes it (a folder "
            f"or a link): refusing to delete it; move it away or {fix}."
        )
    if not overwrite:
        raise ValueError(
            f"export target {out_dir} is already a zoo export: pass --overwrite (overwrite=True) to replace it, or "
            f"{fix}."
        )
    return out_dir


def _atomic_dir(out_dir: Path, write, overwrite: bool = False) -> Path:
    """Write a folder via a temporary sibling renamed into place; an interrupted export leaves the old one. Only an
    absent/empty folder or (with ``overwrite``) an earlier zoo export is replaced (:func:`check_export_target`)."""
    out_dir = check_export_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out_dir, "tmp", create=True)
    try:
        write(tmp)
        _follow_umask(tmp)
        old = None
        if out_dir.exists():
            old = _sibling(out_dir, "old", create=False)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            _remove_export(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _sibling(out_dir: Path, tag: str, create: bool) -> Path:
    """An unused hidden name beside ``out_dir``; ``create``: made by ``mkdir`` (umask mode, not mkdtemp's 0700)."""
    for _ in range(100):
        p = out_dir.parent / f".{out_dir.name}.{tag}-{secrets.token_hex(4)}"
        if not create and not os.path.lexists(p):
            return p
        if create:
            try:
                p.mkdir()
                return p
            except FileExistsError:
                continue
    raise FileExistsError(f"no free temporary name beside {out_dir}")


def _follow_umask(folder: Path) -> None:
    """Give the written files the mode any file the user creates gets (0666 less the umask): safetensors writes 0600."""
    probe = folder / ".umask-probe"
    probe.touch()
    mode = probe.stat().st_mode & 0o777
    probe.unlink()
    for f in folder.iterdir():
        os.chmod(f, mode)


def _remove_export(folder: Path) -> None:
    """Delete an earlier export moved aside: only the regular files zoo wrote (the three, and figure.png where its
    config.json records it), then the (then empty) folder; if anything else appeared meanwhile, the folder stays where
    it is."""
    try:
        for name in sorted(_export_files(folder)):
            f = folder / name
            if f.is_symlink() or f.is_file():
                f.unlink()
        folder.rmdir()
    except OSError as e:
        import logging

        logging.getLogger(__name__).warning("kept the earlier export at %s: %s", folder, e)


def read_figure(path: str | Path) -> bytes:
    """The bytes of a run's figure to embed in an export: a regular PNG file (no link) of at most 20 MiB."""
    from zoo.errors import UserError

    path = Path(path)
    fix = "give --figure a PNG written by zoo.callbacks.PredictionFigures (<run>/figures/val.png or predict.png)"
    if path.is_symlink() or not path.is_file():
        raise UserError(f"figure {path} is not a regular file: {fix}")
    if path.stat().st_size > FIGURE_MAX_BYTES:
        raise UserError(f"figure {path} is over {FIGURE_MAX_BYTES >> 20} MiB: {fix}")
    data = path.read_bytes()
    if not data.startswith(_PNG_MAGIC):
        raise UserError(f"figure {path} is not a PNG: {fix}")
    return data


def export(
    module,
    out_dir: str | Path,
    name: str | None = None,
    our_metrics=None,
    overwrite: bool = False,
    extra_config: dict | None = None,
    figure: str | Path | None = None,
) -> Path:
    """Write ``module`` (a LightningModule) as a Hub folder: config.json, model.safetensors, README.md, and with
    ``figure`` (a PNG of the run's predictions) figure.png, which the card shows and config.json records.

    ``out_dir`` must be absent, empty, or (with ``overwrite``) an earlier zoo export; anything else is refused.
    ``extra_config``: more keys for config.json (e.g. the official file a conversion came from)."""
    from safetensors.torch import save_file

    import zoo

    check_export_target(out_dir, overwrite)  # before any work
    picture = read_figure(figure) if figure is not None else None
    entry = _find_entry(module, name)
    cfg = {
        "library": "zoo",
        "zoo_version": zoo.__version__,
        "name": entry.name if entry else None,
        "module": class_path(module),
        "init_args": _init_args(module),
        "preprocess": dict(entry.preprocess) if entry else {},
        **(extra_config or {}),
    }
    cfg.pop("figure", None)
    if picture is not None:
        cfg["figure"] = FIGURE_NAME
    state = {k: v.detach().contiguous().cpu() for k, v in module.model.state_dict().items()}
    card = make_card(entry, cfg, our_metrics=our_metrics) if entry else make_card(None, cfg)
    if picture is not None:
        card.text = card.text.rstrip("\n") + f"\n\n## Predictions of this run\n\n![predictions]({FIGURE_NAME})\n"

    def write(tmp: Path):
        (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        save_file(_unshare(state), str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "zoo_module": cfg["module"]})
        (tmp / CARD_NAME).write_text(str(card))
        if picture is not None:
            (tmp / FIGURE_NAME).write_bytes(picture)

    return _atomic_dir(Path(out_dir), write, overwrite)


def _unshare(state: dict) -> dict:
    """safetensors refuses tensors that share memory (tied weights): store copies."""
    seen, out = set(), {}
    for k, v in state.items():
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset()) if v.numel() else None
        out[k] = v.clone() if ptr is not None and ptr in seen else v
        if ptr is not None:
            seen.add(ptr)
    return out


def check_name(module, name: str) -> registry.Entry:
    """``zoo export --name NAME``: the card of NAME (its paper numbers, ours, its recipe) may only go on a model that
    is that entry: the same LightningModule class, the entry's init args, the same tensor names and shapes."""
    import torch

    entry = registry.get(name)
    cp, hp = class_path(module), _init_args(module)
    fix = "Omit --name for a card without the entry's numbers, or name the entry this model was trained as."
    if cp != entry.module:
        raise ValueError(
            f"--name {entry.name}: this checkpoint holds a {cp}, but {entry.name} is a {entry.module}. {fix}"
        )
    missing = object()
    diffs = [
        f"{k}: {hp.get(k, '<unset>')!r} (entry: {v!r})" for k, v in entry.init_args.items() if hp.get(k, missing) != v
    ]
    if diffs:
        raise ValueError(f"--name {entry.name}: init args differ from the entry's: {'; '.join(diffs)}. {fix}")
    with torch.device("meta"):
        ref = build_module(entry.module, dict(entry.init_args), source=f"registry entry {entry.name}")
    ours = {k: tuple(v.shape) for k, v in module.model.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in ref.model.state_dict().items()}
    if ours != want:
        bad = sorted(set(ours) ^ set(want)) + sorted(k for k in set(ours) & set(want) if ours[k] != want[k])
        raise ValueError(
            f"--name {entry.name}: the weights do not have the entry's architecture "
            f"({len(bad)} tensors differ, e.g. {', '.join(bad[:3])}). {fix}"
        )
    return entry


def export_source(
    source: str,
    out_dir: str | Path,
    name: str | None = None,
    module: str | None = None,
    overwrite: bool = False,
    allowed_init_args=(),
    figure: str | Path | None = None,
) -> Path:
    """``zoo export``: SOURCE is a Lightning ``.ckpt`` or a registry name with weights (official or Hub).

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


# --------------------------------------------------------------------------------------------- cards
def make_card(entry: registry.Entry | None, cfg: dict | None = None, our_metrics=None):
    """The model card: huggingface_hub ModelCard with YAML metadata and ``model-index`` (paper and ours)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg = cfg or {}
    if entry is None:
        data = ModelCardData(library_name="zoo", tags=["zoo", "pytorch-lightning"])
        body = (
            f"# {cfg.get('module', 'zoo model')}\n\nA zoo model exported from a training run.\n\n"
            f"## Usage\n\n```python\nimport zoo\nmodel = zoo.load('local-dir:PATH')\n```\n"
        )
        return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")

    ours = tuple(our_metrics) if our_metrics is not None else entry.our_metrics
    results = []
    for source, metrics in (("paper", entry.paper_metrics), ("zoo (ours)", ours)):
        for m in metrics:
            label = m.name or m.metric
            results.append(
                EvalResult(
                    task_type=m.task,
                    dataset_type=m.dataset,
                    dataset_name=m.dataset_name,
                    dataset_split=m.split,
                    metric_type=m.metric,
                    metric_value=m.value,
                    metric_name=f"{label} ({'paper' if source == 'paper' else 'ours'})",
                    # huggingface_hub requires a source_url with every source_name; our runs have no public URL,
                    # so our rows carry "(ours)" in metric_name and their protocol in the card's results table.
                    source_name="paper" if source == "paper" and entry.paper.url else None,
                    source_url=entry.paper.url if source == "paper" and entry.paper.url else None,
                )
            )
    data = ModelCardData(
        library_name="zoo",
        license=_hub_license(entry.license),
        tags=["zoo", "pytorch-lightning", entry.method, *entry.tags],
        datasets=list(entry.datasets) or None,
        pipeline_tag=entry.pipeline_tag,
        model_name=entry.name,
        eval_results=results or None,
    )
    if data.license == "other":
        data.license_name = entry.license.lower().replace(" ", "-")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_body(entry, ours)}")


_HUB_LICENSES = {"apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "other"}


def _hub_license(lic: str) -> str:
    lic = lic.lower()
    return lic if lic in _HUB_LICENSES else "other"


def _metric_table(metrics) -> str:
    if not metrics:
        return "_none yet_\n"
    rows = ["| dataset | split | metric | value | protocol |", "|---|---|---|---|---|"]
    for m in metrics:
        rows.append(f"| {m.dataset_name} | {m.split} | {m.name or m.metric} | {m.value:g} | {m.protocol or ''} |")
    return "\n".join(rows) + "\n"


def _weights_text(entry: registry.Entry) -> str:
    """The card's weights paragraph: says which of hub / official / pending / - the entry is, truthfully."""
    w = entry.weights
    if w == "hub":
        return f"Weights (`hub`): `{entry.hub_repo}` at commit `{entry.revision}`."
    if w == "official":
        return (
            f"Weights (`official`): the authors' release <{entry.official_url}>"
            + (f" (`{entry.official_hash}`)" if entry.official_hash else "")
            + ". `zoo.load` downloads it once, reads it as plain tensors (`torch.load(weights_only=True)`), converts "
            "it to zoo's layout and loads it strictly, then caches the converted safetensors under `$ZOO_CACHE` "
            "(default `~/.cache/zoo`); later loads need neither the network nor a conversion. Offline "
            "(`HF_HUB_OFFLINE=1`), save the file where the error message says and load again."
        )
    if w == "pending":
        return f"Weights (`pending`): not published yet. Produce them here: {entry.weights_note or _pending_default(entry)}"
    return "Weights (`-`): none published; this entry builds the architecture (train it with the config below)."


def card_body(entry: registry.Entry, ours) -> str:
    p = entry.paper
    links = " · ".join(x for x in (f"[paper]({p.url})" if p.url else "", f"[code]({p.code})" if p.code else "") if x)
    params = f"{entry.params:,}" if entry.params else "n/a"
    flops = f"{entry.flops / 1e6:.0f}M" if entry.flops else "n/a"
    pre = "\n".join(f"- {k}: {v}" for k, v in entry.preprocess.items()) or "- none"
    weights = _weights_text(entry)
    usage = (
        f'model = zoo.load("{entry.name}")      # LightningModule in eval mode, with the weights above'
        if entry.pretrained
        else f'model = zoo.create("{entry.name}")    # the architecture, randomly initialised (no weights yet)'
    )
    cfg = entry.config or f"configs/{entry.method}.yaml"
    cite = f"\n## Citation\n\n```bibtex\n{p.citation.strip()}\n```\n" if p.citation else ""
    return f"""# {entry.name}

{entry.description or p.title}

From *{p.title}*{f" ({p.venue})" if p.venue else ""}. {links}

| | |
|---|---|
| parameters | {params} |
| multiply-adds | {flops} |
| licence | {entry.license} |

{weights}

## Usage

```python
import zoo

{usage}
net = model.model                      # the plain nn.Module
```

Train or fine-tune with the paper's recipe:

```bash
zoo fit --config {cfg}
```

Preprocessing:
{pre}

## Results

Reported in the paper:

{_metric_table(entry.paper_metrics)}
Measured by zoo (ours):

{_metric_table(ours)}{_demo_text(entry)}
## Training recipe

{entry.recipe or "See the config file."}

## Limitations

{entry.limitations or "Numbers labelled 'paper' are the authors'; only those labelled 'ours' were measured by zoo."}
{cite}"""


def _demo_text(entry: registry.Entry) -> str:
    """The method's demos in miniature (a CPU, minutes), read from results/demo/<stem>.csv: mean ± std over seeds."""
    from zoo.results import demo_configs_of, demo_table

    demos = demo_configs_of(entry.method)
    rows = demo_table(stems=[d.stem for d in demos]) if demos else []
    if not demos:
        return ""
    lines = [
        f"- `{cfg}` ({variant}, {proto}; seeds {seeds}): {metrics}" for cfg, variant, proto, seeds, metrics in rows
    ]
    runs = ", ".join(f"`zoo fit --config configs/demo/{d.name}`" for d in demos)
    return (
        "\nDemos on a CPU (not benchmarks; "
        + runs
        + "):\n\n"
        + (
            "\n".join(lines)
            if lines
            else "- not measured yet (`zoo reproduce --config configs/demo/<demo>.yaml --seeds 0-2 --record`)"
        )
        + "\n"
    )


# --------------------------------------------------------------------------------------------- push
def push(
    folder: str | Path,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    overwrite_card: bool = False,
    token: str | None = None,
) -> str:
    """Upload a Hub folder with ``HfApi.upload_folder``; a README.md already on the Hub is kept unless
    ``overwrite_card``."""
    from huggingface_hub import HfApi, get_token

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{folder} is not a zoo Hub folder (write one with `zoo export`).")
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repo id 'org/name'")
    token = token or get_token()
    if not token:
        raise PermissionError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access).")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    ignore = None
    if not overwrite_card and api.file_exists(repo_id, CARD_NAME, revision=revision):
        ignore = [CARD_NAME]
    info = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        revision=revision,
        ignore_patterns=ignore,
        commit_message="Upload zoo model",
    )
    return str(info)
