"""Work on a Ray cluster (a real local one, 2 CPUs on 127.0.0.1, started once for these tests): the same cache
entries, efficiency runs and leaderboard rows as the local engine, and a cancel that reaches every task."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tldiag.cache import EmbeddingStore
from tldiag.data import load_dataset
from tldiag.embed import embed_dataset, entry_key
from tldiag.models import PRE_LOGITS, load_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
VOLATILE = {"seconds", "images_per_second", "created", "engine", "requested_by"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """``ray start --head --block`` on 127.0.0.1 with 2 CPUs and token authentication (Ray's default for new
    clusters): the settings a driver needs to use it. Ended with its process group."""
    import importlib.util
    import secrets

    if importlib.util.find_spec("ray") is None:
        pytest.skip("make test installs Ray (requirements-dev.txt); pip install 'ray[data]'")

    folder = tmp_path_factory.mktemp("ray")
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    port = _free_port()
    settings = {"TLDIAG_RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(token)}
    log = open(folder / "ray.log", "w")
    env = {**os.environ, **settings, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("TLDIAG_RAY_ADDRESS")
    ray_bin = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
                             "--disable-usage-stats"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    try:
        deadline = time.time() + 90
        while "Ray runtime started" not in Path(log.name).read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start did not come up (exit status {proc.poll()}); see {log.name}")
            time.sleep(0.5)
        # Ray reads its authentication settings once, when it is first imported: set them for the whole module
        os.environ.update({k: settings[k] for k in saved})
        yield settings
    finally:
        if "ray" in sys.modules:
            sys.modules["ray"].shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.killpg(proc.pid, signal.SIGTERM)  # the head and every worker it started
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def on_ray(ray_cluster, monkeypatch):
    for key, value in ray_cluster.items():
        monkeypatch.setenv(key, value)
    return ray_cluster


def _damaged_folder(make_folder) -> Path:
    root = make_folder({"a": 9, "b": 8, "c": 7}, size=32)
    good = (root / "b" / "000.png").read_bytes()
    (root / "b" / "broken.png").write_bytes(good[: len(good) // 2])
    return root


def _manifest(entry) -> dict:
    return {k: v for k, v in entry.manifest.items() if k not in VOLATILE}


def test_ray_embeddings_are_the_local_engines_cache_entries(make_folder, tldiag_env, monkeypatch, ray_cluster):
    """The same images through the local engine and through an actor pool on the cluster: the same entries (values
    within float tolerance, the same manifest), the damaged image skipped and listed by both."""
    root = _damaged_folder(make_folder)
    model = load_model("random:timm:test_resnet", resolution=48)
    taps = ["layer1", PRE_LOGITS]
    local = embed_dataset(model, load_dataset(f"folder:{root}"), taps, batch_size=5, num_workers=0)
    monkeypatch.setenv("TLDIAG_HOME", str(tldiag_env.parent / "ray_home"))
    for key, value in ray_cluster.items():
        monkeypatch.setenv(key, value)
    ds = load_dataset(f"folder:{root}")
    remote = embed_dataset(model, ds, taps, batch_size=5)
    assert remote.engine == "ray" and local.engine == "local"
    assert remote.fingerprint == local.fingerprint and remote.sample_ids == local.sample_ids and len(remote) == 24
    assert dict(remote.skipped) == dict(local.skipped) and len(remote.skipped) == 1
    for tap in remote.taps:
        np.testing.assert_allclose(remote[tap], local[tap], rtol=1e-5, atol=1e-6)
        ray_entry = EmbeddingStore().get(entry_key(model, tap, ds))
        local_entry = EmbeddingStore(tldiag_env / "embeddings").get(entry_key(model, tap, ds))
        assert ray_entry.manifest["engine"] == "ray" and _manifest(ray_entry) == _manifest(local_entry)
        np.testing.assert_array_equal(ray_entry.labels, local_entry.labels)
    assert not list(EmbeddingStore().root.glob("*/.tmp-*"))


def test_efficiency_runs_on_ray_equal_the_local_runs(on_ray, monkeypatch, tldiag_env):
    from tldiag.training.efficiency import EfficiencyConfig, run_experiment

    # draws that differ by budget (3 at one label per class, 2 at three and at all), kept few: Ray is the subject
    config = EfficiencyConfig(target="demo:digits?limit=12", resolution=32, arms=("small-cnn", "linear-probe"),
                              budgets=(1, 3), repeats=2, device="cpu", draw_labels=3, budget_draws=2,
                              schedules={"small-cnn": {"epochs": 3, "min_epochs": 3, "min_epoch_images": 40,
                                                       "lr_grid": (0.5, 1.0)}})
    seen, ticks = [], []
    remote = run_experiment(config, on_run=seen.append, progress=lambda d, t, m: ticks.append((d, t, m)))
    runs_dir = tldiag_env / "efficiency" / "runs"
    stored = sorted(runs_dir.glob("*.json"))
    trained = [r for r in remote.runs if r.arm == "small-cnn"]
    assert len(stored) == len(trained) == 3 + 2 + 2  # budgets 1, 3 and all: each stored by the driver
    assert any("on Ray" in m for _, _, m in ticks) and max(d for d, _, _ in ticks) <= ticks[-1][1]
    monkeypatch.delenv("TLDIAG_RAY_ADDRESS")
    monkeypatch.setenv("TLDIAG_HOME", str(tldiag_env.parent / "local_home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray task on a worker of 1 CPU: the same arithmetic, bit for bit
    try:
        local = run_experiment(config)
    finally:
        torch.set_num_threads(threads)

    def key(r):
        return (r.arm, r.budget, r.repeat, r.n_train, r.accuracy, r.val_accuracy, r.epochs, r.lr, r.correct)
    assert sorted(map(key, remote.runs)) == sorted(map(key, local.runs))
    assert len(seen) == len(remote.runs) == 2 * (3 + 2 + 2)
    # a second launch reads the stored runs back: no task at all
    monkeypatch.setenv("TLDIAG_HOME", str(tldiag_env))
    monkeypatch.setenv("TLDIAG_RAY_ADDRESS", on_ray["TLDIAG_RAY_ADDRESS"])
    again = run_experiment(config)
    assert all(r.reused for r in again.runs if r.arm == "small-cnn")


def test_leaderboard_rows_on_ray_equal_the_local_rows(on_ray, monkeypatch, tldiag_env):
    from tldiag.leaderboard import leaderboard
    from tldiag.probes import ProbeConfig

    source, target = load_dataset("demo:digits?limit=8"), load_dataset("demo:printed-digits?limit=8")
    ids = ["random:timm:test_resnet", "random:timm:test_efficientnet", "timm:resnet18.a1_in1k"]  # the last: no weights offline
    config = ProbeConfig(n_splits=1)
    remote = leaderboard(ids, source, target, resolution=48, config=config)
    monkeypatch.delenv("TLDIAG_RAY_ADDRESS")
    monkeypatch.setenv("TLDIAG_HOME", str(tldiag_env.parent / "local_home"))
    local = leaderboard(ids, source, target, resolution=48, config=config)
    skip = {"seconds", "images_per_second", "cached", "device"}

    def row(e):
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in e.__dict__.items() if k not in skip}
    assert [row(e) for e in remote.entries] == [row(e) for e in local.entries] and len(remote.entries) == 2
    assert remote.notes == local.notes and any("resnet18.a1_in1k left out" in n for n in remote.notes)


def _ray_task_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "ray::_task" in line]


def test_cancelling_the_job_cancels_every_ray_task(on_ray, tldiag_env):
    """An efficiency job on the cluster: its trained runs are Ray tasks in worker processes; a cancel of the job
    ends the job and every task it started (their processes leave the "ray::_task" state)."""
    from tldiag.training.efficiency import EfficiencyConfig
    from tldiag.training.jobs import JobStore, launch

    long = {"epochs": 400, "min_epochs": 400, "min_epoch_images": 400, "lr_grid": (1.0,)}
    config = EfficiencyConfig(target="demo:digits?limit=12", resolution=32, arms=("small-cnn", "fine-tuned"),
                              budgets=(1, 2), repeats=2, device="cpu",
                              schedules={"small-cnn": long, "fine-tuned": long})  # two searches at once
    job = launch("efficiency", config)
    store = JobStore()
    deadline = time.time() + 180
    while time.time() < deadline and len(_ray_task_processes()) < 2:
        assert store.get(job.id).status in ("queued", "running"), store.log_path(job.id).read_text()[-2000:]
        time.sleep(0.5)
    assert len(_ray_task_processes()) >= 2, "the job's runs never started as Ray tasks"
    store.cancel(job.id, grace_s=20)
    deadline = time.time() + 30
    while time.time() < deadline and _ray_task_processes():
        time.sleep(0.5)
    assert store.get(job.id).status == "cancelled"
    assert _ray_task_processes() == [], "a Ray task outlived the cancelled job"


def test_without_ray_configured_nothing_imports_it(make_folder):
    """The local path never imports Ray (an optional extra): a whole embedding pass and a leaderboard in a fresh
    process."""
    root = make_folder({"a": 3, "b": 3})
    code = ("import sys, tldiag.embed, tldiag.leaderboard, tldiag.training.efficiency\n"
            "from tldiag import load_model, load_dataset, embed_dataset\n"
            f"embed_dataset(load_model('random:timm:test_resnet', resolution=32), load_dataset('folder:{root}'), "
            "num_workers=0)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))))")
    env = {k: v for k, v in os.environ.items() if k != "TLDIAG_RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_bad_input_in_a_task_is_the_clear_error_it_is_here(on_ray):
    from tldiag.errors import SpecError
    from tldiag.leaderboard import leaderboard

    data = load_dataset("demo:digits?limit=5")
    with pytest.raises(SpecError, match="'no_such_model_anywhere' is not a timm model"):
        leaderboard(["timm:no_such_model_anywhere"], data, data, resolution=32)


def test_a_cluster_that_is_not_there_is_a_clear_error(monkeypatch, make_folder):
    from tldiag.errors import TldiagError
    from tldiag import distributed

    pytest.importorskip("ray")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("TLDIAG_RAY_ADDRESS", f"127.0.0.1:{_free_port()}")
    with pytest.raises(TldiagError, match="Could not connect to the Ray cluster at TLDIAG_RAY_ADDRESS=") as info:
        distributed.connect()
    assert "ray start --head" in str(info.value) and "unset TLDIAG_RAY_ADDRESS" in str(info.value)
