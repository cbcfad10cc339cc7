"""Benchmarks that print ratios: ``python -m tldiag.bench {embed,mmd,umap,probe,efficiency,report,verdict,scale} ...``.

``scale``: data at the size teams have: the open time of a 100,000-file folder, images/s of the local and the Ray
engine over 20,000 JPEGs listed in a CSV manifest (target Ray / local >= 0.85), and peak memory at 2,000 vs 20,000
images (target <= 1.3); see :mod:`tldiag._bench_scale`.

``embed``: images/s of the embedding engine on the demo data (decode, resize, normalise, all
taps + logits, from a dataset spec) against a bare ``model(x)`` on preloaded, normalised
channels_last tensors of the same images, same batch size and device. Target ratio >= 0.9.

``mmd``: tldiag's permutation test (kernel once, permutations as batched quadratic forms) against
the per-permutation loop over the kernel matrix that alibi-detect's MMDDrift uses
(``K[perm][:, perm]`` then the unbiased statistic), n = m = 4,000, d = 1,280, B = 1,000. Target
>= 20x faster with the same statistic to 1e-6 relative. ``--n 50000 --reference none`` probes the
largest size (peak memory is printed).

``umap``: 10,000 + 10,000 points of 1,280-d synthetic embeddings (10 classes of 4 sub-clusters each in a
32-d latent space, mapped through a random ReLU layer, plus noise; the target's latent is shifted). (a)
umap-learn with its defaults on the raw features, ``umap.UMAP().fit_transform(X)`` (NN-descent, 2
threads, unseeded) against (b) tldiag's seeded pipeline (``tldiag.projection.project``: PCA 50, exact
k-NN, UMAP from precomputed neighbours). Each runs in a fresh process twice: cold (the first fit of the
process, numba compilation included) and warm (the median of the next three). Trustworthiness of both pictures is computed
against the raw 1,280-d features. Target: (b) <= 0.5x the time of (a), trustworthiness within 0.01.

``probe``: the whole linear-probe sweep of :func:`tldiag.probes.probe_curve` (every tap of the default model
on the demo target, every C of the grid, every split, the refit) against scikit-learn doing the same sweep
with the same splits, standardisation, grid, selection rule, ``tol`` and ``max_iter``:
``LogisticRegression(solver="lbfgs", warm_start=True)`` along the grid, one fit per (tap, split, C). The
best of ``--repeats`` runs of each; test accuracies must agree within 1 point. Target >= 5x faster.

``efficiency``: the whole data-efficiency experiment of the demo (Lite0 at 128 px, printed digits with 50 per
class, every arm, budgets 1-20 and all, 3 repeats, the ``cpu`` profile on a machine without a GPU) from an empty
run store and embedding cache (a temporary ``TLDIAG_HOME``), with the seconds spent in each arm. Target: "a
few minutes", read as a ratio to 300 s of at most 1.

``report``: ``tldiag report`` (the whole decision: shift, probes, baselines, UMAP, the data-efficiency experiment and a
fine-tune) and ``tldiag report --fast`` (no training beyond the baselines), each in a fresh process from empty caches,
on the demo and on 500 + 500 images of 28x28 digits (handwritten upscaled from 8x8, and printed) at 128 px. Targets:
the whole decision <= 300 s, the fast verdict <= 60 s, printed as ratios.

``verdict``: the scenario panel of :mod:`tldiag.decision.panel`: per scenario the realised outcome (stored; ``--realise``
recomputes it), the fast verdict and the full verdict; the 3x3 tables (decided x realised), agreement and Cohen's
kappa, the same for simple rules (always NO-GO, always GO, MMD alone, LogME alone) and the scenarios where GO and NO-GO
were confused. Targets: full >= 90% with kappa >= 0.7, fast >= 80% with kappa >= 0.6, never GO where the outcome is
NO-GO nor NO-GO where it is GO. ``--limits 50,100,200`` decides every scenario at each per-class limit instead: the
decision may move between CAUTION and a firm answer as data grows, never from GO to NO-GO or back.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from . import _bench_scale


def bench_embed(model_id: str, spec: str, n: int, batch_size: int, resolution: int | None,
                repeats: int, num_workers: int | None) -> dict:
    from .data import load_dataset, with_options
    from .embed import embed_dataset
    from .forward import ResizeCrop, default_num_workers, normalise
    from .models import load_model
    from . import _config

    device = torch.device(_config.device_name())
    model = load_model(model_id, resolution=resolution)
    ds = load_dataset(with_options(spec, n=n) if spec.startswith("demo:printed-digits") else spec)
    taps = model.default_taps()
    workers = default_num_workers() if num_workers is None else num_workers

    # (b) the ceiling: bare forward passes on preloaded tensors
    resize = ResizeCrop(model.preprocessing)
    batches = [normalise(torch.stack([resize(ds[i]) for i in range(s, min(s + batch_size, len(ds)))]),
                         model.preprocessing).to(device) for s in range(0, len(ds), batch_size)]
    module = model.module.to(device).to(memory_format=torch.channels_last).eval()

    def bare() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                module(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(ds) / (time.perf_counter() - t)

    def engine() -> float:
        t = time.perf_counter()
        embed_dataset(model, ds, taps, batch_size=batch_size, device=str(device), num_workers=workers,
                      use_cache=False)
        return len(ds) / (time.perf_counter() - t)

    bare()  # warm-up (allocator, kernels)
    engine()
    bare_ips, engine_ips = [], []
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        bare_ips.append(bare())
        engine_ips.append(engine())
    # Each engine run is compared with the bare run just before it (same machine state); the
    # median of those ratios is robust to the drift of a shared machine.
    ratios = sorted(e / b for e, b in zip(engine_ips, bare_ips))
    return {"model": model.id, "dataset": ds.spec, "n": len(ds), "batch_size": batch_size,
            "input_size": model.preprocessing.input_size, "device": str(device), "workers": workers,
            "taps": len(taps) + 1, "bare_ips": statistics.median(bare_ips),
            "engine_ips": statistics.median(engine_ips), "ratio": statistics.median(ratios),
            "ratio_range": (ratios[0], ratios[-1]), "torch_threads": torch.get_num_threads()}


def _mmd2_from_kernel_matrix(K: torch.Tensor, m: int) -> float:
    """The unbiased statistic from a full (n+m)² kernel matrix, as alibi-detect computes it."""
    n = K.shape[0] - m
    K = K - torch.diag(K.diag())
    return float(K[:-m, :-m].sum() / (n * (n - 1)) + K[-m:, -m:].sum() / (m * (m - 1))
                 - 2 * K[-m:, :-m].sum() / (n * m))


def bench_mmd(n: int, d: int, permutations: int, loop_permutations: int, reference: bool, seed: int) -> dict:
    import resource

    import numpy as np

    from .metrics import median_heuristic, mmd_test
    from .validation import metric_device
    from .metrics.mmd import permutation_statistics

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(n, d)) + 0.02  # a small shift: the null and the statistic overlap in scale
    sigma = median_heuristic(X, Y, random_state=seed)
    mmd_test(X[:50], Y[:50], bandwidth=sigma, n_permutations=10, n_bootstrap=0)  # warm-up (threads, allocator)
    t = time.perf_counter()
    ours = mmd_test(X, Y, bandwidth=sigma, n_permutations=permutations, n_bootstrap=0, random_state=seed)
    ours_s = time.perf_counter() - t
    out = {"n": n, "d": d, "permutations": permutations, "device": ours.device, "sigma": sigma,
           "ours_s": ours_s, "mmd2": ours.mmd2, "p_value": ours.p_value,
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "torch_threads": torch.get_num_threads()}
    if not reference:
        return out
    # the loop reference: the full kernel matrix, then one fancy-indexed copy per permutation, in float32
    # as alibi-detect runs it (the faster baseline); the statistic is checked against float64
    dev = metric_device(None)
    t = time.perf_counter()
    Z_np = np.concatenate([X, Y])
    Z = torch.from_numpy(Z_np).to(dev)
    K64 = torch.exp(-torch.cdist(Z, Z) ** 2 / (2 * sigma ** 2))
    K = K64.float()
    kernel_s = time.perf_counter() - t
    observed = _mmd2_from_kernel_matrix(K64, n)
    perm_rng = np.random.default_rng(seed + 1)
    perms = [torch.from_numpy(perm_rng.permutation(2 * n)).to(dev) for _ in range(loop_permutations)]
    t = time.perf_counter()
    for p in perms:
        _mmd2_from_kernel_matrix(K[p][:, p], n)
    loop_s = time.perf_counter() - t
    # some of the same permutations through tldiag's batched quadratic forms, against float64 loops
    check = perms[:20]
    loop_null = [_mmd2_from_kernel_matrix(K64[p][:, p], n) for p in check]
    splits = np.zeros((len(check), 2 * n), dtype=bool)
    for k, p in enumerate(check):
        splits[k, p[:n].cpu().numpy()] = True
    batched, _, _ = permutation_statistics(Z_np, splits, np.zeros((2 * n, 0)), np.zeros((2 * n, 0)),
                                (sigma,), dev, 1 << 30)
    null_scale = float(np.std(loop_null)) or 1.0
    per_perm = loop_s / loop_permutations
    out.update(kernel_s=kernel_s, loop_per_permutation_s=per_perm, loop_permutations=loop_permutations,
               loop_s=kernel_s + per_perm * permutations, reference_mmd2=observed,
               rel_err=abs(ours.mmd2 - observed) / abs(observed),
               null_err=float(np.max(np.abs(batched - np.array(loop_null)))) / null_scale,
               peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    out["speedup"] = out["loop_s"] / ours_s
    return out


def synthetic_embeddings(n: int, d: int, seed: int):
    """Source and target "embeddings" with class structure and a domain shift (see the module docstring):
    ``(X_source, X_target, y_source, y_target)``, float32, labels as class names."""
    import numpy as np

    rng = np.random.default_rng(seed)
    latent_dim, n_classes, n_sub = 32, 10, 4
    class_centres = rng.normal(scale=3.0, size=(n_classes, latent_dim))
    sub_centres = class_centres[:, None, :] + rng.normal(scale=1.0, size=(n_classes, n_sub, latent_dim))
    W = rng.normal(size=(latent_dim, d)) / np.sqrt(latent_dim)
    shift = rng.normal(scale=0.25, size=latent_dim)

    def domain(k: int, offset):
        y = rng.integers(0, n_classes, k)
        z = sub_centres[y, rng.integers(0, n_sub, k)] + rng.normal(scale=0.7, size=(k, latent_dim)) + offset
        X = np.maximum(z @ W, 0.0) + rng.normal(scale=0.3, size=(k, d))
        return X.astype(np.float32), np.array([f"class {c}" for c in y])
    Xs, ys = domain(n, 0.0)
    Xt, yt = domain(n, shift)
    return Xs, Xt, ys, yt


def _umap_worker(which: str, n: int, d: int, seed: int, out: str, warm_repeats: int) -> None:
    """One side of ``bench umap`` in this (fresh) process: the cold fit, then ``warm_repeats`` warm fits (their
    median is reported: a shared machine is noisy); writes the last coordinates and the times."""
    import json
    import warnings

    import numpy as np

    Xs, Xt, ys, yt = synthetic_embeddings(n, d, seed)
    t = time.perf_counter()
    import umap
    import_s = time.perf_counter() - t
    times, totals, coords = [], [], None
    for _ in range(1 + warm_repeats):
        if which == "a":
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                coords = umap.UMAP().fit_transform(np.vstack([Xs, Xt]))
            times.append(time.perf_counter() - t)
            totals.append(times[-1])
        else:
            from .projection import ProjectionParams, project

            p = project(Xs, Xt, y_source=ys, y_target=yt, params=ProjectionParams(max_samples=None, random_state=seed),
                        use_cache=False)
            times.append(p.seconds["pca"] + p.seconds["projection"])
            totals.append(p.seconds["total"])
            coords = p.coords  # source rows first, all rows kept: the same order as (a)
            extra = {"n_epochs": p.n_epochs, "mixing": p.mixing.score, "trust_own": p.trustworthiness}
    result = {"import_s": import_s, "cold_s": times[0], "warm_s": statistics.median(times[1:]),
              "warm_runs": times[1:], "cold_total_s": totals[0], "warm_total_s": statistics.median(totals[1:]),
              **(extra if which == "b" else {})}
    np.save(out + ".npy", np.asarray(coords, dtype=np.float32))
    with open(out + ".json", "w") as fh:
        json.dump(result, fh)


def bench_umap(n: int, d: int, seed: int, warm_repeats: int = 3) -> dict:
    import json
    import subprocess
    import tempfile

    import numpy as np

    from .metrics import trustworthiness

    Xs, Xt, _, _ = synthetic_embeddings(n, d, seed)
    X = np.vstack([Xs, Xt])
    out: dict = {"n": n, "d": d, "seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("a", "b"):
            path = f"{tmp}/{which}"
            subprocess.run([sys.executable, "-m", "tldiag.bench", "umap-worker", which, "--n", str(n), "--d", str(d),
                            "--seed", str(seed), "--out", path, "--warm-repeats", str(warm_repeats)], check=True)
            with open(path + ".json") as fh:
                r = json.load(fh)
            r["trustworthiness"] = trustworthiness(X, np.load(path + ".npy"), n_neighbors=5)
            out[which] = r
    a, b = out["a"], out["b"]
    out["ratio_cold"] = b["cold_s"] / a["cold_s"]
    out["ratio_warm"] = b["warm_s"] / a["warm_s"]
    out["trust_diff"] = b["trustworthiness"] - a["trustworthiness"]
    return out


def _sklearn_probe_sweep(features: dict, y, splits, config, fixed_C: dict | None = None) -> dict[str, list[float]]:
    """The probe protocol of :func:`tldiag.probes.probe_curve` written with scikit-learn, for the benchmark:
    test accuracy per tap and split. ``fixed_C`` (tap -> C per split) skips the selection and refits at those."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    out = {}
    for tap, X in features.items():
        X = np.asarray(X, dtype=np.float64)
        accs = []
        for k, (train, val, test) in enumerate(splits):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                if fixed_C is not None:
                    best = fixed_C[tap][k]
                else:
                    scaler = StandardScaler().fit(X[train])
                    A, B = scaler.transform(X[train]), scaler.transform(X[val])
                    clf = LogisticRegression(max_iter=config.max_iter, tol=config.tol, warm_start=True)
                    keys = []
                    for c in sorted(config.C_grid):
                        clf.set_params(C=c)
                        clf.fit(A, y[train])
                        proba = clf.predict_proba(B)
                        keys.append((np.mean(clf.classes_[proba.argmax(1)] == y[val]),
                                     -log_loss(y[val], proba, labels=clf.classes_)))
                    best = sorted(config.C_grid)[max(range(len(keys)), key=lambda i: keys[i])]
                tv = np.concatenate([train, val])
                scaler = StandardScaler().fit(X[tv])
                final = LogisticRegression(C=best, max_iter=config.max_iter, tol=config.tol)
                final.fit(scaler.transform(X[tv]), y[tv])
            accs.append(float(np.mean(final.predict(scaler.transform(X[test])) == y[test])))
        out[tap] = accs
    return out


def bench_probe(model_id: str, spec: str, resolution: int | None, repeats: int, seed: int) -> dict:
    import numpy as np

    from . import _config
    from .data import load_dataset
    from .embed import embed_dataset
    from .models import load_model
    from .probes import ProbeConfig, probe_curve, stratified_splits

    model = load_model(model_id, resolution=resolution)
    ds = load_dataset(spec)
    emb = embed_dataset(model, ds, model.tap_names)
    features = {t: np.asarray(emb[t]) for t in model.tap_names}
    config = ProbeConfig()
    y = np.unique(emb.labels, return_inverse=True)[1]
    splits = stratified_splits(y, config.n_splits, val_size=config.val_size, test_size=config.test_size,
                               random_state=seed)
    ours, ref = [], []
    curve = reference = None
    for _ in range(repeats):
        t = time.perf_counter()
        curve = probe_curve(features, emb.labels, classes=emb.classes, config=config, random_state=seed)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        reference = _sklearn_probe_sweep(features, y, splits, config)
        ref.append(time.perf_counter() - t)
    assert curve is not None and reference is not None
    same_C = _sklearn_probe_sweep(features, y, splits, config, fixed_C={t.tap: t.C for t in curve.taps})
    diffs = {t.tap: abs(t.mean - float(np.mean(same_C[t.tap]))) for t in curve.taps}
    own = {t.tap: abs(t.mean - float(np.mean(reference[t.tap]))) for t in curve.taps}
    return {"model": model.id, "input_size": model.preprocessing.input_size, "dataset": ds.spec, "n": len(ds),
            "taps": len(features), "dims": [f.shape[1] for f in features.values()], "grid": len(config.C_grid),
            "splits": config.n_splits, "device": _config.device_name(), "torch_threads": torch.get_num_threads(),
            "ours_s": min(ours), "ours_runs": ours, "sklearn_s": min(ref), "sklearn_runs": ref,
            "speedup": min(ref) / min(ours), "max_acc_diff": max(diffs.values()), "acc_diffs": diffs,
            "max_own_diff": max(own.values()),
            "curve": [(t.tap, t.mean, float(np.mean(same_C[t.tap])), float(np.mean(reference[t.tap])))
                      for t in curve.taps]}


