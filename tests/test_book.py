"""Tests of the book as built and of the chapter files behind it.

`make test` builds the book (warnings as errors) before running these, so `_build/html` is the
book a reader would get from the committed sources.
"""

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SOURCES = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))


def built_pages():
    if not (HTML / "index.html").is_file():
        pytest.fail("_build/html is missing: `make test` builds it first (or run `make book`)")
    # Theme templates copied into _static/ are not pages a reader opens.
    return sorted(p for p in HTML.rglob("*.html")
                  if p.relative_to(HTML).parts[0] not in ("_static", "mathjax", "_sources"))


class ResourceCollector(HTMLParser):
    """Collect the URLs a browser would fetch while loading a page."""

    FETCHED = {"script": "src", "img": "src", "link": "href", "iframe": "src",
               "source": "src", "audio": "src", "video": "src", "embed": "src"}

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attribute = self.FETCHED.get(tag)
        attrs = dict(attrs)
        if tag == "link" and attrs.get("rel") in ("canonical", "alternate", "next", "prev"):
            return  # navigation metadata, never fetched
        if attribute and attrs.get(attribute):
            self.urls.append(attrs[attribute])


def is_external(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme in ("http", "https") or url.startswith("//"))


def test_built_html_fetches_nothing_from_another_host():
    offenders = []
    for page in built_pages():
        collector = ResourceCollector()
        collector.feed(page.read_text(encoding="utf-8"))
        offenders += [f"{page.relative_to(HTML)}: {url}" for url in collector.urls
                      if is_external(url)]
    assert not offenders, "pages load resources from other hosts:\n" + "\n".join(offenders)


def test_stylesheets_fetch_nothing_from_another_host():
    pattern = re.compile(r"""(?:url\(|@import\s+)["']?((?:https?:)?//[^"')\s]+)""")
    offenders = [f"{css.relative_to(HTML)}: {m.group(1)}"
                 for css in HTML.rglob("*.css")
                 for m in pattern.finditer(css.read_text(encoding="utf-8", errors="replace"))]
    assert not offenders, "stylesheets load from other hosts:\n" + "\n".join(offenders)


def test_local_resources_exist_and_mathjax_is_served_by_the_book():
    missing, mathjax_pages = [], 0
    for page in built_pages():
        collector = ResourceCollector()
        collector.feed(page.read_text(encoding="utf-8"))
        for url in collector.urls:
            if is_external(url) or url.startswith(("data:", "#", "mailto:")):
                continue
            target = (page.parent / urlsplit(url).path).resolve()
            if not target.exists():
                missing.append(f"{page.relative_to(HTML)}: {url}")
            if target.name == "tex-mml-chtml.js":
                mathjax_pages += 1
    assert not missing, "pages refer to files the book does not contain:\n" + "\n".join(missing)
    assert mathjax_pages > 0, "no page loads the book's own MathJax"
    fonts = HTML / "mathjax" / "es5" / "output" / "chtml" / "fonts" / "woff-v2"
    assert (fonts / "MathJax_Main-Regular.woff").is_file()
    assert (HTML / "mathjax/es5/input/tex/extensions/boldsymbol.js").is_file()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_chapter_source_and_notebook_agree_cell_by_cell(source):
    notebook_path = source.with_suffix(".ipynb")
    assert notebook_path.is_file(), f"{source.name} has no paired notebook: run `make book`"
    text = jupytext.read(source)
    notebook = nbformat.read(notebook_path, as_version=4)
    ours = [(c.cell_type, c.source) for c in text.cells]
    theirs = [(c.cell_type, c.source) for c in notebook.cells]
    assert len(ours) == len(theirs), f"{source.name}: {len(ours)} cells, notebook {len(theirs)}"
    for index, (mine, paired) in enumerate(zip(ours, theirs)):
        assert mine == paired, f"{source.name} cell {index} differs from the notebook: make book"
    unexecuted = [i for i, c in enumerate(notebook.cells)
                  if c.cell_type == "code" and c.get("execution_count") is None]
    assert not unexecuted, f"{notebook_path.name}: cells {unexecuted} were never executed"


def test_table_of_contents_lists_every_chapter_once():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
    chapters = [f for f in files if f.startswith("chapters/0") or f.startswith("chapters/1")]
    assert sorted(chapters) == [f"chapters/{s.stem}" for s in SOURCES]
    assert len(files) == len(set(files))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_install_cell_points_at_the_configured_repository(source):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository = config["repository"]
    expected = f"git+{repository['url']}@{repository['branch']}"
    first_code = next(c for c in jupytext.read(source).cells if c.cell_type == "code")
    assert "remove-cell" in first_code.metadata.get("tags", []), "install cell must be hidden"
    assert "find_spec(\"xentlib\") is None" in first_code.source
    assert expected in first_code.source, f"{source.name}: install cell must use {expected}"
