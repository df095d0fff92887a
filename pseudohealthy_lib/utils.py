"""Small helpers shared by the whole library: user errors, atomic writes, signals and seeding."""
from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import signal
import sys
from pathlib import Path
from typing import Iterator

import numpy as np


class DataError(ValueError):
    """Bad input data. The message always names the offending file or folder and the problem.

    The command line prints these (and :class:`OptionError`) as one ``error:`` line with exit
    code 2; any other exception is a bug in the library and keeps its traceback.
    """


class OptionError(DataError):
    """A bad option or argument (a count below 1, an unknown region, ...). The message names it.

    A :class:`DataError`, and through it a ``ValueError``, so code that catches either still works.
    """


def at_least(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number >= ``minimum``, else :class:`OptionError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise OptionError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return int(value)


def arg_at_least(minimum: int):
    """An argparse ``type``: a whole number >= ``minimum`` (argparse names the option in its error)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def arg_number(minimum: float = 0.0, strict: bool = True):
    """An argparse ``type``: a finite number above ``minimum`` (``strict``) or at least ``minimum``."""
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if not (value > minimum if strict else value >= minimum) or value == float("inf"):
            what = "a positive number" if strict and minimum == 0 else \
                f"a finite number {'above' if strict else 'of at least'} {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


# temporary files of atomic_path: .<name>.<pid>-<token>.tmp<suffixes>
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]+\.tmp(\.[^/]*)?$")


def _alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None, recursive: bool = False) -> int:
    """Delete the temporary files that killed writers left in ``folder``; returns how many.

    A temporary file of :func:`atomic_path` carries its writer's process id, so one is removed
    only when that process is gone (a live writer's file is never touched). ``name`` limits the
    clean-up to the temporary files of that target file name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in (folder.rglob if recursive else folder.glob)(".*.tmp*"):
        m = _TMP.match(p.name)
        if m and (name is None or m["name"] == name) and p.is_file() and not _alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    An interrupted write leaves no half-written file behind. A write killed outright (SIGKILL)
    can leave its temporary file (``.NAME.PID-TOKEN.tmp...``); the next write of the same file
    removes it, as :func:`remove_stale_temps` does for a whole folder. The temporary name keeps
    the final suffixes (``.nii.gz``, ``.npz``) so that writers which choose a format from the
    file name still work.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    suffix = "".join(path.suffixes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        if not tmp.is_file():
            raise RuntimeError(f"{path}: the writer did not create its temporary file {tmp.name}")
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def append_records(path: str | os.PathLike, *rows: dict) -> None:
    """Append each of ``rows`` as one JSON line to ``path`` (a ``.jsonl`` record file), atomically:
    the file is rewritten whole through :func:`atomic_path`, so an interrupted append loses nothing."""
    import json

    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    with atomic_path(path) as tmp:
        tmp.write_text(old + "".join(json.dumps(r) + "\n" for r in rows))


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so that ``finally`` blocks and context managers run.

    With Python's default handling, ``kill PID`` ends the process at once: temporary files
    stay and worker pools are not shut down. The command line calls this first.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if installed) PyTorch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass
