"""Official checkpoints: reading them safely, converting them to zoo's layout, and the converter command line.

Each method with released weights has ``zoo/models/<method>/convert.py`` with ``convert_state_dict(official)``
(official key names -> ``module.model`` keys). This module holds what every method shares: reading a file as plain
tensors (``torch.load(weights_only=True)``, never a full unpickle), loading it strictly into a registry entry, and
``python -m zoo.models.<method>.convert CHECKPOINT NAME OUT_DIR`` (:class:`Converter` gives a method's
``read_official`` / ``load_official`` / ``main`` from its ``convert_state_dict``).

Entries whose weights status is ``official`` (``Entry.official_url``: the authors' own release file) are loaded
(``zoo.load``) from :func:`official_folder`: the converted folder in the zoo cache if it is there; otherwise the
official file is downloaded
into the cache (a progress bar; checked against ``Entry.official_hash``), read as plain tensors, converted with the
method's ``convert_state_dict``, loaded strictly, and written back as ``config.json`` + ``model.safetensors``
(atomically), so the next load needs neither the network nor a conversion. With ``HF_HUB_OFFLINE=1`` nothing is
downloaded: the error names the URL and the path to save it under.

The cache is ``$ZOO_CACHE`` when set, else ``$XDG_CACHE_HOME/zoo`` (``~/.cache/zoo``)::

    official/<name>/<file>     the authors' file, as downloaded
    converted/<name>/          config.json + model.safetensors (+ README.md), zoo's layout
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from zoo.checkpoints import load_weights_strict
from zoo.export import export
from zoo.trust import build_entry
from zoo.version import __version__

__all__ = [
    "read_release",
    "release_globals",
    "read_official",
    "read_url",
    "load_official",
    "converter_main",
    "Converter",
    "cache_dir",
    "fetch",
    "official_folder",
    "DownloadError",
    "ConnectError",
]


class DownloadError(OSError, ValueError):
    """An official file could not be downloaded completely (network error, HTTP error, short or corrupt file).
    Also a ``ValueError``, so the ``zoo`` command reports it as one line."""


class ConnectError(DownloadError):
    """The server could not be reached or refused the file (no network, DNS failure, HTTP error): nothing arrived.
    ``reason``: urllib's reason (the socket error or the HTTP status)."""

    def __init__(self, url: str, reason):
        super().__init__(f"cannot download {url}: {reason}")
        self.reason = reason


def release_globals() -> list:
    """The globals that the authors' own save code puts into a checkpoint beside its tensors, and nothing else:
    ``argparse.Namespace`` (VideoMAE / SimVTP / TinyMIM ``utils.save_model`` store ``args``) and numpy arrays,
    scalars and dtypes (OpenPCDet, detectron2 and mmcv ``meta`` entries), under numpy 1's and numpy 2's module
    names. Each is a plain data holder: admitting it lets ``torch.load(weights_only=True)`` rebuild it and call
    nothing else."""
    import argparse

    import numpy as np

    try:  # numpy >= 2 moved the private module
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    allowed: list = [argparse.Namespace, np.ndarray, np.dtype]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{mod}._reconstruct"), (multiarray.scalar, f"{mod}.scalar")]
    # numpy >= 1.25 pickles a dtype through its class (numpy.dtypes.Float32DType, ...)
    for code in "?bBhHiIlLqQefdgFDGUSMmO":
        cls = type(np.dtype(code))
        allowed.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return allowed


