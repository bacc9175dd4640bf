"""Re-make chapter notebooks from their MyST sources and execute them.

    python tools/execute_chapters.py chapters/01_entropy.md [...]

Each ``chapters/NN_topic.md`` is the source a person edits; its paired ``.ipynb`` holds the
outputs that the book shows and that nbval checks. This script reads the source with jupytext,
runs every cell in a fresh kernel with ``chapters/`` as the working directory, and writes the
paired notebook. Timing metadata is not recorded and cell ids are derived from the cells, so
re-running an unchanged chapter leaves its notebook byte for byte the same. A cell that raises
stops the script with the chapter's name.

The ``.md`` is then re-written from the notebook as saved, the way JupyterLab's jupytext
contents manager saves a pair. nbformat writes cell metadata with sorted keys, so a source whose
metadata was typed in another order (``tags`` before ``mystnb``) would otherwise differ from its
notebook in jupytext's eyes, and jupytext refuses to open a pair that differs when the notebook
is the newer file. After this script the two files are the same notebook whatever their times.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import jupytext
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).parent))
from course_repository import committed_repository, set_install_cell  # noqa: E402


def cell_id(index: int, cell) -> str:
    # jupytext invents random cell ids on every read; derive them from the cell instead so
    # that re-executing an unchanged chapter changes nothing in git.
    return hashlib.sha1(f"{index}\0{cell.cell_type}\0{cell.source}".encode()).hexdigest()[:12]


def execute(source: Path) -> Path:
    # A non-interactive MPLBACKEND in the environment would stop figures reaching the notebook.
    os.environ.pop("MPLBACKEND", None)
    notebook = jupytext.read(source)
    # The hidden first code cell installs xentlib from the repository _config.yml names.
    set_install_cell(notebook, *committed_repository())
    for index, cell in enumerate(notebook.cells):
        cell.id = cell_id(index, cell)
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(source.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as error:
        raise SystemExit(f"{source}: a cell failed\n{error}") from None
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    target = source.with_suffix(".ipynb")
    jupytext.write(notebook, target, fmt="ipynb")
    resync_source(source, target)
    return target


def merge_streams(outputs: list) -> list:
    """Join consecutive prints to the same stream into one output.

    The kernel sends a cell's stdout in as many messages as its buffer flushes happened to make,
    which depends on the machine's load; joined, the notebook is the same on every run.
    """
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.output_type == "stream" and previous is not None
                and previous.output_type == "stream" and previous.name == output.name):
            previous.text += output.text
        else:
            merged.append(output)
    return merged


def resync_source(source: Path, target: Path) -> None:
    """Re-write ``source`` (MyST) from the notebook ``target`` as saved, if they differ."""
    text = jupytext.writes(jupytext.read(target), fmt="md:myst")
    if source.read_text(encoding="utf-8") != text:
        source.write_text(text, encoding="utf-8")
        # make re-executes a chapter whose .md is newer than its .ipynb; this one is not stale.
        os.utime(target)


def main(arguments: list[str]) -> None:
    if not arguments:
        raise SystemExit(__doc__)
    for name in arguments:
        source = Path(name)
        if source.suffix != ".md" or not source.is_file():
            raise SystemExit(f"{name}: expected a chapter's .md source")
        print(f"executed {source} -> {execute(source)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
