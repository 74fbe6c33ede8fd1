"""Sphinx extension: vendor the Vega JavaScript into the site so charts render offline.

The bundle comes from vl-convert-python (the same Vega-Lite version that renders the
static SVG fallbacks), wrapped in a function scope so its top-level names cannot clash
with other scripts. ``book-charts.js`` (in ``book/_static``) then turns every chart's
inline spec into an interactive chart.
"""

from __future__ import annotations

from pathlib import Path

BUNDLE = "vendor/vega-bundle.js"


def _write_bundle(app, exc) -> None:
    if exc is not None or app.builder.format != "html":
        return
    import vl_convert as vlc

    target = Path(app.outdir) / "_static" / BUNDLE
    target.parent.mkdir(parents=True, exist_ok=True)
    code = vlc.javascript_bundle(vl_version="6.4")
    target.write_text("(function(){\n" + code + "\n})();\n", encoding="utf-8")


def _script_key(script) -> tuple:
    attrs = getattr(script, "attributes", {})
    return str(getattr(script, "filename", script) or ""), tuple(
        sorted((k, str(v)) for k, v in attrs.items())
    )


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    # sphinx-thebe and sphinx-togglebutton register their inline config twice under Jupyter
    # Book 1 (once with filename None, once with ""), so thebe's `const` is declared twice
    # and every page logs a console error. Keep one copy of each script. Runs last and edits
    # the list in place, so scripts other handlers add for this page (MathJax) are kept.
    files = context.get("script_files")
    if files is None:
        return
    seen, unique = set(), []
    for script in files:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    files[:] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.add_js_file(BUNDLE)
    app.add_js_file("book-charts.js")
    app.connect("build-finished", _write_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
