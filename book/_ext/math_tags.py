r"""Let display maths carry ``\tag{n}`` next to a matrix.

Sphinx wraps every display formula that contains ``\\`` in ``\begin{split} ... \end{split}``
(so that a bare line break means "next line"). A ``\\`` that only separates the rows of an
environment such as ``pmatrix`` triggers the same wrapping, and MathJax then rejects a
``\tag{n}`` in that formula ("\tag not allowed in split environment") and shows a red error
instead of the equation.

This post-transform hands such formulas to MathJax unchanged: a display formula (no Sphinx
equation number, a single paragraph) with a ``\tag`` whose every ``\\`` sits inside a
``\begin{...} ... \end{...}`` environment is written out as it stands, between the usual
display delimiters. Every other formula is left to Sphinx.
"""
from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

_ENV = re.compile(r"\\begin\{(?P<name>[A-Za-z*]+)\}.*?\\end\{(?P=name)\}", re.S)


def _rows_only_in_environments(tex: str) -> bool:
    outside = tex
    while True:
        stripped = _ENV.sub(" ", outside)
        if stripped == outside:
            return "\\\\" not in outside
        outside = stripped


class TaggedDisplayMath(SphinxPostTransform):
    default_priority = 400
    formats = ("html",)

    def run(self, **kwargs) -> None:
        open_, close = self.app.config.mathjax_display
        for node in self.document.findall(nodes.math_block):
            tex = node.astext()
            if node.get("nowrap") or node.get("number") or "\\tag" not in tex or "\n\n" in tex.strip():
                continue
            if "\\\\" in tex and _rows_only_in_environments(tex):
                node["nowrap"] = True
                node.children = [nodes.Text(f"{open_}{tex.strip()}{close}")]


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.mathjax")
    app.add_post_transform(TaggedDisplayMath)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
