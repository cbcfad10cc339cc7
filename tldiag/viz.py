"""Pure plotting helpers: data in, plotly Figure (or PIL image) out. No Streamlit here."""
from __future__ import annotations

import html

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

if TYPE_CHECKING:
    from .metrics import ClassShift, MMDResult, ShiftReport

SOURCE_COLOR = "#1f77b4"
TARGET_COLOR = "#ff7f0e"


def plot_text(text: object) -> str:
    """``text`` as plotly shows it as typed: plotly reads a subset of HTML in every label, legend, title and hover
    (``<b>``, ``<br>``, ``<a href>``...), so a user's class or file name has its ``&``, ``<`` and ``>`` written as
    entities, which plotly decodes back to the characters."""
    return html.escape(str(text), quote=False)


def class_counts_figure(source: Mapping[str, int], target: Mapping[str, int]) -> go.Figure:
    """Grouped bars: images per class in the source and the target."""
    classes = list(dict.fromkeys([*source, *target]))
    shown = [plot_text(c) for c in classes]
    fig = go.Figure([
        go.Bar(name="source", x=shown, y=[source.get(c, 0) for c in classes], marker_color=SOURCE_COLOR),
        go.Bar(name="target", x=shown, y=[target.get(c, 0) for c in classes], marker_color=TARGET_COLOR),
    ])
    fig.update_layout(barmode="group", height=260, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_title="class", yaxis_title="images", legend=dict(orientation="h", y=1.15),
                      xaxis=dict(type="category"))
    return fig


def image_grid(images: Sequence[Image.Image | None], *, ncols: int = 10, cell: int = 64,
               background: str = "white") -> Image.Image:
    """Tile images into one picture, each scaled to fit a ``cell`` x ``cell`` square; None is a blank cell."""
    if not images:
        return Image.new("RGB", (cell, cell), background)
    nrows = (len(images) + ncols - 1) // ncols
    grid = Image.new("RGB", (ncols * cell, nrows * cell), background)
    for k, img in enumerate(images):
        if img is None:
            continue
        scale = cell / max(img.size)
        resample = Image.NEAREST if scale >= 2 else Image.BILINEAR
        thumb = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), resample)
        x, y = (k % ncols) * cell + (cell - thumb.size[0]) // 2, (k // ncols) * cell + (cell - thumb.size[1]) // 2
        grid.paste(thumb, (x, y))
    return grid


LIGHT_COLORS = {"green": "#2ca02c", "amber": "#ff9f1c", "red": "#d62728"}


def null_histogram(result: "MMDResult") -> go.Figure:
    """The permutation null of MMD² with the observed statistic as a vertical line (or, when it lies far
    beyond every permutation, an arrow at the edge, so that the null stays readable)."""
    null = np.asarray(result.null)
    fig = go.Figure(go.Histogram(x=null, nbinsx=40, marker_color="#9aa5b1", name="permutations"))
    label = f"observed MMD² = {result.mmd2:.4g}, p = {result.p_value:.3g}"
    lo, hi = (float(null.min()), float(null.max())) if len(null) else (result.mmd2, result.mmd2)
    span = max(hi - lo, 1e-12)
    if result.mmd2 > hi + 2 * span:  # far off the chart: keep the null visible, point to the statistic
        edge = hi + 0.15 * span
        fig.update_xaxes(range=[lo - 0.05 * span, edge + 0.05 * span])
        fig.add_annotation(x=edge, y=0.5, yref="paper", text=f"{label} →<br>{(result.mmd2 - hi) / span:.0f}× the "
                           "null's range beyond its largest value", showarrow=False, xanchor="right",
                           font=dict(color=TARGET_COLOR))
    else:
        fig.add_vline(x=result.mmd2, line_color=TARGET_COLOR, line_width=3, annotation_text=label,
                      annotation_position="top left" if len(null) and result.mmd2 > np.median(null) else "top right")
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      xaxis_title=f"MMD² of {result.n_permutations} random re-splits of the pooled images",
                      yaxis_title="permutations")
    return fig


