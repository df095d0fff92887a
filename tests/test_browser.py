"""The rendered book, opened in a real browser.

A session fixture builds the book from the notebooks' stored outputs (nothing is re-executed:
a temporary copy of _config.yml with ``execute_notebooks: off``, output in _build/browser), then
every HTML page of the table of contents is opened in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright; no browser is ever downloaded) with the network cut
off: any request that is not file:// fails the page. Per page we check that

- the browser logs no console error and the page throws no exception;
- every <img> loaded, and every image in the article (figures, cell outputs) is visible;
- MathJax (served from the book itself) typeset every formula: no raw TeX is left;
- the left navigation links to every page of the book;
- notebook pages carry the Colab launch link and the "Open in Colab" badge, both pointing at the
  notebook's path in the repository;
- pages with stored widget state render their widget views without a kernel;
- on notebook pages, every image a code cell outputs sits in a <figure> with a numbered
  <figcaption> ("Fig. N ..."), except the images of cells the notebook leaves uncaptioned
  (tests/test_book.py decides which may be), and no output <figure> holds anything but one image.

A full-page screenshot of each page goes to _build/browser-screenshots/ (a test artefact).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
BUILD_DIR = ROOT / "_build" / "browser"
SHOTS = ROOT / "_build" / "browser-screenshots"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Pages Sphinx writes besides the book's own: indices, search, highlighted sources, the redirect.
NOT_BOOK_PAGES = {"genindex.html", "search.html", "py-modindex.html", "index.html"}
TIMEOUT_MS = 30_000


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [toc["root"]]
    for part in toc.get("parts", []):
        out += [c["file"] for c in part.get("chapters", [])]
    return out


def colab_url(docname: str) -> str:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = cfg["repository"]["url"].removeprefix("https://github.com/").strip("/")
    prefix = str(cfg["repository"].get("path_to_book") or "").strip("/")
    path = f"{prefix}/{docname}" if prefix else docname
    return f"{cfg['launch_buttons']['colab_url'].rstrip('/')}/github/{repo}/blob/{cfg['repository']['branch']}/{path}.ipynb"


def build_stored_outputs(out: Path) -> Path:
    """Build the book into ``out/_build/html`` from the stored notebook outputs; return that folder."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg.setdefault("execute", {})["execute_notebooks"] = "off"
    # Paths in a config file are read relative to it; this copy lives elsewhere, so make them absolute.
    sphinx = cfg.setdefault("sphinx", {})
    sphinx["local_extensions"] = {k: str(ROOT / v) for k, v in (sphinx.get("local_extensions") or {}).items()}
    out.mkdir(parents=True, exist_ok=True)
    config = out / "_config.browser.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--config", str(config), "--path-output", str(out),
           "--all", "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"book build for the browser test failed ({' '.join(cmd)}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return out / "_build" / "html"


def book_pages(html: Path) -> list[Path]:
    """Every page of the book in the build: all HTML files but Sphinx's own and the sources."""
    pages = []
    for p in sorted(html.rglob("*.html")):
        rel = p.relative_to(html)
        if rel.parts[0] in ("_static", "_sources", "_modules", "_images") or str(rel) in NOT_BOOK_PAGES:
            continue
        pages.append(p)
    return pages


def launch_chromium(playwright, user_data_dir: str):
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} not found: the browser test needs Debian's chromium package "
            "(`apt-get install -y --no-install-recommends chromium`, which scripts/setup.sh runs as root)."
        )
    ctx = playwright.chromium.launch_persistent_context(
        user_data_dir, executable_path=str(CHROMIUM), headless=True, args=FLAGS,
        viewport={"width": 1280, "height": 900},
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    return ctx


# JavaScript run in the page once it has settled; returns what the checks need.
INSPECT = r"""
() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const rect = el => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const hidden = el => el.closest('details:not([open]), .dropdown-menu, [hidden]');
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const articleImgs = [...article.querySelectorAll('img')].filter(i => !hidden(i))
      .map(i => ({src: i.getAttribute('src'), size: rect(i)}));
  // Text left for the reader, outside code and outside what MathJax produced.
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight, .MathJax';
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  let text = '';
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement.closest(skip)) text += n.nodeValue + '\n';
  }
  const math = [...article.querySelectorAll('.math')];
  const sidebar = document.querySelector('.bd-sidebar-primary');
  const navLinks = sidebar ? [...sidebar.querySelectorAll('a[href]')].map(a => a.href) : [];
  const launch = [...document.querySelectorAll('.article-header-buttons a[href*="colab.research.google.com"], .dropdown-launch-buttons a[href*="colab.research.google.com"]')].map(a => a.href);
  const badges = [...article.querySelectorAll('img[src$="colab-badge.svg"]')].map(i => ({
      href: i.closest('a') ? i.closest('a').href : null, ok: i.complete && i.naturalWidth > 0, size: rect(i)}));
  const widgetState = !!document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
  const widgetViews = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const rendered = widgetViews.filter(s => s.parentElement.querySelector('.jupyter-widgets, [class*="widget-"]:not(.widget-subarea)'));
  // Images in cell outputs and the figures around them (captions come from the cells' mystnb metadata).
  const caption = fig => {
    const cap = fig && fig.querySelector(':scope > figcaption');
    const num = cap && cap.querySelector('.caption-number');
    return cap ? {text: cap.textContent.trim(), number: num ? num.textContent.trim() : ''} : null;
  };
  // (images a widget view draws, e.g. an ipywidgets.Image, are widget content, not figures)
  const outputImgs = [...article.querySelectorAll('.cell_output img')]
      .filter(i => !i.closest('.jupyter-widgets')).map(i => ({
      src: i.getAttribute('src'), caption: caption(i.closest('figure'))}));
  const outputFigures = [...article.querySelectorAll('.cell_output figure')].map(f => ({
      id: f.id, imgs: f.querySelectorAll('img').length, children: f.children.length, caption: caption(f)}));
  const widgetEls = [...article.querySelectorAll('.jupyter-widgets, [class*="widget-"]:not(.widget-subarea)')]
      .filter(el => { const [w, h] = rect(el); return w > 0 && h > 0; });
  return {
    imgs, articleImgs, text,
    mathCount: math.length,
    mathTypeset: math.filter(m => m.querySelector('mjx-container')).length,
    mjxErrors: article.querySelectorAll('mjx-merror').length,
    navLinks, launch, badges, widgetState, outputImgs, outputFigures,
    widgetViews: widgetViews.length, widgetViewsRendered: rendered.length, widgetVisible: widgetEls.length,
  };
}
"""

WAIT_MATHJAX = """
() => {
  if (!document.querySelector('.math')) return true;
  return !!(window.MathJax && MathJax.startup && MathJax.startup.promise && MathJax.startup.document
            && document.querySelectorAll('.math mjx-container').length > 0);
}
"""

WAIT_WIDGETS = """
() => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
        .every(s => s.parentElement.querySelector('.jupyter-widgets, [class*="widget-"]:not(.widget-subarea)'))
"""


def expected_output_images(notebook: Path) -> tuple[int, int]:
    """(captioned, uncaptioned): how many PNG images the notebook's code cells show in HTML, split by
    whether the cell carries a myst-nb figure caption. An output shows its PNG when no mime type that
    myst-nb prefers for HTML is in the same bundle."""
    preferred = {"application/vnd.jupyter.widget-view+json", "application/javascript", "text/html", "image/svg+xml"}
    counts = [0, 0]
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        figure = (cell.metadata.get("mystnb") or {}).get("figure") or {}
        n = sum(1 for o in cell.get("outputs", []) if "image/png" in o.get("data", {}) and not preferred & set(o["data"]))
        counts[0 if str(figure.get("caption") or "").strip() else 1] += n
    return counts[0], counts[1]


def check_page(ctx, path: Path, html_root: Path, expect_nav: list[Path], notebook_url: str | None,
               shot: Path | None = None, figures: tuple[int, int] | None = None) -> list[str]:
    """Open one page and return the problems found (an empty list when all is well). ``figures``:
    for notebook pages, (captioned, uncaptioned) output images expected (``expected_output_images``)."""
    problems: list[str] = []
    page = ctx.new_page()

    def on_route(route):
        url = route.request.url
        if urlparse(url).scheme in ("file", "data", "blob"):
            route.continue_()
        else:
            problems.append(f"network request (blocked): {url}")
            route.abort()

    page.route("**/*", on_route)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})")
            if urlparse(r.url).scheme == "file" else None)
    try:
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        try:
            page.wait_for_function(WAIT_MATHJAX)
            page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise.then(() => true) : true")
        except Exception as exc:  # reported through the checks below
            problems.append(f"MathJax did not finish: {str(exc).splitlines()[0]}")
        try:
            page.wait_for_function(WAIT_WIDGETS)
        except Exception as exc:
            problems.append(f"widget views did not render: {str(exc).splitlines()[0]}")
        info = page.evaluate(INSPECT)
        if shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()

    problems += [f"image not loaded: {i['src']}" for i in info["imgs"] if not i["ok"]]
    problems += [f"image not visible (size {i['size']}): {i['src']}" for i in info["articleImgs"]
                 if not (i["size"][0] > 0 and i["size"][1] > 0)]
    for raw in ("$$", "\\begin{", "\\(", "\\["):
        if raw in info["text"]:
            at = info["text"].index(raw)
            problems.append(f"raw TeX {raw!r} left on the page: ...{info['text'][max(0, at - 60):at + 60]!r}...")
    # a TeX command left as text ("\\mathcal{G}"), or one whose backslash was eaten on the way
    # ("mathcalG_{A2N}", what a doubled backslash in a notebook's markdown renders as)
    for m in re.finditer(r"\\[A-Za-z]{2,}|\b(?:mathcal|mathbf|mathbb)[A-Z{]|\b(?:mathrm|frac|lambda_|text)\{", info["text"]):
        problems.append(f"raw TeX {m.group()!r} left on the page: ...{info['text'][max(0, m.start() - 60):m.end() + 60]!r}...")
        break
    if info["mathTypeset"] < info["mathCount"]:
        problems.append(f"MathJax typeset {info['mathTypeset']} of {info['mathCount']} formulas")
    if info["mjxErrors"]:
        problems.append(f"{info['mjxErrors']} MathJax errors (mjx-merror)")
    linked = {urldefrag(u).url for u in info["navLinks"]}
    for target in expect_nav:
        if target.as_uri() not in linked:
            problems.append(f"left navigation has no link to {target.relative_to(html_root)}")
    if notebook_url is not None:
        if notebook_url not in info["launch"]:
            problems.append(f"no Colab launch link to {notebook_url} (found {info['launch']})")
        good = [b for b in info["badges"] if b["href"] == notebook_url and b["ok"] and b["size"][0] > 0]
        if not good:
            problems.append(f"no visible 'Open in Colab' badge linking to {notebook_url} (found {info['badges']})")
    if info["widgetState"]:
        if info["widgetViewsRendered"] < info["widgetViews"] or not info["widgetVisible"]:
            problems.append(f"widgets: {info['widgetViewsRendered']} of {info['widgetViews']} views rendered, "
                            f"{info['widgetVisible']} widget elements visible")
    if figures is not None:
        problems += figure_problems(info, *figures)
    return problems


