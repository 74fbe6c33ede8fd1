"""The one place that configures Altair for every chapter, and the chart vocabulary they share.

Charts must render with no network: in the built site, in a notebook and in print. The
``book`` renderer (enabled by :func:`setup_altair`) emits HTML holding

* a static SVG of the chart, rendered at build time by vl-convert (shows without
  JavaScript, in print, and in notebooks), and
* the Vega-Lite spec with its data inline, which ``book/_static/book-charts.js`` upgrades
  to an interactive chart (tooltips) using the Vega bundle vendored into the site.

Parts of a chart that only mean something when it is interactive (a selection's readout)
are marked with :func:`interactive_only`; the static SVG is drawn without them
(:func:`without_interactive_only`), the interactive spec keeps them.

Nothing is fetched from a CDN. Every subject keeps one colour across all chapters.

Example
-------
>>> setup_altair(["biology", "history", "physics"])            # doctest: +SKIP
>>> chart = projection_scatter(frame, "PC1 (41% of variance)", "PC2 (9%)")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
import warnings
from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd
import vl_convert as vlc
from sklearn.decomposition import PCA

# Colour-blind-safe qualitative palette (Okabe & Ito); its pale yellow is moved last and darkened
# because it is hard to see on the white chart card.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#8c564b",
    "#000000",
    "#7f7f7f",
    "#B09A00",
]
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
# A long text mark is cut to this share of its view's width. The static picture is measured
# with vl-convert's fonts, and a browser draws the same text with its own (DejaVu Sans on
# Debian: about 18% wider), which would run past the picture's edge and be clipped.
TEXT_FIT = 0.8
NO_FRAME = {"stroke": None}  # text-only views: no box around them
FADED = "#c9ced6"  # unselected points: light grey, visible on the chart card in both themes
VL_VERSION = "6.4"  # Altair 6 emits Vega-Lite 6.4 specs; vl-convert bundles that version
INTERACTIVE_ONLY = "interactive_only"  # name prefix of views the static picture leaves out
_subject_order: list[str] = []


def register_subjects(subjects: Sequence[str]) -> None:
    """Fix the colour of each subject: first registered, first colour. Later calls only append."""
    for s in sorted(set(subjects)):
        if s not in _subject_order:
            _subject_order.append(s)


def subject_colors(subjects: Sequence[str] | None = None) -> alt.Scale:
    """An Altair colour scale giving every subject its book-wide colour.

    With ``subjects`` the legend lists only those (new ones are registered); colours stay
    the same as in every other chart.
    """
    if subjects is not None:
        register_subjects(subjects)
        present = set(subjects)
        domain = [s for s in _subject_order if s in present]
    else:
        domain = list(_subject_order)
    return alt.Scale(
        domain=domain, range=[PALETTE[_subject_order.index(s) % len(PALETTE)] for s in domain]
    )


def _book_theme() -> alt.theme.ThemeConfig:
    return alt.theme.ThemeConfig(
        config={
            "background": "#ffffff",
            "font": FONT,
            "view": {"stroke": "#d0d4da"},
            "axis": {
                "labelFontSize": 12,
                "titleFontSize": 13,
                "titleFontWeight": "normal",
                "gridColor": "#eceff3",
            },
            "legend": {"labelFontSize": 12, "titleFontSize": 13, "orient": "bottom"},
            "header": {"labelFontSize": 13, "titleFontSize": 13},
            "title": {
                "fontSize": 15,
                "anchor": "start",
                "fontWeight": "bold",
                "subtitleFontSize": 12,
            },
            "point": {"filled": True, "size": 40, "opacity": 0.75},
        }
    )


# Characters that mean something to an HTML parser inside <script> ("</script", "<!--") or
# end a line in older JavaScript, as JSON escapes: the parsed value is unchanged.
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(value) -> str:
    """``value`` as JSON that is inert inside ``<script type="application/json">``.

    Script content is raw text to HTML, so escaping ``<``, ``>`` and ``&`` (they occur only
    inside JSON strings) is the one way a chunk's ``</script>`` or ``<!--`` cannot end or
    swallow the element; ``JSON.parse`` reads the original strings back.

    >>> script_json({"t": "</script><!--"})
    '{"t":"\\\\u003c/script\\\\u003e\\\\u003c!--"}'
    """
    return json.dumps(value, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


def vega_string(text: str) -> str:
    """``text`` as a string literal of a Vega expression (quoted and escaped as JSON).

    Labels and data never go into an expression raw: a quote in a model's name would end
    the literal.

    >>> print(vega_string("it's"))
    "it's"
    """
    return json.dumps(str(text))


# Characters XML 1.0 forbids (C0 controls but tab and line breaks, U+FFFE/U+FFFF, lone
# surrogates): in a chart's text they abort vl-convert's renderer, and the whole process
# with it. A control character becomes its visible picture (ESC -> U+241B), the rest U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _shown(match: re.Match) -> str:
    code = ord(match.group())
    return chr(0x2400 + code) if code < 0x20 else "\ufffd"


def _map_strings(value, change):
    """``value`` (any JSON value) with ``change`` applied to every string in it, keys too."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {_map_strings(k, change): _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_map_strings(v, change) for v in value]
    return value