def divergence_by_layer(report: "ShiftReport | Mapping") -> go.Figure:
    """MMD (seed scale, with its bootstrap interval and the thresholds) and PAD for each tap, shallow to deep.
    ``report``: a :class:`~tldiag.metrics.ShiftReport` or its ``to_dict()`` (a stored summary)."""
    from plotly.subplots import make_subplots

    d = report.to_dict() if hasattr(report, "to_dict") else report
    rows = d["layers"]
    layers = [r["layer"] for r in rows]
    mmd = np.array([r["mmd"] for r in rows], dtype=float)
    ci = np.array([[r["mmd_ci_low"], r["mmd_ci_high"]] for r in rows], dtype=float)
    pad = [r["pad"] for r in rows]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("MMD (seed scale) with bootstrap interval",
                                        "proxy A-distance (0 same · 2 separable)"))
    fig.add_trace(go.Scatter(
        x=layers, y=mmd, mode="lines+markers", name="MMD", line_color=TARGET_COLOR,
        marker=dict(size=10, color=[LIGHT_COLORS[r["light"]] for r in rows]),
        error_y=dict(type="data", symmetric=False, array=np.nan_to_num(ci[:, 1] - mmd),
                     arrayminus=np.nan_to_num(mmd - ci[:, 0])),
        customdata=[[r["p_value"], r["roc_auc"]] for r in rows],
        hovertemplate="%{x}<br>MMD %{y:.3f}<br>p = %{customdata[0]:.3g}<br>AUC %{customdata[1]:.3f}<extra></extra>"),
        row=1, col=1)
    for value, colour, label in ((d["thresholds"]["mmd_green"], "green", "green below"),
                                 (d["thresholds"]["mmd_red"], "red", "red above")):
        fig.add_hline(y=value, line_dash="dash", line_color=LIGHT_COLORS[colour], row=1, col=1,
                      annotation_text=f"{label} {value:g}", annotation_position="top left")
    fig.add_trace(go.Scatter(
        x=layers, y=pad, mode="lines+markers", name="PAD", line_color=SOURCE_COLOR,
        error_y=dict(type="data", array=[4 * r["domain_classifier"]["balanced_accuracy_std"] for r in rows]),
        hovertemplate="%{x}<br>PAD %{y:.2f}<extra></extra>"), row=2, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[min(-0.1, min(pad) - 0.1), 2.1], row=2, col=1)
    fig.update_xaxes(type="category", title_text="layer (shallow → deep)", row=2, col=1)
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=40, b=10), showlegend=False)
    return fig


def class_shift_figure(classes: Sequence["ClassShift"]) -> go.Figure:
    """Per-class MMD (seed scale), largest first, coloured by traffic light."""
    fig = go.Figure(go.Bar(
        x=[c.mmd for c in classes], y=[plot_text(c.name) for c in classes], orientation="h",
        marker_color=[LIGHT_COLORS[c.light.colour] for c in classes],
        customdata=[[c.p_value, c.n_source, c.n_target] for c in classes],
        hovertemplate="class %{y}<br>MMD %{x:.3f}<br>p = %{customdata[0]:.3g}<br>"
                      "%{customdata[1]} source, %{customdata[2]} target images<extra></extra>"))
    fig.update_layout(height=max(200, 28 * len(classes) + 60), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title="MMD between the class's source and target images (seed scale)",
                      yaxis=dict(type="category", autorange="reversed"))
    return fig


# ---------------------------------------------------------------- embedding explorer
DOMAIN_SYMBOLS = {"source": "circle", "target": "diamond"}
COLOR_MODES = ("domain", "class", "p_target")
_QUALITATIVE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#843c39", "#7b4173",
                "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476"]
_MAX_CLASS_LEGEND = len(_QUALITATIVE)


