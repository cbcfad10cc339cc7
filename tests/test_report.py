"""The decision record: what a setup has (caches and finished jobs), the manifest, the HTML report, the CLI."""
from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest

from tldiag.cli import main
from tldiag.errors import TldiagError
from tldiag.training.efficiency import EfficiencyResult, Run, default_schedules
from tldiag.training.finetune import FinetuneConfig, FinetuneResult
from tldiag.training.jobs import JobStore
from tldiag.training.configs import efficiency_config
from tldiag.decision.report import (build_record, embedded_manifest, figures, gather, matching_jobs,
                           permalink)
from tldiag.setup import Setup
from tldiag.decision.verdict import Evidence, decide

HERE = Path(__file__).resolve().parent
SETUP = Setup(target="demo:printed-digits", resolution=32, limit=4)
ARGS = ["--source", "demo:digits", "--target", "demo:printed-digits", "--limit", "4", "--resolution", "32"]


@pytest.fixture
def store(monkeypatch):
    """A job store whose processes can import tests/job_helpers.py."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    return JobStore()


def _efficiency_result(setup: Setup, rng: np.random.Generator) -> dict:
    """A finished experiment: the probe well above the small CNN at 1 and 10 labels, level with it at 'all'."""
    cfg = efficiency_config(setup, arms=("small-cnn", "linear-probe"), budgets=(1, 10), repeats=3)
    runs = []
    for arm, accs in (("small-cnn", (0.3, 0.7, 0.95)), ("linear-probe", (0.8, 0.95, 0.95))):
        for budget, per_class, acc in zip((1, 10, 0), (1.0, 10.0, 24.0), accs):
            for repeat in range(3):
                correct = rng.random(200) < acc
                runs.append(Run(arm=arm, budget=budget, repeat=repeat, n_train=int(per_class * 10),
                                per_class=per_class, accuracy=float(correct.mean()), macro_f1=float(correct.mean()),
                                val_accuracy=acc, correct="".join("1" if c else "0" for c in correct)))
    return EfficiencyResult(config=cfg, classes=tuple(str(i) for i in range(10)), n_pool=240, n_val=80, n_test=200,
                            chance=0.1, budgets=(1, 10, 0), runs=tuple(runs),
                            schedules={"small-cnn": default_schedules("cpu", 32)["small-cnn"]}, augment_reason="",
                            device="cpu", seconds=12.0).to_dict()


def _finetune_result(setup: Setup, model: str, accuracy: float) -> dict:
    cfg = FinetuneConfig(model=model, target=setup.target_spec, source=setup.source_spec,
                         resolution=setup.resolution, seed=setup.seed, strategy="partial", frozen_stages=4)
    history = tuple({"epoch": e, "phase": "all", "train_loss": 1.0 / e, "train_accuracy": 0.5, "val_loss": 1.0 / e,
                     "val_accuracy": 0.5, "seconds": 1.0} for e in (1, 2, 3))
    return FinetuneResult(config=cfg, classes=tuple(str(i) for i in range(10)), n_train=24, n_val=8, n_test=8,
                          test_accuracy=accuracy, test_f1=accuracy, val_accuracy=accuracy, best_epoch=2, epochs_run=3,
                          stopped_early=False, history=history,
                          linear_probe={"tap": "blocks.4", "accuracy": 0.75, "macro_f1": 0.7},
                          cka={"blocks.4": 0.99, "pre_logits": 0.8}, checkpoint="/nowhere.pt", trainable=10,
                          total=100, seconds=3.0, device="cpu").to_dict()


def _replay(store: JobStore, kind: str, config: dict, result: dict) -> str:
    job = store.submit(kind, {**config, "_result": result}, entry="job_helpers:replay")
    assert store.wait(job.id, timeout=60).status == "done"
    return job.id


def test_finished_jobs_of_the_setup_make_measured_signals(store):
    rng = np.random.default_rng(0)
    other = Setup(target="demo:printed-digits", resolution=32, limit=5)  # another target: never read
    _replay(store, "efficiency", efficiency_config(other).to_dict(), _efficiency_result(other, rng))
    eff = _replay(store, "efficiency", efficiency_config(SETUP).to_dict(), _efficiency_result(SETUP, rng))
    ft_cfg = _finetune_result(SETUP, SETUP.model, 0.875)["config"]
    ft = _replay(store, "finetune", ft_cfg, _finetune_result(SETUP, SETUP.model, 0.875))
    scratch_cfg = {**ft_cfg, "model": "random:efficientnet-lite0"}
    scratch = _replay(store, "finetune", scratch_cfg, _finetune_result(SETUP, "random:efficientnet-lite0", 0.25))
    assert [j.id for j in matching_jobs(SETUP, "efficiency", store)] == [eff]

    a = gather(SETUP, store=store)
    assert a.computed == ("efficiency", "finetune") and not a.embedded
    assert a.efficiency["job"] == eff and a.finetune["job"] == ft and a.finetune["scratch_job"] == scratch
    v = decide(a.evidence)
    assert v.signal("finetune").status == "GO" and v.signal("finetune").value == "+62.5 pts"
    e = v.signal("efficiency")
    # at the default budget (10 per class) transfer is well ahead; scratch levels at 'all' (the break-even)
    assert e.kind == "measured" and e.status == "GO" and "catches up" in e.rule
    assert v.decision == "GO" and v.provisional is False and "scratch catches up" in v.break_even
    assert [m.key for m in v.missing] == ["shift", "probes", "baselines"]
    assert list(figures(a)) == ["Data efficiency: test accuracy against labels per class",
                                "Fine-tuning: training curves", "Fine-tuning: which layers changed most (1 − CKA)"]
    # the experiment answers for a budget it ran; for one it did not run, it is not the setup's evidence
    from dataclasses import replace

    assert gather(replace(SETUP, budget=1), store=store).evidence.efficiency.gain.per_class == 1.0
    assert gather(replace(SETUP, budget=2), store=store).efficiency is None


@pytest.mark.slow
def test_the_record_reopens_from_the_cache_and_exports_everything():
    first = gather(SETUP, compute=("shift", "probes"), user="lead@example.com")
    assert first.computed == ("shift", "probes")
    again = gather(SETUP)  # a permalink opened later: read from the stored summaries, nothing recomputed
    assert again.computed == ("shift", "probes") and again.evidence == first.evidence
    record = build_record(again, base_url="http://tldiag.internal:8501/", created="2026-11-22T12:00:00+00:00")
    m, v = record.manifest, record.verdict
    from tldiag import load_dataset, load_model

    model = load_model(SETUP.model, resolution=32)
    target = load_dataset(SETUP.target_spec)
    assert m["model"]["id"] == "efficientnet-lite0" and m["model"]["weights_hash"] == model.weights_hash
    assert m["datasets"]["target"]["fingerprint"] == target.fingerprint and m["datasets"]["target"]["n"] == 40
    assert m["datasets"]["source"]["spec"] == "demo:digits?limit=4"
    assert m["taps"] == model.default_taps() and m["seeds"]["shift"] == 0 and m["seeds"]["probes"] == 0
    assert m["analyses"]["shift"]["settings"]["n_permutations"] == 1000
    # who asked for each stored analysis and for the embeddings under them
    assert m["analyses"]["shift"]["requested_by"] == m["analyses"]["probes"]["requested_by"] == "lead@example.com"
    from tldiag.cache import EmbeddingStore

    assert {e.manifest["requested_by"] for e in map(EmbeddingStore().get, (p.name for p in EmbeddingStore().entries()))
            } == {"lead@example.com"}
    assert m["timings"]["computed_seconds"]["shift"] > 0 and m["timings"]["computed_seconds"]["efficiency"] is None
    assert m["analyses"]["probes"]["settings"]["C_grid"][0] == pytest.approx(1e-4)
    probes = m["analyses"]["probes"]  # the verdict reads the target curve and the floor's LogME, no other curve
    assert probes["result"]["source"] is None and probes["result"]["random_init"] is None
    assert probes["result"]["target"] and probes["transferability"]["reference"] == "raw pixels"
    assert probes["transferability"]["logme_reference"] is not None
    assert all(m["libraries"][k] for k in ("torch", "timm", "scikit-learn", "numpy"))
    assert m["verdict"]["decision"] == v.decision and v.signal("probe") is None  # the floor is the Probes page's
    assert {s.key for s in v.signals} == {"divergence", "transferability"}
    url = urlsplit(m["permalink"])
    assert (url.scheme, url.netloc, url.path) == ("http", "tldiag.internal:8501", "/verdict")
    assert Setup.from_query(dict(parse_qsl(url.query))) == SETUP
    # the manifest alone re-reads into the same verdict
    assert decide(Evidence.from_dict(m["evidence"])) == v
    page = record.html()
    assert "<script src" not in page and "<link" not in page  # opens offline
    assert page.count('class="plotly-graph-div"') == 2  # divergence by depth, probe curves
    assert v.headline in page or v.headline.replace("'", "&#x27;") in page
    assert embedded_manifest(page) == m
    assert permalink(SETUP) == "/verdict?" + url.query


def test_cli_refuses_bad_input_before_computing(tmp_path, capsys):
    assert main(["report", *ARGS, "--skip", "umap"]) == 2
    assert "--skip 'umap': unknown analysis umap; choose from shift, probes, baselines, projection" in \
        capsys.readouterr().err
    assert main(["report", *ARGS, "--budget", "0"]) == 2
    assert "budget=0 must be a whole number of labelled images per class, at least 1" in capsys.readouterr().err
    assert main(["report", *ARGS, "--budget", "999"]) == 2
    assert "budget=999 labels per class is more than the target holds: its largest class has" in \
        capsys.readouterr().err
    bad = tmp_path / "rules.toml"
    bad.write_text("[probe]\ngain = 0.1\n")
    assert main(["report", *ARGS, "--rules", str(bad)]) == 2
    assert "unknown key probe.gain; [probe] has gain_go, gain_no_go" in capsys.readouterr().err
    assert main(["report", *ARGS, "--html", str(tmp_path / "no" / "r.html")]) == 2
    assert "does not exist; create it or write elsewhere" in capsys.readouterr().err
    assert main(["report", "--target", "demo:digits"]) == 2
    assert not (tmp_path / "tldiag_home" / "analyses").exists()  # nothing computed, nothing stored


@pytest.mark.slow
def test_cli_report_headless(tmp_path, capsys):
    html, manifest = tmp_path / "r.html", tmp_path / "r.json"
    rc = main(["report", *ARGS, "--skip", "projection,efficiency,finetune", "--html", str(html), "--json",
               str(manifest), "--fail-on", "caution"])
    out = capsys.readouterr()
    m = json.loads(manifest.read_text())
    decision = m["verdict"]["decision"]
    assert rc == (0 if decision == "GO" else 3)
    assert out.out.startswith(decision) and "Transfer vs the best scratch baseline" in out.out
    assert "not computed: Data-efficiency experiment" in out.out
    assert "shift" in out.err and "permalink: /verdict?model=efficientnet-lite0" in out.err  # progress on stderr
    assert embedded_manifest(html.read_text()) == m


def test_a_budget_needs_a_labelled_target(make_folder, tiny_model_id):
    folder = make_folder(flat=12)
    setup = Setup(model=tiny_model_id, source="demo:digits", target=f"folder:{folder}", resolution=32, limit=10,
                  budget=5)
    with pytest.raises(TldiagError, match="budget=5 labels per class, but the target .* has no labels"):
        gather(setup)


def test_an_unlabelled_target_still_gets_the_divergence(make_folder, tiny_model_id):
    """Probes need labels: they are reported as not run, and the shift tests still give a provisional verdict."""
    folder = make_folder(flat=12)
    setup = Setup(model=tiny_model_id, source="demo:digits", target=f"folder:{folder}", resolution=32, limit=10)
    a = gather(setup, compute=("shift", "probes"))
    assert a.computed == ("shift",) and "label" in a.errors["probes"]
    record = build_record(a)
    assert record.manifest["errors"] == {"probes": a.errors["probes"]}
    # the tiny model has random weights: nothing to transfer, NO-GO by definition, the divergence still shown
    assert record.verdict.decision == "NO-GO" and record.verdict.signal("candidate").value == "random weights"
    assert record.verdict.signal("divergence") is not None and "Could not run" in record.html()