def drawable(value):
    """``value`` (a spec, or any JSON value) with every string made safe to draw as SVG text.

    >>> drawable({"subject": "\x1b[31mred"})
    {'subject': '␛[31mred'}
    """
    return _map_strings(value, lambda text: _NOT_XML.sub(_shown, text))


_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")


def _bmp_form(match: re.Match) -> str:
    """A character beyond U+FFFF as its compatibility form (math italic x -> x) or U+FFFD."""
    form = unicodedata.normalize("NFKC", match.group())
    return form if not _BEYOND_BMP.search(form) else "\ufffd"


def within_bmp(value):
    """``value`` with characters beyond U+FFFF replaced (see :func:`_bmp_form`).

    Vega shortens a text to its mark's ``limit`` by UTF-16 code units; cut inside such a
    character, the text no longer reaches vl-convert's renderer. Only the static picture of
    such a chart is drawn from this.

    >>> within_bmp(["\U0001d465 = 2 \U0001f600"])
    ['x = 2 \ufffd']
    """
    return _map_strings(value, lambda text: _BEYOND_BMP.sub(_bmp_form, text))


def interactive_only(chart, what: str):
    """``chart`` (a view, layer or concat) marked as meaningful only when interactive.

    A selection's readout says "112 of 112 chunks selected" in a picture nobody can select
    in: :func:`static_svg` leaves marked views out. ``what`` makes the view's name unique.
    """
    return chart.properties(name=f"{INTERACTIVE_ONLY}_{what}")


def _is_interactive_only(view) -> bool:
    return isinstance(view, dict) and str(view.get("name", "")).startswith(INTERACTIVE_ONLY)


def without_interactive_only(spec):
    """A copy of ``spec`` without the views marked by :func:`interactive_only`.

    Marked views are dropped from every ``vconcat``, ``hconcat``, ``concat`` and ``layer``
    list, however deep; everything else is kept as it is.
    """
    if isinstance(spec, list):
        return [without_interactive_only(v) for v in spec]
    if not isinstance(spec, dict):
        return spec
    kept = {}
    for key, value in spec.items():
        if key in ("vconcat", "hconcat", "concat", "layer") and isinstance(value, list):
            value = [v for v in value if not _is_interactive_only(v)]
        kept[key] = without_interactive_only(value)
    return kept


def static_svg(spec: dict) -> str:
    """The chart's static SVG (vl-convert), without its interactive-only views.

    Characters beyond U+FFFF are simplified if they break the renderer (:func:`within_bmp`).
    """
    spec = without_interactive_only(spec)
    try:
        return vlc.vegalite_to_svg(spec, vl_version=VL_VERSION)
    except ValueError:
        simpler = within_bmp(spec)
        if simpler == spec:
            raise
        return vlc.vegalite_to_svg(simpler, vl_version=VL_VERSION)


