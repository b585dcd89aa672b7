"""The Lightning entry point: LightningCLI as ``zoo fit|validate|test|predict`` runs it (:func:`run_lightning`).

Lightning's own LightningCLI, with subclass mode for the model and the data (``class_path``/``init_args`` in YAML),
``--print_config`` and SaveConfigCallback, plus what zoo adds: OmegaConf interpolation across the final config, one run
per folder (:func:`zoo.files.run_lock`), ``--ckpt_path`` read weights-only and its hyper-parameters checked before
Lightning imports the class they name (:mod:`zoo.trust`), and model init args set on the command line kept over the
checkpoint's. ``zoo`` (:mod:`zoo.cli`) and ``zoo reproduce`` (:mod:`zoo.reproduce`) both run fits through here.
"""

from __future__ import annotations

import sys

__all__ = ["LIGHTNING_SUBCOMMANDS", "run_lightning"]

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_lightning(args: list[str] | None):
    """Run LightningCLI on ``args`` (``None``: ``sys.argv``) in-process (tests call this); return the CLI object.

    Configs may interpolate other settings of the final config, command-line overrides included (jsonargparse's
    ``omegaconf+`` parser mode): the demos write ``save_dir: ${trainer.default_root_dir}`` and
    ``dirpath: ${trainer.default_root_dir}/checkpoints``, so ``--trainer.default_root_dir DIR`` moves every output.
    """
    from jsonargparse import set_parsing_settings
    from lightning.pytorch import LightningDataModule, LightningModule

    import zoo.strategies  # noqa: F401  registers zoo_ddp / zoo_fsdp with Lightning's StrategyRegistry

    # ${trainer.x} in a config file means that config's own trainer.x, also under a subcommand (fit.trainer.x)
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    # exit_on_error=False: a config that does not parse raises jsonargparse's ArgumentError instead of printing the
    # usage (50 lines) and exiting; main() reports it as one line (zoo.errors.config_error_message)
    mode = {"parser_mode": "omegaconf+", "exit_on_error": False}
    return _cli_class()(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        auto_configure_optimizers=False,
        parser_kwargs={**mode, **{sub: dict(mode) for sub in LIGHTNING_SUBCOMMANDS}},
    )


def _explicit_model_args(argv: list[str]) -> list[str]:
    """Init-arg names the command line sets (``--model.init_args.X[=V]`` or ``--model.X[=V]``)."""
    names = []
    for tok in argv:
        for prefix in ("--model.init_args.", "--model."):
            if tok.startswith(prefix):
                name = tok[len(prefix) :].split("=", 1)[0]
                if name not in ("class_path", "init_args", "dict_kwargs"):
                    names.append(name)
                break
    return names


def _cli_class():
    from lightning.pytorch.cli import LightningCLI

    class ZooCLI(LightningCLI):
        """LightningCLI whose ``--ckpt_path`` keeps the model init args the command line sets explicitly.

        Lightning re-reads the checkpoint's hyper-parameters over the parsed config, so ``zoo test --ckpt_path C
        --model.init_args.drop_modality=camera`` would silently test with the training value. Arguments that only the
        config file sets still come from the checkpoint (the trained architecture wins over a stale YAML)."""

        def _parse_ckpt_path(self) -> None:
            sub = self.config.get("subcommand")
            argv = sys.argv[1:] if self._zoo_args is None else list(self._zoo_args)
            if sub:  # before Lightning imports the class the checkpoint names (it does, to parse its hparams)
                _check_ckpt_hparams(self.config, sub, _explicit_model_args(argv))
            keep = {}
            for name in _explicit_model_args(argv) if sub else ():
                key = f"{sub}.model.init_args.{name}"
                if key in self.config:
                    keep[key] = self.config[key]
            super()._parse_ckpt_path()
            for key, value in keep.items():
                self.config[key] = value
                dict_kwargs = self.config.get(f"{sub}.model.dict_kwargs")
                if isinstance(dict_kwargs, dict):  # the checkpoint's copy, passed at instantiation too
                    dict_kwargs.pop(key.rsplit(".", 1)[1], None)

        def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
            kw = super()._prepare_subcommand_kwargs(subcommand)
            # Lightning reads a checkpoint URL with weights_only=False (a full unpickle) unless told otherwise
            if kw.get("ckpt_path") and "weights_only" in kw and kw["weights_only"] is None:
                kw["weights_only"] = True
            return kw

        def _run_subcommand(self, subcommand: str) -> None:
            # one run per folder: two fits into one default_root_dir interleaved their logs in one version folder
            # and each overwrote the other's last.ckpt. Global rank 0 holds the folder for the whole run.
            from zoo.files import run_lock

            if self.trainer.global_rank != 0:
                return super()._run_subcommand(subcommand)
            with run_lock(self.trainer.default_root_dir, f"{subcommand} run"):
                return super()._run_subcommand(subcommand)

        def __init__(self, *a, args=None, **kw):
            self._zoo_args = args
            super().__init__(*a, args=args, **kw)

    return ZooCLI


def _check_ckpt_hparams(config, sub: str, explicit: list[str]) -> None:
    """``--ckpt_path``: the checkpoint's hyper-parameters are read safely and checked before Lightning imports the class
    they name and builds it: the class must be the config's model (or, without one, a zoo LightningModule), and an init
    arg that names code, a file or a URL (``zoo.hub.EXTERNAL_INIT_ARGS``) must have a value zoo itself uses, the
    config's, or one the command line sets."""
    from pathlib import Path

    from zoo.checkpoints import read_checkpoint
    from zoo.errors import UserError
    from zoo.trust import check_init_args, trusted_class

    ckpt_path = config[sub].get("ckpt_path")
    if not ckpt_path or not Path(ckpt_path).is_file():
        return
    ckpt = read_checkpoint(ckpt_path)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or not hp:
        return
    model = config[sub].get("model")
    cfg_cls = model.get("class_path") if model is not None and hasattr(model, "get") else None
    ckpt_cls = hp.get("_class_path")
    source = f"--ckpt_path {ckpt_path}"
    if ckpt_cls is not None and cfg_cls is not None and ckpt_cls != cfg_cls:
        raise UserError(
            f"{source} is a checkpoint of {ckpt_cls}, but the config's model is {cfg_cls}: refusing to "
            "swap in another model class; pass the checkpoint of this model, or the config it was trained "
            "with."
        )
    path = cfg_cls or ckpt_cls
    if path is None:
        return
    # the config's class is the user's choice; a class only the checkpoint names must be a zoo LightningModule
    cls = trusted_class(path, allowed_modules=(cfg_cls,) if cfg_cls else (), source=source)
    init = f"{sub}.model.init_args"
    from_file = {
        k: v
        for k, v in hp.items()
        if not k.startswith("_") and k not in explicit and not (f"{init}.{k}" in config and config[f"{init}.{k}"] == v)
    }
    check_init_args(
        cls, from_file, source=source, allow_hint="set it yourself on the command line, --model.init_args.{arg}=VALUE"
    )
