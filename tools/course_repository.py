"""Where the course is published: one setting for the launch buttons and the install cells.

The setting is ``repository.url`` and ``repository.branch`` in ``_config.yml``. It is empty by
default: this repository is not published anywhere, so the book shows no Colab, Binder or
repository button (a button would open an error page) and each chapter's install cell does
nothing. The download button (the chapter's notebook with its outputs) is always there.

A fork that publishes the course sets it once, here, and commits the result::

    python tools/course_repository.py https://github.com/OWNER/REPO main   # or: make repository
    python tools/course_repository.py ""                                   # unpublish

which writes the two lines of ``_config.yml`` and the install cell (the first code cell, hidden)
of every chapter, ``.md`` and ``.ipynb`` alike; Colab and Binder open those committed notebooks.

As a Sphinx extension (``local_extensions`` in ``_config.yml``) this module applies the setting
to the build: the environment variables ``COURSE_REPOSITORY_URL`` and ``COURSE_REPOSITORY_BRANCH``
override ``_config.yml`` for one build, and the notebooks offered for download carry an install
cell for the repository the buttons point at.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "_config.yml"
URL_VARIABLE, BRANCH_VARIABLE = "COURSE_REPOSITORY_URL", "COURSE_REPOSITORY_BRANCH"
INSTALL_CELL = """\
# Outside the course repository (Colab, Binder), install xentlib from where the course is
# published: `repository` in _config.yml. Empty when it is not published: then do nothing.
import importlib.util, subprocess, sys

REPOSITORY = "{spec}"
if REPOSITORY and importlib.util.find_spec("xentlib") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "git+" + REPOSITORY])"""
INSTALL_CELL_PATTERN = re.compile(
    re.escape(INSTALL_CELL).replace(re.escape("{spec}"), r'(?P<spec>[^"\\]*)') + r"\Z")


def install_cell(url: str, branch: str) -> str:
    """The source of every chapter's install cell for a repository (``url`` empty: none)."""
    if any(c in url + branch for c in '"\\\n '):
        raise ValueError(f"repository url {url!r} or branch {branch!r} has a quote, backslash "
                         "or space")
    return INSTALL_CELL.format(spec=f"{url}@{branch}" if url else "")


def installed_from(source: str) -> str | None:
    """The ``url@branch`` an install cell installs from ('' for none), None if not one."""
    match = INSTALL_CELL_PATTERN.match(source)
    return match["spec"] if match else None


def committed_repository(config_text: str | None = None) -> tuple[str, str]:
    """(url, branch) of ``repository`` in _config.yml; the url is '' when none is configured."""
    import yaml

    config = yaml.safe_load(config_text if config_text is not None else CONFIG.read_text())
    repository = config.get("repository") or {}
    return (repository.get("url") or "").strip(), (repository.get("branch") or "main").strip()


def build_repository(config_url: str, config_branch: str) -> tuple[str, str]:
    """The repository a build links to: the environment's if set, else _config.yml's."""
    url = os.environ.get(URL_VARIABLE, config_url).strip().rstrip("/")
    branch = os.environ.get(BRANCH_VARIABLE, "").strip() or config_branch or "main"
    if url and not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        # Colab opens notebooks from GitHub only; say so rather than build a dead button.
        raise ValueError(f"repository url {url!r}: expected https://github.com/OWNER/REPO")
    return url, branch


def set_install_cell(notebook, url: str, branch: str) -> bool:
    """Give ``notebook`` (nbformat) the install cell for the repository; True if it changed."""
    from execute_chapters import cell_id

    first = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
    cell = notebook.cells[first]
    earlier_form = ('find_spec("xentlib")' in cell.source
                    and "remove-cell" in cell.metadata.get("tags", []))
    if installed_from(cell.source) is None and not earlier_form:
        raise ValueError(f"the first code cell is not the hidden install cell:\n{cell.source}")
    new_source = install_cell(url, branch)
    if cell.source == new_source:
        return False
    cell.source = new_source
    if "id" in cell:
        cell.id = cell_id(first, cell)
    return True


def write_chapters(url: str, branch: str, chapters: Path = ROOT / "chapters") -> list[Path]:
    """Point every chapter's install cell (.ipynb and .md) at the repository."""
    import jupytext

    from execute_chapters import resync_source

    changed = []
    for notebook_path in sorted(chapters.glob("[0-9][0-9]_*.ipynb")):
        notebook = jupytext.read(notebook_path)
        if set_install_cell(notebook, url, branch):
            jupytext.write(notebook, notebook_path, fmt="ipynb")
            changed.append(notebook_path)
        resync_source(notebook_path.with_suffix(".md"), notebook_path)
    return changed


def write_config(url: str, branch: str, path: Path = CONFIG) -> None:
    text = path.read_text()
    block = re.search(r"^repository:\n((?:[ \t]+.*\n)+)", text, re.MULTILINE)
    if block is None:
        raise ValueError(f"{path}: no `repository:` block")
    body = re.sub(r"^(\s+url:).*$", rf'\1 "{url}"', block[1], flags=re.MULTILINE)
    body = re.sub(r"^(\s+branch:).*$", rf"\1 {branch}", body, flags=re.MULTILINE)
    path.write_text(text[:block.start(1)] + body + text[block.end(1):])


# --- Sphinx ---------------------------------------------------------------------------------

def _apply_to_build(app, config):
    options = dict(config.html_theme_options)
    url, branch = build_repository(options.get("repository_url", ""),
                                   options.get("repository_branch", "main"))
    app.course_repository = (url, branch)
    if url:
        options.update(repository_url=url, repository_branch=branch, use_repository_button=True)
    else:
        # No published repository: no button may point at one.
        options.pop("repository_url", None)
        options.update(launch_buttons={}, use_repository_button=False,
                       use_issues_button=False, use_edit_page_button=False)
    config.html_theme_options = options


def _downloads_install_from_the_build_repository(app, exception):
    """The notebooks a reader downloads install from the repository the buttons point at."""
    if exception is not None or app.builder.format != "html":
        return
    import nbformat

    url, branch = app.course_repository
    for path in (Path(app.outdir) / "_sources").rglob("[0-9][0-9]_*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        if set_install_cell(notebook, url, branch):
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True)
                            + "\n", encoding="utf-8")


def setup(app):
    sys.path.insert(0, str(Path(__file__).parent))   # execute_chapters, beside this file
    app.connect("config-inited", _apply_to_build)
    app.connect("build-finished", _downloads_install_from_the_build_repository)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(arguments: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    if len(arguments) not in (1, 2):
        raise SystemExit(__doc__)
    url = arguments[0].strip().rstrip("/")
    branch = arguments[1] if len(arguments) == 2 else "main"
    if url:
        os.environ.pop(URL_VARIABLE, None)
        build_repository(url, branch)                 # the same check as the build's
    write_config(url, branch)
    assert committed_repository() == (url, branch)
    changed = write_chapters(url, branch)
    print(f"repository: {url or '(none)'} {branch if url else ''}; "
          f"{len(changed)} chapter install cells re-written")


if __name__ == "__main__":
    main(sys.argv[1:])