def chart_html(spec: dict) -> str:
    """HTML for one chart: static SVG fallback plus the inline spec for the interactive upgrade.

    Whatever the chart's texts hold, the HTML has exactly one ``<script>`` (the spec, see
    :func:`script_json`), and MathJax leaves the chart alone (``mathjax_ignore``). Texts
    are first made drawable (:func:`drawable`), so both pictures show the same text.
    """
    spec = drawable(spec)
    svg = static_svg(spec)
    chart_id = f"book-chart-{uuid.uuid4().hex[:10]}"
    return (
        f'<div class="book-chart mathjax_ignore tex2jax_ignore" id="{chart_id}">'
        f'<div class="book-chart-static">{svg}</div>'
        f'<script type="application/json" class="book-chart-spec">{script_json(spec)}</script>'
        "</div>"
    )


def _book_renderer(spec: dict, **kwargs) -> dict:
    return {"text/html": chart_html(spec), "text/plain": "<Altair chart: see the rendered output>"}


def setup_altair(subjects: Sequence[str] = ()) -> None:
    """Configure Altair for the book: offline renderer, theme, inline data, subject colours."""
    alt.renderers.register("book", _book_renderer)
    alt.renderers.enable("book")
    alt.theme.register("book", enable=True)(_book_theme)
    alt.data_transformers.disable_max_rows()
    register_subjects(subjects)


# --------------------------------------------------------------------------- projections


def pca_projection(
    X: np.ndarray, fit_on: np.ndarray | None = None, n_components: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA coordinates of ``X`` and the variance share of each axis.

    By default PCA is fit on ``X`` itself; pass ``fit_on`` to project ``X`` on axes fit to
    another set (e.g. the same texts under another model, or a reference split).
    """
    pca = PCA(n_components=n_components, svd_solver="full", random_state=0).fit(
        X if fit_on is None else fit_on
    )
    coords = pca.transform(X)
    # Fix each axis's sign so reruns do not mirror the picture.
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), range(n_components)])
    return coords * signs, pca.explained_variance_ratio_


def axis_title(k: int, share: float) -> str:
    """E.g. ``"PC1 (41% of variance)"``."""
    return f"PC{k} ({share:.0%} of variance)"


def snippet(text: str, words: int = 14) -> str:
    """The first words of a chunk, for tooltips."""
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def projection_frame(
    X: np.ndarray, subjects: Sequence[str], texts: Sequence[str], model: str, fit_on=None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows ready for :func:`projection_scatter`: x, y, subject, snippet, model."""
    coords, shares = pca_projection(np.asarray(X), fit_on=fit_on)
    frame = pd.DataFrame(
        {
            "x": coords[:, 0],
            "y": coords[:, 1],
            "subject": list(subjects),
            "snippet": [snippet(t) for t in texts],
            "model": model,
        }
    )
    return frame, shares


# --------------------------------------------------------------------------- chart vocabulary


def projection_scatter(
    frame: pd.DataFrame,
    x_title: str,
    y_title: str,
    title: str = "",
    width: int = 300,
    height: int = 280,
    group_title: str = "Subject",
    item_title: str = "chunk",
    x: str = "x",
    y: str = "y",
    selected=None,
) -> alt.Chart:
    """Scatter of a 2-D projection, coloured by subject, tooltips with subject and the chunk's first words.

    ``group_title`` and ``item_title`` rename the legend and tooltip for data that are not
    subjects and chunks (the toy clouds of Chapter 2). ``x`` and ``y`` name the coordinate
    columns; with a ``selected`` predicate, points outside it are drawn faded.
    """
    colors = subject_colors(frame["subject"])
    color = alt.Color("subject:N", scale=colors, title=group_title)
    faded = {}
    if selected is not None:
        color = alt.condition(selected, color, alt.value(FADED))
        faded = {"opacity": alt.condition(selected, alt.value(0.85), alt.value(0.35))}
    return (
        alt.Chart(frame, title=title)
        .mark_point()
        .encode(
            x=alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(zero=False, nice=False)),
            y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False, nice=False)),
            color=color,
            # Same domain as the colours, so Vega-Lite draws one merged legend.
            shape=alt.Shape("subject:N", title=group_title, scale=alt.Scale(domain=colors.domain)),
            **faded,
            tooltip=[
                alt.Tooltip("subject:N", title=group_title.lower()),
                alt.Tooltip("snippet:N", title=item_title),
            ],
        )
        .properties(width=width, height=height)
    )