def bench_efficiency(model_id: str, spec: str, resolution: int, repeats: int, target_s: float, *,
                     epochs: int | None = None, epoch_images: int | None = None) -> dict:
    """The experiment's seconds against ``target_s``; ``epochs`` / ``epoch_images`` cap every trained arm's schedule
    (:func:`~tldiag.training.efficiency.schedule_caps`: a smoke test of the benchmark, not its figure)."""
    import os
    import tempfile
    from collections import defaultdict

    from .training.efficiency import (ARMS, ARM_TITLES, EfficiencyConfig, budget_label, curves, readouts,
                                      run_experiment, schedule_caps)

    caps = schedule_caps(ARMS, epochs=epochs, epoch_images=epoch_images)
    old = os.environ.get("TLDIAG_HOME")
    with tempfile.TemporaryDirectory(prefix="tldiag-bench-") as home:
        os.environ["TLDIAG_HOME"] = home
        try:
            t = time.perf_counter()
            result = run_experiment(EfficiencyConfig(model=model_id, target=spec, resolution=resolution,
                                                     repeats=repeats, schedules=caps))
            seconds = time.perf_counter() - t
        finally:
            if old is None:
                os.environ.pop("TLDIAG_HOME", None)
            else:
                os.environ["TLDIAG_HOME"] = old
    by_arm: dict[str, float] = defaultdict(float)
    for r in result.runs:
        by_arm[r.arm] += r.seconds
    table = {ARM_TITLES[arm]: {budget_label(b): f"{c.mean[i]:.2f} ({c.low[i]:.2f}–{c.high[i]:.2f})"
                               for i, b in enumerate(c.budgets)} for arm, c in curves(result).items()}
    return {"seconds": seconds, "by_arm": dict(by_arm), "runs": len(result.runs), "profile": result.config.profile,
            "capped": bool(caps),
            "table": table,
            "device": result.device, "budgets": result.budgets,
            "draws": [result.config.draws(b, result.reference) for b in result.budgets],
            "summary": readouts(result).summary,
            "ratio": seconds / target_s, "target_s": target_s, "torch_threads": torch.get_num_threads()}


