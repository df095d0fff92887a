"""Process-wide settings read from environment variables.

``PH_FAST=1``      switches every notebook and CLI default to a fast smoke mode (tests, CI).
``PH_DATA_ROOT``   default folder of real data (BraTS, ISLES, LiTS) when no path is given.
``PH_CACHE``       where generated phantoms and prepared files are cached (default: ``<repo>/data/cache``).
"""
from __future__ import annotations

import os
from pathlib import Path

from .utils import OptionError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def fast_mode() -> bool:
    """True when ``PH_FAST`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("PH_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def data_root(path: str | os.PathLike | None = None) -> Path:
    """The data folder: ``path`` if given, else ``$PH_DATA_ROOT``; raises if neither is set."""
    if path is None:
        path = os.environ.get("PH_DATA_ROOT")
    if not path:
        raise OptionError("no data folder given: pass a path (--data) or set the PH_DATA_ROOT environment variable")
    return Path(path).expanduser()


def cache_dir() -> Path:
    """Folder for generated and prepared data (``$PH_CACHE`` or ``<repo>/data/cache``, not committed)."""
    d = Path(os.environ.get("PH_CACHE", REPO_DIR / "data" / "cache")).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d