def projection_panels(
    embeddings: dict[str, np.ndarray], subjects: Sequence[str], texts: Sequence[str]
) -> list:
    """One (frame, variance shares, name) per model, ready for :func:`projection_grid`."""
    panels = []
    for name, X in embeddings.items():
        frame, shares = projection_frame(X, subjects, texts, name)
        panels.append((frame, shares, name))
    return panels


def linked_frame(panels: Sequence[tuple[pd.DataFrame, np.ndarray, str]]) -> pd.DataFrame:
    """One row per chunk with its coordinates in every panel (``x0, y0, x1, y1, ...``).

    All panels show the same chunks in the same order, so a selection made on one panel's
    coordinates can be tested on every row, whichever panel it was drawn in.
    """
    first = panels[0][0]
    wide = first[["subject", "snippet"]].copy()
    for i, (frame, _, _) in enumerate(panels):
        if (
            len(frame) != len(first)
            or not (frame["subject"].values == first["subject"].values).all()
        ):
            raise ValueError("every panel must show the same chunks in the same order")
        wide[f"x{i}"], wide[f"y{i}"] = frame["x"].to_numpy(), frame["y"].to_numpy()
    return wide


def selected_chunks_table(data: pd.DataFrame, selected, rows: int = 8, width: int = 500):
    """The chunks that pass ``selected``: a count line, then the first ``rows`` of them (subject: text).

    Interactive only: with nothing selected it lists every chunk's first rows, which the
    static picture has no use for.
    """
    base = alt.Chart(data).transform_filter(selected)
    count = (
        base.transform_aggregate(n="count()")
        .transform_calculate(line=f"datum.n + ' of {len(data)} chunks selected'")
        .mark_text(align="left", baseline="top", x=0, y=0, fontWeight="bold", fontSize=12)
        .encode(text="line:N")
        .properties(width=width, height=16, view=NO_FRAME)
    )
    table = (
        base.transform_window(row="row_number()")
        .transform_filter(alt.datum.row <= rows)
        .transform_calculate(line="datum.subject + ': ' + datum.snippet")
        .mark_text(align="left", x=0, fontSize=11, limit=int(width * TEXT_FIT))
        .encode(
            y=alt.Y("row:O", axis=None),
            text="line:N",
            # Same scale as the panels, so the legends merge (legend=None here would hide theirs).
            color=alt.Color("subject:N", scale=subject_colors(data["subject"]), title="Subject"),
        )
        .properties(width=width, height=15 * rows, view=NO_FRAME)
    )
    return interactive_only(alt.vconcat(count, table, spacing=4), "selected_chunks")


def projection_grid(
    panels: Sequence[tuple[pd.DataFrame, np.ndarray, str]],
    width: int = 260,
    height: int = 250,
    table_rows: int = 8,
) -> alt.VConcatChart:
    """Side-by-side projections (one per model) of the same chunks, linked, with a table below.

    Each panel has its own PCA axes. Dragging a rectangle in any panel selects those chunks
    in every panel (the rest turn grey) and lists them in the table; clicking a subject in
    the legend keeps only that subject (shift-click adds more; double-click a panel to clear).
    """
    data = linked_frame(panels)
    brush = alt.selection_interval(name="brush", resolve="global")
    pick = alt.selection_point(name="legend_subject", fields=["subject"], bind="legend")
    selected = brush & pick
    views = [
        projection_scatter(
            data,
            axis_title(1, shares[0]),
            axis_title(2, shares[1]),
            title=name,
            width=width,
            height=height,
            x=f"x{i}",
            y=f"y{i}",
            selected=selected,
        )
        for i, (_, shares, name) in enumerate(panels)
    ]
    # Parameters added to the row reach every panel as one linked selection. Altair warns
    # that it merged identical parameters across panels: here the merge is the point.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Automatically deduplicated selection parameter")
        grid = alt.hconcat(*views).add_params(brush, pick)
    grid = grid.resolve_scale(x="independent", y="independent")
    table_width = (width + 40) * len(panels)
    return alt.vconcat(grid, selected_chunks_table(data, selected, table_rows, table_width))


