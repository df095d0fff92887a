"""The book's structure: every chapter in the table of contents exists, links to Colab from the
one repository setting in _config.yml, installs itself on Colab, checks outputs and has exercises."""
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def toc_files():
    out = [TOC["root"]]
    for part in TOC.get("parts", []):
        out += [c["file"] for c in part.get("chapters", [])]
    return out


NOTEBOOKS = [f for f in toc_files() if (ROOT / f"{f}.ipynb").is_file()]
BADGE_REL = "_static/colab-badge.svg"  # relative to book/, where the chapters live


def test_colab_badge_image_is_local_svg():
    svg = (ROOT / "book" / BADGE_REL).read_text()
    assert svg.lstrip().startswith("<svg") and 'width="' in svg and 'height="' in svg
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", ""), "the badge must not load anything"


def test_every_toc_entry_exists():
    for f in toc_files():
        assert (ROOT / f"{f}.ipynb").is_file() or (ROOT / f"{f}.md").is_file(), f


def test_every_book_notebook_is_in_the_toc():
    listed = set(NOTEBOOKS)
    for nb in (ROOT / "book").glob("*.ipynb"):
        assert f"book/{nb.stem}" in listed, f"{nb} is not in _toc.yml"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_chapter_conventions(name):
    nb = json.loads((ROOT / f"{name}.ipynb").read_text())
    text = json.dumps(nb)
    repo = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    url = f"https://colab.research.google.com/github/{repo}/blob/{CONFIG['repository']['branch']}/{name}.ipynb"
    # The badge image is the book's own SVG (relative path, works offline), not Colab's.
    badge = f"[![Open in Colab]({BADGE_REL})]({url})"
    head = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and badge in head, f"{name}: first cell must carry {badge}"
    assert "colab.research.google.com/assets" not in text, f"{name}: use {BADGE_REL}, not Colab's hosted badge"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    first = "".join(code[0]["source"])
    assert "google.colab" in first and "pip install" in first and "enable_custom_widget_manager" in first
    assert "PH_ZOO" in first and "git clone" in first       # the shipped models come with the clone
    checked = sum("NBVAL_CHECK_OUTPUT" in "".join(c["source"]) for c in code)
    assert checked >= 3, f"{name}: only {checked} cells marked NBVAL_CHECK_OUTPUT"
    assert any(re.search(r"^## Exercises", "".join(c["source"]), re.M) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert all(c.get("execution_count") for c in code), f"{name}: stored outputs missing (run scripts/execute_notebooks.py)"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))


# Figures: every image a code cell outputs is a numbered figure with a caption, through myst-nb's cell
# metadata: cell.metadata["mystnb"] = {"figure": {"caption": "...", "name": "fig-NN-..."}}.
# myst-nb 1.4 wraps *each* display output of such a cell in its own figure, with the same caption and
# name; a cell may therefore carry a caption only if its image is its one displayed output.
# Cells that show a training progress bar (a widget) before their plot cannot be captioned that way;
# they are listed here by notebook and cell id (the fix is to move the plot into a cell of its own).
UNCAPTIONABLE: dict = {}   # (chapter, cell id) -> why a figure cannot carry a caption; empty today


def displayed_outputs(cell) -> list[dict]:
    """The outputs myst-nb renders through its figure context: display data and results, minus glue
    records stored with display=False (myst-nb strips those before rendering)."""
    return [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")
            and not (o.get("metadata", {}).get("scrapbook") or {}).get("mime_prefix")]


def image_cells(name: str):
    nb = json.loads((ROOT / f"{name}.ipynb").read_text())
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
            yield index, cell