def read_release(path: str | Path, where: str = "the authors' release") -> dict:
    """Read a checkpoint in a release's own save format through ``torch.load(weights_only=True)``, admitting
    exactly :func:`release_globals`; a file that names any other global is refused before anything in it runs."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {path} does not exist ({where})")
    try:
        with torch.serialization.safe_globals(release_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # torch's own message leads with advice to turn the check off; name only the offending global
        bad = [ln for ln in lines if "nsupported" in ln or "GLOBAL" in ln]
        first = (bad or lines or [""])[0]
        raise ValueError(
            f"{path} could not be read with torch.load(weights_only=True) ({type(e).__name__}: {first[:200]}); only "
            "tensors, plain containers, argparse.Namespace and numpy values are accepted (the authors' save formats "
            "hold nothing else). Nothing in it was run."
        ) from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds a {type(raw).__name__}, not a dict of tensors: not an official checkpoint")
    return raw


def read_official(path: str | Path, convert: Callable[[dict], dict], where: str) -> dict:
    """Read an official checkpoint with :func:`read_release` (tensors plus the few plain globals the authors' save
    code writes) and ``convert`` it to zoo keys. ``where``: where the official files are published (named when the
    file is missing)."""
    return convert(read_release(path, where))


def load_official(path: str | Path, name: str, read: Callable[[str | Path], dict]):
    """Build the registry entry ``name`` and load an official checkpoint (read by ``read``) into it strictly."""
    from zoo import registry

    module = build_entry(registry.get(name))
    load_weights_strict(module.model, read(path), str(path))
    return module.eval()


def converter_main(argv: list[str] | None, load: Callable[[str, str], object], what: str, names: str) -> int:
    """``python -m zoo.models.<method>.convert CHECKPOINT NAME OUT_DIR``: convert and export a Hub folder."""
    p = argparse.ArgumentParser(description=f"Convert an official {what} checkpoint into a zoo Hub folder.")
    p.add_argument("checkpoint", help=f"official {what} checkpoint file")
    p.add_argument("name", help=f"registry name: {names}")
    p.add_argument("out_dir", help="Hub folder to write (config.json, model.safetensors, README.md)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR when it is an earlier zoo export")
    ns = p.parse_args(argv)
    print(export(load(ns.checkpoint, ns.name), ns.out_dir, name=ns.name, overwrite=ns.overwrite))
    return 0


@dataclass(frozen=True)
class Converter:
    """A method's converter readers and command line, stated once::

        _cli = Converter(convert_state_dict, where="zhangzjn/EMO: resources/EMO_1M/net.pth", what="EMO (net.pth)",
                         names="emo-1m, emo-2m, emo-5m or emo-6m")
        read_official, load_official, main = _cli.read_official, _cli.load_official, _cli.main

    ``convert``: official dict -> ``module.model`` keys; ``read``: path -> zoo keys, for a method that reads its files
    its own way (``convert`` and ``where`` are then unused); ``where``: where the official files are published (named
    when a file is missing); ``what`` / ``names``: the command line's help (the checkpoint, the entries)."""

    convert: Callable[[dict], dict] | None = None
    where: str = "the authors' release"
    what: str = "official"
    names: str = "a registry name"
    read: Callable[[str | Path], dict] | None = None

    def read_official(self, path: str | Path) -> dict:
        """Read an official checkpoint safely (:func:`read_release`) and convert it to zoo keys."""
        if self.read is not None:
            return self.read(path)
        if self.convert is None:
            raise TypeError("Converter needs convert (official dict -> zoo keys) or read (path -> zoo keys)")
        return read_official(path, self.convert, self.where)

    def load_official(self, path: str | Path, name: str):
        """Build the registry entry ``name`` and load an official checkpoint into it strictly."""
        return load_official(path, name, self.read_official)

    def main(self, argv: list[str] | None = None) -> int:
        """``python -m zoo.models.<method>.convert CHECKPOINT NAME OUT_DIR [--overwrite]``."""
        return converter_main(argv, self.load_official, self.what, self.names)