def side_view_grid(
    views: dict[str, np.ndarray],
    subjects: Sequence[str],
    texts: Sequence[str],
    width: int = 220,
    height: int = 220,
) -> alt.HConcatChart:
    """Each model's unit vectors seen from the side (:func:`helpers.geometry.side_view`).

    Every panel has the same scales, the unit circle and the origin (a cross), so a cone
    reads as a tight group far from the origin and an isotropic cloud as a blob around it.
    """
    angles = np.linspace(0, 2 * np.pi, 121)
    circle = pd.DataFrame({"x": np.cos(angles), "y": np.sin(angles), "order": range(121)})
    scale = alt.Scale(domain=[-1.05, 1.05], nice=False, zero=False)
    panels = []
    for name, coords in views.items():
        frame = pd.DataFrame(
            {
                "x": coords[:, 0],
                "y": coords[:, 1],
                "subject": list(subjects),
                "snippet": [snippet(t) for t in texts],
            }
        )
        colors = subject_colors(frame["subject"])
        points = (
            alt.Chart(frame)
            .mark_point(opacity=0.8)
            .encode(
                x=alt.X("x:Q", scale=scale, title="along the mean direction"),
                y=alt.Y("y:Q", scale=scale, title="across it (first PC)"),
                color=alt.Color("subject:N", scale=colors, title="Subject"),
                shape=alt.Shape(
                    "subject:N", scale=alt.Scale(domain=colors.domain), title="Subject"
                ),
                tooltip=[alt.Tooltip("subject:N"), alt.Tooltip("snippet:N", title="chunk")],
            )
        )
        ring = (
            alt.Chart(circle)
            .mark_line(color="#999999", strokeDash=[3, 3])
            .encode(x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale), order="order:Q")
        )
        origin = (
            alt.Chart(pd.DataFrame({"x": [0.0], "y": [0.0]}))
            .mark_point(shape="cross", size=120, color="black", filled=True)
            .encode(x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale))
        )
        panels.append(
            alt.layer(ring, origin, points, title=name).properties(width=width, height=height)
        )
    return alt.hconcat(*panels)


def alignment_uniformity_plane(
    paths: pd.DataFrame, points: pd.DataFrame, width: int = 460, height: int = 320
) -> alt.LayerChart:
    """Models in the alignment-uniformity plane (Wang & Isola, 2020), training runs as paths.

    ``paths`` has columns ``run``, ``step``, ``alignment``, ``uniformity`` (one row per
    evaluation of a training run); ``points`` has ``model``, ``alignment``, ``uniformity``.
    Lower is better on both axes, so the best corner is the bottom left.
    """
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7f7f7f"]
    x = alt.X(
        "alignment:Q",
        title="alignment (lower = same-subject pairs closer)",
        scale=alt.Scale(zero=False),
    )
    y = alt.Y(
        "uniformity:Q", title="uniformity (lower = more spread out)", scale=alt.Scale(zero=False)
    )
    lines = (
        alt.Chart(paths)
        .mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=1.5)
        .encode(
            x=x,
            y=y,
            order="step:Q",
            color=alt.Color("run:N", title="training run", scale=alt.Scale(range=palette)),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("step:Q"),
                alt.Tooltip("alignment:Q", format=".3f"),
                alt.Tooltip("uniformity:Q", format=".3f"),
            ],
        )
    )
    # Alternate labels above and below, in order of alignment, so close points stay legible.
    points = points.sort_values("alignment").assign(below=[i % 2 for i in range(len(points))])
    marks = alt.Chart(points).encode(x=x, y=y)
    dots = marks.mark_point(size=90, filled=True, color="black").encode(
        tooltip=[
            alt.Tooltip("model:N"),
            alt.Tooltip("alignment:Q", format=".3f"),
            alt.Tooltip("uniformity:Q", format=".3f"),
        ]
    )
    above = marks.transform_filter("datum.below == 0").mark_text(align="left", dx=7, dy=-8)
    below = marks.transform_filter("datum.below == 1").mark_text(align="left", dx=7, dy=10)
    labels = [layer.encode(text="model:N") for layer in (above, below)]
    return alt.layer(lines, dots, *labels).properties(width=width, height=height)


