"""Shift metrics: agreement with slow obvious implementations, calibration, power, bad input."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from scipy.spatial.distance import pdist

from tldiag import metrics
from tldiag.errors import TldiagError


def slow_mmd2(X, Y, sigmas):
    """Gretton et al. 2012 eq. 3 with explicit double loops and the mean of Gaussian kernels."""
    def k(a, b):
        return np.mean([np.exp(-np.sum((a - b) ** 2) / (2 * s * s)) for s in sigmas])
    n, m = len(X), len(Y)
    xx = sum(k(X[i], X[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(Y[i], Y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(X[i], Y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.fixture
def small():
    rng = np.random.default_rng(3)
    return rng.normal(size=(13, 4)), rng.normal(size=(9, 4)) + 0.7


@pytest.mark.parametrize("bandwidth", [None, 1.3, [0.5, 1.0, 4.0]])
def test_mmd2_matches_double_loop(small, bandwidth):
    X, Y = small
    r = metrics.mmd_test(X, Y, bandwidth=bandwidth, n_permutations=50, random_state=0)
    sigmas = r.bandwidth if isinstance(r.bandwidth, tuple) else (r.bandwidth,)
    assert r.mmd2 == pytest.approx(slow_mmd2(X, Y, sigmas), rel=1e-10, abs=1e-14)
    assert r.mmd == pytest.approx(np.sqrt(max(r.mmd2, 0)))
    assert (r.n_source, r.n_target, len(r.null)) == (13, 9, 50)
    if isinstance(bandwidth, list):
        assert r.bandwidth == (0.5, 1.0, 4.0)
        for s, v in r.per_bandwidth:
            assert v == pytest.approx(slow_mmd2(X, Y, [s]), rel=1e-10)
        assert r.mmd2 == pytest.approx(np.mean([v for _, v in r.per_bandwidth]))


def test_median_heuristic_is_median_pooled_distance(small):
    X, Y = small
    assert metrics.median_heuristic(X, Y) == pytest.approx(np.median(pdist(np.vstack([X, Y]))))
    r = metrics.mmd_test(X, Y, n_permutations=10, random_state=0)
    assert r.bandwidth == pytest.approx(np.median(pdist(np.vstack([X, Y]))))
    assert "pooled sample (22 of 22 points)" in r.bandwidth_method


def test_every_null_value_is_the_statistic_of_a_real_split():
    # n = m = 3: only C(6, 3) = 20 splits exist; each permutation statistic must be one of them
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)) + 1
    Z = np.vstack([X, Y])
    r = metrics.mmd_test(X, Y, bandwidth=1.0, n_permutations=300, random_state=1)
    exact = [slow_mmd2(Z[list(c)], Z[[i for i in range(6) if i not in c]], [1.0])
             for c in itertools.combinations(range(6), 3)]
    for t in r.null:
        assert min(abs(t - e) for e in exact) < 1e-12
    assert len({round(t, 10) for t in r.null}) > 5  # really permuted, not one split repeated
    expected_p = (1 + np.sum(r.null >= r.mmd2)) / 301
    assert r.p_value == pytest.approx(expected_p)


def test_blocked_computation_gives_identical_results(small):
    X, Y = small
    whole = metrics.mmd_test(X, Y, n_permutations=100, n_bootstrap=50, random_state=5)
    rows = metrics.mmd_test(X, Y, n_permutations=100, n_bootstrap=50, random_state=5, max_memory=1)
    assert rows.mmd2 == pytest.approx(whole.mmd2, rel=1e-12)
    np.testing.assert_allclose(rows.null, whole.null, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(rows.ci, whole.ci, rtol=1e-10)


def test_seeded_and_reported():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3))
    a = metrics.mmd_test(X, Y, n_permutations=200, random_state=7)
    b = metrics.mmd_test(X, Y, n_permutations=200, random_state=7)
    c = metrics.mmd_test(X, Y, n_permutations=200, random_state=8)
    np.testing.assert_array_equal(a.null, b.null)
    assert a.p_value == b.p_value and a.ci == b.ci
    assert not np.array_equal(a.null, c.null)
    sub = metrics.mmd_test(X, Y, n_permutations=20, max_samples=25, random_state=0)
    assert (sub.n_source, sub.n_target, sub.n_source_total, sub.n_target_total) == (25, 25, 40, 30)
    assert sub.subsampled and not a.subsampled
    assert sub.to_dict()["subsampled"] is True


def test_p_value_is_never_zero_and_bootstrap_brackets_the_statistic():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(60, 5)), rng.normal(size=(60, 5)) + 3
    r = metrics.mmd_test(X, Y, n_permutations=99, n_bootstrap=200, random_state=0)
    assert r.p_value == pytest.approx(1 / 100)
    lo, hi = r.ci
    assert lo < r.mmd2 < hi and hi - lo < r.mmd2
    assert r.mmd_ci[0] == pytest.approx(np.sqrt(lo))
    none = metrics.mmd_test(X, Y, n_permutations=0, n_bootstrap=0, random_state=0)
    assert np.isnan(none.p_value) and np.isnan(none.ci[0]) and none.mmd2 == pytest.approx(r.mmd2)


def test_bootstrap_interval_narrows_with_more_data():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 400):
        r = metrics.mmd_test(rng.normal(size=(n, 4)), rng.normal(size=(n, 4)) + 0.5, n_permutations=0,
                             n_bootstrap=200, random_state=0)
        widths.append(r.ci[1] - r.ci[0])
    assert widths[1] < widths[0] / 2


def test_null_calibration_within_binomial_bounds():
    """Same distribution: the rejection rate at alpha = 0.05 is that of a valid test."""
    rng = np.random.default_rng(2024)
    trials, alpha = 400, 0.05
    rejections = sum(
        metrics.mmd_test(rng.normal(size=(30, 5)), rng.normal(size=(25, 5)), n_permutations=199, n_bootstrap=0,
                         random_state=i).p_value <= alpha
        for i in range(trials))
    lo, hi = scipy.stats.binom.ppf([0.0005, 0.9995], trials, alpha)
    assert lo <= rejections <= hi, f"{rejections} rejections in {trials} null trials"


def test_power_against_a_half_sigma_mean_shift_in_8_dims():
    rng = np.random.default_rng(7)
    detected = sum(
        metrics.mmd_test(rng.normal(size=(100, 8)), rng.normal(size=(100, 8)) + 0.5, n_permutations=500,
                         n_bootstrap=0, random_state=i).p_value <= 0.05
        for i in range(20))
    assert detected >= 19


def test_domain_classifier_pad_zero_for_same_and_two_for_separated():
    rng = np.random.default_rng(0)
    same = metrics.domain_classifier(rng.normal(size=(1000, 10)), rng.normal(size=(800, 10)), random_state=0)
    assert abs(same.balanced_accuracy - 0.5) < 0.05 and abs(same.pad) < 0.2 and abs(same.roc_auc - 0.5) < 0.06
    assert same.ess_fraction > 0.8
    far = metrics.domain_classifier(rng.normal(size=(300, 10)), rng.normal(size=(200, 10)) + 4, random_state=0)
    assert far.balanced_accuracy > 0.99 and far.pad > 1.95 and far.roc_auc > 0.999
    assert len(far.fold_balanced_accuracy) == 5 and far.pad == pytest.approx(2 * (1 - 2 * far.error))
    assert far.proba_target.shape == (500,) and far.source_proba.max() < 0.5 < far.target_proba.min()


@pytest.mark.parametrize("shift", [0.0, 0.15, 3.0])  # overlapping, close, separated domains
def test_the_early_stop_along_the_grid_picks_what_the_whole_grid_picks(shift):
    """"auto" stops walking the C grid once the out-of-fold log-loss has risen twice; it must not miss a better C
    than the whole grid gives (each C alone on the same folds)."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(3)
    Xs, Xt = rng.normal(size=(150, 40)), rng.normal(size=(120, 40)) + shift
    auto = metrics.domain_classifier(Xs, Xt, random_state=5)
    y = np.r_[np.zeros(150), np.ones(120)]
    each = [metrics.domain_classifier(Xs, Xt, C=c, random_state=5) for c in metrics.domain.DEFAULT_C_GRID]
    losses = [log_loss(y, r.proba_target) for r in each]
    # warm starts along the path land within lbfgs's tol of the cold fits, which can swap two C values whose
    # log-losses tie (separated domains: 1e-3 against 1e-4 nats); no better C is missed
    assert log_loss(y, auto.proba_target) <= min(losses) + 1e-3
    best = each[int(np.argmin(losses))]
    assert auto.balanced_accuracy == pytest.approx(best.balanced_accuracy, abs=0.01)


