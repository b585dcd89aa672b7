"""Model names -> entries.

Every published variant of every method is one :class:`Entry`, named ``method-size[.tag]``
(``emo-1m``, ``tinymim-base.in1k-ft``). Entries are declared in ``zoo/models/<method>/__init__.py`` as a
module-level ``ENTRIES`` list; that file imports nothing heavy (the LightningModule is named by its class
path and imported only when a model is built), so listing models stays fast.

The paper's reported metrics (``paper_metrics``) and the metrics we measured (``our_metrics``, read from
``results/<method>.csv``) are kept apart and never mixed: a model card shows both, each labelled.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Any

from zoo.metric import Metric
from zoo.paths import find_config

__all__ = ["Metric", "Paper", "Entry", "get", "all_entries", "list_models", "import_class", "find_config"]


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str | None = None
    code: str | None = None
    venue: str | None = None
    citation: str | None = None  # BibTeX

    @property
    def url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None


@dataclass(frozen=True)
class Entry:
    """A registered model variant.

    ``module`` is the LightningModule class path; ``init_args`` rebuild it (plain YAML/JSON values).
    Weights (``weights``, one status): ``hub`` = ``hub_repo`` published at ``revision``, a pinned 40-hex commit;
    ``official`` = ``official_url``, the authors' own release file, downloaded and converted on first load (checked
    against ``official_hash``: ``sha256:<hex>`` or ``git-blob-sha1:<hex>``); ``pending`` = ``hub_repo`` names the
    intended repo but nothing is published at a pinned commit (``weights_note`` says how to produce the folder);
    ``-`` = architecture only.
    ``params`` is the exact parameter count of ``module.model`` at these init args, checked by the tests on the
    meta device. ``tiny_overrides`` build a small version of the same architecture for the registry-wide tests.
    """

    name: str
    module: str
    init_args: dict[str, Any]
    paper: Paper
    license: str
    description: str = ""
    hub_repo: str | None = None
    revision: str = "main"
    official_url: str | None = None
    official_hash: str | None = None
    weights_note: str = ""  # pending: how to produce the weights folder here (convert / train + export)
    preprocess: dict[str, Any] = field(default_factory=dict)
    pipeline_tag: str | None = None
    datasets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    params: int | None = None
    flops: int | None = None  # multiply-adds at preprocess["input_size"], when the paper reports them
    paper_metrics: tuple[Metric, ...] = ()
    results: Any = None  # zoo.results.ResultSpec: how results/<method>.csv rows become ``our_metrics``
    config: str | None = None  # configs/<file>.yaml holding the recipe
    recipe: str = ""  # one paragraph for the model card
    limitations: str = ""
    tiny_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.name.split("-", 1)[0]

    @property
    def weights(self) -> str:
        """``hub`` | ``official`` | ``pending`` | ``-`` (see the class docstring)."""
        if self.hub_repo and re.fullmatch(r"[0-9a-f]{40}", self.revision or ""):
            return "hub"
        if self.official_url:
            return "official"
        return "pending" if self.hub_repo else "-"

    @property
    def pretrained(self) -> bool:
        """Weights can be loaded: published on the Hub at a pinned commit, or converted from the official file."""
        return self.weights in ("hub", "official")

    @property
    def weights_howto(self) -> str:
        """How to produce this entry's weights here: ``weights_note``, else train with its config, export, push."""
        if self.weights_note:
            return self.weights_note
        cfg = self.config or f"configs/{self.method}.yaml"
        return (
            f"train it with `zoo fit --config {cfg}`, then `zoo export CKPT DIR --name {self.name}` and load "
            "'local-dir:DIR'" + (f"; `zoo push DIR {self.hub_repo}` publishes it." if self.hub_repo else ".")
        )

    @property
    def our_metrics(self) -> tuple[Metric, ...]:
        """Our measured metrics: the mean (± std, seed count) of this entry's rows in ``results/<method>.csv``,
        computed when asked (``zoo reproduce`` appends rows)."""
        if self.results is None:
            return ()
        from zoo.results import our_metrics

        return our_metrics(self, self.results)


_REGISTRY: dict[str, Entry] | None = None


def _load() -> dict[str, Entry]:
    global _REGISTRY
    if _REGISTRY is None:
        import zoo.models

        reg: dict[str, Entry] = {}
        for info in sorted(pkgutil.iter_modules(zoo.models.__path__), key=lambda i: i.name):
            if not info.ispkg:
                continue
            pkg = importlib.import_module(f"zoo.models.{info.name}")
            for entry in getattr(pkg, "ENTRIES", ()):
                if entry.name in reg:
                    raise RuntimeError(f"model name {entry.name!r} is registered twice")
                reg[entry.name] = entry
        _REGISTRY = reg
    return _REGISTRY


def all_entries() -> list[Entry]:
    return [_load()[k] for k in sorted(_load())]


def _unknown(name: str) -> KeyError:
    names = sorted(_load())
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return KeyError(
        f"unknown model name {name!r}.{hint} `zoo list` (or zoo.list_models()) shows all {len(names)} names."
    )


def get(name: str) -> Entry:
    reg = _load()
    if name in reg:
        return reg[name]
    # A bare name resolves to its default (first-registered) tag: `tinymim-base` -> `tinymim-base` or `.in1k`.
    tagged = [k for k in reg if k.split(".", 1)[0] == name]
    if tagged:
        return reg[tagged[0]]
    raise _unknown(name)


def list_models(pattern: str = "*", pretrained: bool | None = None, exclude: str | None = None) -> list[str]:
    """Registered names matching an fnmatch ``pattern``; ``pretrained=True/False`` keeps only those
    with / without loadable weights (``hub`` or ``official``, see ``Entry.weights``)."""
    out = []
    for name, entry in sorted(_load().items()):
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        if exclude and fnmatch.fnmatchcase(name, exclude):
            continue
        if pretrained is not None and entry.pretrained != pretrained:
            continue
        out.append(name)
    return out


def import_class(path: str):
    """``'pkg.mod.Class'`` -> the class, with an error that names the path when it does not exist. A method whose
    extra is not installed, or a module whose import needs a missing optional package, is a one-line
    :class:`zoo.errors.UserError` naming ``pip install 'zoo[<extra>]'`` (:mod:`zoo.extras`)."""
    from zoo import extras
    from zoo.errors import UserError

    mod_name, _, cls_name = path.rpartition(".")
    if not mod_name:
        raise ImportError(f"{path!r} is not a class path (expected 'package.module.Class')")
    extras.check_method(mod_name)
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        msg = extras.missing_message(e, path)
        if msg is not None:
            raise UserError(msg) from e
        raise ImportError(f"cannot import {mod_name!r} for class path {path!r}: {e}") from e
    try:
        return getattr(mod, cls_name)
    except AttributeError:
        raise ImportError(f"module {mod_name!r} has no class {cls_name!r} (class path {path!r})") from None