def neighbour_explorer(
    queries: pd.DataFrame, neighbours: pd.DataFrame, default: int, width: int = 560
) -> alt.VConcatChart:
    """Pick a held-out chunk from a menu; see its nearest training chunks under each model.

    ``queries``: columns ``query`` (id), ``subject``, ``text``. ``neighbours``
    (:func:`helpers.analysis.neighbour_lists`): columns ``query``, ``model``, ``rank``
    (1 = nearest), ``subject``, ``text``, ``cosine``, ``same`` (1 where the neighbour shares
    the query's subject). ``default`` is the id shown first (and in the static picture).
    """
    queries = queries.assign(snippet=[snippet(t, 20) for t in queries["text"]])
    neighbours = neighbours.drop(columns="text").assign(
        snippet=[snippet(t, 20) for t in neighbours["text"]]
    )
    options = queries["query"].tolist()
    labels = [f"{s}: {snippet(t, 9)}" for s, t in zip(queries["subject"], queries["text"])]
    query = alt.param(
        name="query",
        value=default,
        bind=alt.binding_select(options=options, labels=labels, name="Held-out chunk: "),
    )
    colors = subject_colors(pd.concat([queries["subject"], neighbours["subject"]]))
    chosen = (
        alt.Chart(queries.drop(columns="text"))
        .transform_filter(alt.datum.query == query)
        .transform_calculate(line="'Chosen (' + datum.subject + '): ' + datum.snippet")
        .mark_text(
            align="left",
            baseline="top",
            x=0,
            y=0,
            fontSize=12,
            fontWeight="bold",
            limit=int(width * TEXT_FIT),
        )
        .encode(text="line:N")
        .properties(width=width, height=18, view=NO_FRAME)
    )
    blocks = [chosen]
    for model in neighbours["model"].unique():
        # Expressions get the model's name as a quoted literal (vega_string), never raw.
        rows = alt.Chart(neighbours).transform_filter(
            f"datum.query === query && datum.model === {vega_string(model)}"
        )
        k = int(neighbours["rank"].max())
        summary = (
            rows.transform_aggregate(same="sum(same)")
            .transform_calculate(
                line=f"{vega_string(f'{model}: ')} + datum.same + ' of {k} share its subject'"
            )
            .mark_text(align="left", baseline="top", x=0, y=0, fontSize=12, fontWeight="bold")
            .encode(text="line:N")
            .properties(width=width, height=16, view=NO_FRAME)
        )
        listed = (
            rows.transform_calculate(
                line="datum.rank + '.  ' + format(datum.cosine, '.2f') + '  ' + datum.subject"
                " + ': ' + datum.snippet"
            )
            .mark_text(align="left", x=0, fontSize=11, limit=int(width * TEXT_FIT))
            .encode(
                y=alt.Y("rank:O", axis=None),
                text="line:N",
                color=alt.Color("subject:N", scale=colors, legend=None),
            )
            .properties(width=width, height=16 * k, view=NO_FRAME)
        )
        blocks += [summary, listed]
    return alt.vconcat(*blocks, spacing=6).add_params(query)


