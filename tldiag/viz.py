"""Pure plotting helpers: data in, plotly Figure (or PIL image) out. No Streamlit here."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

if TYPE_CHECKING:
    from .metrics import ClassShift, MMDResult, ShiftReport

SOURCE_COLOR = "#1f77b4"
TARGET_COLOR = "#ff7f0e"


def class_counts_figure(source: Mapping[str, int], target: Mapping[str, int]) -> go.Figure:
    """Grouped bars: images per class in the source and the target."""
    classes = list(dict.fromkeys([*source, *target]))
    fig = go.Figure([
        go.Bar(name="source", x=classes, y=[source.get(c, 0) for c in classes], marker_color=SOURCE_COLOR),
        go.Bar(name="target", x=classes, y=[target.get(c, 0) for c in classes], marker_color=TARGET_COLOR),
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


def divergence_by_layer(report: "ShiftReport") -> go.Figure:
    """MMD (seed scale, with its bootstrap interval and the thresholds) and PAD for each tap, shallow to deep."""
    from plotly.subplots import make_subplots

    layers = [x.layer for x in report.layers]
    mmd = np.array([x.mmd.mmd for x in report.layers])
    ci = np.array([x.mmd.mmd_ci for x in report.layers])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("MMD (seed scale) with bootstrap interval",
                                        "proxy A-distance (0 same · 2 separable)"))
    fig.add_trace(go.Scatter(
        x=layers, y=mmd, mode="lines+markers", name="MMD", line_color=TARGET_COLOR,
        marker=dict(size=10, color=[LIGHT_COLORS[x.light.colour] for x in report.layers]),
        error_y=dict(type="data", symmetric=False, array=np.nan_to_num(ci[:, 1] - mmd),
                     arrayminus=np.nan_to_num(mmd - ci[:, 0])),
        customdata=[[x.mmd.p_value, x.domain.roc_auc] for x in report.layers],
        hovertemplate="%{x}<br>MMD %{y:.3f}<br>p = %{customdata[0]:.3g}<br>AUC %{customdata[1]:.3f}<extra></extra>"),
        row=1, col=1)
    for value, colour, label in ((report.thresholds.mmd_green, "green", "green below"),
                                 (report.thresholds.mmd_red, "red", "red above")):
        fig.add_hline(y=value, line_dash="dash", line_color=LIGHT_COLORS[colour], row=1, col=1,
                      annotation_text=f"{label} {value:g}", annotation_position="top left")
    fig.add_trace(go.Scatter(
        x=layers, y=[x.domain.pad for x in report.layers], mode="lines+markers", name="PAD",
        line_color=SOURCE_COLOR,
        error_y=dict(type="data", array=[4 * x.domain.balanced_accuracy_std for x in report.layers]),
        hovertemplate="%{x}<br>PAD %{y:.2f}<extra></extra>"), row=2, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[min(-0.1, min(x.domain.pad for x in report.layers) - 0.1), 2.1], row=2, col=1)
    fig.update_xaxes(type="category", title_text="layer (shallow → deep)", row=2, col=1)
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=40, b=10), showlegend=False)
    return fig


def class_shift_figure(classes: Sequence["ClassShift"]) -> go.Figure:
    """Per-class MMD (seed scale), largest first, coloured by traffic light."""
    fig = go.Figure(go.Bar(
        x=[c.mmd for c in classes], y=[str(c.name) for c in classes], orientation="h",
        marker_color=[LIGHT_COLORS[c.light.colour] for c in classes],
        customdata=[[c.p_value, c.n_source, c.n_target] for c in classes],
        hovertemplate="class %{y}<br>MMD %{x:.3f}<br>p = %{customdata[0]:.3g}<br>"
                      "%{customdata[1]} source, %{customdata[2]} target images<extra></extra>"))
    fig.update_layout(height=max(200, 28 * len(classes) + 60), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title="MMD between the class's source and target images (seed scale)",
                      yaxis=dict(type="category", autorange="reversed"))
    return fig
