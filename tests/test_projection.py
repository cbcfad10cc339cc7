"""Projections (UMAP, PCA, t-SNE), their cache, and the neighbourhood numbers shown beside them."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness as sk_trustworthiness
from sklearn.neighbors import NearestNeighbors

from tldiag.embed import EmbeddingPair, Embeddings
from tldiag.errors import TldiagError
from tldiag.metrics import knn_mixing, nearest_neighbours, trustworthiness
from tldiag.projection import ProjectionParams, auto_epochs, project, project_pair, stratified_indices


def _blobs(n_per_class=40, n_classes=3, d=20, offset=0.0, seed=0, spread=6.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=spread, size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centres[y] + rng.normal(size=(len(y), d)) + offset
    return X, np.array([f"c{k}" for k in y])


# ---------------------------------------------------------------- neighbours
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_trustworthiness_equals_scikit_learn(metric, k):
    rng = np.random.default_rng(k)
    X = rng.normal(size=(300, 16))
    Y = X[:, :2] + 0.5 * rng.normal(size=(300, 2))
    assert trustworthiness(X, Y, n_neighbors=k, metric=metric) == pytest.approx(
        sk_trustworthiness(X, Y, n_neighbors=k, metric=metric), abs=1e-9)


def test_trustworthiness_is_one_for_an_isometry_and_low_for_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) @ np.array([[0.6, -0.8], [0.8, 0.6]])
    assert trustworthiness(X, X @ np.array([[0.6, 0.8], [-0.8, 0.6]]) * 3 + 1) == pytest.approx(1.0)
    assert trustworthiness(rng.normal(size=(200, 10)), rng.normal(size=(200, 2))) < 0.6


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_nearest_neighbours_match_scikit_learn(metric):
    X = np.random.default_rng(1).normal(size=(150, 9))
    idx, dist = nearest_neighbours(X, 7, metric=metric)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=7, metric=metric).fit(X).kneighbors()
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    own, own_dist = nearest_neighbours(X, 8, metric=metric, include_self=True)  # UMAP's convention
    np.testing.assert_array_equal(own[:, 0], np.arange(150))
    assert (own_dist[:, 0] == 0).all() and (own[:, 1:] == idx).all()


def test_mixing_is_one_for_one_distribution_and_zero_for_islands():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(400, 10)), rng.normal(size=(300, 10))
    same = knn_mixing(A, B, random_state=0)
    assert 0.9 < same.score < 1.1 and same.ci[0] < 1.0 < same.ci[1]
    assert same.expected_share == pytest.approx(400 / 699)
    apart = knn_mixing(A, B + 8.0, random_state=0)
    assert apart.score == 0.0 and apart.observed_share == 0.0
    half = knn_mixing(A, np.vstack([B[:150], B[150:] + 8.0]), random_state=0)  # half the target is an island
    assert 0.35 < half.score < 0.65
    assert len(same.target_shares) == 300


def test_mixing_per_class_finds_the_class_that_moved():
    Xs, ys = _blobs(60, 4, seed=1)
    Xt, yt = _blobs(50, 4, seed=2)
    Xt[yt == "c2"] += 4.0  # only class c2 changes appearance
    res = knn_mixing(Xs, Xt, y_source=ys, y_target=yt, random_state=0)
    by_name = {c.name: c for c in res.per_class}
    assert res.per_class[0].name == "c2" and by_name["c2"].score < 0.2
    assert all(by_name[c].score > 0.75 for c in ("c0", "c1", "c3"))
    assert by_name["c0"].n_source == 60 and by_name["c0"].n_target == 50


def test_mixing_per_class_ignores_a_change_of_class_mix():
    """Target = source distribution per class, but with another class mix: per class stays ≈ 1."""
    Xs, ys = _blobs(100, 3, seed=3)
    Xt, yt = _blobs(100, 3, seed=4)
    keep = (yt == "c0") | (np.arange(len(yt)) % 5 == 0)
    res = knn_mixing(Xs, Xt[keep], y_source=ys, y_target=yt[keep], random_state=0)
    assert all(c.score > 0.75 for c in res.per_class)


def test_neighbourhood_errors_name_the_fix():
    X = np.zeros((10, 3))
    with pytest.raises(TldiagError, match="Unknown metric 'manhattan'"):
        nearest_neighbours(X, 3, metric="manhattan")
    with pytest.raises(TldiagError, match="n_neighbors=10 needs more than 10 other points"):
        nearest_neighbours(X, 10)
    with pytest.raises(TldiagError, match="all zeros"):
        nearest_neighbours(X, 3, metric="cosine")
    with pytest.raises(TldiagError, match="same number of rows, got 10 and 9"):
        trustworthiness(X, np.zeros((9, 2)))
    with pytest.raises(TldiagError, match="less than n_samples / 2"):
        trustworthiness(X, np.zeros((10, 2)), n_neighbors=5)
    with pytest.raises(TldiagError, match="y_target must have one label per row, but it has 2 labels for 10 rows"):
        knn_mixing(X, X, y_target=["a", "b"])


# ---------------------------------------------------------------- sampling
def test_stratified_sample_keeps_the_class_proportions():
    labels = np.array(["a"] * 700 + ["b"] * 200 + ["c"] * 99 + ["d"])
    idx = stratified_indices(labels, 100, random_state=0)
    assert len(idx) == 100 and len(np.unique(idx)) == 100 and (np.diff(idx) > 0).all()
    counts = {c: int((labels[idx] == c).sum()) for c in "abcd"}
    assert counts["a"] == 70 and counts["b"] == 20 and counts["c"] in (9, 10) and sum(counts.values()) == 100
    np.testing.assert_array_equal(idx, stratified_indices(labels, 100, random_state=0))
    assert not np.array_equal(idx, stratified_indices(labels, 100, random_state=1))
    np.testing.assert_array_equal(stratified_indices(labels, 5000, random_state=0), np.arange(1000))


def test_auto_epochs_spend_about_a_million_point_epochs():
    assert auto_epochs(20_000) == 50 and auto_epochs(10_000) == 100 and auto_epochs(5_000) == 200
    assert auto_epochs(300) == 200 and auto_epochs(100_000) == 50


# ---------------------------------------------------------------- projections
def test_umap_is_deterministic_with_a_seed_and_cached():
    Xs, ys = _blobs(40, 3, seed=1)
    Xt, yt = _blobs(30, 3, seed=2, offset=0.5)
    params = ProjectionParams(n_neighbors=8, random_state=3)
    a = project(Xs, Xt, y_source=ys, y_target=yt, params=params, use_cache=False)
    b = project(Xs, Xt, y_source=ys, y_target=yt, params=params, use_cache=False)
    np.testing.assert_array_equal(a.coords, b.coords)
    other = project(Xs, Xt, y_source=ys, y_target=yt, params=ProjectionParams(n_neighbors=8, random_state=4),
                    use_cache=False)
    assert not np.array_equal(a.coords, other.coords)
    assert a.coords.shape == (210, 2) and a.n_source == 120 and a.n_target == 90 and not a.subsampled
    assert (a.domain[:120] == 0).all() and (a.domain[120:] == 1).all()
    np.testing.assert_array_equal(a.rows[:120], np.arange(120))
    assert a.trustworthiness > 0.9 and a.n_epochs == 200
    # the cache: first call stores, second reads back the same thing
    stored = project(Xs, Xt, y_source=ys, y_target=yt, params=params)
    again = project(Xs, Xt, y_source=ys, y_target=yt, params=params)
    assert not stored.from_cache and again.from_cache
    np.testing.assert_array_equal(again.coords, a.coords)
    assert again.mixing == stored.mixing  # arrays are compared below
    np.testing.assert_array_equal(again.mixing.target_shares, stored.mixing.target_shares)
    assert again.labels.tolist() == stored.labels.tolist() and again.summary() == stored.summary()


def test_the_cache_survives_a_corrupt_entry_and_leaves_no_temporary_files(tmp_path):
    from tldiag import _config

    X, y = _blobs(20, 2)
    params = ProjectionParams(method="pca")
    project(X, X + 1, y_source=y, y_target=y, params=params)
    folder = _config.home() / "projections"
    (entry,) = folder.glob("*.npz")
    entry.write_bytes(b"not an npz")
    fresh = project(X, X + 1, y_source=y, y_target=y, params=params)
    assert not fresh.from_cache and project(X, X + 1, y_source=y, y_target=y, params=params).from_cache
    assert [p.name for p in folder.iterdir()] == [entry.name]


def test_pca_projection_is_the_first_two_principal_components():
    Xs, _ = _blobs(30, 3, d=12, seed=5)
    Xt, _ = _blobs(30, 3, d=12, seed=6, offset=1.0)
    p = project(Xs, Xt, params=ProjectionParams(method="pca"), use_cache=False)
    pca = PCA(2).fit(np.vstack([Xs, Xt]))
    ref = pca.transform(np.vstack([Xs, Xt]))
    np.testing.assert_allclose(np.abs(p.coords), np.abs(ref), rtol=1e-4, atol=1e-4)
    assert p.pca_variance == pytest.approx(pca.explained_variance_ratio_.sum(), rel=1e-5)
    assert p.n_epochs is None and p.describe().startswith("PCA")


def test_tsne_and_cosine():
    Xs, ys = _blobs(25, 2, seed=7)
    p = project(Xs, Xs * 10.0, y_source=ys, y_target=ys, use_cache=False,
                params=ProjectionParams(method="tsne", metric="cosine", n_neighbors=5))
    assert p.coords.shape == (100, 2) and np.isfinite(p.coords).all()
    # cosine ignores the length of the vectors: a scaled copy of the source mixes perfectly
    assert p.mixing.score > 0.95 and "perplexity 10" in p.describe()


def test_projection_separates_what_is_separate():
    Xs, ys = _blobs(40, 2, seed=8)
    Xt, yt = _blobs(40, 2, seed=9, offset=25.0)
    p = project(Xs, Xt, y_source=ys, y_target=yt, params=ProjectionParams(n_neighbors=10), use_cache=False)
    assert p.mixing.score == 0.0
    same = project(Xs, _blobs(40, 2, seed=9)[0], y_source=ys, y_target=yt, use_cache=False,
                   params=ProjectionParams(n_neighbors=10))
    assert same.mixing.score > 0.8
    frame = same.frame()
    assert list(frame.columns) == ["x", "y", "domain", "row", "label", "source_neighbour_share"]
    assert frame["source_neighbour_share"].isna().sum() == 80 and "x,y,domain" in same.to_csv()


def test_sampling_is_stratified_and_recorded():
    Xs, ys = _blobs(100, 4, seed=10)
    p = project(Xs, Xs[:50], y_source=ys, y_target=ys[:50], params=ProjectionParams(method="pca", max_samples=40))
    assert p.n_source == 40 and p.n_source_total == 400 and p.n_target == 40 and p.subsampled
    assert {c: int(((p.labels == c) & (p.domain == 0)).sum()) for c in ("c0", "c1", "c2", "c3")} == \
        {"c0": 10, "c1": 10, "c2": 10, "c3": 10}


def test_progress_reaches_the_end():
    X, y = _blobs(20, 2)
    seen = []
    project(X, X + 0.1, params=ProjectionParams(n_neighbors=5), use_cache=False,
            progress=lambda done, total, message: seen.append((done, message)))
    assert seen[-1] == (100, "done") and any("epoch" in m for _, m in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_project_pair_uses_class_names_and_layers():
    Xs, _ = _blobs(10, 2, d=6)

    def emb(X, labels, classes):
        return Embeddings(model_id="m", dataset="d", fingerprint="f", features={"a": X, "b": X[:, :3]},
                          labels=np.asarray(labels), classes=classes, sample_ids=tuple(map(str, range(len(X)))),
                          cache_hits={}, seconds=0.0)
    pair = EmbeddingPair(emb(Xs, [0] * 10 + [1] * 10, ("cat", "dog")), emb(Xs + 0.1, [1] * 10 + [-1] * 10, ("x", "cat")),
                         ("a", "b"))
    p = project_pair(pair, "b", ProjectionParams(method="pca"))
    assert p.layer == "b" and sorted(set(p.labels[:20])) == ["cat", "dog"]
    assert sorted(set(p.labels[20:])) == ["", "cat"]
    assert [c.name for c in p.mixing.per_class] == ["cat"]  # matched by name; dog has no target images
    with pytest.raises(TldiagError, match="Layer 'c' is not in these embeddings; choose one of a, b"):
        project_pair(pair, "c")


@pytest.mark.parametrize("change, message", [
    (dict(method="mds"), "Unknown projection method 'mds'; choose one of umap, pca, tsne"),
    (dict(metric="l1"), "Unknown metric 'l1'"),
    (dict(n_neighbors=1), "n_neighbors must be an integer >= 2"),
    (dict(min_dist=2.0), "min_dist must be a number in \\[0, 1\\], got 2.0"),
    (dict(pca_components=1), "pca_components must be an integer >= 2 or None"),
    (dict(max_samples=0), "max_samples must be an integer >= 2 or None"),
])
def test_bad_options_are_refused(change, message):
    X = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(TldiagError, match=message):
        project(X, X, params=ProjectionParams(**change))


def test_bad_inputs_are_explained():
    X = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(TldiagError, match="n_neighbors=15 needs more than 15 images, but the sample has 13"):
        project(X, X[:3])
    with pytest.raises(TldiagError, match="same number of features, got 4 and 3"):
        project(X, X[:, :3], params=ProjectionParams(n_neighbors=3))
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(TldiagError, match="NaN/inf"):
        project(X, bad, params=ProjectionParams(n_neighbors=3))
    with pytest.raises(TldiagError, match="y_source must have one label per row, but it has 2 labels for 10 rows"):
        project(X, X, y_source=["a", "b"], params=ProjectionParams(n_neighbors=3))
