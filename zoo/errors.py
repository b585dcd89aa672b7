"""User errors: mistakes in what the user gave (an argument, a path, a file), reported as one line.

Validation code raises :class:`UserError` (a ``ValueError``) with a message that names the problem and the fix. The
``zoo`` command prints such errors as one line, ``zoo <command>: error: <message>``, and exits with status 2; the full
traceback is shown with ``--debug`` (anywhere on the command line) or ``ZOO_DEBUG=1``. :func:`user_error_message`
decides what counts as a user error, also when the error comes wrapped (jsonargparse wraps an exception raised in a
constructor while it instantiates the config's classes; the original is its ``__cause__``), and shortens the two
long forms: a config that does not parse (jsonargparse's nested "Parser key ... Does not validate against any of the
Union subtypes ..." report, :func:`config_error_message`) and an error raised in a ``DataLoader`` worker process
(PyTorch re-raises it with the worker's whole traceback as its message, :func:`worker_error_message`).

The checks below are shared by the modules and data modules: :func:`check_positive`, :func:`check_choice` (argument
checks for ``__init__``) and :func:`check_fits_data` (in a LightningModule's ``setup``: the model's sizes against the
data module's ``num_classes`` / ``num_features`` / ..., both numbers in the message).
"""

from __future__ import annotations

import os
import re

__all__ = [
    "UserError",
    "DataNotFoundError",
    "user_error_message",
    "config_error_message",
    "worker_error_message",
    "debug_requested",
    "check_positive",
    "check_choice",
    "data_attribute",
    "check_fits_data",
    "not_utf8_error",
]


class UserError(ValueError):
    """A mistake in the user's input; the message names the problem and the fix."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A data root or file that does not exist or lacks the expected layout (still a ``FileNotFoundError``)."""


def debug_requested(argv: list[str] | None = None) -> bool:
    """``--debug`` in ``argv`` or ``ZOO_DEBUG`` set to anything but ``""`` / ``0``."""
    return "--debug" in (argv or ()) or os.environ.get("ZOO_DEBUG", "").strip() not in ("", "0")


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from or during (``__cause__`` first), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__


def _raised_in(exc: BaseException, package: str) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == package


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


_WORKER = re.compile(r"^Caught (\w+) in DataLoader worker process (\d+)\.\nOriginal Traceback")


def worker_error_message(exc: BaseException) -> str | None:
    """The original message of an exception that PyTorch re-raised from a ``DataLoader`` worker, with the worker
    named (``"<message> (in DataLoader worker process N)"``); ``None`` for any other exception.

    ``torch.utils.data._utils.ExceptionWrapper.reraise`` builds the new exception from "Caught X in DataLoader worker
    process N. Original Traceback ..." plus the formatted traceback, whose last entry is ``<module>.X: <message>``."""
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    m = _WORKER.match(text)
    if m is None:
        return None
    heads = list(re.finditer(rf"^(?:[\w.]+\.)?{re.escape(m[1])}: ", text, flags=re.M))
    original = text[heads[-1].end() :] if heads else text.splitlines()[-1]
    if isinstance(exc, KeyError):  # KeyError's message is the repr of its key
        original = original.strip().strip("'\"")
    return f"{_one_line(original)} (in DataLoader worker process {m[2]})"


_CONFIG_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Expected a <class 'NoneType'>",
)


def config_error_message(message: str, command: str | None = None) -> str:
    """jsonargparse's many-line parse error -> one line: where in the config (the key path, the class), what is wrong,
    the value given, and the fix.

    E.g. ``config key model (class_path zoo.models.emo.module.EMOModule) -> num_classes: Expected a <class 'int'>.
    Got value: abc; fix it in the config file or on the command line (`zoo fit --help` lists the accepted keys)``."""
    where, what, given = [], [], ""
    for raw in str(message).splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line or line.startswith(_CONFIG_NOISE):
            continue
        if line.startswith("Given value:"):
            given = line.split(":", 1)[1].strip()
            continue
        m = re.fullmatch(r'Parser key "(.+?)":\s*(.*)', line)
        if m is None:
            m = re.fullmatch(r"Problem with given class_path '(.+?)':\s*(.*)", line)
            if m is not None:
                where.append(f"(class_path {m[1]})")
                line = m[2]
            elif line not in what:
                what.append(line.rstrip("."))
                continue
        else:
            where.append(m[1])
            line = m[2]
        if line and line not in what:
            what.append(line.rstrip("."))
    key = ""
    for w in where:  # model (class_path X) -> num_classes
        key += (" " if w.startswith("(") else " -> " if key else "") + w
    if len(given) > 80:
        given = given[:77] + "..."
    help_cmd = f"zoo {command} --help" if command else "zoo fit --help"
    shown = f" (given: {given})" if given and "Got value" not in " ".join(what) else ""
    return _one_line(
        f"{'config key ' + key + ': ' if key else 'config: '}{'; '.join(what) or 'invalid'}{shown}; fix "
        f"it in the config file or on the command line (`{help_cmd}` lists the accepted keys)"
    )


