"""Helpers shared by the bad-input tests: run the command line in-process, check its errors."""
from __future__ import annotations

import os
import re
from pathlib import Path

from pseudohealthy_lib.__main__ import main
from pseudohealthy_lib.engine import Trainer
from pseudohealthy_lib.methods import get_method


def trainer(cfg, out, **kw) -> Trainer:
    """A Trainer for ``cfg``'s registered method (what the command line builds)."""
    return Trainer(cfg, out, method=get_method(cfg.method), **kw)


def temps(folder: Path) -> list[Path]:
    """Temporary files (of atomic writes) left anywhere below ``folder``."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def run_cli(capsys, *args) -> tuple[int, str]:
    """Run the command line in this process: returns (exit code, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:            # argparse: exit code 2 and its usage message
        code = e.code
    return code, capsys.readouterr().err


def assert_error(result, *patterns) -> None:
    """Exit code 2, no traceback, and every regex in ``patterns`` in the message."""
    code, err = result
    assert code == 2, err
    assert "Traceback" not in err
    for pat in patterns:
        assert re.search(pat, err), f"{pat!r} not in {err!r}"


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, read from /proc."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            state, _, pgrp = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            pids.append(int(d))
    return pids
