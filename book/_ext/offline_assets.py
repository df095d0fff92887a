"""Serve the book's JavaScript from the book itself, so a page opened offline works.

Out of the box, Jupyter Book loads MathJax from a CDN on every page with maths, and myst-nb
loads RequireJS and the ipywidgets HTML manager from CDNs on every page with stored widget
state. Opened without a network, such a page shows raw TeX and no widgets. This extension
copies pinned copies of those files into the build's ``_static`` folder and points the
configuration at them:

- MathJax 3 (the ``tex-chtml`` component, its TeX extensions for ``autoload``, the menu and
  assistive-MathML parts it loads lazily, and its woff fonts) from the PyPI package
  ``django-static-mathjax`` (a plain copy of MathJax's ``es5`` folder, no Django needed);
- RequireJS and ``@jupyter-widgets/html-manager`` (``embed-amd.js`` and its fonts) from the npm
  registry, fetched by ``scripts/setup.sh`` with ``npm pack`` into ``.venv/web-assets``
  (override the folder with the environment variable ``PH_WEB_ASSETS``).

A missing asset stops the build with a message that says how to install it.

Two small repairs that a page opened in a browser needs, also done here:

- ``widgets_setup.js`` (next to this file) runs between RequireJS and the widget manager: it
  tells RequireJS where the manager's files are (so its icon fonts load) and gives MathJax 3
  the ``MathJax.Hub.Queue`` call that ipywidgets still makes (a MathJax 2 interface);
- identical ``<script>`` tags are dropped from each page: under Jupyter Book 1.0 sphinx-thebe
  registers its inline configuration twice, and the second ``const`` declaration is a
  JavaScript error on every page.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Where, below ``_static``, the copies go.
STATIC_SUBDIR = "offline"

#: MathJax 3: the combined component and the folders it loads files from at run time.
MATHJAX_ENTRY = "tex-chtml.js"
MATHJAX_DIRS = ("input/tex/extensions", "output/chtml/fonts/woff-v2", "ui", "a11y")

#: ipywidgets 8 embedding: RequireJS first, then the AMD build of the HTML manager.
REQUIREJS = "requirejs/require.js"
WIDGETS_SETUP = Path(__file__).with_name("widgets_setup.js")
HTML_MANAGER = "html-manager/dist/embed-amd.js"
HTML_MANAGER_FONTS = ("*.woff2", "*.woff", "*.ttf", "*.eot", "*.svg")

SETUP_HINT = "run `bash scripts/setup.sh`"


def mathjax_root() -> Path:
    """The ``es5`` folder of the installed MathJax 3 copy (package ``django-static-mathjax``)."""
    spec = importlib.util.find_spec("mathjax")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        root = Path(loc) / "static" / "mathjax" / "es5"
        if (root / MATHJAX_ENTRY).is_file():
            return root
    raise ExtensionError(
        "offline_assets: MathJax 3 is not installed, so the book would load it from a CDN. "
        f"Install it with `pip install django-static-mathjax==3.2.2.1` (in requirements.txt) or {SETUP_HINT}."
    )


def web_assets_root() -> Path:
    """The folder that ``scripts/setup.sh`` fills with the npm packages."""
    root = Path(os.environ.get("PH_WEB_ASSETS", Path(sys.prefix) / "web-assets"))
    missing = [p for p in (REQUIREJS, HTML_MANAGER) if not (root / p).is_file()]
    if missing:
        raise ExtensionError(
            f"offline_assets: {', '.join(missing)} not found under {root}; the ipywidgets on the "
            f"book's pages need them without a network. Fetch them with {SETUP_HINT} (it runs "
            "`npm pack @jupyter-widgets/html-manager@1.0.15 requirejs@2.3.8`) or set PH_WEB_ASSETS "
            "to a folder holding html-manager/ and requirejs/."
        )
    return root


def configure(app: Sphinx, config) -> None:
    """Point MathJax and the widget scripts at the local copies (and check that they exist)."""
    mathjax_root()
    web_assets_root()
    config.mathjax_path = f"{STATIC_SUBDIR}/mathjax/{MATHJAX_ENTRY}"
    # myst-nb adds these, in this order, to every page that has stored widget state.
    # Relative paths are resolved against _static by Sphinx.
    config.nb_ipywidgets_js = {
        f"{STATIC_SUBDIR}/{REQUIREJS}": {},
        f"{STATIC_SUBDIR}/{WIDGETS_SETUP.name}": {},
        f"{STATIC_SUBDIR}/{HTML_MANAGER}": {},
    }


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def copy_assets(app: Sphinx, exception: Exception | None) -> None:
    """After an HTML build, copy the pinned files into ``_static/offline``."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / "_static" / STATIC_SUBDIR
    mj = mathjax_root()
    _copy(mj / MATHJAX_ENTRY, out / "mathjax" / MATHJAX_ENTRY)
    for sub in MATHJAX_DIRS:
        shutil.copytree(mj / sub, out / "mathjax" / sub, dirs_exist_ok=True)
    web = web_assets_root()
    _copy(web / REQUIREJS, out / REQUIREJS)
    _copy(web / HTML_MANAGER, out / HTML_MANAGER)
    _copy(WIDGETS_SETUP, out / WIDGETS_SETUP.name)
    dist = (web / HTML_MANAGER).parent
    for pattern in HTML_MANAGER_FONTS:
        for font in dist.glob(pattern):
            _copy(font, out / "html-manager" / "dist" / font.name)
    for licence in ("LICENSE", "LICENSE.md", "LICENSE.txt"):
        for pkg in ("html-manager", "requirejs"):
            if (web / pkg / licence).is_file():
                _copy(web / pkg / licence, out / pkg / licence)
    logger.info(f"offline_assets: MathJax, RequireJS and the widget manager copied to {out}")


def drop_duplicate_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Keep the first of identical ``<script>`` entries (same file, same attributes and body).

    An inline script appears once with filename ``None`` and once with ``""``; both mean none.
    """
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app: Sphinx) -> dict:
    # Run after the configuration is complete but before myst-nb reads it (builder-inited).
    app.connect("config-inited", configure, priority=900)
    app.connect("build-finished", copy_assets)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
