"""Run every chapter in JupyterLab, in headless Chromium, offline: the way learners run them.

Starts `jupyter lab` from the course environment on 127.0.0.1 (a token, a free port, the
course's settings in tools/jupyter_lab_config.py) over a copy of chapters/, so that running the
cells cannot rewrite the committed files. For each chapter it opens the `.md` (it must open as a
notebook, with its paired notebook's outputs), runs all cells and checks that every code cell
ran and none produced an error; it asks the chapter's own kernel, without adding a cell, which
Python and which xentlib it runs. Every request the page makes is routed: anything for another
host is refused and recorded, and the test fails if there was any. A screenshot of a chapter
open in JupyterLab goes to test-artifacts/. The server is shut down through its API and must
exit cleanly.

Needs Debian's chromium, like tests/test_browser.py; skipped, saying why, only without it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import jupytext
import pytest
from offline_browser import CHROMIUM, LAUNCH_FLAGS, keep_offline

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
SOURCES = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))
SCREENSHOT_CHAPTER = "01_entropy"
CHAPTER_TIMEOUT_MS = 600_000

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip("Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LabServer:
    def __init__(self, root: Path, scratch: Path):
        self.token = os.urandom(16).hex()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = dict(os.environ)
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                     "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR"):
            environment[name] = str(scratch / name.lower())   # no one's own Jupyter settings
        # The kernel imports this checkout's xentlib, whatever else is installed.
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
        environment.pop("MPLBACKEND", None)
        self.log = open(scratch / "jupyter-lab.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser",
             f"--config={ROOT / 'tools' / 'jupyter_lab_config.py'}",
             f"--port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
             # The test reads the notebook model and the kernel through the page's app object.
             "--LabApp.expose_app_in_browser=True",
             *(["--allow-root"] if os.geteuid() == 0 else [])],   # CI containers run as root
            env=environment, stdout=self.log, stderr=subprocess.STDOUT, cwd=root)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.api("GET", "status")
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jupyter lab did not start:\n" + self.log_text())
                time.sleep(0.5)

    def api(self, method: str, path: str):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            return json.loads(body) if body else None

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def shut_down(self) -> int:
        try:
            self.api("POST", "shutdown")
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    copy = tmp_path_factory.mktemp("chapters")
    for source in SOURCES:
        for path in (source, source.with_suffix(".ipynb")):
            shutil.copy2(path, copy / path.name)
    server = LabServer(copy, tmp_path_factory.mktemp("jupyter"))
    yield server
    status = server.shut_down()
    assert status == 0, f"jupyter lab exited with {status}:\n{server.log_text()}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright_api.sync_playwright() as playwright:
        profile = tmp_path_factory.mktemp("chromium-profile")
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=LAUNCH_FLAGS, headless=True,
            viewport={"width": 1400, "height": 900})
        yield context
        context.close()


CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model) return null;
  const cells = panel.content.model.cells, out = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    out.push({type: cell.type, source: cell.sharedModel.getSource(),
              count: cell.type === 'code' ? cell.executionCount : null,
              errors: cell.type === 'code' ? cell.outputs.toJSON()
                .filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue) : [],
              outputs: cell.type === 'code' ? cell.outputs.length : 0});
  }
  return {cells: out, notebook: panel.node.classList.contains('jp-NotebookPanel'),
          kernel: panel.sessionContext.session && panel.sessionContext.session.kernel
            ? panel.sessionContext.session.kernel.status : null,
          path: panel.context.path};
}"""

ASK_KERNEL_JS = """async () => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code: 'import json, sys, xentlib\\n'
    + 'print(json.dumps({"prefix": sys.prefix, "executable": sys.executable,'
    + ' "xentlib": xentlib.__file__}))', silent: false, store_history: false});
  let text = '';
  future.onIOPub = message => {
    if (message.header.msg_type === 'stream') text += message.content.text;
  };
  await future.done;
  return text;
}"""


SHOW_FIRST_FIGURE_JS = """async () => {
  const notebook = window.jupyterapp.shell.currentWidget.content;
  const cells = notebook.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type === 'code' && cell.outputs.toJSON().some(o => o.output_type === 'display_data')) {
      notebook.activeCellIndex = Math.max(i - 1, 0);
      await notebook.scrollToItem(Math.max(i - 1, 0), 'start');
      return i;
    }
  }
}"""


class LabPage:
    """A JupyterLab page with every request routed: the server's served, others refused."""

    def __init__(self, browser, lab):
        self.page = browser.new_page()
        self.external, self.page_errors = [], []
        host = urlsplit(lab.url).netloc
        keep_offline(self.page, host, self.external)
        self.page.on("websocket", lambda ws: urlsplit(ws.url).netloc == host
                     or self.external.append(ws.url))
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def close(self):
        self.page.close()


def run_chapter_in_lab(browser, lab, source):
    visit = LabPage(browser, lab)
    page = visit.page
    try:
        # ?reset: a fresh workspace, so the previous chapter's tab (and kernel) is not restored.
        page.goto(f"{lab.url}/lab/tree/{source.name}?reset&token={lab.token}", wait_until="load")
        page.wait_for_function(
            f"() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            f" && window.jupyterapp.shell.currentWidget.context"
            f" && window.jupyterapp.shell.currentWidget.context.path === {json.dumps(source.name)}"
            f" && window.jupyterapp.shell.currentWidget.content"
            f" && window.jupyterapp.shell.currentWidget.content.model"
            f" && window.jupyterapp.shell.currentWidget.sessionContext.isReady",
            timeout=120_000)
        opened = page.evaluate(CELLS_JS)
        expected = jupytext.read(source)
        assert opened["notebook"], f"{source.name} did not open as a notebook"
        assert [c["source"] for c in opened["cells"]] == [c.source for c in expected.cells]
        committed = jupytext.read(source.with_suffix(".ipynb"))
        assert sum(c["outputs"] for c in opened["cells"]) == sum(
            len(c.get("outputs", [])) for c in committed.cells), (
            f"{source.name} opened without its notebook's outputs")

        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(
            "() => { const p = window.jupyterapp.shell.currentWidget;"
            " const cells = p.content.model.cells; let last = null;"
            " for (let i = 0; i < cells.length; i++) if (cells.get(i).type === 'code') last = i;"
            " const done = [...p.content.widgets].every(w => w.model.type !== 'code'"
            "   || !w.node.querySelector('.jp-InputPrompt').textContent.includes('*'));"
            " return done && p.sessionContext.session.kernel.status === 'idle'"
            "   && cells.get(last).executionCount !== null; }",
            timeout=CHAPTER_TIMEOUT_MS, polling=500)
        ran = page.evaluate(CELLS_JS)
        code = [c for c in ran["cells"] if c["type"] == "code"]
        not_run = [i for i, c in enumerate(ran["cells"]) if c["type"] == "code" and
                   c["count"] is None]
        errors = [f"cell {i}: {c['errors']}" for i, c in enumerate(ran["cells"]) if c["errors"]]
        assert not errors, f"{source.name}: cells raised in JupyterLab:\n" + "\n".join(errors)
        assert not not_run, f"{source.name}: cells {not_run} never ran"
        assert sorted(c["count"] for c in code) == list(range(1, len(code) + 1))

        kernel = json.loads(page.evaluate(ASK_KERNEL_JS))
        if source.stem == SCREENSHOT_CHAPTER:
            page.evaluate(SHOW_FIRST_FIGURE_JS)
            page.wait_for_timeout(1000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"jupyterlab-{source.stem}.png"))
        return kernel, visit.external, visit.page_errors
    finally:
        visit.close()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_chapter_opens_and_runs_in_jupyterlab_offline(browser, lab, source):
    kernel, external, page_errors = run_chapter_in_lab(browser, lab, source)
    # The course environment: the interpreter the tests run under, the xentlib of this checkout.
    assert Path(kernel["prefix"]).resolve() == Path(sys.prefix).resolve(), kernel
    assert Path(kernel["xentlib"]).resolve().is_relative_to(ROOT.resolve()), kernel
    assert not external, f"requests left 127.0.0.1: {external}"
    assert not page_errors, f"JupyterLab raised in the page: {page_errors}"
    sessions = [s for s in lab.api("GET", "sessions") if s["path"] == source.name]
    assert sessions and all(s["kernel"]["name"] == "python3" for s in sessions), sessions
    for session in lab.api("GET", "sessions"):     # one chapter's kernel at a time
        lab.api("DELETE", f"sessions/{session['id']}")
