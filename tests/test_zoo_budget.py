"""The shipped zoo stays within its budget, and the README says what it holds."""
from __future__ import annotations

import re
from pathlib import Path

from pseudohealthy_lib import recipes, zoo

ROOT = Path(__file__).parents[1]
BUDGET = 150e6          # bytes: all shipped models together


def _size(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def test_the_zoo_fits_its_budget_and_every_model_has_a_recipe():
    names = zoo.available()
    total = sum(_size(zoo.zoo_dir() / n) for n in names)
    assert total <= BUDGET, f"data/zoo holds {total / 1e6:.0f} MB, over the {BUDGET / 1e6:.0f} MB budget"
    assert [n for n in names if n not in recipes.RECIPES] == []


def test_the_readme_counts_the_shipped_models_and_their_size():
    m = re.search(r"Shipped: (\d+) models, (\d+) MB in all", (ROOT / "README.md").read_text())
    assert m, "README.md: no 'Shipped: N models, M MB in all' sentence"
    names = zoo.available()
    mib = sum(_size(zoo.zoo_dir() / n) for n in names) / 2**20     # what du -sh prints
    assert int(m[1]) == len(names)
    assert abs(int(m[2]) - mib) <= 1.5, f"README says {m[2]} MB, du -sh would say {mib:.0f}M"
