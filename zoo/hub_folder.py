"""The Hub folder format: what a zoo export holds, how it is written (atomically, never over the user's files) and
read back, and pushing one to the Hub.

A Hub folder (a Hub repo, a local folder, or a snapshot in the huggingface_hub cache) holds:

- ``config.json``: zoo version, registry name, the LightningModule's class path and init args, preprocessing;
- ``model.safetensors``: the state_dict of ``module.model`` (the plain network);
- ``README.md``: the model card (YAML metadata + text);
- ``figure.png``, optionally: a picture of the run's predictions, recorded in config.json.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path

from zoo.errors import UserError

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "FIGURE_NAME",
    "REPO_ID",
    "read_config",
    "read_figure",
    "is_export",
    "check_export_target",
    "write_folder",
    "push",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FIGURE_NAME = "figure.png"  # optional: a picture of the run's predictions (zoo.callbacks.PredictionFigures)
FIGURE_MAX_BYTES = 20 * 2**20
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EXPORT_FILES = {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME}  # always written


# --------------------------------------------------------------------------------------------- reading
def read_config(path) -> dict:
    """A folder's ``config.json`` as a dict, with a one-line error when it is not a JSON object."""
    try:
        cfg = json.loads(Path(path).read_text())
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); re-download or re-export the folder.") from e
    if not isinstance(cfg, dict):
        raise UserError(f"{path} holds a JSON {type(cfg).__name__}, not an object: not a zoo config.json.")
    return cfg


def read_figure(path: str | Path) -> bytes:
    """The bytes of a run's figure to embed in an export: a regular PNG file (no link) of at most 20 MiB."""
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


# --------------------------------------------------------------------------------------------- writing
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


def write_folder(
    out_dir: str | Path, cfg: dict, state: dict, card: str, figure: bytes | None = None, overwrite: bool = False
) -> Path:
    """Write a Hub folder: ``cfg`` as config.json, ``state`` (CPU tensors) as model.safetensors, ``card`` as
    README.md and ``figure`` (PNG bytes) as figure.png, atomically (:func:`check_export_target` decides what may be
    replaced)."""
    from safetensors.torch import save_file

    def write(tmp: Path):
        (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        save_file(_unshare(state), str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "zoo_module": cfg["module"]})
        (tmp / CARD_NAME).write_text(card)
        if figure is not None:
            (tmp / FIGURE_NAME).write_bytes(figure)

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
    if not REPO_ID.match(repo_id):
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
