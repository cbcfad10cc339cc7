"""The benchmark command keeps working (its numbers are read by people, never asserted here)."""
import numpy as np
import pytest

from tldiag.bench import main


def test_bench_embed_runs(capsys, tiny_model_id):
    assert main(["embed", "--model", tiny_model_id, "--dataset", "demo:printed-digits", "--n", "40",
                 "--batch-size", "16", "--resolution", "48", "--repeats", "1", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "ratio engine/bare:" in out and "40 images of demo:printed-digits" in out


def test_bench_mmd_runs_and_checks_agreement(capsys):
    assert main(["mmd", "--n", "60", "--d", "8", "--permutations", "50", "--loop-permutations", "20"]) == 0
    out = capsys.readouterr().out
    assert "n = m = 60, d = 8, B = 50" in out and "ratio loop/tldiag:" in out
    assert "(target <= 1e-6: PASS)" in out  # the statistic agrees; the speed is for people to read
    assert main(["mmd", "--n", "60", "--d", "8", "--permutations", "20", "--reference", "none"]) == 0
    assert "peak resident memory" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_umap_runs_both_sides_in_fresh_processes(capsys):
    assert main(["umap", "--n", "150", "--d", "24", "--warm-repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "UMAP of 300 points (150 source + 150 target), 24-d" in out
    assert "(a) umap.UMAP() on the raw features" in out and "(b) tldiag: PCA 50 + exact k-NN + UMAP" in out
    assert "ratio (b)/(a): cold" in out and "trustworthiness difference" in out


def test_synthetic_embeddings_are_shifted_but_overlapping():
    from tldiag.bench import synthetic_embeddings
    from tldiag.metrics import knn_mixing

    Xs, Xt, ys, yt = synthetic_embeddings(600, 1280, 0)
    assert Xs.shape == (600, 1280) and Xs.dtype == np.float32 and len(set(ys)) == 10
    assert 0.2 < knn_mixing(Xs, Xt, random_state=0).score < 0.95


def test_bench_probe_runs_and_checks_agreement(capsys, tiny_model_id):
    assert main(["probe", "--model", tiny_model_id, "--dataset", "demo:digits?limit=6", "--resolution", "48",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "60 images of demo:digits?limit=6" in out and "ratio scikit-learn/tldiag:" in out
    assert "(target <= 1: PASS)" in out  # same C, same solution; the speed is for people to read


@pytest.mark.slow
def test_bench_efficiency_runs_every_arm_from_empty_caches(capsys, tldiag_env):
    assert main(["efficiency", "--dataset", "demo:digits?limit=6", "--resolution", "32", "--repeats", "1",
                 "--target-seconds", "3600", "--epochs", "2", "--epoch-images", "32"]) == 0
    out = capsys.readouterr().out
    assert "capped at <= 2 epochs, >= 32 images per epoch (a smoke test" in out
    # one recorded run per arm, budget and repeat: the small CNN and the 3 fitted arms at 3 budgets, fine-tuning at
    # the budget only on a CPU ("all")
    # 8, 4 and 6 draws (one label per class, two, and all: what the readouts answer for); 4 arms at each, and
    # fine-tuning at "all" only
    assert "78 runs (budgets 1, 2, all x 8, 4, 6 draws), cpu profile" in out
    # the same architecture from scratch is left out on a CPU; the pixel baselines stand beside the small CNN
    assert all(f"  {arm}" in out for arm in ("small-cnn", "pixel-linear", "pixel-knn", "linear-probe", "fine-tuned"))
    assert "  scratch " not in out
    assert "ratio to 3600 s:" in out and "(target <= 1: PASS)" in out
    assert not (tldiag_env / "efficiency").exists(), "the benchmark runs in its own, temporary TLDIAG_HOME"