def test_domain_classifier_importance_weights_and_ess():
    rng = np.random.default_rng(1)
    Xs, Xt = rng.normal(size=(400, 3)), rng.normal(size=(200, 3)) + np.array([1.0, 0, 0])
    r = metrics.domain_classifier(Xs, Xt, random_state=0)
    p = np.clip(r.source_proba, 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(r.importance_weights, p / (1 - p) * 400 / 200)
    w = r.importance_weights
    assert r.ess == pytest.approx(w.sum() ** 2 / (w ** 2).sum())
    # the source points nearer the target get the larger weights
    assert np.corrcoef(Xs[:, 0], np.log(w))[0, 1] > 0.9
    assert 0.2 < r.ess_fraction < 0.9


def test_coral_matches_its_definition():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(50, 6)), rng.normal(size=(70, 6)) * 2
    expected = np.sum((np.cov(Xs, rowvar=False) - np.cov(Xt, rowvar=False)) ** 2) / (4 * 6 ** 2)
    assert metrics.coral_distance(Xs, Xt) == pytest.approx(expected, rel=1e-12)
    assert metrics.coral_distance(Xs, Xs + 5) == pytest.approx(0, abs=1e-15)  # blind to the mean


def fid_reference(X, Y):
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm of the covariance product)."""
    mu1, mu2 = X.mean(0), Y.mean(0)
    s1, s2 = np.cov(X, rowvar=False), np.cov(Y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def test_frechet_with_fewer_images_than_features_is_computed_in_sample_space():
    """d > n: rank-deficient covariances, where a d x d eigensolver can fail to converge; the sample-space nuclear
    norm gives the same number as the FID formula."""
    rng = np.random.default_rng(3)
    Xs, Xt = rng.normal(size=(40, 300)), 1.2 * rng.normal(size=(35, 300)) + 0.1
    assert metrics.frechet_distance(Xs, Xt) == pytest.approx(fid_reference(Xs, Xt), rel=1e-6)


def test_frechet_matches_the_fid_formula():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) @ rng.normal(size=(8, 8)) + 1
    assert metrics.frechet_distance(Xs, Xt) == pytest.approx(fid_reference(Xs, Xt), rel=1e-8)
    assert metrics.frechet_distance(Xs, Xs) == pytest.approx(0, abs=1e-9)
    # singular covariances (more features than samples) stay finite and non-negative
    assert metrics.frechet_distance(rng.normal(size=(10, 30)), rng.normal(size=(12, 30))) > 0


def cka_reference(X, Y):
    """Kornblith et al. 2019 via centred linear Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    n = len(X)
    H = np.eye(n) - 1 / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def test_linear_cka():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 10))
    Y = np.tanh(X @ rng.normal(size=(10, 7)))
    assert metrics.linear_cka(X, Y) == pytest.approx(cka_reference(X, Y), rel=1e-10)
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert metrics.linear_cka(X, 3 * X @ Q + 1) == pytest.approx(1.0)
    assert metrics.linear_cka(X, rng.normal(size=(60, 5))) < 0.3
    with pytest.raises(TldiagError, match="same number of rows, got 60 and 59"):
        metrics.linear_cka(X, Y[:59])
    with pytest.raises(TldiagError, match="Y is constant"):
        metrics.linear_cka(X, np.ones((60, 3)))


