"""Pure plotting helpers: data in, plotly Figure (or PIL image) out. No Streamlit here."""
from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go
from PIL import Image

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