# --------------------------------------------------------------------------------------------- the zoo cache
def cache_dir() -> Path:
    """``$ZOO_CACHE``, else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo`` (read on every call)."""
    if os.environ.get("ZOO_CACHE"):
        return Path(os.environ["ZOO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "zoo"


def official_file(entry) -> Path:
    """Where the official file of ``entry`` is kept in the cache (and where to save it by hand when offline)."""
    return cache_dir() / "official" / entry.name / (Path(urlparse(entry.official_url).path).name or "weights.pth")


def converted_folder(entry) -> Path:
    return cache_dir() / "converted" / entry.name


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _file_hash(path: Path, algo: str) -> str:
    """``sha256``: of the bytes; ``git-blob-sha1``: git's object id of the file (sha1 of ``blob <size>\\0`` + bytes),
    the id a repository's tree lists for it."""
    h = hashlib.sha256() if algo == "sha256" else hashlib.sha1()
    if algo == "git-blob-sha1":
        h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_hash(path: Path, expected: str | None, url: str) -> None:
    if not expected:
        return
    algo, _, want = expected.partition(":")
    if algo not in ("sha256", "git-blob-sha1") or not want:
        raise ValueError(f"unknown hash {expected!r}: expected 'sha256:<hex>' or 'git-blob-sha1:<hex>'")
    got = _file_hash(path, algo)
    if got != want.lower():
        raise DownloadError(
            f"{url} does not match its expected {algo} {want} (got {got}): the download is corrupt or the file was "
            "changed upstream. Nothing was cached; try again, or report it if it persists."
        )


def fetch(url: str, dest: Path, expected_hash: str | None = None) -> Path:
    """Download ``url`` to ``dest`` with a progress bar: into a temporary sibling, checked (length against
    Content-Length, ``expected_hash``), then renamed into place. A failure leaves nothing at ``dest``."""
    import urllib.error
    import urllib.request

    from huggingface_hub.utils import tqdm

    dest = Path(dest)
    created = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # deepest first
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    ok = False
    try:
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(url, headers={"User-Agent": f"zoo/{__version__}"})
            try:
                resp = urllib.request.urlopen(req, timeout=60)
            except (urllib.error.URLError, OSError) as e:
                raise ConnectError(url, getattr(e, "reason", e)) from e
            with resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                got = 0
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name) as bar:
                    while True:
                        try:
                            chunk = resp.read(1 << 20)
                        except OSError as e:  # connection reset, timeout mid-body
                            raise DownloadError(f"download of {url} failed after {got} bytes: {e}") from e
                        if not chunk:
                            break
                        out.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
            if total is not None and got != total:
                raise DownloadError(
                    f"download of {url} was cut short: {got} of {total} bytes arrived. Nothing was cached; try again."
                )
        check_hash(tmp, expected_hash, url)
        os.replace(tmp, dest)
        ok = True
    finally:
        tmp.unlink(missing_ok=True)
        if not ok:
            _remove_empty(created)
    return dest


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: a failed download leaves no empty cache folder."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


def read_url(url: str, convert: Callable[[dict], dict], expected_hash: str | None = None) -> dict:
    """An official file named by its URL (e.g. an MAE teacher): downloaded once into
    ``<cache>/official/url-<sha256(url)[:16]>/<file>``, read as plain tensors, converted. A file that does not read
    is removed again; offline, the error names the URL and where to save it."""
    name = Path(urlparse(url).path).name or "weights.pth"
    dest = cache_dir() / "official" / f"url-{hashlib.sha256(url.encode()).hexdigest()[:16]}" / name
    if not dest.is_file():
        if _offline():
            raise FileNotFoundError(
                f"{url} is not in the zoo cache and HF_HUB_OFFLINE=1, so nothing is downloaded. Fetch it and save it "
                f"as {dest} (e.g. `curl -L -o {dest} {url}`), or give the local file's path instead of the URL."
            )
        tmp = fetch(url, dest.with_name(f".{name}.download"), expected_hash)
        try:
            state = read_official(tmp, convert, url)
            os.replace(tmp, dest)
            return state
        finally:
            tmp.unlink(missing_ok=True)
    return read_official(dest, convert, url)


# ----------------------------------------------------------------------------------- official weights on load
def _convert_module(entry):
    """``zoo.models.<method>.convert`` of the entry's LightningModule (``zoo.models.emo.module.EMOModule`` ->
    ``zoo.models.emo.convert``)."""
    package = entry.module.rsplit(".", 2)[0]
    return importlib.import_module(f"{package}.convert")


def cached_conversion(entry) -> Path | None:
    """The converted folder of ``entry`` when it is in the cache and was converted from the entry's current URL."""
    folder = converted_folder(entry)
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if cfg.get("official_url") != entry.official_url or not (folder / "model.safetensors").is_file():
        return None
    return folder


def official_folder(entry) -> Path:
    """The converted folder of an ``official`` entry (config.json + model.safetensors in the zoo cache), converted
    first when it is not there yet (:func:`convert_entry`); ``zoo.load`` loads it (see the module docstring)."""
    return cached_conversion(entry) or convert_entry(entry)


def convert_entry(entry) -> Path:
    """Download (unless already in the cache), convert and cache the official weights of ``entry``; returns the
    converted folder."""
    url, raw = entry.official_url, official_file(entry)
    downloaded = None
    if not raw.is_file():

        def save_by_hand(why: str) -> FileNotFoundError:
            return FileNotFoundError(
                f"{entry.name}: the converted weights are not in the zoo cache ({converted_folder(entry)}) and "
                f"{why}. Fetch the authors' file {url} and save it as {raw} (e.g. `curl -L -o {raw} {url}`), then "
                "load again: it is converted on that load. The cache folder is $ZOO_CACHE (default ~/.cache/zoo)."
            )

        if _offline():
            raise save_by_hand("HF_HUB_OFFLINE=1, so nothing is downloaded")
        # into a temporary name first: a file that fails to read or convert is never left where a load finds it
        try:
            downloaded = fetch(url, raw.with_name(f".{raw.name}.download"), entry.official_hash)
        except ConnectError as e:  # no network (or the server refused): the same way out as offline mode
            raise save_by_hand(f"the download failed ({e.reason})") from e
    try:
        source = downloaded or raw
        if downloaded is None:
            check_hash(raw, entry.official_hash, str(raw))
        conv = _convert_module(entry)
        module = build_entry(entry)
        state = read_official(source, conv.convert_state_dict, f"{entry.name}: {url}")
        load_weights_strict(module.model, state, url)
        if downloaded is not None:
            os.replace(downloaded, raw)
            downloaded = None
    finally:
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)
    return export(
        module.eval(),
        converted_folder(entry),
        name=entry.name,
        overwrite=True,
        extra_config={"official_url": url, "official_hash": entry.official_hash},
    )
