"""The benchmark command keeps working (its numbers are read by people, never asserted here)."""
from tldiag.bench import main


def test_bench_embed_runs(capsys, tiny_model_id):
    assert main(["embed", "--model", tiny_model_id, "--dataset", "demo:printed-digits", "--n", "40",
                 "--batch-size", "16", "--resolution", "48", "--repeats", "1", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "ratio engine/bare:" in out and "40 images of demo:printed-digits" in out