def _digits28_folders(root) -> tuple[str, str]:
    """500 + 500 images of 28x28 digits as PNG class folders: the handwritten ones (scikit-learn's 8x8 digits
    upscaled to 28 px) as source, the printed ones (DejaVu fonts) at 28 px as target."""
    from pathlib import Path

    from PIL import Image

    from .data import load_dataset

    out = []
    for name, spec in (("handwritten28", "demo:digits?limit=50"), ("printed28", "demo:printed-digits?limit=50")):
        ds = load_dataset(spec)
        folder = Path(root) / name
        for i in range(len(ds)):
            d = folder / ds.classes[ds.labels[i]]
            d.mkdir(parents=True, exist_ok=True)
            ds[i].convert("L").resize((28, 28), Image.BILINEAR).save(d / f"{i:05d}.png")
        out.append(f"folder:{folder}")
    return out[0], out[1]


def bench_report(args: argparse.Namespace) -> int:
    """The whole decision (``tldiag report``) and the fast verdict (``--fast``), each from empty caches."""
    import os
    import subprocess
    import tempfile

    import json
    from pathlib import Path

    cases = [("demo", "demo:digits", "demo:printed-digits", 50)]
    with tempfile.TemporaryDirectory(prefix="tldiag-bench-report-") as tmp:
        if not args.demo_only:
            cases.append(("28x28 digits at 128 px", *_digits28_folders(tmp), None))
        rows = []
        for name, source, target, limit in cases:
            for mode, target_s in (("fast", args.fast_seconds), ("full", args.full_seconds)):
                if mode not in args.modes.split(","):
                    continue
                home = tempfile.mkdtemp(prefix="home-", dir=tmp)
                env = {**os.environ, "TLDIAG_HOME": home, "TLDIAG_DATA_ROOTS": tmp}
                cmd = [sys.executable, "-m", "tldiag.cli", "report", "--model", args.model, "--source", source,
                       "--target", target, "--resolution", "128", "--json", os.path.join(home, "m.json")]
                cmd += ["--limit", str(limit)] if limit else []
                cmd += ["--budget", str(args.budget)] if args.budget else []
                cmd += ["--fast"] if mode == "fast" else []
                t = time.perf_counter()
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - t
                decision = (done.stdout.split() or ["?"])[0]
                rows.append((name, mode, seconds, target_s, decision, done.returncode))
                print(f"{name:24s} {mode:4s} {seconds:7.1f} s  ratio to {target_s:.0f} s: {seconds / target_s:.2f}  "
                      f"{'PASS' if seconds <= target_s else 'FAIL'}  ({decision}, exit {done.returncode})", flush=True)
                manifest = Path(home) / "m.json"
                if manifest.is_file():  # where the seconds went (the analyses computed here; jobs as a whole)
                    t_ = json.loads(manifest.read_text())["timings"]
                    phases = {k: v for k, v in t_.get("read_seconds", {}).items() if k in ("embeddings", "source_head")}
                    phases.update({k: v for k, v in t_.get("computed_seconds", {}).items() if v})
                    print("    " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()), flush=True)
                if done.returncode not in (0, 3):
                    print(done.stderr[-2000:], file=sys.stderr)
    return 0