def figure_problems(info: dict, captioned: int, uncaptioned: int) -> list[str]:
    problems = []
    in_figure = [i for i in info["outputImgs"] if i["caption"] is not None]
    bare = [i for i in info["outputImgs"] if i["caption"] is None]
    if len(in_figure) != captioned or len(bare) != uncaptioned:
        problems.append(f"cell output images: {len(in_figure)} in a captioned <figure>, {len(bare)} without, "
                        f"expected {captioned} and {uncaptioned} from the notebook's cell metadata")
    for f in info["outputFigures"]:
        cap = f["caption"]
        if f["imgs"] != 1 or f["children"] != 2:
            problems.append(f"output figure #{f['id']}: {f['imgs']} images, {f['children']} children "
                            "(expected one image and its caption; a cell with several displayed outputs?)")
        if cap is None or not re.fullmatch(r"Fig\. \d+(\.\d+)*", cap["number"]) or len(cap["text"]) <= len(cap["number"]):
            problems.append(f"output figure #{f['id']}: no numbered <figcaption> (found {cap})")
    return problems


@pytest.fixture(scope="session")
def book_html() -> Path:
    return build_stored_outputs(BUILD_DIR)


@pytest.fixture(scope="session")
def chromium():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `pip install playwright==1.65.1` (in requirements.txt)")
    with tempfile.TemporaryDirectory(prefix="ph-chromium-") as profile, sync_playwright() as pw:
        ctx = launch_chromium(pw, profile)
        try:
            yield ctx
        finally:
            ctx.close()


def test_build_has_exactly_the_toc_pages(book_html):
    built = {str(p.relative_to(book_html).with_suffix("")) for p in book_pages(book_html)}
    assert built == set(toc_files()), f"built pages {sorted(built)} differ from _toc.yml {toc_files()}"


def test_every_page_in_chromium(book_html, chromium):
    pages = book_pages(book_html)
    assert pages, f"no pages in {book_html}"
    shutil.rmtree(SHOTS, ignore_errors=True)
    report, start = {}, time.perf_counter()
    for path in pages:
        docname = str(path.relative_to(book_html).with_suffix(""))
        notebook = ROOT / f"{docname}.ipynb"
        url = colab_url(docname) if notebook.is_file() else None
        figures = expected_output_images(notebook) if notebook.is_file() else None
        shot = SHOTS / f"{docname.replace('/', '__')}.png"
        problems = check_page(chromium, path, book_html, pages, url, shot, figures)
        if problems:
            report[docname] = problems
    took = time.perf_counter() - start
    print(f"browser test: {len(pages)} pages in {took:.1f} s, screenshots in {SHOTS}")
    assert not report, "\n".join(f"{page}:\n  " + "\n  ".join(p) for page, p in report.items())
