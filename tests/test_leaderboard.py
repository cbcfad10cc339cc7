"""The leaderboard: rows per model (cached), rank agreement, models that cannot load."""
from __future__ import annotations

import dataclasses

import pytest

from tldiag.data import load_dataset
from tldiag.errors import TldiagError
from tldiag.leaderboard import LeaderboardEntry, evaluate_model, kendall_matrix, leaderboard


def _entry(name: str, **scores) -> LeaderboardEntry:
    base = dict(model_id=name, pretrained=True, n_parameters=1, images_per_second=1.0, device="cpu", best_tap="a",
                probe_accuracy=0.5, probe_se=0.0, recommended_tap="a", penultimate_tap="pre_logits", logme=0.0,
                h_score=0.0, knn_accuracy=0.5, leep=-1.0, nce=-1.0, mmd=0.1, mmd_p_value=0.5, seconds=0.0)
    return LeaderboardEntry(**{**base, **scores})


def test_kendall_tau_between_scores():
    entries = [_entry("a", probe_accuracy=0.9, logme=3.0, leep=-0.5, h_score=1.0),
               _entry("b", probe_accuracy=0.8, logme=2.0, leep=-0.4, h_score=1.0),
               _entry("c", probe_accuracy=0.7, logme=1.0, leep=-0.1, h_score=1.0 + 1e-12),
               _entry("d", probe_accuracy=0.6, logme=0.0, leep=-0.2, h_score=1.0, nce=None)]
    tau = kendall_matrix(entries)
    assert tau["probe_accuracy"]["logme"] == 1.0 and tau["logme"]["probe_accuracy"] == 1.0
    assert tau["probe_accuracy"]["leep"] == pytest.approx(-2 / 3, abs=1e-4)
    assert tau["probe_accuracy"]["h_score"] is None  # constant up to rounding: no ranking
    assert tau["probe_accuracy"]["nce"] is None  # nce is constant on the three models that have it
    assert kendall_matrix(entries[:2])["probe_accuracy"]["logme"] is None  # fewer than 3 models


def test_entries_are_computed_once_and_cached(tiny_model_id):
    src = load_dataset("demo:digits?limit=6")
    tgt = load_dataset("demo:digits?limit=6&shift=rotate&severity=3")
    first = evaluate_model(tiny_model_id, src, tgt, resolution=48)
    assert not first.cached and 0 <= first.probe_accuracy <= 1 and first.penultimate_tap == "pre_logits"
    assert first.n_parameters > 0 and first.images_per_second > 0 and first.leep is not None and first.leep <= 0
    again = evaluate_model(tiny_model_id, src, tgt, resolution=48)
    assert again.cached and dataclasses.replace(again, cached=False) == first


def test_unavailable_models_are_left_out_with_a_note(tiny_model_id):
    src = load_dataset("demo:digits?limit=4")
    tgt = load_dataset("demo:digits?limit=4&shift=invert")
    board = leaderboard([tiny_model_id, "torchvision:resnet18:IMAGENET1K_V1"], src, tgt, resolution=48)
    assert [e.model_id for e in board.entries] == [tiny_model_id]
    assert any("torchvision:resnet18:IMAGENET1K_V1 left out" in n for n in board.notes)
    assert any("at least 3 models" in n for n in board.notes)
    assert board.table()[0]["model"] == tiny_model_id
    with pytest.raises(TldiagError, match="None of the candidate models could be loaded"):
        leaderboard(["torchvision:resnet18:IMAGENET1K_V1"], src, tgt, resolution=48)