def _is_config_error(exc: BaseException) -> bool:
    import argparse

    return isinstance(exc, argparse.ArgumentError) and _raised_in(exc, "jsonargparse")


def user_error_message(exc: BaseException, broad: bool = False, command: str | None = None) -> str | None:
    """The one-line message to print for ``exc`` if it is a user error, else ``None`` (a bug: show the traceback).

    User errors: a :class:`UserError` anywhere in the exception's chain; Lightning's ``MisconfigurationException``
    (an invalid Trainer setting, e.g. ``accelerator: cuda`` without a GPU); a missing / unreadable file
    (``FileNotFoundError``, ``NotADirectoryError``, ``IsADirectoryError``, ``PermissionError``); a ``ValueError`` /
    ``TypeError`` raised by a constructor that jsonargparse called with the config's arguments. ``broad=True`` (the
    zoo tools, whose errors come from checking their arguments) also counts ``ValueError``, ``KeyError`` and
    ``ImportError``. A config that does not parse is a user error too (``command``: the ``zoo`` subcommand, for the
    ``--help`` hint of :func:`config_error_message`).
    """
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, UserError):
            return worker_error_message(e) or _one_line(e)
    for e in chain:
        if _is_config_error(e):
            return config_error_message(str(e), command)
    for e in chain:
        if type(e).__name__ == "MisconfigurationException" and type(e).__module__.startswith("lightning"):
            return _one_line(e)
        if isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
            return worker_error_message(e) or _one_line(e)
    first = chain[0]
    if _raised_in(first, "jsonargparse") and isinstance(first.__cause__, (ValueError, TypeError)):
        return _one_line(first.__cause__)
    if broad:
        for e in chain:
            if isinstance(e, KeyError) and e.args:
                return worker_error_message(e) or _one_line(e.args[0])
            if isinstance(e, (ValueError, ImportError)):
                return worker_error_message(e) or _one_line(e)
    return None


# ------------------------------------------------------------------------------------------------ shared checks
def not_utf8_error(path, exc: UnicodeDecodeError) -> UserError:
    """The :class:`UserError` for a text file (``path``) that is not UTF-8: where the bad byte is and how to convert
    the file (raise it ``from None``)."""
    byte = exc.object[exc.start : exc.start + 1].hex() if isinstance(exc.object, bytes) else "?"
    return UserError(
        f"{path}: not UTF-8 text (byte 0x{byte} at offset {exc.start}); convert the file to UTF-8, "
        f"e.g. iconv -f latin1 -t utf-8 {path} > utf8.csv"
    )


def check_positive(name: str, value, minimum: int = 1, where: str = "", fix: str = "") -> None:
    """Raise :class:`UserError` unless ``value >= minimum`` (``name``: the argument, as the user writes it;
    ``where``: the class; ``fix``: what to set instead, default "a value >= minimum")."""
    if value is None or value < minimum:
        raise UserError(
            f"{where + ': ' if where else ''}{name} must be >= {minimum}, got {value!r}; "
            f"{fix or f'set {name} to a value >= {minimum}'}."
        )


def check_choice(name: str, value, choices, where: str = "") -> None:
    """Raise :class:`UserError` unless ``value`` is one of ``choices`` (listed in the message)."""
    choices = list(choices)
    if value not in choices:
        import difflib

        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"{where + ': ' if where else ''}unknown {name} {value!r}{hint}; choose one of "
            f"{', '.join(repr(c) for c in choices)}."
        )


def data_attribute(module, name: str):
    """``module.trainer.datamodule.<name>`` when the module is attached to a trainer with a data module that has it,
    else ``None`` (a module used without a trainer or a data module checks nothing)."""
    trainer = getattr(module, "_trainer", None)
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if dm is None:
        return None
    try:
        return getattr(dm, name)
    except AttributeError:
        return None


def check_fits_data(
    module, arg: str, model_value: int, data_attr: str, exact: bool = True, what: str | None = None
) -> None:
    """In a LightningModule's ``setup``: the model's ``arg`` (``model_value``) must equal (``exact``) or be at least
    the data module's ``data_attr``; otherwise a :class:`UserError` naming both numbers and the setting to change.
    Nothing is checked when the data module does not expose ``data_attr``."""
    data_value = data_attribute(module, data_attr)
    if data_value is None or isinstance(data_value, bool) or not isinstance(data_value, int) or data_value <= 0:
        return
    if model_value == data_value or (not exact and model_value > data_value):
        return
    dm = type(module.trainer.datamodule).__name__
    relation = "" if exact else " at least"
    raise UserError(
        f"{type(module).__name__} was built with {arg}={model_value} but the data ({dm}) has "
        f"{data_value} {what or data_attr.replace('num_', '')}; set model.init_args.{arg} to{relation} "
        f"{data_value}."
    )
