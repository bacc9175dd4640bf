"""A Sphinx extension that keeps the built book self-contained and its console clean.

Jupyter Book 1 always loads sphinx-thebe, whose live-code runtime comes from a CDN when a
reader clicks "live code", and which declares its inline configuration script twice (a console
error on every page). The course is offline and runs its notebooks in Colab, Binder or
JupyterLab instead, so this extension removes Thebe's scripts and stylesheet from every page.
"""


def _is_thebe(asset) -> bool:
    body = asset.attributes.get("body", "") if hasattr(asset, "attributes") else ""
    return "thebe" in (str(asset.filename or "") + str(body)).lower()


def _drop_thebe(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not _is_thebe(asset)]


def setup(app):
    # After every other extension has added its assets for the page.
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
