"""Per-layer shift report, its figures, the Shift CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tldiag import metrics, viz
from tldiag.cli import main
from tldiag.errors import TldiagError


@pytest.fixture
def layered():
    """Three 'layers': same distribution, a moderate shift, separate clusters; class 'b' shifts, 'a' does not."""
    rng = np.random.default_rng(0)
    n = 120
    y_s = np.repeat([0, 1], n // 2)
    y_t = np.repeat([1, 0], n // 2)  # target class order is ['b', 'a']: 1 = 'a', 0 = 'b'
    base_s, base_t = rng.normal(size=(n, 16)), rng.normal(size=(n, 16))
    shift_b = np.where((y_t == 0)[:, None], 1.5, 0.0) * np.eye(16)[0]
    X_s = {"early": base_s, "mid": base_s + 3 * np.eye(16)[1], "pre_logits": base_s * 0.2 + 3 * np.eye(16)[2]}
    X_t = {"early": base_t + shift_b * 0.5, "mid": base_t + 3 * np.eye(16)[1] + shift_b,
           "pre_logits": base_t * 0.2 + 3 * np.eye(16)[3]}
    return X_s, X_t, y_s, y_t


def test_shift_by_layer(layered):
    X_s, X_t, y_s, y_t = layered
    seen = []
    report = metrics.shift_by_layer(X_s, X_t, y_source=y_s, y_target=y_t, classes_source=["a", "b"],
                                    classes_target=["b", "a"], n_permutations=200, n_bootstrap=50,
                                    class_permutations=100, random_state=0,
                                    progress=lambda d, t, m: seen.append((d, t)))
    assert [x.layer for x in report.layers] == ["early", "mid", "pre_logits"]
    assert report.headline == "pre_logits" and report.head.light.colour == "red"
    mmd = [x.mmd.mmd for x in report.layers]
    assert mmd[0] < mmd[1] < mmd[2]
    assert report.layer("pre_logits").domain.balanced_accuracy > 0.99
    assert seen[-1] == (4, 4)
    # classes matched by name, not index: 'b' shifted (in 'mid', 'early'); at pre_logits both moved
    assert {c.name for c in report.classes} == {"a", "b"}
    assert all(c.n_source == 60 and c.n_target == 60 for c in report.classes)
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["headline_layer"] == "pre_logits" and len(payload["layers"]) == 3
    assert len(payload["layers"][0]["mmd_test"]["null"]) == 200
    # thresholds only re-colour
    strict = report.with_thresholds(metrics.Thresholds(0.0, 0.01))
    assert all(x.light.colour == "red" for x in strict.layers)
    assert strict.layers[0].mmd is report.layers[0].mmd


def test_per_class_breakdown_finds_the_shifted_class(layered):
    X_s, X_t, y_s, y_t = layered
    report = metrics.shift_by_layer(X_s, X_t, layers=["early", "mid"], y_source=y_s, y_target=y_t,
                                    classes_source=["a", "b"], classes_target=["b", "a"], n_permutations=100,
                                    n_bootstrap=0, class_permutations=200, random_state=0)
    assert report.headline == "mid"
    assert [c.name for c in report.classes] == ["b", "a"]  # largest shift first
    b, a = report.classes
    assert b.p_value < 0.01 and a.p_value > 0.01


def test_headline_layer_and_notes(layered):
    X_s, X_t, _, _ = layered
    assert metrics.headline_layer(["blocks.1", "pre_logits", "logits"]) == "pre_logits"
    assert metrics.headline_layer(["a", "b", "logits"]) == "b"
    report = metrics.shift_by_layer(X_s, X_t, layers=["early"], y_source=np.full(120, -1),
                                    y_target=np.full(120, -1), classes_source=["a"], classes_target=["a"],
                                    n_permutations=10, n_bootstrap=0, random_state=0)
    assert report.classes == () and "no class is labelled in both domains" in report.notes[0]
    with pytest.raises(TldiagError, match=r"layers \['nope'\] are not in both embeddings"):
        metrics.shift_by_layer(X_s, X_t, layers=["nope"])


def test_figures(layered):
    X_s, X_t, y_s, y_t = layered
    report = metrics.shift_by_layer(X_s, X_t, y_source=y_s, y_target=y_t, classes_source=["a", "b"],
                                    classes_target=["b", "a"], n_permutations=100, n_bootstrap=20,
                                    class_permutations=50, random_state=0)
    hist = viz.null_histogram(report.head.mmd)
    assert len(hist.data[0].x) == 100 and "observed MMD²" in hist.layout.annotations[0].text
    # far beyond the null: an arrow at the edge and an x range that keeps the null readable
    assert "→" in hist.layout.annotations[0].text and hist.layout.xaxis.range[1] < report.head.mmd.mmd2
    near = viz.null_histogram(report.layers[0].mmd)
    assert near.layout.shapes and near.layout.shapes[0].x0 == report.layers[0].mmd.mmd2
    by_layer = viz.divergence_by_layer(report)
    assert list(by_layer.data[0].x) == ["early", "mid", "pre_logits"]
    np.testing.assert_allclose(by_layer.data[0].y, [x.mmd.mmd for x in report.layers])
    assert [s.y0 for s in by_layer.layout.shapes] == [0.1, 0.5]
    bars = viz.class_shift_figure(report.classes)
    assert list(bars.data[0].y) == [c.name for c in report.classes]


@pytest.mark.slow
def test_cli_shift(tmp_path, tiny_model_id, capsys):
    out = tmp_path / "shift.json"
    code = main(["shift", "--model", tiny_model_id, "--resolution", "48", "--source", "demo:digits",
                 "--target", "demo:digits?shift=invert", "--limit", "6", "--permutations", "99",
                 "--thresholds", "0.05,0.2", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "MMD [95% CI]" in text and "Per class at pre_logits" in text
    payload = json.loads(out.read_text())
    assert payload["thresholds"] == {"mmd_green": 0.05, "mmd_red": 0.2}
    assert payload["source"] == "demo:digits?limit=6" and payload["layers"][-1]["layer"] == "logits"
    assert payload["layers"][0]["mmd_test"]["n_permutations"] == 99
    assert len(payload["classes"]) == 10


def test_cli_shift_errors(capsys):
    assert main(["shift", "--source", "demo:digits"]) == 2
    assert "Give both --source and --target" in capsys.readouterr().err
    assert main(["shift", "--source", "demo:digits", "--target", "demo:digits", "--thresholds", "0.5"]) == 2
    assert "'GREEN,RED'" in capsys.readouterr().err
