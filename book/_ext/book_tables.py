"""Tables the appendices build from the library and the shipped files, so no number is typed.

``{preset-table}``
    The training presets, read from :data:`pseudohealthy_lib.presets.PRESETS` (and the
    method-specific changes in ``METHOD_PRESETS``).

``{zoo-runs}``
    One row per shipped model in ``data/zoo/*/manifest.json``: what was trained, for how
    many steps, on what hardware and how long it took (``wall_seconds`` as measured by the
    training engine).

``{gpu-timings}``
    GPU speeds recorded in ``pseudohealthy_lib/records/gpu.jsonl`` (the benchmark step at the
    papers' widths, the teaching recipe alone and side by side), and what they mean for the
    ``colab`` and ``paper`` presets' step counts (read from ``PRESETS``).
"""
from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _table(title: str, header: list[str], rows: list[list[object]]) -> nodes.table:
    table = nodes.table(classes=["colwidths-auto"])
    table += nodes.title(text=title)
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)

    def row(cells):
        tr = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text="" if cell is None else str(cell))
            tr += entry
        return tr

    head = nodes.thead()
    head += row(header)
    body = nodes.tbody()
    for r in rows:
        body += row(r)
    group += head
    group += body
    return table


class PresetTable(SphinxDirective):
    """The presets of ``pseudohealthy_lib.presets`` as a table (``:presets:`` picks some)."""

    option_spec = {"presets": directives.unchanged, "caption": directives.unchanged}

    def run(self):
        from pseudohealthy_lib import presets

        names = (self.options.get("presets") or " ".join(presets.PRESETS)).replace(",", " ").split()
        rows = []
        for name in names:
            p = presets.PRESETS[name]
            o = p.get("options", {})
            rows.append([name, f"{p['size']} × {p['size']}", p["batch_size"], f"{p['steps']:,}",
                         o.get("ngf"), o.get("n_blocks"), o.get("ndf")])
        out = [_table(self.options.get("caption", "Training presets (from pseudohealthy_lib.presets)"),
                      ["preset", "image", "batch", "steps", "generator width (ngf)", "residual blocks",
                       "discriminator width (ndf)"], rows)]
        extra = [(m, p, o) for (m, p), o in presets.METHOD_PRESETS.items() if p in names]
        if extra:
            def flat(o):
                for k, v in o.items():
                    yield from flat(v) if isinstance(v, dict) else [f"{k} {v}"]
            para = nodes.paragraph(text="Method-specific changes: " + "; ".join(
                f"{m} at {p}: " + ", ".join(flat(o)) for m, p, o in extra) + ".")
            out.append(para)
        return out


class ZooRuns(SphinxDirective):
    """Training runs of the shipped models, from their manifests."""

    option_spec = {"caption": directives.unchanged}

    def run(self):
        from pseudohealthy_lib import zoo

        root = zoo.zoo_dir()
        rows = []
        for manifest in sorted(root.glob("*/manifest.json")):
            self.env.note_dependency(str(manifest))
            m = json.loads(manifest.read_text())
            cfg, hw = m.get("config", {}), m.get("hardware", {})
            steps, wall = m.get("steps"), m.get("wall_seconds")
            if hw.get("gpu"):
                device = str(hw["gpu"])
            else:
                device = f"CPU, {hw.get('cpu_count', '?')} cores"
            precision = str(m.get("precision") or "float32").removeprefix("torch.")
            if hw.get("cpu_capability") and not hw.get("gpu"):
                precision += f" ({hw['cpu_capability']})"
            per_step = f"{wall / steps:.2f}" if steps and wall else None
            rows.append([m.get("name", manifest.parent.name), m.get("preset"),
                         f"{steps} × {cfg.get('batch_size')}", cfg.get("size"),
                         f"{wall / 60:.1f}" if wall else None, per_step,
                         f"{device}, {precision}" if precision else device])
        if not rows:
            return [nodes.paragraph(text=f"No shipped models found in {root}.")]
        return [_table(self.options.get("caption", f"Training runs of the shipped models ({Path(root).name}/*/manifest.json)"),
                       ["model", "preset", "steps × batch", "image side", "wall time (min)",
                        "s / step", "hardware, precision"], rows)]


