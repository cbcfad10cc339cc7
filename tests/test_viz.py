import numpy as np
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
