"""Optional dependencies: which ``pip install 'zoo[<extra>]'`` brings a package that a core install leaves out.

A core ``pip install zoo`` runs the registry, the ``zoo`` command, the Hub loaders and the vision methods (EMO,
TinyMIM). Every other domain is an extra of ``pyproject.toml`` (``3d``, ``video``, ``text``, ``graph``, ``ctr``;
``figures`` for the pictures of :mod:`zoo.figures`; ``all``). This module is the one place that says which import
name each extra brings (:data:`EXTRAS`) and which extra each method needs (:data:`METHOD_EXTRA`);
``tests/test_extras.py`` checks both against ``pyproject.toml`` and against the imports of the code.

A missing optional package is reported as one line naming the extra: :func:`missing_message` turns a
``ModuleNotFoundError`` into that line, :func:`check_method` (called by :func:`zoo.registry.import_class`, so by
``zoo.create`` / ``zoo.load``) checks a method's extra before its module is built, and
:func:`missing_extra_as_user_error` wraps a lazy import. The ``zoo`` command's error path
(``zoo.cli.report_user_error``) asks :func:`missing_in_chain` before :func:`zoo.errors.user_error_message`.
Importing this module imports nothing but :mod:`zoo.errors` (which imports no zoo module: no circle).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys

from zoo.errors import UserError

__all__ = [
    "EXTRAS",
    "METHOD_EXTRA",
    "NOT_IN_EXTRAS",
    "DISTRIBUTIONS",
    "extra_for",
    "is_missing",
    "missing_message",
    "missing_in_chain",
    "check_method",
    "missing_extra_as_user_error",
]

#: extra -> the top-level import names it brings (its requirements in pyproject.toml, as import names). A name may be
#: in several extras; the first extra listing it is the one a message names unless the method's own extra has it.
EXTRAS: dict[str, tuple[str, ...]] = {
    # zoo.figures (PredictionFigures); the demos of the 3D, video and image-text methods draw pictures, so their
    # extras include it too
    "figures": ("matplotlib",),
    # CMT, LWSIS, SSDA3D: spconv (voxel backbone), pycocotools (mask AP, COCO json), shapely (zoo.profiling's peer);
    # pyquaternion, cv2, cachetools, matplotlib: what nuscenes-devkit's detection scorer imports (NOT_IN_EXTRAS)
    "3d": ("spconv", "pycocotools", "shapely", "pyquaternion", "cv2", "cachetools", "matplotlib"),
    # SimVTP, RSFD: PyAV decoding, HDF5 feature files, the captioning scorer, BERT tokenizer / text tower
    "video": ("av", "h5py", "pycocoevalcap", "transformers", "matplotlib"),
    # MMC (transformers encoders) and A-CLIP (image-text: its image side is timm, in core; its text side is
    # open_clip's tokenizer and text tower, captions in webdataset tar shards)
    "text": ("transformers", "open_clip", "webdataset", "braceexpand", "matplotlib"),
    # CCGC, RELIANT: PyG, networkx graph files, pandas for the fairness datasets' CSVs
    "graph": ("torch_geometric", "networkx", "pandas"),
    # xDeepInt: the Criteo / Avazu Arrow cache (also ImageNetDataModule's Hugging Face `save_to_disk` folders)
    "ctr": ("datasets", "pyarrow"),
}

#: method (``zoo/models/<method>``) -> the extra it needs; ``None``: core only.
METHOD_EXTRA: dict[str, str | None] = {
    "emo": None,
    "tinymim": None,
    "aclip": "text",
    "mmc_coref": "text",
    "simvtp": "video",
    "rsfd": "video",
    "cmt": "3d",
    "lwsis": "3d",
    "ssda3d": "3d",
    "ccgc": "graph",
    "reliant": "graph",
    "xdeepint": "ctr",
}

#: Optional packages that no extra can carry -> how to install them. nuscenes-devkit (nuScenes' own detection
#: scorer): every release's metadata conflicts with the rest of zoo (1.2.0 pins numpy<2 and Shapely~=2.0.3, 1.1.10
#: and 1.1.11 pin matplotlib<3.6 and Shapely<2, 1.1.9 requires jupyter), while 1.2.0's code runs on numpy 2.
NOT_IN_EXTRAS: dict[str, str] = {
    "nuscenes": "pip install --no-deps 'nuscenes-devkit==1.2.0' (its metadata pins numpy<2, which its scorer does "
    "not need; pip install 'zoo[3d]' brings what the scorer imports)",
}

#: import name -> distribution name on PyPI, where they differ (for messages).
DISTRIBUTIONS: dict[str, str] = {
    "cv2": "opencv-python-headless",
    "open_clip": "open_clip_torch",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "nuscenes": "nuscenes-devkit",
}


def extra_for(package: str, prefer: str | None = None) -> str | None:
    """The extra that installs the import name ``package`` (its top-level name is used): ``prefer`` when that extra
    has it, else the first extra of :data:`EXTRAS` that has it; ``None`` when no extra has it."""
    top = package.split(".")[0]
    if prefer is not None and top in EXTRAS.get(prefer, ()):
        return prefer
    return next((extra for extra, names in EXTRAS.items() if top in names), None)


def is_missing(package: str) -> bool:
    """Whether the top-level import name of ``package`` cannot be imported here (not installed, or blocked with
    ``sys.modules[name] = None``); located only, never imported."""
    top = package.split(".")[0]
    if top in sys.modules:
        return sys.modules[top] is None
    try:
        return importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        return True


def _method_of(module_name: str | None) -> str | None:
    parts = (module_name or "").split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["zoo", "models"] else None


def _method_in_traceback(exc: BaseException) -> str | None:
    """The method whose code (``zoo.models.<method>...``) is the innermost zoo frame of ``exc``'s traceback."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        found = _method_of(tb.tb_frame.f_globals.get("__name__")) or found
        tb = tb.tb_next
    return found


