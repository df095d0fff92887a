"""Process-wide settings read from environment variables.

``PH_FAST=1``      switches every notebook and CLI default to a fast smoke mode (tests, CI).
``PH_DATA_ROOT``   default folder of real data (BraTS, ISLES, LiTS) when no path is given.
``PH_CACHE``       where generated phantoms, prepared files and chapters' short runs are cached.
``PH_ZOO``         the model zoo (shipped models, see :mod:`pseudohealthy_lib.zoo`).
``PH_TRAIN_MISSING``  1: chapters may train the zoo models they need but cannot find.

Defaults, in the manner of ``TORCH_HOME``: inside a checkout of the book's repository (an
editable install), the checkout's ``data/cache`` and ``data/zoo``; in an installed package
(``pip install``, Colab), ``$XDG_CACHE_HOME/pseudohealthy`` (``~/.cache/pseudohealthy``), which
holds no zoo until one is trained or fetched there.
"""
from __future__ import annotations

import os
from pathlib import Path

from .utils import OptionError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
#: recorded measurements shipped with the package (recipe searches, floor checks)
RECORDS_DIR = PACKAGE_DIR / "records"


def fast_mode() -> bool:
    """True when ``PH_FAST`` is set to a true value (1, true, yes, on)."""
    return truthy("PH_FAST")


def data_root(path: str | os.PathLike | None = None) -> Path:
    """The data folder: ``path`` if given, else ``$PH_DATA_ROOT``; raises if neither is set."""
    if path is None:
        path = os.environ.get("PH_DATA_ROOT")
    if not path:
        raise OptionError("no data folder given: pass a path (--data) or set the PH_DATA_ROOT environment variable")
    return Path(path).expanduser()


def in_checkout() -> bool:
    """True when the package runs from a checkout of the book's repository (not an installed copy)."""
    return (REPO_DIR / "pyproject.toml").is_file() and (REPO_DIR / "_toc.yml").is_file()


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/pseudohealthy`` (default ``~/.cache/pseudohealthy``): where an installed
    package keeps what it makes."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "pseudohealthy"


def truthy(name: str) -> bool:
    """True when the environment variable ``name`` is set to 1, true, yes or on."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """Folder for generated and prepared data (``$PH_CACHE``; else the checkout's ``data/cache``,
    not committed; else :func:`user_cache`)."""
    default = REPO_DIR / "data" / "cache" if in_checkout() else user_cache() / "cache"
    d = Path(os.environ.get("PH_CACHE") or default).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def zoo_dir() -> Path:
    """The model zoo: ``$PH_ZOO``; else the checkout's ``data/zoo``; else ``user_cache()/zoo``."""
    default = REPO_DIR / "data" / "zoo" if in_checkout() else user_cache() / "zoo"
    return Path(os.environ.get("PH_ZOO") or default).expanduser()


def runs_dir() -> Path:
    """Where models the zoo lacks are trained: the checkout's ``runs``, else ``user_cache()/runs``."""
    return REPO_DIR / "runs" if in_checkout() else user_cache() / "runs"
