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
    checked = sum("NBVAL_CHECK_OUTPUT" in "".join(c["source"]) for c in code)
    assert checked >= 3, f"{name}: only {checked} cells marked NBVAL_CHECK_OUTPUT"
    assert any(re.search(r"^## Exercises", "".join(c["source"]), re.M) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert all(c.get("execution_count") for c in code), f"{name}: stored outputs missing (run scripts/execute_notebooks.py)"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
