"""What zoo builds from a file: the security checks between a class path or init args read from a file and a call.

Nothing named in a file is imported or called unchecked: a class path from ``config.json`` (``module``) or a checkpoint
(``_class_path``) is built only when it is a ``zoo.*`` LightningModule subclass or the caller allowed it
(``allowed_modules=``, ``zoo export --module``); the prefix is checked before anything is imported, the class before it
is called. Init args that name code, files or URLs (``EXTERNAL_INIT_ARGS``: encoders by Hub id or module spec,
teachers, pretrained weights) are honoured from a file only with a value zoo itself uses (the class default, a registry
entry's) or when the caller allows them (``allowed_init_args=``).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from zoo import registry
from zoo.errors import UserError

__all__ = [
    "EXTERNAL_INIT_ARGS",
    "BUILD_TIME_INIT_ARGS",
    "TRUSTED_PREFIX",
    "UntrustedClassError",
    "UntrustedInitArgError",
    "trusted_class",
    "check_init_args",
    "build_module",
    "build_entry",
]

_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
TRUSTED_PREFIX = "zoo."


class UntrustedClassError(UserError):
    """A file names a class zoo will not import or call (not a ``zoo.*`` LightningModule, not allowed by the user)."""


class UntrustedInitArgError(UserError):
    """A file sets an init arg that names code, a file or a URL (``EXTERNAL_INIT_ARGS``) the user did not allow."""


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
    (``EXTERNAL_INIT_ARGS``) with a value zoo itself does not use, unless the caller allows that arg by name.
    ``allow_hint``: how the caller allows one (``{arg}`` is filled in); default: the ``zoo.load`` keywords.
    ``build_only``: the module is only built (to export its weights), never set up: only the args ``__init__``
    resolves (``BUILD_TIME_INIT_ARGS``) are checked; the others go into the export, where loading checks them."""
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


def build_entry(entry: registry.Entry, **overrides):
    """The LightningModule of registry entry ``entry`` (random weights, eval mode), its init args updated with
    ``overrides``."""
    module = build_module(entry.module, {**entry.init_args, **overrides}, source=f"registry entry {entry.name}")
    return module.eval()