def class_palette(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per class name (sorted order; grey for unlabelled)."""
    named = sorted({n for n in names if n})
    colours = {n: _QUALITATIVE[k % len(_QUALITATIVE)] for k, n in enumerate(named)}
    colours[""] = "#bbbbbb"
    return colours


def _marker_size(n: int) -> float:
    return float(np.clip(9 - 1.3 * np.log10(max(n, 1)), 3, 7))


def projection_figure(projection, *, color: str = "domain", p_target: np.ndarray | None = None,
                      height: int = 620, title: str | None = None) -> go.Figure:
    """WebGL scatter of a :class:`~tldiag.projection.Projection`: symbol by domain (source ●, target ◆),
    colour by ``"domain"``, ``"class"`` or ``"p_target"`` (the domain classifier's p(target | x), aligned
    with the points). ``customdata[0]`` of every point is its index in the projection (what a selection
    returns), so one figure serves hover, selection and the thumbnail sprite of the HTML export."""
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {', '.join(COLOR_MODES)}, got {color!r}.")
    if color == "p_target" and (p_target is None or len(p_target) != len(projection.coords)):
        raise ValueError("color='p_target' needs p_target with one probability per point.")
    xy, labels = projection.coords, projection.labels
    domains = np.asarray(["source", "target"])[projection.domain]
    index = np.arange(len(xy))
    size = _marker_size(len(xy))
    p = p_target if p_target is not None else np.full(len(xy), np.nan)
    hover = ("<b>%{customdata[1]}</b> image %{customdata[2]}<br>class %{customdata[5]}"
             + ("<br>p(target | x) = %{customdata[4]:.2f}" if p_target is not None else "") + "<extra></extra>")

    # customdata keeps its types (an object array): numbers stay numbers for the hover format and selection;
    # the class as typed (for the HTML export's hover caption, set as text) and as plotly text (the hover label)
    custom = np.empty((len(xy), 6), dtype=object)
    custom[:, 0], custom[:, 1], custom[:, 2] = index, domains, projection.rows
    custom[:, 3], custom[:, 4] = np.where(labels == "", "(unlabelled)", labels), p
    custom[:, 5] = [plot_text(c) for c in custom[:, 3]]

    def trace(mask: np.ndarray, name: str, domain: str, marker: dict, **kw) -> go.Scattergl:
        return go.Scattergl(
            x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=name,
            marker=dict(symbol=DOMAIN_SYMBOLS[domain], size=size, line=dict(width=0), **marker),
            customdata=custom[mask].tolist(), hovertemplate=hover, **kw)

    traces = []
    classes = sorted({str(x) for x in labels})
    if color == "class" and len(classes) <= _MAX_CLASS_LEGEND:
        palette = class_palette(classes)
        for c in classes:
            for domain in ("source", "target"):
                mask = (labels == c) & (domains == domain)
                if mask.any():
                    traces.append(trace(mask, plot_text(c or "(unlabelled)"), domain,
                                        dict(color=palette[c], opacity=0.75), legendgroup=c,
                                        showlegend=domain == "source" or not ((labels == c) & (domains == "source")).any()))
    else:
        for domain in ("source", "target"):
            mask = domains == domain
            if not mask.any():
                continue
            if color == "domain":
                marker = dict(color=SOURCE_COLOR if domain == "source" else TARGET_COLOR, opacity=0.6)
            elif color == "class":
                codes = {c: k for k, c in enumerate(classes)}
                marker = dict(color=[codes[c] for c in labels[mask]], colorscale="Turbo", opacity=0.75)
            else:
                marker = dict(color=p[mask], colorscale="RdBu_r", cmin=0, cmax=1, opacity=0.8,
                              colorbar=dict(title="p(target | x)", thickness=12) if domain == "source" else None,
                              showscale=domain == "source")
            traces.append(trace(mask, domain, domain, marker))
    fig = go.Figure(traces)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=60 if title else 10, b=10), dragmode="select",
                      legend=dict(itemsizing="constant", title="class · ● source ◆ target" if color == "class" else None),
                      title=dict(text=plot_text(title), font=dict(size=13), x=0.01, y=0.98) if title else None,
                      xaxis=dict(showticklabels=False, title=None, zeroline=False),
                      yaxis=dict(showticklabels=False, title=None, zeroline=False, scaleanchor="x", scaleratio=1),
                      plot_bgcolor="white")
    return fig


def selected_indices(selection: Mapping | None) -> np.ndarray:
    """Projection indices of the points in a Streamlit plotly selection (``event.selection``)."""
    if not selection:
        return np.zeros(0, dtype=np.int64)
    points = selection.get("points", []) if hasattr(selection, "get") else []
    found = [int(float(pt["customdata"][0])) for pt in points if pt.get("customdata")]
    return np.unique(np.asarray(found, dtype=np.int64))


def class_small_multiples(projection, *, max_classes: int = 20, ncols: int = 5, backdrop: int = 2000) -> go.Figure:
    """One panel per class (the most frequent ``max_classes``), source and target of that class on the
    same axes as the whole picture, and (at most ``backdrop`` points of) everything else as a faint
    backdrop, the same in every panel."""
    from plotly.subplots import make_subplots

    xy, labels = projection.coords, projection.labels
    names, counts = np.unique(labels[labels != ""], return_counts=True)
    names = [str(n) for n in names[np.argsort(-counts, kind="stable")][:max_classes]]
    names.sort()
    if not names:
        raise ValueError("No labelled points: per-class panels need class labels.")
    rows = (len(names) + ncols - 1) // ncols
    fig = make_subplots(rows=rows, cols=min(ncols, len(names)), subplot_titles=[plot_text(n) for n in names],
                        horizontal_spacing=0.02,
                        vertical_spacing=0.06)
    size = max(2.0, _marker_size(len(xy)) - 2)
    back = xy[np.sort(np.random.default_rng(0).choice(len(xy), backdrop, replace=False))] if len(xy) > backdrop else xy
    for k, name in enumerate(names):
        r, c = k // ncols + 1, k % ncols + 1
        fig.add_trace(go.Scattergl(x=back[:, 0], y=back[:, 1], mode="markers", hoverinfo="skip", showlegend=False,
                                   marker=dict(color="#e6e6e6", size=size - 1)), row=r, col=c)
        for code, domain, colour in ((0, "source", SOURCE_COLOR), (1, "target", TARGET_COLOR)):
            mask = (labels == name) & (projection.domain == code)
            fig.add_trace(go.Scattergl(x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=domain,
                                       legendgroup=domain, showlegend=k == 0, hoverinfo="skip",
                                       marker=dict(color=colour, size=size, symbol=DOMAIN_SYMBOLS[domain],
                                                   opacity=0.7)), row=r, col=c)
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_layout(height=190 * rows + 60, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
                      legend=dict(orientation="h", y=1.06 + 0.02 * (rows == 1), itemsizing="constant"))
    return fig


def class_mixing_figure(per_class: Sequence) -> go.Figure:
    """Per-class k-NN mixing score (lowest first): 1 = the class's source and target images interleave,
    0 = they form separate islands."""
    fig = go.Figure(go.Bar(
        x=[c.score for c in per_class], y=[plot_text(c.name) for c in per_class], orientation="h",
        marker_color=[LIGHT_COLORS["red"] if c.score < 0.3 else LIGHT_COLORS["amber"] if c.score < 0.7
                      else LIGHT_COLORS["green"] for c in per_class],
        customdata=[[c.observed_share, c.expected_share, c.n_source, c.n_target] for c in per_class],
        hovertemplate="class %{y}<br>mixing %{x:.2f}<br>source share of neighbours %{customdata[0]:.2f} "
                      "(expected %{customdata[1]:.2f})<br>%{customdata[2]} source, %{customdata[3]} target"
                      "<extra></extra>"))
    fig.add_vline(x=1.0, line_dash="dot", line_color="#888", annotation_text="perfect mixing",
                  annotation_position="top")
    fig.update_layout(height=max(200, 26 * len(per_class) + 70), margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title="k-NN mixing within the class (0 = islands · 1 = interleaved)",
                                 range=[0, max(1.1, max((c.score for c in per_class), default=1) + 0.05)]),
                      yaxis=dict(type="category", autorange="reversed"))
    return fig


_HOVER_JS = """
(function() {
  var gd = document.getElementById('{plot_id}');
  var tip = document.createElement('div');
  tip.id = 'tldiag-thumbnail';
  tip.style.cssText = 'position:fixed;pointer-events:none;display:none;z-index:1000;background:#fff;' +
    'border:1px solid #999;border-radius:4px;padding:4px;font:12px sans-serif;box-shadow:0 2px 6px rgba(0,0,0,.25)';
  var img = document.createElement('div');
  img.style.cssText = 'width:__SHOW__px;height:__SHOW__px;background-repeat:no-repeat;' +
    'background-image:url(data:image/__FMT__;base64,__SPRITE__);background-size:__BGW__px __BGH__px;image-rendering:pixelated';
  var cap = document.createElement('div');
  tip.appendChild(img); tip.appendChild(cap); document.body.appendChild(tip);
  gd.on('plotly_hover', function(ev) {
    var p = ev.points[0], k = Math.round(+p.customdata[0]);
    img.style.backgroundPosition = (-(k % __NCOLS__) * __SHOW__) + 'px ' + (-Math.floor(k / __NCOLS__) * __SHOW__) + 'px';
    cap.textContent = p.customdata[1] + ' #' + p.customdata[2] + ' · ' + p.customdata[3];
    var e = ev.event || {clientX: 0, clientY: 0};
    tip.style.left = Math.min(e.clientX + 16, window.innerWidth - __SHOW__ - 24) + 'px';
    tip.style.top = Math.min(e.clientY + 16, window.innerHeight - __SHOW__ - 40) + 'px';
    tip.style.display = 'block';
  });
  gd.on('plotly_unhover', function() { tip.style.display = 'none'; });
})();
"""


def data_uri(image: Image.Image, *, fmt: str = "PNG") -> str:
    """``image`` as a ``data:`` URI: it travels inside the page that shows it, so no separate image URL exists that
    a link could reach without that page (the dashboard's sign-in guards pages, not Streamlit's media URLs)."""
    import base64
    import io

    buf = io.BytesIO()
    image.convert("RGB").save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def thumbnail_sprite(images: Sequence[Image.Image | None], *, cell: int = 40) -> tuple[Image.Image, int]:
    """All thumbnails tiled in one picture (cell ``k`` at column ``k % ncols``, row ``k // ncols``) and ncols."""
    ncols = max(1, int(np.ceil(np.sqrt(max(len(images), 1)))))
    return image_grid(images, ncols=ncols, cell=cell), ncols


def figure_html(fig: go.Figure, *, sprite: tuple[Image.Image, int] | None = None, cell: int = 40,
                show: int = 96, title: str = "tldiag embedding explorer") -> str:
    """A self-contained HTML page of ``fig`` (plotly.js inlined: it opens offline). With a thumbnail
    ``sprite`` from :func:`thumbnail_sprite` (indexed by ``customdata[0]``), hovering a point shows its image."""
    import base64
    import io

    script = None
    if sprite is not None:
        image, ncols = sprite
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=85)
        scale = show / cell
        script = (_HOVER_JS.replace("__SPRITE__", base64.b64encode(buf.getvalue()).decode())
                  .replace("__FMT__", "jpeg").replace("__SHOW__", str(show)).replace("__NCOLS__", str(ncols))
                  .replace("__BGW__", str(round(image.size[0] * scale))).replace("__BGH__", str(round(image.size[1] * scale))))
    html = fig.to_html(include_plotlyjs=True, full_html=True, post_script=script, config={"displaylogo": False})
    return html.replace("<head>", f"<head><title>{title}</title>", 1)


# ----------------------------------------------------------------------------- probes and leaderboard
# curve name -> (colour, legend label, line width, dash)
CURVE_STYLES = {"target": (TARGET_COLOR, "target (pretrained)", 2.5, "solid"),
                "source": (SOURCE_COLOR, "source (pretrained)", 1.5, "solid"),
                "random init": ("#7f7f7f", "target (random init)", 1.5, "dot")}


def probe_curves_figure(report) -> go.Figure:
    """Probe accuracy against depth (taps shallow to deep, categorical) for the target, the source and the
    random-init floor: the mean over splits with a ± 1 standard-error band; the recommended cut is starred."""
    fig = go.Figure()
    taps = [t.tap for t in report.target.taps]
    for curve in report.curves:
        colour, label, width, dash = CURVE_STYLES.get(curve.name, ("#2ca02c", curve.name, 1.5, "solid"))
        x = [t.tap for t in curve.taps]
        mean = np.array([t.mean for t in curve.taps])
        se = np.array([t.se for t in curve.taps])
        fig.add_trace(go.Scatter(x=x + x[::-1], y=list(mean + se) + list((mean - se)[::-1]), fill="toself",
                                 fillcolor=colour, opacity=0.18, line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=curve.name))
        fig.add_trace(go.Scatter(
            x=x, y=mean, mode="lines+markers", name=label, line=dict(color=colour, width=width, dash=dash),
            legendgroup=curve.name,
            customdata=[[t.se, t.f1_mean, t.depth, t.dim, "/".join(f"{c:g}" for c in t.C)] for t in curve.taps],
            hovertemplate=f"{label}<br>%{{x}} (depth %{{customdata[2]:.2f}}, %{{customdata[3]}}-d)<br>accuracy "
                          "%{y:.3f} ± %{customdata[0]:.3f}<br>macro-F1 %{customdata[1]:.3f}<br>C %{customdata[4]}"
                          "<extra></extra>"))
    rec = report.target.recommended
    fig.add_trace(go.Scatter(x=[rec.tap], y=[rec.mean], mode="markers", name="recommended cut",
                             marker=dict(symbol="star", size=18, color=TARGET_COLOR, line=dict(color="black", width=1)),
                             hovertemplate="recommended cut: %{x}<br>accuracy %{y:.3f}<extra></extra>"))
    fig.add_hline(y=report.target.chance, line_dash="dash", line_color="#999",
                  annotation_text=f"majority class {report.target.chance:.2f}", annotation_position="bottom right")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=taps, title_text="tap (shallow → deep)")
    fig.update_yaxes(title_text="test accuracy of a linear probe", range=[0, 1.02])
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12))
    return fig