def _verdict_tables(a, log=print) -> None:
    """The panel's scores: the 3x3 table of each verdict (decided x realised), agreement and Cohen's kappa, the
    simple rules beside them, and the scenarios where GO and NO-GO were confused."""
    from .decision.verdict import DECISIONS

    log("realised outcomes: " + ", ".join(f"{k} {v}" for k, v in a.realised.items()))
    for sc in a.scores:
        log(f"\n{sc.name}: agreement {sc.agreement:.0%}, Cohen's kappa {sc.kappa:+.2f}, GO where realised NO-GO "
            f"{sc.go_on_no_go}, NO-GO where realised GO {sc.no_go_on_go}")
        if sc.name in ("fast", "full"):
            log("  " + "decided / realised".ljust(20) + "".join(f"{k:>9s}" for k in DECISIONS))
            for d in DECISIONS:
                log(f"  {d:20s}" + "".join(f"{sc.table[d][r]:9d}" for r in DECISIONS))
    log("\nGO and NO-GO confused: " + ("; ".join(a.confused) if a.confused else "none"))


def bench_verdict(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .decision import panel
    from .decision.verdict import CAUTION, load_rules

    names = [n.strip() for n in (args.scenarios or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in {s.name for s in panel.SCENARIOS}]
    if unknown:
        print(f"unknown scenarios {unknown}; the panel has {', '.join(s.name for s in panel.SCENARIOS)}",
              file=sys.stderr)
        return 2
    try:
        limits = [int(x) for x in (args.limits or "").split(",") if x.strip()]
    except ValueError:
        print(f"--limits {args.limits!r} must be whole numbers of images per class joined by commas, e.g. 50,100,200",
              file=sys.stderr)
        return 2
    rules = load_rules(args.rules)
    if limits:
        print(f"the fast verdict of every scenario at per-class limits {', '.join(map(str, limits))} (seed 0, rules "
              f"from {rules.origin})", flush=True)
        rows = panel.stability(limits, names or None, rules, log=lambda m: print(m, flush=True))
        print(f"\n{'scenario':28s} " + " ".join(f"{f'limit {x}':>34s}" for x in limits) + "  flips")
        for r in rows:
            cells = [f"{r.decisions[x]} {r.gains[x]} n={r.n_test[x]}" for x in limits]
            print(f"{r.scenario.name:28s} " + " ".join(f"{c:>34s}" for c in cells) + f"  {'GO<->NO-GO' if r.flips else '-'}")
        flips = [r.scenario.name for r in rows if r.flips]
        outcomes = panel.load_outcomes(Path(args.outcomes) if args.outcomes else panel.OUTCOMES_FILE)
        scored = [r for r in rows if r.scenario.name in outcomes]
        if scored:  # the same agreement as the panel's, at each limit
            print("\nagainst the realised outcomes:")
            for x in limits:
                s = panel.score(f"limit {x}", [(r.decisions[x], outcomes[r.scenario.name]["outcome"]) for r in scored])
                firm = sum(r.decisions[x] != CAUTION for r in scored)
                print(f"  limit {x:4d}: agreement {s.agreement:.0%}, Cohen's kappa {s.kappa:+.2f}, firm decisions "
                      f"{firm}/{len(scored)}, GO where realised NO-GO {s.go_on_no_go}, NO-GO where realised GO "
                      f"{s.no_go_on_go}")
        print(f"\n{len(rows)} scenarios at {len(limits)} limits; GO to NO-GO or back: "
              f"{', '.join(flips) if flips else 'none'} ({'PASS' if not flips else 'FAIL'})")
        return 0
    path = Path(args.outcomes) if args.outcomes else panel.OUTCOMES_FILE
    if args.realise:
        panel.realise_all(names or None, path, log=lambda m: print(m, flush=True))
    outcomes = panel.load_outcomes(path)
    if not outcomes:
        print(f"no realised outcomes in {path}; compute them with `python -m tldiag.bench verdict --realise`",
              file=sys.stderr)
        return 2
    print(f"scenario panel: {len(outcomes)} realised outcomes from {path} (seed {panel.REALISED_SEED}, own split, "
          f"{panel.REALISED_DRAWS} draws, long schedules); verdicts at seed 0 with the rules from {rules.origin}",
          flush=True)
    t0 = time.perf_counter()
    evidences: dict = {}
    rows = panel.run_panel(outcomes, names or None, rules, log=lambda m: print(m, flush=True), evidences=evidences,
                           full=not args.fast_only)
    print()
    print(f"{'scenario':28s} {'budget':>6s} {'realised':>9s} {'gain (95% CI)':>22s} {'fast':>9s} {'full':>9s}  "
          f"fast s  full s  led by (fast / full)")
    for r in rows:
        o = outcomes[r.scenario.name]
        gain = "—" if o.get("gain") is None else \
            f"{100 * o['gain']:+.1f} ({100 * o['low']:+.1f} to {100 * o['high']:+.1f})"
        mark = lambda v: v + ("" if v == r.realised else " ✗")  # noqa: E731
        print(f"{r.scenario.name:28s} {r.scenario.budget:6d} {r.realised:>9s} {gain:>22s} {mark(r.fast):>9s} "
              f"{mark(r.full):>9s}  {r.fast_seconds:6.0f}  {r.full_seconds:6.0f}  {r.fast_led} / {r.full_led}")
    a = panel.agreement(rows)
    print()
    _verdict_tables(a)
    t_full, t_fast = panel.TARGETS["full"], panel.TARGETS["fast"]
    print(f"\nover {a.n} scenarios: full {a.full:.0%} (kappa {a.full_kappa:+.2f}; target >= {t_full[0]:.0%} and "
          f"{t_full[1]:g}), fast {a.fast:.0%} (kappa {a.fast_kappa:+.2f}; target >= {t_fast[0]:.0%} and {t_fast[1]:g}),"
          f" GO/NO-GO confusions {a.confusions} (target 0): {'PASS' if a.ok else 'FAIL'} "
          f"({time.perf_counter() - t0:.0f} s)")
    if args.sweep:
        print("\nthe same evidence decided again under other margins for [baseline] and [efficiency], best first:")
        print(f"{'margin':>7s} {'fast':>6s} {'kappa':>6s} {'full':>6s} {'kappa':>6s} {'confusions':>10s}")
        for x in panel.sweep(evidences, outcomes, rules)[:args.sweep]:
            g = x.agreement
            print(f"{100 * x.margin:+6.1f}p {g.fast:6.0%} {g.fast_kappa:+6.2f} {g.full:6.0%} {g.full_kappa:+6.2f} "
                  f"{g.confusions:10d}  {'PASS' if g.ok else 'FAIL'}")
    if args.json:
        from .cache import atomic_write_text, json_default

        atomic_write_text(Path(args.json), json.dumps(
            {"rows": [{**r.__dict__, "scenario": r.scenario.__dict__,
                       "evidence": {"fast": evidences[r.scenario.name][0].to_dict(),
                                    "full": evidences[r.scenario.name][1].to_dict()}} for r in rows],
             "agreement": {k: v for k, v in a.__dict__.items() if k != "scores"},
             "scores": [s.__dict__ for s in a.scores]}, indent=1, default=json_default))
    return 0 if a.ok or not args.check else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tldiag.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("embed", help="embedding engine vs bare forward pass")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--dataset", default="demo:digits", help="dataset spec (default: the demo's source)")
    p.add_argument("--n", type=int, default=1000, help="images for demo:printed-digits")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--resolution", type=int, default=128, help="input px (the demo's default: 128)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=None)
    p = sub.add_parser("mmd", help="batched permutation test vs a per-permutation loop")
    p.add_argument("--n", type=int, default=4000, help="samples per side (default 4000)")
    p.add_argument("--d", type=int, default=1280, help="features (default 1280)")
    p.add_argument("--permutations", type=int, default=1000)
    p.add_argument("--loop-permutations", type=int, default=100,
                   help="permutations the loop actually runs; its time is scaled to --permutations (default 100)")
    p.add_argument("--reference", choices=["loop", "none"], default="loop",
                   help="'none' skips the loop (for sizes whose full kernel matrix does not fit)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("umap", help="umap-learn defaults on raw features vs tldiag's projection pipeline")
    p.add_argument("--n", type=int, default=10000, help="points per side (default 10000)")
    p.add_argument("--d", type=int, default=1280, help="features (default 1280)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warm-repeats", type=int, default=3, help="warm fits per side; the median is reported (default 3)")
    p = sub.add_parser("probe", help="batched torch L-BFGS probe sweep vs scikit-learn doing the same sweep")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--dataset", default="demo:printed-digits?limit=50",
                   help="dataset spec (default: the demo's target at its default limit, 500 images)")
    p.add_argument("--resolution", type=int, default=128, help="input px (the demo's default: 128)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each side; the best is reported (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("efficiency", help="the demo's whole data-efficiency experiment against a few minutes")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--dataset", default="demo:printed-digits?limit=50", help="target spec (default: the demo's)")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target-seconds", type=float, default=300.0, help="what 'a few minutes' means (default 300)")
    p.add_argument("--epochs", type=int, help="cap every trained arm at N epochs (a smoke test; the ratio then "
                                              "measures no real experiment)")
    p.add_argument("--epoch-images", type=int, metavar="N", help="at least N images per epoch for every trained arm")
    p = sub.add_parser("report", help="the full decision and the fast verdict from empty caches, against 300 s / 60 s")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--budget", type=int, default=None, help="the label budget per class (default: all)")
    p.add_argument("--full-seconds", type=float, default=300.0)
    p.add_argument("--fast-seconds", type=float, default=60.0)
    p.add_argument("--demo-only", action="store_true", help="skip the 500 + 500 28x28 digits upscaled to 128 px")
    p.add_argument("--modes", default="fast,full", help="which to time: fast, full or both (default fast,full)")
    p = sub.add_parser("verdict", help="the scenario panel: fast and full verdicts against realised outcomes")
    p.add_argument("--realise", action="store_true",
                   help="recompute the realised outcomes (long fair schedules, ~40 min on 2 cores) and store them in "
                        "tldiag/decision/panel_outcomes.json, instead of reading them")
    p.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    p.add_argument("--outcomes", help="the outcomes file to read or write "
                                      "(default: tldiag/decision/panel_outcomes.json)")
    p.add_argument("--rules", help="verdict rules file (default: the shipped thresholds)")
    p.add_argument("--json", metavar="FILE", help="also write the table, with the evidence of every verdict, as JSON")
    p.add_argument("--sweep", type=int, nargs="?", const=10, default=0, metavar="N",
                   help="decide the same evidence again under other [baseline]/[efficiency] margins and print the "
                        "N best (default 10): how the shipped margin was chosen")
    p.add_argument("--limits", metavar="L1,L2,...",
                   help="instead: the fast verdict of every scenario at each per-class limit (e.g. 50,100,200), and "
                        "whether any went from GO to NO-GO or back")
    p.add_argument("--fast-only", action="store_true", help="skip the full verdict (the data-efficiency experiment)")
    p.add_argument("--check", action="store_true", help="exit 1 when the targets are not met")
    _bench_scale.add_arguments(sub)
    p = sub.add_parser("umap-worker")  # internal: one side of `umap` in a fresh process
    p.add_argument("which", choices=["a", "b"])
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--warm-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if (status := _bench_scale.run(args)) is not None:
        return status
    if args.what == "umap-worker":
        _umap_worker(args.which, args.n, args.d, args.seed, args.out, args.warm_repeats)
        return 0
    if args.what == "umap":
        r = bench_umap(args.n, args.d, args.seed, args.warm_repeats)
        a, b = r["a"], r["b"]
        print(f"UMAP of {2 * r['n']:,} points ({r['n']:,} source + {r['n']:,} target), {r['d']:,}-d synthetic "
              f"embeddings, seed {r['seed']}; each side in a fresh process; `import umap` took "
              f"{a['import_s']:.1f} s / {b['import_s']:.1f} s (not counted)")
        print(f"{'':44s} {'cold s':>8s} {'warm s':>8s} {'trustworthiness (k=5)':>22s}   warm runs")
        print(f"{'(a) umap.UMAP() on the raw features':44s} {a['cold_s']:8.2f} {a['warm_s']:8.2f} "
              f"{a['trustworthiness']:22.4f}   {', '.join(f'{x:.1f}' for x in a['warm_runs'])}")
        print(f"{'(b) tldiag: PCA 50 + exact k-NN + UMAP':44s} {b['cold_s']:8.2f} {b['warm_s']:8.2f} "
              f"{b['trustworthiness']:22.4f}   {', '.join(f'{x:.1f}' for x in b['warm_runs'])}")
        print(f"(b) is seeded (reproducible, single-threaded layout), {b['n_epochs']} epochs; with its "
              f"trustworthiness and k-NN mixing scores (not in (a)) it took {b['cold_total_s']:.2f} s cold, "
              f"{b['warm_total_s']:.2f} s warm; mixing {b['mixing']:.3f}")
        ok = r["ratio_cold"] <= 0.5 and r["ratio_warm"] <= 0.5 and abs(r["trust_diff"]) <= 0.01
        print(f"ratio (b)/(a): cold {r['ratio_cold']:.2f}x, warm {r['ratio_warm']:.2f}x; trustworthiness "
              f"difference {r['trust_diff']:+.4f}  (target <= 0.5x and within 0.01: {'PASS' if ok else 'FAIL'})")
        return 0
    if args.what == "verdict":
        return bench_verdict(args)
    if args.what == "report":
        return bench_report(args)
    if args.what == "efficiency":
        r = bench_efficiency(args.model, args.dataset, args.resolution, args.repeats, args.target_seconds,
                             epochs=args.epochs, epoch_images=args.epoch_images)
        caps = [f"<= {args.epochs} epochs"] * bool(args.epochs) + [f">= {args.epoch_images} images per epoch"] * \
            bool(args.epoch_images)
        capped = f" with every trained arm capped at {', '.join(caps)} (a smoke test, not the benchmark's figure)" \
            if r["capped"] else ""
        print(f"data-efficiency experiment: {args.model} on {args.dataset}, {r['runs']} runs (budgets "
              f"{', '.join(str(b) if b else 'all' for b in r['budgets'])} x {', '.join(map(str, r['draws']))} "
              f"draws), {r['profile']} "
              f"profile{capped} on {r['device']} ({r['torch_threads']} torch threads), empty caches")
        for arm, sec in r["by_arm"].items():
            print(f"  {arm:14s} {sec:7.1f} s")
        print("test accuracy, mean over repeats (95% interval), by labels per class:")
        for arm, row in r["table"].items():
            print(f"  {arm:40s} " + "  ".join(f"{b}: {v}" for b, v in row.items()))
        for line in r["summary"]:
            print(f"  - {line}")
        print(f"total {r['seconds']:.1f} s; ratio to {r['target_s']:.0f} s: {r['ratio']:.2f}  (target <= 1: "
              f"{'PASS' if r['ratio'] <= 1 else 'FAIL'})")
        return 0
    if args.what == "probe":
        r = bench_probe(args.model, args.dataset, args.resolution, args.repeats, args.seed)
        print(f"linear-probe sweep: {r['model']} at {r['input_size']} px, {r['n']} images of {r['dataset']}, "
              f"{r['taps']} taps ({', '.join(map(str, r['dims']))}-d) x {r['splits']} splits x {r['grid']} C values "
              f"+ refits, on {r['device']} ({r['torch_threads']} torch threads)")
        print(f"tldiag (batched torch L-BFGS):        {r['ours_s']:7.2f} s   runs "
              f"{', '.join(f'{x:.2f}' for x in r['ours_runs'])}")
        print(f"scikit-learn (lbfgs, warm starts):    {r['sklearn_s']:7.2f} s   runs "
              f"{', '.join(f'{x:.2f}' for x in r['sklearn_runs'])}")
        print("mean test accuracy by tap, tldiag / scikit-learn at the same C / scikit-learn with its own choice of C:")
        for tap, a, b, c in r["curve"]:
            print(f"  {tap:12s} {a:.4f} / {b:.4f} / {c:.4f}")
        agree = r["max_acc_diff"] <= 0.01
        print(f"largest difference at the same C: {100 * r['max_acc_diff']:.2f} points (target <= 1: "
              f"{'PASS' if agree else 'FAIL'}); with each side's own choice of C: {100 * r['max_own_diff']:.2f} "
              "points (near-ties on validation can pick a neighbouring C)")
        print(f"ratio scikit-learn/tldiag: {r['speedup']:.1f}x  (target >= 5x: "
              f"{'PASS' if r['speedup'] >= 5 else 'FAIL'})")
        return 0
    if args.what == "mmd":
        r = bench_mmd(args.n, args.d, args.permutations, args.loop_permutations, args.reference == "loop", args.seed)
        print(f"MMD permutation test, n = m = {r['n']:,}, d = {r['d']:,}, B = {r['permutations']:,}, σ = "
              f"{r['sigma']:.4g}, on {r['device']} ({r['torch_threads']} torch threads)")
        print(f"tldiag (blocked kernel + batched quadratic forms): {r['ours_s']:8.2f} s   "
              f"MMD² = {r['mmd2']:.9g}, p = {r['p_value']:.4g}")
        if "loop_s" in r:
            print(f"per-permutation loop over the kernel matrix:        {r['loop_s']:8.2f} s   "
                  f"(kernel {r['kernel_s']:.2f} s + {r['loop_per_permutation_s']:.3f} s/permutation, timed over "
                  f"{r['loop_permutations']} and scaled to {r['permutations']:,})   MMD² = {r['reference_mmd2']:.9g}")
            print(f"same statistic: relative difference {r['rel_err']:.2e} (target <= 1e-6: "
                  f"{'PASS' if r['rel_err'] <= 1e-6 else 'FAIL'}); null values of 20 of the same "
                  f"permutations agree to {r['null_err']:.1e} null standard deviations")
            print(f"ratio loop/tldiag: {r['speedup']:.1f}x  (target >= 20x: {'PASS' if r['speedup'] >= 20 else 'FAIL'})")
        print(f"peak resident memory of this process: {r['peak_rss_gib']:.2f} GiB")
        return 0
    r = bench_embed(args.model, args.dataset, args.n, args.batch_size, args.resolution, args.repeats,
                    args.workers)
    print(f"model {r['model']} at {r['input_size']} px on {r['device']} ({r['torch_threads']} torch threads), "
          f"{r['n']} images of {r['dataset']}, batch {r['batch_size']}, {r['workers']} loader workers, "
          f"{r['taps']} taps incl. logits")
    print(f"bare forward on preloaded channels_last tensors: {r['bare_ips']:8.1f} images/s")
    print(f"tldiag engine (decode + resize + all taps):      {r['engine_ips']:8.1f} images/s")
    lo, hi = r["ratio_range"]
    print(f"ratio engine/bare: {r['ratio']:.3f}  (median of {args.repeats} paired runs, range {lo:.3f}-{hi:.3f}; "
          f"target >= 0.9: {'PASS' if r['ratio'] >= 0.9 else 'FAIL'})")
    return 0


__all__ = ["bench_embed", "bench_mmd", "synthetic_embeddings", "bench_umap", "bench_probe", "bench_efficiency",
           "bench_report", "bench_verdict", "main"]


if __name__ == "__main__":
    sys.exit(main())