@pytest.mark.parametrize("fn", [metrics.mmd_test, metrics.domain_classifier, metrics.coral_distance,
                                metrics.frechet_distance, metrics.seed_scale_mmd])
def test_bad_input_is_named(fn):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4))
    with pytest.raises(TldiagError, match="same number of features, got 4 and 5. Did you extract"):
        fn(X, rng.normal(size=(20, 5)))
    bad = X.copy()
    bad[3, 1] = np.nan
    bad[5, 0] = np.inf
    with pytest.raises(TldiagError, match=r"X_target contains 2 NaN/inf value\(s\) in 2 row\(s\) \(first at row 3\)"):
        fn(X, bad)
    with pytest.raises(TldiagError, match=r"X_source has 1 sample\(s\); this needs at least 2"):
        fn(X[:1], X)
    with pytest.raises(TldiagError, match=r"shape \(n_samples, n_features\), got shape \(20,\); use X.reshape"):
        fn(X[:, 0], X)


def test_constant_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    X[:, 2] = 5.0  # one dead feature: every metric still works
    Y = rng.normal(size=(30, 4))
    Y[:, 2] = 5.0
    assert np.isfinite(metrics.mmd_test(X, Y, n_permutations=10, random_state=0).mmd2)
    assert 0.2 < metrics.domain_classifier(X, Y, random_state=0).balanced_accuracy < 0.8
    same = np.ones((30, 4))
    with pytest.raises(TldiagError, match="median distance between points is 0.*Pass bandwidth="):
        metrics.mmd_test(same, same)
    fixed = metrics.mmd_test(same, same, bandwidth=1.0, n_permutations=10, random_state=0)
    assert fixed.mmd2 == pytest.approx(0.0, abs=1e-12)
    assert metrics.domain_classifier(same, same, random_state=0).balanced_accuracy == pytest.approx(0.5)
    assert metrics.coral_distance(same, same) == 0 and metrics.frechet_distance(same, same) == 0