def test_every_figure_has_a_caption_and_a_unique_name():
    names: dict[str, str] = {}
    problems = []
    for name in NOTEBOOKS:
        chapter = Path(name).name.split("_")[0]
        for index, cell in image_cells(name):
            where = f"{name}.ipynb cell {index} (id {cell.get('id')})"
            figure = (cell.get("metadata", {}).get("mystnb") or {}).get("figure") or {}
            if (name, cell.get("id")) in UNCAPTIONABLE:
                if figure:
                    problems.append(f"{where}: listed in UNCAPTIONABLE but has figure metadata; remove it from the list")
                elif len(displayed_outputs(cell)) < 2:
                    problems.append(f"{where}: listed in UNCAPTIONABLE but has only one displayed output; caption it")
                continue
            caption, label = figure.get("caption"), figure.get("name")
            if not (isinstance(caption, str) and caption.strip()):
                problems.append(f"{where}: no caption (cell metadata mystnb.figure.caption)")
            if not (isinstance(label, str) and re.fullmatch(rf"fig-{re.escape(chapter)}-[a-z0-9]+(-[a-z0-9]+)*", label)):
                problems.append(f"{where}: figure name {label!r} is not of the form fig-{chapter}-<short-name>")
            elif label in names:
                problems.append(f"{where}: figure name {label!r} also used by {names[label]}")
            else:
                names[label] = where
            shown = displayed_outputs(cell)
            if len(shown) != 1:
                problems.append(f"{where}: {len(shown)} displayed outputs; myst-nb would make each one a figure with "
                                "this caption and name (put the plot in a cell of its own)")
    assert not problems, "\n".join(problems)
    assert names, "no captioned figures found"


def _own_docstrings():
    """(name, docstring) of every public module, class, function and method the library defines itself
    (what the API appendix can render)."""
    import importlib
    import inspect
    import pkgutil

    import pseudohealthy_lib

    for info in pkgutil.walk_packages(pseudohealthy_lib.__path__, "pseudohealthy_lib."):
        mod = importlib.import_module(info.name)
        yield info.name, inspect.getdoc(mod)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{info.name}.{name}", inspect.getdoc(obj)
            elif inspect.isclass(obj):
                yield f"{info.name}.{name}", inspect.getdoc(obj)
                for meth, f in vars(obj).items():
                    f = getattr(f, "__func__", f)
                    if inspect.isfunction(f) and not meth.startswith("_"):
                        yield f"{info.name}.{name}.{meth}", inspect.getdoc(f)


def test_every_docstring_is_valid_restructuredtext():
    """The API appendix renders the docstrings and the book builds with -W: a bare ``|x - y|`` (read as
    a substitution), a literal block without its blank line, or an unclosed `````` fails the build
    after ten minutes; this finds it in seconds, naming the object."""
    import io

    import docutils.core
    from docutils import nodes
    from docutils.parsers.rst import roles

    for role in ("mod", "func", "class", "data", "meth", "attr", "exc", "obj", "ref", "doc", "cite", "term"):
        roles.register_generic_role(role, nodes.literal)  # Sphinx's roles, unknown to plain docutils
    bad = []
    for name, doc in _own_docstrings():
        if not doc:
            continue
        err = io.StringIO()
        docutils.core.publish_doctree(doc, settings_overrides={"warning_stream": err, "report_level": 2,
                                                              "halt_level": 5})
        if err.getvalue():
            bad.append(f"{name}: {err.getvalue().strip()}")
    assert not bad, "docstrings that Sphinx would warn about:\n" + "\n".join(bad)
    assert sum(1 for _ in _own_docstrings()) > 100  # the walk found the library


def test_no_control_characters_in_the_book_sources():
    """A formula written in a Python string that is not raw loses its backslashes: ``"\\frac"`` is a
    form feed and ``rac``, ``"\\tag"`` a tab and ``ag``. The page then shows broken maths; this names
    the file and line of every such character in the chapters (their cells' text, tabs included in
    the markdown), the drafts and the library."""
    def texts(f):
        if f.suffix != ".ipynb":
            return [("", f.read_text(encoding="utf-8"), r"[\x00-\x08\x0b-\x1f\x7f]")]
        return [(f" cell {i}", "".join(c["source"]), r"[\x00-\x1f\x7f]" if c["cell_type"] == "markdown" else r"[\x00-\x08\x0b-\x1f\x7f]")
                for i, c in enumerate(json.loads(f.read_text(encoding="utf-8"))["cells"])]
    files = [*ROOT.glob("book/**/*.ipynb"), *ROOT.glob("book/**/*.md"), *ROOT.glob("scripts/**/*.py"),
             *ROOT.glob("pseudohealthy_lib/**/*.py")]
    bad = [f"{f.relative_to(ROOT)}{where}:{n}" for f in files for where, text, chars in texts(f)
           for n, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1) if re.search(chars, line)]
    assert len(files) > 30 and not bad, f"control characters at: {bad}"
