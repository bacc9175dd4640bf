"""Re-make chapter notebooks from their MyST sources and execute them.

    python tools/execute_chapters.py chapters/01_entropy.md [...]

Each ``chapters/NN_topic.md`` is the source a person edits; its paired ``.ipynb`` holds the
outputs that the book shows and that nbval checks. This script reads the source with jupytext,
runs every cell in a fresh kernel with ``chapters/`` as the working directory, and writes the
paired notebook. Timing metadata is not recorded and cell ids are derived from the cells, so
re-running an unchanged chapter leaves its notebook byte for byte the same. A cell that raises stops the script with the chapter's name.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import jupytext
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def execute(source: Path) -> Path:
    # A non-interactive MPLBACKEND in the environment would stop figures reaching the notebook.
    os.environ.pop("MPLBACKEND", None)
    notebook = jupytext.read(source)
    for index, cell in enumerate(notebook.cells):
        # jupytext invents random cell ids on every read; derive them from the cell instead so
        # that re-executing an unchanged chapter changes nothing in git.
        digest = hashlib.sha1(f"{index}\0{cell.cell_type}\0{cell.source}".encode()).hexdigest()
        cell.id = digest[:12]
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
    target = source.with_suffix(".ipynb")
    jupytext.write(notebook, target, fmt="ipynb")
    return target


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