def test_option_errors():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(TldiagError, match="n_permutations must be an integer >= 0, got -1"):
        metrics.mmd_test(X, X, n_permutations=-1)
    with pytest.raises(TldiagError, match="bandwidth must be a positive finite σ.*got 0"):
        metrics.mmd_test(X, X, bandwidth=0)
    with pytest.raises(TldiagError, match="cv=5 folds need at least 5 samples in each domain, got 10 source and 3"):
        metrics.domain_classifier(X, X[:3])
    with pytest.raises(TldiagError, match="random_state must be an int"):
        metrics.mmd_test(X, X, random_state="seed")
    with pytest.raises(TldiagError, match="green < red, got green=0.5 and red=0.1"):
        metrics.Thresholds(0.5, 0.1)
    with pytest.raises(TldiagError, match="'GREEN,RED'"):
        metrics.Thresholds.parse("0.1")


def test_seed_scale_and_traffic_light():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 32))
    same = metrics.seed_scale_mmd(X, rng.normal(size=(300, 32)), n_permutations=100, random_state=0)
    # the scale ignores each embedding's norm: scaling rows changes nothing
    scaled = metrics.seed_scale_mmd(X * rng.uniform(1, 10, size=(300, 1)), X[::-1] * 3, n_permutations=10,
                                    random_state=0)
    assert scaled.mmd2 == pytest.approx(metrics.seed_scale_mmd(X, X[::-1], n_permutations=10, random_state=0).mmd2)
    far = metrics.seed_scale_mmd(X + 5 * np.eye(32)[0], rng.normal(size=(300, 32)) + 5 * np.eye(32)[1],
                                 n_permutations=100, random_state=0)
    assert same.mmd < 0.1 < 0.5 < far.mmd
    assert metrics.traffic_light(same.mmd).colour == "green"
    assert metrics.traffic_light(0.3).colour == "amber"
    assert metrics.traffic_light(far.mmd).colour == "red"
    assert metrics.traffic_light(0.3, metrics.Thresholds(0.05, 0.2)).colour == "red"
    with pytest.raises(TldiagError, match="fixes the bandwidth"):
        metrics.seed_scale_mmd(X, X, bandwidth=1.0)


def test_domain_classifier_probabilities_stay_calibrated_on_wide_layers():
    """1,280 features, 300 samples per domain, one distribution: a weakly regularised fit would give
    extreme out-of-fold probabilities and a tiny ESS; the log-loss-chosen C keeps them near 0.5."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(300, 1280)), rng.normal(size=(300, 1280))
    auto = metrics.domain_classifier(X, Y, random_state=0)
    assert auto.C == min(metrics.domain.DEFAULT_C_GRID) and auto.ess_fraction > 0.9
    assert abs(auto.balanced_accuracy - 0.5) < 0.08
    fixed = metrics.domain_classifier(X, Y, C=1.0, random_state=0)
    assert fixed.C == 1.0 and fixed.ess_fraction < 0.5  # what the calibration step prevents
    with pytest.raises(TldiagError, match="C must be 'auto' or a positive number, .*got -1"):
        metrics.domain_classifier(X, Y, C=-1)


def test_domain_classifier_unequal_sizes_are_not_mistaken_for_shift():
    rng = np.random.default_rng(1)
    r = metrics.domain_classifier(rng.normal(size=(900, 5)), rng.normal(size=(100, 5)), random_state=0)
    assert abs(r.balanced_accuracy - 0.5) < 0.08 and abs(r.pad) < 0.3
    shifted = metrics.domain_classifier(rng.normal(size=(900, 5)), rng.normal(size=(100, 5)) + 1.5, random_state=0)
    assert shifted.balanced_accuracy > 0.85


def test_seed_scale_mmd_reads_only_its_sample_and_matches_the_full_call(tmp_path):
    """The subsample is drawn before anything is converted (memory follows max_samples): the result is the one
    mmd_test gives on the normalised full arrays, totals included, also from a memory-mapped matrix."""
    from tldiag.metrics import mmd_test
    from tldiag.metrics.scale import l2_normalise, seed_scale_mmd

    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(400, 8)), rng.normal(0.3, 1, size=(300, 8))
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    ours = seed_scale_mmd(mapped, Y, max_samples=50, random_state=3, n_permutations=100, n_bootstrap=20)
    ref = mmd_test(l2_normalise(mapped.astype(np.float64)), l2_normalise(Y), max_samples=50, random_state=3,
                   n_permutations=100, n_bootstrap=20)
    assert ours.mmd2 == pytest.approx(ref.mmd2, rel=1e-12) and ours.p_value == ref.p_value and ours.ci == ref.ci
    assert (ours.n_source, ours.n_source_total, ours.n_target_total) == (50, 400, 300) and ours.subsampled
