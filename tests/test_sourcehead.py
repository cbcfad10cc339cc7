"""The source-model check: a classifier trained on the source, on held-out source images and on the target."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tldiag.errors import TldiagError
from tldiag.sourcehead import SourceHeadResult, source_head_accuracy, wilson


def test_wilson_matches_statsmodels_formula_and_stays_inside_0_1():
    lo, hi = wilson(8, 10)
    # Wilson (1927) written out: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    z, p, n = stats.norm.ppf(0.975), 0.8, 10
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert wilson(0, 20)[0] == 0 and 0 < wilson(0, 20)[1] < 0.2 and wilson(20, 20)[1] == 1


def _logits(truth: np.ndarray, accuracy: float, k: int, rng) -> np.ndarray:
    wrong = rng.random(len(truth)) >= accuracy
    pred = np.where(wrong, (truth + 1 + rng.integers(0, k - 1, len(truth))) % k, truth)
    return np.eye(k)[pred] + 0.01 * rng.random((len(truth), k))


def test_accuracies_drop_and_per_class():
    rng = np.random.default_rng(0)
    head = ("a", "b", "c")
    ys, yt = rng.integers(0, 3, 600), rng.integers(0, 3, 900)
    ls, lt = _logits(ys, 0.95, 3, rng), _logits(yt, 0.6, 3, rng)
    r = source_head_accuracy(ls, [head[i] for i in ys], lt, [head[i] for i in yt], head)
    assert r.source_accuracy == pytest.approx(0.95, abs=0.03) and r.target_accuracy == pytest.approx(0.6, abs=0.04)
    assert r.drop == pytest.approx(r.source_accuracy - r.target_accuracy)
    assert r.drop_ci[0] < r.drop < r.drop_ci[1] and r.source_ci[0] < r.source_accuracy < r.source_ci[1]
    assert {c.name for c in r.per_class} == set(head) and sum(c.n_target for c in r.per_class) == 900
    assert SourceHeadResult.from_dict(r.to_dict()) == r


def test_only_held_out_rows_and_shared_classes_are_scored():
    rng = np.random.default_rng(1)
    head = ("0", "1", "2", "3")
    ys, yt = rng.integers(0, 4, 200), rng.integers(0, 3, 300)
    names_t = [head[i] for i in yt] + ["cat"] * 20  # a class the model never saw
    lt = np.vstack([_logits(yt, 0.7, 4, rng), rng.random((20, 4))])
    r = source_head_accuracy(_logits(ys, 1.0, 4, rng), [head[i] for i in ys], lt, names_t, head,
                             heldout=np.arange(50))
    assert r.n_source == int(np.isin(ys[:50], [0, 1, 2]).sum()) and r.classes == ("0", "1", "2")
    assert r.n_target == 300 and any("never trained on are left out: cat" in n for n in r.notes)


def test_a_target_with_no_class_the_model_knows_is_refused():
    with pytest.raises(TldiagError, match="None of the target's classes \\(cat, dog\\) is a class the source model "
                                          "was trained on"):
        source_head_accuracy(np.eye(2), ["a", "b"], np.eye(2), ["cat", "dog"], ("a", "b"))


@pytest.mark.slow
def test_the_demo_source_model_is_built_once_and_knows_the_handwritten_digits(tldiag_env):
    from tldiag.data import load_dataset
    from tldiag.embed import embed_pair
    from tldiag.models import load_model, registered_models
    from tldiag.sourcehead import measure

    model = load_model("finetuned:demo-digits-lite0", resolution=128)
    entry = registered_models()["demo-digits-lite0"]
    assert entry["classes"] == [str(i) for i in range(10)] and entry["trained_on"] == "demo:digits?limit=50"
    pair = embed_pair(model, load_dataset("demo:digits?limit=50"), load_dataset("demo:printed-digits?limit=50"))
    r = measure(pair, model, seed=0)
    assert r.head == "registry" and r.n_source == 100 and r.n_target == 500
    assert r.source_accuracy >= 0.9 and r.target_accuracy < 0.5 and r.drop_ci[0] > 0.3
    assert load_model("finetuned:demo-digits-lite0").weights_hash == model.weights_hash  # built once