def _install_line(names: list[str], extra: str) -> str:
    shown = ", ".join(DISTRIBUTIONS.get(n, n) for n in names)
    one = len(names) == 1
    return (
        f"{shown} {'is' if one else 'are'} not installed (a core install of zoo leaves {'it' if one else 'them'} "
        f"out): pip install 'zoo[{extra}]'"
    )


def missing_message(exc: BaseException, where: str | None = None) -> str | None:
    """The one-line message for a ``ModuleNotFoundError`` of a package that an extra brings (or one of
    :data:`NOT_IN_EXTRAS`), naming the install command; ``None`` for any other exception, or when the package's
    top-level module is installed (a broken install is not a missing extra). ``where``: what needed it (a class or
    module path), put in front of the line; the extra of the method it names is preferred, else the one of the innermost
    ``zoo.models.<method>`` frame of the traceback."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    if not is_missing(top):
        return None
    if top in NOT_IN_EXTRAS:
        line = f"{DISTRIBUTIONS.get(top, top)} is not installed: {NOT_IN_EXTRAS[top]}"
    else:
        method = _method_of(where) or _method_in_traceback(exc)
        extra = extra_for(top, prefer=METHOD_EXTRA.get(method) if method else None)
        if extra is None:
            return None
        line = _install_line([top], extra)
    return f"{where}: {line}" if where else line


def missing_in_chain(exc: BaseException) -> str | None:
    """:func:`missing_message` of the first ``ModuleNotFoundError`` in ``exc``'s chain (``__cause__`` first, then
    ``__context__``: jsonargparse and Lightning wrap what a constructor or hook raised); ``None`` when the chain has
    none, or has a :class:`zoo.errors.UserError` (that one is the message to show)."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    if any(isinstance(e, UserError) for e in chain):
        return None
    return next((m for e in chain if (m := missing_message(e)) is not None), None)


def check_method(module_name: str) -> None:
    """Raise :class:`zoo.errors.UserError` when ``module_name`` (``zoo.models.<method>...``) belongs to a method
    whose extra is not installed, naming the missing packages and ``pip install 'zoo[<extra>]'``; nothing for any
    other module or when the extra is there."""
    method = _method_of(module_name)
    extra = METHOD_EXTRA.get(method) if method else None
    if extra is None:
        return
    missing = [name for name in EXTRAS[extra] if is_missing(name)]
    if missing:
        raise UserError(f"{method} ({module_name}) needs the extra {extra!r}: {_install_line(missing, extra)}")


@contextlib.contextmanager
def missing_extra_as_user_error(where: str):
    """``with missing_extra_as_user_error("NuScenesDetection"): from nuscenes... import ...``: a missing optional
    package becomes a :class:`zoo.errors.UserError` with :func:`missing_message`'s line; other errors pass."""
    try:
        yield
    except ModuleNotFoundError as e:
        msg = missing_message(e, where)
        if msg is None:
            raise
        raise UserError(msg) from e