def preset_estimates(bench: list[dict]) -> list[list]:
    """For the ``colab`` and ``paper`` presets: their step count over the measured mixed-precision
    step rate at their image size and batch (a row of ``gpu.jsonl``'s benchmark), as rows
    [preset, steps × batch, image side, steps/s, time]. A preset with no matching measurement is left out."""
    from pseudohealthy_lib import presets

    est = []
    for preset in ("colab", "paper"):
        p = presets.PRESETS[preset]
        match = [r for r in bench if r["size"] == p["size"] and r["batch"] == p["batch_size"]
                 and r["config"].startswith("engine mixed") and "channels_last" not in r["config"]]
        if match:
            sec = p["steps"] / match[0]["steps_per_s"]
            est.append([preset, f"{p['steps']:,} × {p['batch_size']}", p["size"], f"{match[0]['steps_per_s']:.1f}",
                        f"{sec / 60:.0f} min" if sec < 3 * 3600 else f"{sec / 3600:.1f} h"])
    return est


class GpuTimings(SphinxDirective):
    """Measured GPU speeds from ``pseudohealthy_lib/records/gpu.jsonl`` (one set of tables per
    device), and the time the GPU presets' step counts take at those speeds (an extrapolation,
    labelled as one)."""

    def run(self):
        path = Path(__file__).resolve().parents[2] / "pseudohealthy_lib" / "records" / "gpu.jsonl"
        self.env.note_dependency(str(path))
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out = []
        for device in dict.fromkeys(r["device"] for r in rows):
            mine = [r for r in rows if r["device"] == device]
            out += self._tables([r for r in mine if r["kind"] == "bench"], [r for r in mine if r["kind"] == "recipe"],
                                [r for r in mine if r["kind"] == "concurrent"])
        return out or [nodes.paragraph(text=f"No GPU timings recorded in {path.name}.")]

    @staticmethod
    def _tables(bench: list[dict], alone: list[dict], side: list[dict]) -> list:
        r0 = (bench or alone or side)[0]
        where = f"one {r0['device']} ({r0['host_cpu']}; torch {r0['torch']}, {r0['date']})"
        out = []
        if bench:
            out.append(_table(
                f"The training step at the papers' widths on {where}: {bench[0]['model']}, each configuration alone, "
                "20 timed steps after 2 warm-up steps. 'Mixed precision' is bfloat16; on a GPU channels_last is on in "
                "every engine mixed-precision row, so the two 'mixed precision, batch 1' rows repeat one configuration "
                "and their difference is run-to-run noise",
                ["image side", "configuration", "images / s", "steps / s"],
                [[r["size"], r["config"], f"{r['images_per_s']:.1f}", f"{r['steps_per_s']:.1f}"] for r in bench]))
            est = preset_estimates(bench)
            if est:
                out.append(_table(
                    f"What the step rate above would mean for the GPU presets' ANT-GAN step counts on {r0['device']}: "
                    "training steps only (no data loading, checkpoints or evaluation), an extrapolation, not a measured "
                    "run. A Colab GPU and its two-core host are much slower: expect several times longer",
                    ["preset", "steps × batch", "image side", "steps / s (measured)", "time at that rate"], est))
        recipe_rows = [[r["recipe"], "alone, " + r["note"], f"{r['steps_per_s']:.1f}", f"{r['warmup_s']:.0f}"] for r in alone]
        recipe_rows += [[r["recipe"], f"side by side, {r['steps']} of {r['of']} steps", f"{r['steps_per_s']:.1f}", None]
                        for r in side]
        if recipe_rows:
            n = len(side)
            out.append(_table(
                f"The zoo's teaching recipes on the same GPU: ANT-GAN's recipe alone (its steady rate over 300 steps after "
                f"the first 50, on a 4-subject phantom), and {n} recipes trained side by side ({side[0]['processes'] if side else ''}), "
                "each rate being the steps a run reached divided by the seconds it took (a deadline stopped the runs that "
                "had not finished)",
                ["recipe", "how it ran", "steps / s", "first 50 steps (s)"], recipe_rows))
        return out


def setup(app: Sphinx) -> dict:
    app.add_directive("preset-table", PresetTable)
    app.add_directive("zoo-runs", ZooRuns)
    app.add_directive("gpu-timings", GpuTimings)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
