import numpy as np
import pytest
from PIL import Image

from tldiag import viz


def test_image_grid_places_cells_and_blanks():
    red, blue = Image.new("RGB", (4, 8), "red"), Image.new("RGB", (10, 10), "blue")
    grid = viz.image_grid([red, None, blue], ncols=2, cell=20)
    arr = np.asarray(grid)
    assert grid.size == (40, 40)
    assert tuple(arr[10, 10]) == (255, 0, 0)        # red, centred in cell (0, 0)
    assert tuple(arr[10, 30]) == (255, 255, 255)    # blank cell (0, 1)
    assert tuple(arr[30, 10]) == (0, 0, 255)        # blue in cell (1, 0)


def test_class_counts_figure():
    fig = viz.class_counts_figure({"a": 3, "b": 1}, {"b": 2, "c": 5})
    assert [t.name for t in fig.data] == ["source", "target"]
    assert list(fig.data[0].x) == ["a", "b", "c"] and list(fig.data[0].y) == [3, 1, 0]
    assert list(fig.data[1].y) == [0, 2, 5]


# ---------------------------------------------------------------- embedding explorer
def _projection():
    from tldiag.projection import ProjectionParams, project

    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(60, 8)), rng.normal(size=(40, 8)) + 1.0
    ys = np.array(["a", "b", "c"] * 20)
    yt = np.array(["a", "b", "", "c"] * 10)
    return project(Xs, Xt, y_source=ys, y_target=yt, params=ProjectionParams(method="pca"), use_cache=False)


def test_projection_figure_symbols_colours_and_customdata():
    p = _projection()
    fig = viz.projection_figure(p)
    assert [t.type for t in fig.data] == ["scattergl", "scattergl"]
    assert [t.marker.symbol for t in fig.data] == ["circle", "diamond"] and fig.layout.dragmode == "select"
    first = fig.data[1].customdata[0]
    assert first[0] == 60 and first[1] == "target" and first[2] == p.rows[60] and first[3] == "a"
    by_class = viz.projection_figure(p, color="class")
    assert {t.name for t in by_class.data} == {"a", "b", "c", "(unlabelled)"}
    assert sum(len(t.x) for t in by_class.data) == 100
    assert sum(bool(t.showlegend) for t in by_class.data) == 4  # one legend entry per class
    proba = np.linspace(0, 1, 100)
    fig = viz.projection_figure(p, color="p_target", p_target=proba)
    assert list(fig.data[0].marker.color) == list(proba[:60]) and fig.data[0].marker.cmax == 1
    assert "p(target | x)" in fig.data[0].hovertemplate
    with pytest.raises(ValueError, match="needs p_target"):
        viz.projection_figure(p, color="p_target")


def test_selection_maps_back_to_projection_points():
    fig = viz.projection_figure(_projection())
    points = [{"curve_number": 1, "point_index": 3, "customdata": fig.data[1].customdata[3]},
              {"curve_number": 0, "point_index": 0, "customdata": fig.data[0].customdata[0]}]
    np.testing.assert_array_equal(viz.selected_indices({"points": points}), [0, 63])
    assert len(viz.selected_indices(None)) == 0 and len(viz.selected_indices({"points": []})) == 0


def test_small_multiples_and_class_mixing_figures():
    p = _projection()
    fig = viz.class_small_multiples(p)
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "c"]
    assert len(fig.data) == 9  # per class: backdrop, source, target
    bars = viz.class_mixing_figure(p.mixing.per_class)
    assert list(bars.data[0].y) == [c.name for c in p.mixing.per_class]


def test_html_export_is_self_contained_with_hover_thumbnails():
    p = _projection()
    images = [Image.new("RGB", (28, 28), (k, 0, 0)) for k in range(100)]
    sprite, ncols = viz.thumbnail_sprite(images, cell=20)
    assert ncols == 10 and sprite.size == (200, 200)
    assert sprite.getpixel((5 * 20 + 10, 3 * 20 + 10)) == (35, 0, 0)  # image 35 at column 5, row 3
    html = viz.figure_html(viz.projection_figure(p), sprite=(sprite, ncols), cell=20)
    assert html.startswith("<html>") or "<html" in html[:200]
    assert "tldiag-thumbnail" in html and "data:image/jpeg;base64," in html and "src=\"https://cdn" not in html
    assert "% 10)" in html  # the sprite's column count reached the script
    assert "tldiag-thumbnail" not in viz.figure_html(viz.projection_figure(p))


def test_training_curves_and_cka_change_figures():
    from tldiag.viz import cka_change_figure, training_curves_figure

    history = [{"epoch": e, "phase": "head only" if e <= 2 else "fine-tune", "train_loss": 2 / e, "val_loss": 1.5 / e,
                "train_accuracy": e / 5, "val_accuracy": e / 6} for e in range(1, 6)]
    fig = training_curves_figure(history, best_epoch=5)
    names = [t.name for t in fig.data]
    assert names.count("train") == 2 and names.count("validation") == 2 and "best weights" in names
    assert list(fig.data[1].y) == [h["val_loss"] for h in history]
    assert any(a.text == "unfreeze" for a in fig.layout.annotations)
    bars = cka_change_figure({"layer1": 0.99, "layer4": 0.6}).data[0]
    assert list(bars.x) == ["layer1", "layer4"] and list(bars.y) == pytest.approx([0.01, 0.4])
