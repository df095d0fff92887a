"""What the chapter drafts share: cells collected in order, then written as an unexecuted notebook."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = []


def md(s):
    CELLS.append(new_markdown_cell(s.strip("\n")))


def code(s, tags=None, figure=None, check=False):
    """A code cell; ``figure=(name, caption)`` numbers and captions its one image (myst-nb), ``check``
    makes nbval compare its output (the same in fast mode: records, configs, hand-made cases)."""
    c = new_code_cell(("# NBVAL_CHECK_OUTPUT\n" if check else "") + s.strip("\n"))
    if tags:
        c.metadata["tags"] = tags
    if figure:
        c.metadata["mystnb"] = {"figure": {"name": figure[0], "caption": figure[1]}}
    CELLS.append(c)


#: the first code cell of every chapter
SETUP = r"""# On Colab only: fetch the book (the library and its shipped models), install the library
# (Colab's own PyTorch is kept), tell it where the models are, and enable widgets.
import os, sys
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/pseudohealthy-book"):
        !git clone -q --depth 1 https://github.com/pseudohealthy/pseudohealthy-book /content/pseudohealthy-book
    %pip install -q /content/pseudohealthy-book
    os.environ["PH_ZOO"] = "/content/pseudohealthy-book/data/zoo"
    from google.colab import output
    output.enable_custom_widget_manager()

from pseudohealthy_lib.notebook import setup_notebook
info = setup_notebook()
"""


def colab_setup():
    code(SETUP)


def write(path):
    nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                             "language_info": {"name": "python"}})
    nbformat.write(nb, path)
    print(len(CELLS), "cells")
