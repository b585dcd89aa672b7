"""Writing files so that nothing is ever half-written: a temporary sibling, then an atomic rename."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from zoo.errors import UserError


def current_umask() -> int:
    """The process umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder renamed into place; on any error the
    old file (if any) is left as it was and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a file the user writes follows their umask
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class FolderBusyError(UserError):
    """Another live process holds a run folder (see :func:`run_lock`)."""


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, what: str = "run"):
    """Hold ``<folder>/.zoo-run.lock`` while a run writes there, so two runs never interleave their logs and
    checkpoints in one folder. The lock is created atomically (``O_EXCL``) and names its process and host; a lock
    whose process has ended on this host is stale and taken over; a live one (or one from another host, whose process
    cannot be checked) refuses the second run with one line naming the fix."""
    import json
    import socket

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".zoo-run.lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "what": what}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~current_umask())
        except FileExistsError:
            try:
                held = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                held = {}
            if held.get("host") == me["host"] and isinstance(held.get("pid"), int) and not _alive(held["pid"]):
                lock.unlink(missing_ok=True)  # its process ended without releasing it (killed)
                continue
            raise FolderBusyError(
                f"{folder} is in use by another zoo {held.get('what', 'run')} (pid {held.get('pid', '?')} on "
                f"{held.get('host', '?')}): give this run its own --trainer.default_root_dir (or wait for that one; "
                f"if no run is active, delete {lock})"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield lock
    finally:
        try:
            if json.loads(lock.read_text()).get("pid") == me["pid"]:
                lock.unlink()
        except (OSError, ValueError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


# ------------------------------------------------------------------------------------------------ file names
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def safe_file_name(name) -> str:
    """A file name made from a name read from a dataset file (a frame id, a token): kept when it is a plain name
    (letters, digits, ``._+-``, no leading dot, at most 100 characters), else its readable characters and a hash of
    the whole (``a_b-<sha256[:16]>``), so no separator, ``..`` or hidden name ever reaches a path."""
    name = str(name)
    if _PLAIN_NAME.match(name) and ".." not in name:
        return name
    readable = re.sub(r"[^A-Za-z0-9_+-]+", "_", name).strip("_")[:40]
    return f"{readable or 'name'}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def path_inside(folder: str | Path, name: str) -> Path:
    """``folder / name``, refused unless it lands directly inside ``folder`` (links resolved)."""
    folder = Path(folder)
    path = folder / name
    if Path(name).name != name or path.resolve().parent != folder.resolve():
        raise UserError(
            f"{name!r} is not a plain file name inside {folder}: refusing to write or read outside it; "
            "delete the folder and build it again"
        )
    return path
