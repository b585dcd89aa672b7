"""zoo's Hub face: loading, exporting, cards and pushing, under one name (``zoo.hub.load``, ``zoo.hub.export``,
``zoo.hub.make_card``, ``zoo.hub.push``...). Each job lives in its own module, in layers (each imports only those
above it):

- :mod:`zoo.trust`: what zoo builds from a file (trusted class paths, init args that name code, files or URLs);
- :mod:`zoo.checkpoints`: checkpoints read safely, ``module.model``'s state taken from them, strict loading;
- :mod:`zoo.hub_folder`: the Hub folder format (config.json, model.safetensors, README.md, figure.png), written
  atomically, and pushing a folder;
- :mod:`zoo.card`: the model card;
- :mod:`zoo.export`: a trained module -> a Hub folder with its card;
- :mod:`zoo.convert`: the authors' official files (download, hash check, safe read, conversion, the zoo cache);
- :mod:`zoo.loading`: a module with its weights from a registry name, a Hub repo, a folder or a checkpoint.

Nothing here ever unpickles data from a Hub or a folder: weights come from safetensors, Lightning checkpoints are read
with ``torch.load(weights_only=True)``; a class path or an init arg a file names is honoured only as
:mod:`zoo.trust` allows. The init args that name something outside the saved folder are listed once, in
:mod:`zoo.trust` (``EXTERNAL_INIT_ARGS``, ``BUILD_TIME_INIT_ARGS``, also importable from here).
"""

from __future__ import annotations

from zoo.card import card_body, make_card
from zoo.checkpoints import (
    WeightsMismatchError,
    load_weights_strict,
    model_state_dict,
    read_checkpoint,
    read_model_state,
    read_safetensors,
)
from zoo.export import check_name, class_path, export, preprocess_of
from zoo.hub_folder import (
    CARD_NAME,
    CONFIG_NAME,
    FIGURE_NAME,
    WEIGHTS_NAME,
    check_export_target,
    is_export,
    push,
    read_config,
    read_figure,
)
from zoo.loading import create, export_source, load, load_entry, load_folder, load_hub, module_from_checkpoint
from zoo.trust import (  # the init-arg tables live in zoo/trust.py; zoo.hub.EXTERNAL_INIT_ARGS is the same dict
    BUILD_TIME_INIT_ARGS,
    EXTERNAL_INIT_ARGS,
    TRUSTED_PREFIX,
    UntrustedClassError,
    UntrustedInitArgError,
    build_module,
    check_init_args,
    trusted_class,
)

__all__ = [
    "EXTERNAL_INIT_ARGS",
    "BUILD_TIME_INIT_ARGS",
    "TRUSTED_PREFIX",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "FIGURE_NAME",
    "WeightsMismatchError",
    "UntrustedClassError",
    "UntrustedInitArgError",
    "trusted_class",
    "check_init_args",
    "build_module",
    "create",
    "load",
    "load_entry",
    "load_folder",
    "load_hub",
    "module_from_checkpoint",
    "read_checkpoint",
    "model_state_dict",
    "read_model_state",
    "read_safetensors",
    "load_weights_strict",
    "read_config",
    "read_figure",
    "is_export",
    "check_export_target",
    "export",
    "export_source",
    "check_name",
    "class_path",
    "preprocess_of",
    "make_card",
    "card_body",
    "push",
]