def tap_scores_figure(scores: Sequence[Mapping]) -> go.Figure:
    """LogME, H-score and kNN accuracy of each target tap, one small panel each (their scales differ)."""
    from plotly.subplots import make_subplots

    names = (("logme", "LogME (per image, nats)"), ("h_score", "H-score"), ("knn_accuracy", "kNN accuracy"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in names], horizontal_spacing=0.07)
    taps = [s["tap"] for s in scores]
    for i, (key, title) in enumerate(names, start=1):
        fig.add_trace(go.Scatter(x=taps, y=[s[key] for s in scores], mode="lines+markers", name=title,
                                 line_color=TARGET_COLOR, hovertemplate=f"%{{x}}<br>{title} %{{y:.4g}}<extra></extra>"),
                      row=1, col=i)
        fig.update_xaxes(type="category", tickangle=-45, row=1, col=i)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), showlegend=False)
    return fig


def kendall_heatmap(kendall: Mapping[str, Mapping[str, float | None]], labels: Mapping[str, str]) -> go.Figure:
    """Kendall's tau between the leaderboard's score columns (blank where it is undefined)."""
    keys = list(labels)
    z = [[np.nan if kendall[a].get(b) is None else kendall[a][b] for b in keys] for a in keys]
    text = [["—" if np.isnan(v) else f"{v:+.2f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=[labels[k] for k in keys], y=[labels[k] for k in keys], zmin=-1, zmax=1,
                               colorscale="RdBu", text=text, texttemplate="%{text}",
                               hovertemplate="%{y} vs %{x}: τ = %{z:.2f}<extra></extra>",
                               colorbar=dict(title="τ")))
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(autorange="reversed"))
    return fig


