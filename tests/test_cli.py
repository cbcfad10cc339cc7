from __future__ import annotations

import json
import subprocess
import sys

from tldiag.cli import main


def test_models_lists_offline_first(capsys, tmp_path):
    assert main(["models", "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].startswith("efficientnet-lite0") and "installed" in out
    assert "need a download" in out
    assert json.loads((tmp_path / "m.json").read_text())[0]["id"] == "efficientnet-lite0"


def test_datasets_prints_counts_and_skipped(capsys, make_folder):
    root = make_folder({"a": 3, "b": 2})
    (root / "a" / "bad.png").write_bytes(b"junk")
    assert main(["datasets", f"folder:{root}"]) == 0
    out = capsys.readouterr().out
    assert "5 images, 2 classes" in out and "skipped 1 files" in out and "bad.png" in out


def test_embed_table_and_json(capsys, tmp_path, tiny_model_id):
    args = ["embed", "--model", tiny_model_id, "--source", "demo:digits", "--target", "demo:printed-digits",
            "--limit", "2", "--resolution", "48", "--taps", "layer1,pre_logits", "--json", str(tmp_path / "e.json")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "layer1" in first and "miss" in first
    assert main(args) == 0
    assert "miss" not in capsys.readouterr().out  # everything is a cache hit now
    report = json.loads((tmp_path / "e.json").read_text())
    assert [r["layer"] for r in report["layers"]] == ["layer1", "pre_logits", "logits"]
    assert report["layers"][0]["n_source"] == 20 and report["layers"][0]["source cache"] == "hit"


def test_errors_are_one_line_with_exit_code_2(capsys):
    assert main(["embed", "--model", "nope", "--source", "demo:digits"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tldiag: error: Unknown model id 'nope'") and "Traceback" not in err
    assert main(["datasets", "demo:mnist"]) == 2
    assert "Unknown demo dataset 'mnist'" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = subprocess.run([sys.executable, "-m", "tldiag.cli", "--version"], capture_output=True, text=True)
    assert exe.returncode == 0 and exe.stdout.startswith("tldiag ")


def test_project_prints_scores_and_writes_csv_html_json(capsys, tmp_path, tiny_model_id):
    out_csv, out_html, out_json = (tmp_path / f"map.{ext}" for ext in ("csv", "html", "json"))
    args = ["project", "--model", tiny_model_id, "--resolution", "48", "--source", "demo:digits",
            "--target", "demo:digits?shift=rotate&severity=3", "--limit", "4", "--method", "pca",
            "--csv", str(out_csv), "--html", str(out_html), "--json", str(out_json)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "PCA · euclidean · seed 0" in out and "k-NN domain mixing (k=10, original space)" in out
    assert "trustworthiness of the 2-D map (k=5)" in out and "Mixing within each class" in out
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "x,y,domain,row,sample_id,label,source_neighbour_share" and len(lines) == 81
    assert "digits[" in lines[1] and "tldiag-thumbnail" in out_html.read_text()
    summary = json.loads(out_json.read_text())
    assert summary["layer"] == "pre_logits" and summary["n_source"] == 40 and len(summary["mixing"]["per_class"]) == 10
    assert main(args) == 0 and "(read from the cache)" in capsys.readouterr().out
    assert main(["project", "--model", tiny_model_id, "--source", "demo:digits", "--target", "demo:digits",
                 "--neighbors", "1"]) == 2
    assert "n_neighbors must be an integer >= 2" in capsys.readouterr().err


def test_probe_prints_curves_and_writes_json(capsys, tmp_path, tiny_model_id):
    out = tmp_path / "p.json"
    args = ["probe", "--model", tiny_model_id, "--source", "demo:digits", "--target", "demo:printed-digits",
            "--limit", "5", "--resolution", "48", "--taps", "layer1,pre_logits", "--json", str(out),
            "--leaderboard", tiny_model_id]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "recommended cut:" in text and "Leaderboard" in text and "LEEP" in text
    report = json.loads(out.read_text())
    assert [t["tap"] for t in report["target"]["taps"]] == ["layer1", "pre_logits", "logits"]
    assert report["random_init"] is None  # a random model has no random-init twin
    assert report["source"]["n_samples"] == 50 and report["recommended_cut"] in {"layer1", "pre_logits", "logits"}
    assert report["leaderboard"]["entries"][0]["model_id"] == tiny_model_id


def test_probe_explains_a_one_image_class(capsys, make_folder, tiny_model_id):
    root = make_folder({"a": 5, "b": 1})
    assert main(["probe", "--model", tiny_model_id, "--source", "demo:digits", "--target", f"folder:{root}",
                 "--limit", "3", "--resolution", "48", "--taps", "pre_logits"]) == 2
    assert "fewer than 3 labelled images: 'b' (1)" in capsys.readouterr().err


def test_finetune_waits_prints_the_result_and_registers(capsys, tmp_path, tiny_model_id):
    args = ["finetune", "--model", tiny_model_id, "--target", "demo:digits", "--limit", "3", "--resolution", "32",
            "--epochs", "2", "--wait", "--json", str(tmp_path / "f.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "why: The model has random weights" in out and "10/10/10 train/val/test" in out
    assert "status done" in out and "test accuracy" in out and "changed most" in out
    payload = json.loads((tmp_path / "f.json").read_text())
    assert payload["status"] == "done" and [m["epoch"] for m in payload["metrics"]] == [1, 2]
    assert main(["jobs"]) == 0
    assert payload["id"] in capsys.readouterr().out
    assert main(["jobs", "register", payload["id"], "tiny-cli"]) == 0
    assert "registered finetuned:tiny-cli" in capsys.readouterr().out
    assert main(["jobs", "show", payload["id"]]) == 0
    assert "last lines of" in capsys.readouterr().out


def test_finetune_refuses_bad_settings_before_launching(capsys, tiny_model_id):
    assert main(["finetune", "--model", tiny_model_id, "--target", "demo:digits", "--lr", "0"]) == 2
    assert "lr=0.0 must be a number in (0, 10]" in capsys.readouterr().err
    assert main(["jobs", "cancel", "finetune-nope"]) == 2
    assert "There is no job 'finetune-nope'" in capsys.readouterr().err
    assert main(["jobs"]) == 0 and "no jobs yet" in capsys.readouterr().out


def test_efficiency_runs_prints_the_readouts_and_writes_json(capsys, tmp_path):
    # a 2-epoch small CNN may stay at chance (then it does not vote): the pixel baseline stands for scratch
    args = ["efficiency", "--target", "demo:digits", "--limit", "12", "--resolution", "32", "--arms",
            "small-cnn,pixel-linear,linear-probe", "--budgets", "1,50", "--repeats", "2", "--device", "cpu",
            "--epochs", "2", "--epoch-images", "48", "--json", str(tmp_path / "e.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    # the quick look's caps replace the profile's schedule (early stopping's floor follows the epochs)
    assert "Scratch (small CNN): 32 px, ≤ 2 epochs of ≥ 48 images (early stop after 2," in out
    assert "pool 80, validation 20, test 200 images" in out  # the split's 20 and the spare labelled images
    # 8 draws at one label per class, 6 of the whole pool (what the readouts answer for), 2 more learning rates
    assert "budgets per class: 1, all x 8, 6 draws; 16 trained runs; cpu settings on cpu" in out
    assert "note: Budgets 50 per class are at or above the 8 pool images" in out
    assert "status done" in out and "Scratch (small CNN)" in out and "Transfer, frozen (linear probe)" in out
    assert "- At all (8) labels per class, transfer − scratch" in out
    payload = json.loads((tmp_path / "e.json").read_text())
    assert payload["status"] == "done" and len(payload["runs"]) == 3 * (8 + 6)
    assert {"labels_saved", "break_even", "negative_transfer", "evidence", "summary"} <= set(payload["readouts"])
    assert all(len(r["correct"]) == 200 for r in payload["runs"])


def test_efficiency_refuses_bad_settings_before_launching(capsys):
    assert main(["efficiency", "--target", "demo:digits", "--arms", "small-cnn,scratch"]) == 2
    assert "compare nothing" in capsys.readouterr().err
    assert main(["efficiency", "--target", "demo:digits", "--budgets", "1,two"]) == 2
    assert "--budgets '1,two' must be comma-separated whole numbers" in capsys.readouterr().err
    assert main(["efficiency", "--model", "random:efficientnet-lite0", "--target", "demo:digits"]) == 2
    assert "no transfer to measure" in capsys.readouterr().err
    assert main(["efficiency", "--target", "demo:digits", "--epochs", "-3"]) == 2
    assert "epochs=-3" in capsys.readouterr().err
    assert main(["jobs"]) == 0 and "no jobs yet" in capsys.readouterr().out


def test_the_old_layers_flag_names_its_new_name(capsys):
    from tldiag.cli import main

    assert main(["shift", "--source", "demo:digits", "--target", "demo:digits", "--layers", "pre_logits"]) == 2
    assert "--layers/--layer pre_logits is now --taps/--tap pre_logits" in capsys.readouterr().err
