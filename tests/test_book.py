"""Tests of the book as built and of the chapter files behind it.

`make test` builds the book (warnings as errors) before running these, so `_build/html` is the
book a reader would get from the committed sources.
"""

import os
import re
import shutil
import subprocess
import sys
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
def test_chapter_pair_is_one_notebook_in_jupytexts_eyes(source):
    # What `jupytext --diff X.md X.ipynb` compares: both files written as MyST, metadata order
    # included (issue 12: `tags` typed before `mystnb` made six chapters refuse to open).
    as_source = jupytext.writes(jupytext.read(source), fmt="md:myst")
    as_notebook = jupytext.writes(jupytext.read(source.with_suffix(".ipynb")), fmt="md:myst")
    assert as_source == as_notebook, (
        f"{source.name} and its notebook differ (jupytext --diff shows how): "
        "python tools/execute_chapters.py re-writes the pair")


def open_through_jupytext(directory, name):
    """Open a file the way JupyterLab does: through jupytext's contents manager."""
    import asyncio

    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(
        root_dir=str(directory))
    return asyncio.run(manager.get(name, type="notebook"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_jupyterlab_opens_either_file_of_a_pair_whatever_their_times(source, tmp_path):
    import os
    import shutil

    notebook_path = source.with_suffix(".ipynb")
    for name in (source.name, notebook_path.name):
        shutil.copy(ROOT / "chapters" / name, tmp_path / name)
    expected = nbformat.read(notebook_path, as_version=4)
    # A fresh clone, `make book` or a `touch` can leave either file the newer, by any margin
    # (jupytext only tolerates a stale text file within a few seconds).
    for newer in (source.name, notebook_path.name):
        os.utime(tmp_path / newer, (2_000_000_000, 2_000_000_000))
        older = notebook_path.name if newer == source.name else source.name
        os.utime(tmp_path / older, (1_000_000_000, 1_000_000_000))
        for name in (source.name, notebook_path.name):
            model = open_through_jupytext(tmp_path, name)   # raises HTTPError 400 if refused
            cells = model["content"]["cells"]
            assert [c["source"] for c in cells] == [c.source for c in expected.cells]
            assert [c.get("outputs") for c in cells] == [c.get("outputs") for c in
                                                         expected.cells], (
                f"{name} (newer: {newer}) opens without the outputs of {notebook_path.name}")


def install_cell_of(notebook):
    return next(c for c in notebook.cells if c.cell_type == "code")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_install_cell_is_hidden_first_identical_and_uses_the_configured_repository(source):
    sys.path.insert(0, str(ROOT / "tools"))
    from course_repository import committed_repository, install_cell

    expected = install_cell(*committed_repository())
    notebook = jupytext.read(source)
    first = install_cell_of(notebook)
    assert "remove-cell" in first.metadata.get("tags", []), "install cell must be hidden"
    assert notebook.cells.index(first) <= 1, "the install cell comes before any prose but the title"
    assert first.source == expected, (
        f"{source.name}: its install cell is not the one _config.yml's repository gives "
        "(python tools/course_repository.py URL writes both)")
    others = [c.source for c in notebook.cells
              if c.cell_type == "code" and c is not first and "pip" in c.source]
    assert not others, f"{source.name}: a second install cell"


# --- Launch buttons: they work or they are not there (issue 12) ------------------------------

sys.path.insert(0, str(ROOT / "tools"))
import course_repository  # noqa: E402

LAUNCH_HOSTS = {"colab.research.google.com", "mybinder.org", "github.com", "gitlab.com"}


class LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def links_of(page: Path) -> list[str]:
    collector = LinkCollector()
    collector.feed(page.read_text(encoding="utf-8"))
    return collector.links


def check_launch_links(html: Path, url: str, branch: str):
    """Every launch link of a built book: none without a repository, each one right with one."""
    pages = sorted(p for p in html.rglob("*.html")
                   if p.relative_to(html).parts[0] not in ("_static", "mathjax", "_sources"))
    assert len(pages) > len(SOURCES)
    launch = {page: [u for u in links_of(page) if urlsplit(u).netloc in LAUNCH_HOSTS]
              for page in pages}
    if not url:
        offenders = {str(p.relative_to(html)): links for p, links in launch.items() if links}
        assert not offenders, f"no repository is configured, yet pages link to one: {offenders}"
    owner, name = urlsplit(url).path.strip("/").split("/") if url else ("", "")
    for source in SOURCES:
        page = html / "chapters" / f"{source.stem}.html"
        notebook = f"chapters/{source.stem}.ipynb"
        assert (ROOT / notebook).is_file()          # what Colab and Binder will open
        download = f"../_sources/{notebook}"
        assert download in links_of(page), f"{page.name}: no download button for the notebook"
        downloaded = nbformat.read(html / "_sources" / notebook, as_version=4)
        assert downloaded.cells[1:] and any(c.get("outputs") for c in downloaded.cells), (
            "the downloaded notebook has no outputs")
        install = next(c for c in downloaded.cells if c.cell_type == "code").source
        assert install == course_repository.install_cell(url, branch)
        if url:
            expected = {
                f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{notebook}",
                f"https://mybinder.org/v2/gh/{owner}/{name}/{branch}?urlpath=lab/tree/{notebook}",
                url,
            }
            assert set(launch[page]) == expected, f"{page.name}: {launch[page]}"


def test_default_book_links_only_to_the_configured_repository():
    built_pages()   # fails clearly if the book was not built
    check_launch_links(HTML, *course_repository.build_repository(
        *course_repository.committed_repository()))


def test_book_built_for_a_published_repository_links_every_chapter_to_it(tmp_path):
    url, branch = "https://github.com/course-fork/cross-entropy-derived", "published"
    environment = dict(os.environ, COURSE_REPOSITORY_URL=url, COURSE_REPOSITORY_BRANCH=branch)
    build = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "-W", "-n",
         "--keep-going", "--path-output", str(tmp_path)],
        env=environment, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    check_launch_links(tmp_path / "_build" / "html", url, branch)


def test_repository_setting_accepts_only_a_repository_colab_can_open(monkeypatch):
    monkeypatch.setenv("COURSE_REPOSITORY_URL", "https://example.org/course.git")
    with pytest.raises(ValueError, match="https://github.com/OWNER/REPO"):
        course_repository.build_repository("", "main")
    monkeypatch.setenv("COURSE_REPOSITORY_URL", "")
    assert course_repository.build_repository("https://github.com/a/b", "dev") == ("", "dev")
    monkeypatch.delenv("COURSE_REPOSITORY_URL")
    assert course_repository.build_repository("https://github.com/a/b/", "") == (
        "https://github.com/a/b", "main")
    with pytest.raises(ValueError, match="quote"):
        course_repository.install_cell('https://github.com/a/b"', "main")


def test_publishing_rewrites_config_and_every_install_cell_and_unpublishing_restores_them(
        tmp_path):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    for source in SOURCES:
        for path in (source, source.with_suffix(".ipynb")):
            shutil.copy2(path, chapters / path.name)
    config = tmp_path / "_config.yml"
    shutil.copy2(ROOT / "_config.yml", config)
    before = {p.name: p.read_bytes() for p in [config, *chapters.iterdir()]}
    original = course_repository.committed_repository(config.read_text())

    url, branch = "https://github.com/course-fork/cross-entropy-derived", "published"
    course_repository.write_config(url, branch, config)
    assert course_repository.committed_repository(config.read_text()) == (url, branch)
    changed = course_repository.write_chapters(url, branch, chapters)
    assert len(changed) == len(SOURCES)
    for source in SOURCES:
        for path in (chapters / source.name, chapters / f"{source.stem}.ipynb"):
            first = next(c for c in jupytext.read(path).cells if c.cell_type == "code")
            assert course_repository.installed_from(first.source) == f"{url}@{branch}", path
        assert (jupytext.writes(jupytext.read(chapters / source.name), fmt="md:myst")
                == jupytext.writes(jupytext.read(chapters / f"{source.stem}.ipynb"),
                                   fmt="md:myst")), f"{source.name}: pair out of step"

    course_repository.write_config(*original, config)
    course_repository.write_chapters(*original, chapters)
    after = {p.name: p.read_bytes() for p in [config, *chapters.iterdir()]}
    assert after == before
