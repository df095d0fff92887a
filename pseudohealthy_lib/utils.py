"""Small helpers shared by the whole library: atomic writes and seeding."""
from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


class DataError(ValueError):
    """Bad input data. The message always names the offending file or folder and the problem."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    An interrupted write leaves no half-written file behind, only (at worst) a stray
    ``.tmp`` file that is removed on the next failure-free exit of this context.
    The temporary name keeps the final suffixes (``.nii.gz``, ``.npz``) so that writers
    which choose a format from the file name still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600 files; use normal permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if installed) PyTorch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass
