"""JupyterLab settings for the course: `make lab` and tests/test_lab.py start Lab with these.

    jupyter lab --config=tools/jupyter_lab_config.py chapters

- A chapter's ``.md`` opens as a notebook (jupytext), showing the outputs of its paired
  ``.ipynb``; saving either writes both (their ``jupytext.formats`` metadata pairs them).
- Lab asks no other host for anything: no news feed, no update check, and an extension manager
  that does not search PyPI. The course works offline, JupyterLab included.
"""

from pathlib import Path

c = get_config()  # noqa: F821  (provided by traitlets when Jupyter loads this file)

c.ServerApp.ip = "127.0.0.1"
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
# overrides.json beside this file: default viewers and the notification settings.
c.LabApp.app_settings_dir = str(Path(__file__).resolve().parent / "jupyterlab")