def cosine_distributions(
    frame: pd.DataFrame, width: int = 260, height: int = 180
) -> alt.FacetChart:
    """Histograms of pairwise cosine similarity, same-subject vs different-subject pairs, one panel per model.

    ``frame`` has columns ``cosine``, ``pair`` ("same subject"/"different subjects") and ``model``.
    """
    return (
        alt.Chart(frame)
        .transform_bin("bin", "cosine", bin=alt.Bin(extent=[-0.4, 1.0], step=0.02))
        .transform_aggregate(count="count()", groupby=["bin", "pair", "model"])
        .transform_joinaggregate(total="sum(count)", groupby=["pair", "model"])
        .transform_calculate(share="datum.count / datum.total")
        .mark_area(opacity=0.55, interpolate="step")
        .encode(
            x=alt.X(
                "bin:Q", title="cosine similarity of a pair", scale=alt.Scale(domain=[-0.4, 1.0])
            ),
            y=alt.Y("share:Q", title="share of pairs", stack=None, axis=alt.Axis(format="%")),
            color=alt.Color(
                "pair:N",
                title="Pair",
                scale=alt.Scale(
                    domain=["same subject", "different subjects"], range=["#009E73", "#7f7f7f"]
                ),
            ),
            tooltip=[
                alt.Tooltip("pair:N"),
                alt.Tooltip("bin:Q", title="cosine", format=".2f"),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
        .properties(width=width, height=height)
        .facet(column=alt.Column("model:N", title=None, sort=None))
        .resolve_scale(y="independent")
    )


def pair_cosine_frame(
    X: np.ndarray, subjects: Sequence[str], model: str, max_pairs: int = 20000, seed: int = 0
) -> pd.DataFrame:
    """Cosines of (a sample of) all pairs, labelled same/different subject: input for :func:`cosine_distributions`."""
    U = np.asarray(X, dtype=np.float64)
    U = U / np.linalg.norm(U, axis=1, keepdims=True)
    i, j = np.triu_indices(len(U), k=1)
    if len(i) > max_pairs:
        pick = np.random.default_rng(seed).choice(len(i), size=max_pairs, replace=False)
        i, j = i[pick], j[pick]
    subjects = np.asarray(subjects)
    same = subjects[i] == subjects[j]
    return pd.DataFrame(
        {
            "cosine": np.einsum("ij,ij->i", U[i], U[j]),
            "pair": np.where(same, "same subject", "different subjects"),
            "model": model,
        }
    )


def metric_bars(
    frame: pd.DataFrame,
    metric_titles: dict[str, str],
    width: int = 150,
    height: int = 110,
    columns: int = 4,
) -> alt.FacetChart:
    """One small bar chart per metric, bars per model. ``frame``: columns ``model``, ``metric``, ``value``."""
    frame = frame.assign(title=frame["metric"].map(metric_titles))
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title=None, sort=None),
            x=alt.X("value:Q", title=None),
            color=alt.Color(
                "model:N",
                legend=None,
                scale=alt.Scale(range=["#7f7f7f", "#0072B2", "#D55E00", "#009E73", "#CC79A7"]),
            ),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("title:N", title="metric"),
                alt.Tooltip("value:Q", format=".3f"),
            ],
        )
        .properties(width=width, height=height)
        .facet(
            facet=alt.Facet("title:N", title=None, sort=list(metric_titles.values())),
            columns=columns,
        )
        .resolve_scale(x="independent")
    )


def line_chart(
    frame: pd.DataFrame,
    x: str,
    y: str,
    color: str | None = None,
    x_title: str = "",
    y_title: str = "",
    title: str = "",
    width: int = 300,
    height: int = 200,
    y_zero: bool = True,
    log_y: bool = False,
) -> alt.Chart:
    """Lines with points, e.g. a metric over training steps or over layers (``log_y``: log scale)."""
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=y_zero)
    enc = {
        "x": alt.X(f"{x}:Q", title=x_title or x),
        "y": alt.Y(f"{y}:Q", title=y_title or y, scale=y_scale),
        "tooltip": [alt.Tooltip(f"{x}:Q"), alt.Tooltip(f"{y}:Q", format=".3f")],
    }
    if color:
        enc["color"] = alt.Color(
            f"{color}:N",
            title=None,
            sort=None,
            scale=alt.Scale(range=["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#7f7f7f"]),
        )
        enc["tooltip"] = [alt.Tooltip(f"{color}:N"), *enc["tooltip"]]
    return (
        alt.Chart(frame, title=title)
        .mark_line(point=True)
        .encode(**enc)
        .properties(width=width, height=height)
    )


def confusion_heatmap(
    confusion: np.ndarray, labels: Sequence[str], title: str = "", size: int = 170
) -> alt.LayerChart:
    """A confusion matrix (rows: true subject, columns: predicted) with counts printed in the cells."""
    rows = [
        {"true": t, "predicted": p, "count": int(confusion[i, j])}
        for i, t in enumerate(labels)
        for j, p in enumerate(labels)
    ]
    frame = pd.DataFrame(rows)
    base = alt.Chart(frame, title=title).encode(
        x=alt.X("predicted:N", title="predicted", sort=list(labels)),
        y=alt.Y("true:N", title="true subject", sort=list(labels)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None),
        tooltip=["true:N", "predicted:N", "count:Q"],
    )
    threshold = max(1, frame["count"].max() / 2)
    text = base.mark_text(fontSize=12).encode(
        text="count:Q",
        color=alt.condition(alt.datum.count > threshold, alt.value("white"), alt.value("#222")),
    )
    return (cells + text).properties(width=size, height=size)
