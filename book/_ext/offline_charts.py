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


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    # sphinx-thebe registers its inline config twice under Jupyter Book 1, which declares a
    # `const` twice and logs a console error on every page; keep the first copy only.
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attrs = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script)), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=200)
    app.add_js_file(BUNDLE)
    app.add_js_file("book-charts.js")
    app.connect("build-finished", _write_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