def training_curves_figure(history: Sequence[Mapping], *, best_epoch: int | None = None) -> go.Figure:
    """Loss and accuracy per epoch, train and validation side by side; a dotted line where the head-only phase
    ends (freeze-then-unfreeze) and a star at the best epoch."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "accuracy"], horizontal_spacing=0.08)
    epochs = [r["epoch"] for r in history]
    for col, key in ((1, "loss"), (2, "accuracy")):
        for part, color, dash in (("train", SOURCE_COLOR, "dot"), ("val", TARGET_COLOR, "solid")):
            fig.add_trace(go.Scatter(x=epochs, y=[r[f"{part}_{key}"] for r in history], mode="lines+markers",
                                     name=part if part == "train" else "validation", legendgroup=part,
                                     showlegend=col == 1, line=dict(color=color, dash=dash),
                                     hovertemplate=f"epoch %{{x}}<br>{part} {key} %{{y:.4f}}<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(title_text="epoch", dtick=1 if len(epochs) <= 20 else None, row=1, col=col)
    switch = next((r["epoch"] for r in history if r.get("phase") == "fine-tune"), None)
    if switch and history and history[0].get("phase") == "head only":
        for col in (1, 2):
            fig.add_vline(x=switch - 0.5, line_dash="dot", line_color="gray", row=1, col=col)
        fig.add_annotation(x=switch - 0.5, y=1.0, yref="y2 domain", xref="x2", text="unfreeze", showarrow=False,
                           yanchor="bottom", font=dict(size=10, color="gray"))
    if best_epoch:
        best = next((r for r in history if r["epoch"] == best_epoch), None)
        if best:
            fig.add_trace(go.Scatter(x=[best_epoch], y=[best["val_accuracy"]], mode="markers", name="best weights",
                                     marker=dict(symbol="star", size=14, color=TARGET_COLOR),
                                     hovertemplate="best epoch %{x}<br>val accuracy %{y:.4f}<extra></extra>"),
                          row=1, col=2)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=1.18))
    return fig


def cka_change_figure(cka: Mapping[str, float]) -> go.Figure:
    """How much fine-tuning changed each tap's features: 1 - linear CKA with the starting weights, shallow to
    deep (0 = the same representation up to rotation and scale)."""
    taps = list(cka)
    change = [1.0 - cka[t] for t in taps]
    fig = go.Figure(go.Bar(x=taps, y=change, marker_color=TARGET_COLOR, text=[f"{v:.3f}" for v in change],
                           textposition="outside",
                           hovertemplate="%{x}<br>1 − CKA %{y:.4f}<extra></extra>"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=10, b=10), xaxis=dict(type="category", title="tap"),
                      yaxis=dict(title="1 − CKA (change)", range=[0, max(0.05, max(change, default=0) * 1.25)]))
    return fig


ARM_COLORS = {"scratch": "#7f7f7f", "small-cnn": "#d62728", "linear-probe": SOURCE_COLOR, "fine-tuned": "#2ca02c"}


def efficiency_figure(curves: Mapping[str, object], *, chance: float | None = None, readouts=None,
                      titles: Mapping[str, str] | None = None) -> go.Figure:
    """Test accuracy against labels per class (log x) for each arm: the mean over repeats with its 95% band and
    every repeat as a faint dot. With ``readouts``: the target accuracy and where each arm reaches it, the budget
    of the gain readout, and the break-even point; ``chance`` draws the majority-class floor."""
    fig = go.Figure()
    titles = titles or {}
    for arm, c in curves.items():
        color = ARM_COLORS.get(arm, "#9467bd")
        name = titles.get(arm, arm)
        xs = list(c.per_class)
        if len(xs) > 1 and any(h > lo for lo, h in zip(c.low, c.high)):
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=list(c.high) + list(c.low)[::-1], fill="toself",
                                     fillcolor=color, opacity=0.15, line=dict(width=0), hoverinfo="skip",
                                     legendgroup=arm, showlegend=False))
        dx, dy = [], []
        for x, accs in zip(xs, c.accuracies):
            dx += [x] * len(accs)
            dy += list(accs)
        fig.add_trace(go.Scatter(x=dx, y=dy, mode="markers", marker=dict(color=color, size=5, opacity=0.35),
                                 legendgroup=arm, showlegend=False,
                                 hovertemplate=f"{name}<br>%{{x:.3g}} labels/class<br>one repeat: %{{y:.3f}}"
                                               "<extra></extra>"))
        labels = [("all " if b == 0 else "") + f"{x:.3g}" for b, x in zip(c.budgets, xs)]
        fig.add_trace(go.Scatter(x=xs, y=list(c.mean), mode="lines+markers", name=name, legendgroup=arm,
                                 line=dict(color=color, width=2.5, dash="dash" if arm in ("scratch", "small-cnn")
                                           else "solid"),
                                 customdata=np.c_[c.low, c.high, labels],
                                 hovertemplate=f"{name}<br>%{{customdata[2]}} labels/class<br>mean %{{y:.3f}} "
                                               "(95% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})<extra></extra>"))
    if chance is not None and np.isfinite(chance):
        fig.add_hline(y=chance, line_dash="dot", line_color="gray", annotation_text="chance",
                      annotation_position="bottom right")
    if readouts is not None:
        fig.add_hline(y=readouts.target_accuracy, line_dash="dash", line_color="#444", line_width=1,
                      annotation_text=f"target {readouts.target_accuracy:.1%}", annotation_position="top left")
        for arm, r in readouts.reach.items():
            if r.reached and arm in curves:
                fig.add_trace(go.Scatter(x=[r.per_class], y=[readouts.target_accuracy], mode="markers",
                                         marker=dict(symbol="diamond", size=11, color=ARM_COLORS.get(arm, "#9467bd"),
                                                     line=dict(color="white", width=1)),
                                         showlegend=False, hovertemplate=f"{titles.get(arm, arm)} reaches the target "
                                         f"at {r.bound}%{{x:.3g}} labels/class<extra></extra>"))
        g = readouts.gain
        fig.add_vline(x=g.per_class, line_dash="dot", line_color="#888", line_width=1)
        if readouts.break_even is not None:
            fig.add_vline(x=readouts.break_even, line_color="#d62728", line_width=2)
            # annotations on a log axis take log10 of the position (shapes take the value itself)
            fig.add_annotation(x=float(np.log10(readouts.break_even)), y=1.0, yref="y domain", yanchor="bottom",
                               text=f"break-even {readouts.break_even_bound}{readouts.break_even:.3g}",
                               showarrow=False, font=dict(color="#d62728", size=11))
    fig.update_layout(height=430, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12),
                      xaxis=dict(type="log", title="labelled target images per class (log scale)"),
                      yaxis=dict(title="test accuracy", range=[0, 1.02]))
    return fig


STATUS_COLORS = {"GO": "#137333", "CAUTION": "#b06000", "NO-GO": "#a50e0e"}


def gain_forest(readings: Sequence) -> go.Figure:
    """The measured gains of transfer over scratch (one row per signal, a
    :class:`tldiag.decision.verdict.GainReading` each): the gain with its 95% interval, coloured by what it reads,
    against 0 and each signal's margin (GO needs the interval above 0 and the gain at the margin; NO-GO the upper end
    below the margin; CAUTION between: cannot tell)."""
    fig = go.Figure()
    rows = list(readings)[::-1]
    labels = [plot_text(r.title) for r in rows]
    for r, label in zip(rows, labels):
        color = STATUS_COLORS.get(r.status, "#555")
        fig.add_trace(go.Scatter(
            x=[100 * r.gain], y=[label], mode="markers", marker=dict(size=12, color=color), showlegend=False,
            error_x=dict(type="data", symmetric=False, array=[100 * (r.high - r.gain)],
                         arrayminus=[100 * (r.gain - r.low)], color=color, thickness=2, width=8),
            hovertemplate=(f"{label}<br>%{{x:+.1f}} pts (95% CI {100 * r.low:+.1f} to {100 * r.high:+.1f}) · "
                           f"{r.status}<br>{r.n_test:,} test images, {r.draws} draws<extra></extra>")))
        fig.add_trace(go.Scatter(x=[100 * r.margin], y=[label], mode="markers", showlegend=False,
                                 marker=dict(symbol="line-ns-open", size=22, color="#444", line=dict(width=2)),
                                 hovertemplate=f"margin {100 * r.margin:+.1f} pts<extra></extra>"))
    fig.add_vline(x=0, line_color="#888", line_width=1)
    fig.update_layout(height=110 + 55 * len(rows), margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title="transfer − scratch, points of test accuracy (95% interval; | the margin)",
                                 zeroline=False), yaxis=dict(title=None))
    return fig


__all__ = ["STATUS_COLORS", "gain_forest", "SOURCE_COLOR", "TARGET_COLOR", "class_counts_figure", "image_grid", "data_uri", "plot_text", "LIGHT_COLORS", "null_histogram",
           "divergence_by_layer", "class_shift_figure", "DOMAIN_SYMBOLS", "COLOR_MODES", "class_palette",
           "projection_figure", "selected_indices", "class_small_multiples", "class_mixing_figure", "thumbnail_sprite",
           "figure_html", "CURVE_STYLES", "probe_curves_figure", "tap_scores_figure", "kendall_heatmap",
           "training_curves_figure", "cka_change_figure", "ARM_COLORS", "efficiency_figure"]
