"""Linear probes: the solver matches scikit-learn, the protocol behaves on known data, bad labels are explained."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_blobs, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tldiag.errors import TldiagError
from tldiag.metrics.logistic import lbfgs_logistic, standardize_and_reduce
from tldiag.probes import DEFAULT_C_GRID, ProbeConfig, ProbeCurve, TapProbe, fit_logistic, probe_curve, stratified_splits


def _sklearn(X, y, C, tol=1e-4, max_iter=1000):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=C, tol=tol, max_iter=max_iter).fit(X, y)


@pytest.mark.parametrize("C", [1e-3, 1e-1, 10.0, 100.0])
def test_probe_agrees_with_sklearn_on_real_digits(C):
    # Both solved to tol=1e-6 (the probes use 1e-5): with weak regularisation, scikit-learn's default 1e-4 stops
    # both solvers far enough from the optimum that a few test images flip (3 points at C=100 on this split).
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    train, test = np.arange(0, 1200), np.arange(1200, len(y))
    ours = fit_logistic(X[train], y[train], C=C, tol=1e-6, max_iter=5000)
    ref = _sklearn(X[train], y[train], C, tol=1e-6, max_iter=5000)
    acc_ours = np.mean(ours.predict(X[test]) == y[test])
    acc_ref = np.mean(ref.predict(X[test]) == y[test])
    assert abs(acc_ours - acc_ref) <= 0.01
    assert ours.converged


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_probe_agrees_with_sklearn_when_features_outnumber_images(C):
    # n < d: the solver works in the row space of the training features; the solution must not change
    X, y = make_classification(160, 600, n_informative=20, n_classes=4, random_state=0)
    train, test = np.arange(0, 100), np.arange(100, 160)
    ours = fit_logistic(X[train], y[train], C=C)
    ref = _sklearn(X[train], y[train], C)
    np.testing.assert_allclose(ours.decision_function(X[test]) - ours.decision_function(X[test]).mean(1, keepdims=True),
                               ref.decision_function(X[test]) - ref.decision_function(X[test]).mean(1, keepdims=True),
                               atol=0.05 * np.abs(ref.decision_function(X[test])).max())
    assert abs(np.mean(ours.predict(X[test]) == y[test]) - np.mean(ref.predict(X[test]) == y[test])) <= 0.01


def test_batched_problems_are_independent():
    """Each (set, C) problem of a batch has the solution it has alone: batching is only a speed-up."""
    X, y = make_classification(200, 12, n_informative=6, n_classes=3, random_state=1)
    Xt = torch.as_tensor(np.stack([X[:150], X[50:]]))
    yt = torch.as_tensor(np.stack([y[:150], y[50:]]))
    A, _, _ = standardize_and_reduce(Xt, Xt, True)
    lam = torch.tensor([[1e-1, 1e-3, 1e-2], [1e-2, 1e-1, 1e-4]], dtype=torch.float64)
    theta, conv, _ = lbfgs_logistic(A, yt, lam, 3, max_iter=2000, tol=1e-8)
    assert conv.all()
    for s in range(2):
        for g in range(3):
            alone, _, _ = lbfgs_logistic(A[s:s + 1], yt[s:s + 1], lam[s:s + 1, g:g + 1], 3, max_iter=2000, tol=1e-8)
            np.testing.assert_allclose(theta[s, g].numpy(), alone[0, 0].numpy(), atol=1e-5)


def test_random_labels_give_chance_and_separable_classes_give_one():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 20))
    y = rng.integers(0, 4, size=600)
    curve = probe_curve({"noise": X}, y, random_state=0)
    assert abs(curve.taps[0].mean - 0.25) < 0.08 and abs(curve.chance - 0.25) < 0.05
    Xb, yb = make_blobs(400, n_features=10, centers=5, cluster_std=0.5, random_state=0)
    curve = probe_curve({"blobs": Xb, "noise": rng.normal(size=(400, 10))}, yb, random_state=0)
    assert curve.tap("blobs").mean >= 0.99 and curve.tap("blobs").f1_mean >= 0.99
    assert curve.tap("noise").mean < 0.4
    assert curve.best.tap == "blobs" and curve.recommended.tap == "blobs"
    assert len(curve.taps[0].accuracy) == 3 and curve.n_train + curve.n_val + curve.n_test == 400


def test_stratified_splits_partition_every_class_with_equal_sizes():
    y = np.repeat(np.arange(4), [10, 7, 5, 3])
    splits = stratified_splits(y, 5, random_state=3)
    sizes = {tuple(len(p) for p in s) for s in splits}
    assert len(sizes) == 1
    for train, val, test in splits:
        assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(y)))
        for part in (train, val, test):
            assert set(y[part]) == {0, 1, 2, 3}  # every class in every part, even the 3-image one
    again = stratified_splits(y, 5, random_state=3)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(splits, again))


def _curve(means: list[float], ses: list[float]) -> ProbeCurve:
    taps = []
    for i, (m, s) in enumerate(zip(means, ses)):
        a = s * np.sqrt(3)  # m - a, m, m + a: sample sd a, standard error a / sqrt(3) = s
        acc = (m - a, m, m + a)
        taps.append(TapProbe(f"t{i}", i / 10, 8, acc, acc, (1.0,) * 3, ((0.5,),) * 3, True))
    return ProbeCurve("target", "m", tuple(taps), ("a", "b"), 100, 60, 20, 20, 0.5, ProbeConfig(), 0)


def test_recommended_cut_is_the_shallowest_tap_within_one_standard_error():
    curve = _curve([0.6, 0.80, 0.86, 0.90, 0.88], [0.0, 0.01, 0.02, 0.05, 0.01])
    assert curve.best.tap == "t3"
    assert np.isclose(curve.best.se, 0.05)
    assert curve.recommended.tap == "t2"  # 0.86 >= 0.90 - 0.05; 0.80 is not
    tied = _curve([0.7, 1.0, 1.0], [0.0, 0.0, 0.0])
    assert tied.best.tap == "t1" and tied.recommended.tap == "t1"
    rows = curve.table()
    assert [r["note"] for r in rows] == ["", "", "recommended cut", "best", ""]


def test_curve_round_trips_through_json():
    X, y = make_blobs(90, n_features=4, centers=3, random_state=0)
    curve = probe_curve({"a": X, "b": X[:, :2]}, y, classes=("x", "y", "z"), depths={"a": 0.3, "b": 0.9})
    again = ProbeCurve.from_dict(json.loads(json.dumps(curve.to_dict())))
    assert again == curve and again.classes == ("x", "y", "z") and again.tap("b").depth == 0.9


def test_bad_labels_get_clear_messages():
    X = np.random.default_rng(0).normal(size=(30, 5))
    with pytest.raises(TldiagError, match="single labelled class \\('cat'\\).*at least two classes"):
        probe_curve({"t": X}, np.zeros(30, dtype=int), classes=("cat",))
    y = np.repeat([0, 1, 2], [14, 15, 1])
    with pytest.raises(TldiagError, match="fewer than 3 labelled images: 'c' \\(1\\).*raise the per-class limit"):
        probe_curve({"t": X}, y, classes=("a", "b", "c"))
    with pytest.raises(TldiagError, match="None of the 30 target images has a label"):
        probe_curve({"t": X}, np.full(30, -1))
    with pytest.raises(TldiagError, match="one class index per image"):
        probe_curve({"t": X}, np.zeros(29, dtype=int))
    with pytest.raises(TldiagError, match="must be class indices"):
        probe_curve({"t": X}, np.array(["a", "b"] * 15))
    with pytest.raises(TldiagError, match="C_grid must be"):
        probe_curve({"t": X}, np.repeat([0, 1], 15), config=ProbeConfig(C_grid=(1.0, -1.0)))


def test_unlabelled_rows_are_left_out_with_a_note():
    X, y = make_blobs(60, n_features=3, centers=2, random_state=0)
    y = y.copy()
    y[:6] = -1
    curve = probe_curve({"t": X}, y)
    assert curve.n_samples == 54 and any("6 of 60 target images have no label" in n for n in curve.notes)


def test_default_grid_is_log_spaced_and_bounded():
    grid = np.log10(DEFAULT_C_GRID)
    assert np.allclose(np.diff(grid), 0.5) and grid[0] == -4 and grid[-1] == 2


@pytest.mark.gpu
def test_probe_on_the_gpu_matches_the_cpu():
    X, y = make_classification(300, 40, n_informative=10, n_classes=4, random_state=0)
    cpu = probe_curve({"t": X}, y, device="cpu")
    gpu = probe_curve({"t": X}, y, device="cuda")
    assert gpu.device.startswith("cuda") and abs(gpu.taps[0].mean - cpu.taps[0].mean) <= 0.02


def test_a_large_target_is_probed_on_a_stratified_sample_read_row_by_row(tmp_path):
    """max_samples bounds what a probe reads: a memory-mapped matrix far larger than the sample gives the same
    curve as the sampled rows alone, and the note says so."""
    from tldiag.probes import ProbeConfig, probe_curve

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 500)
    X = rng.normal(size=(len(y), 16)).astype(np.float32) + y[:, None] * 0.5
    path = tmp_path / "features.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    config = ProbeConfig(n_splits=2, max_samples=200)
    curve = probe_curve({"t": mapped}, y, classes=("a", "b", "c", "d"), config=config, random_state=3)
    assert curve.n_samples == 200 and any("sample of 200 of the 2,000" in n for n in curve.notes)
    keep = np.flatnonzero(np.isin(np.arange(len(y)), _sample_rows(y, 200, 3)))
    alone = probe_curve({"t": X[keep]}, y[keep], classes=("a", "b", "c", "d"), config=ProbeConfig(n_splits=2),
                        random_state=3)
    assert curve.taps[0].accuracy == alone.taps[0].accuracy
    assert np.bincount(y[keep]).tolist() == [50, 50, 50, 50]  # stratified


def _sample_rows(y, n, seed):
    from tldiag.validation import stratified_indices

    return stratified_indices(y, n, np.random.default_rng([seed, 29]))
