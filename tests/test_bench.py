"""The benchmark command keeps working (its numbers are read by people, never asserted here)."""
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
