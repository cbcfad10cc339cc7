"""The ``tldiag`` command line: list models, inspect datasets, compute embeddings, measure shift, map, probe.

Errors caused by input exit with status 2 and one line on stderr (no traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .errors import TldiagError


def _table(rows: list[dict], columns: Sequence[str]) -> str:
    """A plain-text table; a missing value or None is an empty cell."""
    def cell(r: dict, c: str) -> str:
        v = r.get(c)
        return "" if v is None else str(v)
    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns),
             "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(cell(r, c).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _write_json(path: str | None, payload: object) -> None:
    if not path:
        return
    text = json.dumps(payload, indent=2, default=str)
    if path == "-":
        print(text)
    else:
        from .cache import atomic_write_text

        atomic_write_text(Path(path), text + "\n")  # an interrupted run leaves no half-written file


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models

    infos = list_models(include_timm=args.all)
    if not args.all:
        shown = [m for m in infos if m.status != "needs download"]
        hidden = len(infos) - len(shown)
    else:
        shown, hidden = infos, 0
    print(_table([{"id": m.id, "status": m.status, "description": m.title} for m in shown],
                 ["id", "status", "description"]))
    if hidden:
        print(f"\n(+{hidden} torchvision models whose weights need a download; --all lists them and "
              "every timm model with pretrained weights)")
    _write_json(args.json, [m.__dict__ for m in shown])
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import load_dataset

    payload = []
    for spec in args.spec:
        t0 = time.perf_counter()
        ds = load_dataset(spec)
        opened = time.perf_counter() - t0
        if args.verify:
            with _stderr_progress(f"decoding {ds.spec}", unit="img") as progress:
                ds.verify(progress=progress)
        state = "every image decodes" if ds.verified else "headers read; damaged pixels are found when first decoded"
        print(f"{ds.spec}: {len(ds)} images, {len(ds.classes) or 'no'} classes — {ds.description} "
              f"(opened in {opened:.1f} s; {state})")
        counts = ds.class_counts()
        print(_table([{"class": k, "images": v} for k, v in counts.items()], ["class", "images"]))
        if ds.skipped:
            print(f"skipped {len(ds.skipped)} files:")
            for s in ds.skipped[:20]:
                print(f"  {s.path}: {s.reason}")
            if len(ds.skipped) > 20:
                print(f"  ... and {len(ds.skipped) - 20} more")
        print()
        payload.append({"spec": ds.spec, "n": len(ds), "classes": counts, "fingerprint": ds.fingerprint,
                        "verified": ds.verified, "skipped": [s.__dict__ for s in ds.skipped]})
    _write_json(args.json, payload)
    return 0


def _taps(args: argparse.Namespace, model) -> list[str]:
    if args.taps == "all":
        return model.tap_names
    return args.taps.split(",") if args.taps else model.default_taps()


def _spec(args: argparse.Namespace, spec: str | None) -> str | None:
    """A dataset spec with the arguments' per-class limit and seed, as the app's :class:`~tldiag.setup.Setup` adds
    them (so the CLI subsamples the same images as the dashboard for every seed)."""
    from .setup import Setup

    if not spec:
        return None
    return Setup(limit=args.limit, seed=getattr(args, "seed", 0) or 0).with_limit(spec)


def _embed_roles(args: argparse.Namespace, *, need_both: bool) -> tuple[object, dict, dict]:
    """Load the model and datasets named by the arguments and embed them, with progress on stderr; returns
    the model, the embeddings by role and the datasets by role."""
    from .data import compare_classes, load_dataset
    from .embed import embed_dataset
    from .models import load_model

    if need_both and not (args.source and args.target):
        raise TldiagError("Give both --source and --target, e.g. --source demo:digits --target demo:printed-digits.")
    model = load_model(args.model, resolution=args.resolution)
    datasets = {role: load_dataset(_spec(args, spec))
                for role, spec in (("source", args.source), ("target", args.target)) if spec}
    if not datasets:
        raise TldiagError("Give at least --source or --target, e.g. --source demo:digits.")
    if "source" in datasets and "target" in datasets:
        print(compare_classes(datasets["source"], datasets["target"]).message(), file=sys.stderr)
    taps = _taps(args, model)
    results = {}
    for role, ds in datasets.items():
        with _stderr_progress(f"{role} {ds.spec}", unit="img") as progress:
            results[role] = embed_dataset(model, ds, taps, batch_size=args.batch_size, progress=progress)
    return model, results, datasets


def cmd_embed(args: argparse.Namespace) -> int:
    model, results, _ = _embed_roles(args, need_both=False)
    first = next(iter(results.values()))
    rows = []
    for tap in first.taps:
        row = {"layer": tap, "dim": first[tap].shape[1]}
        for role, emb in results.items():
            row[f"n_{role}"] = len(emb)
            row[f"{role} cache"] = "hit" if emb.cache_hits[tap] else "miss"
        # all computed layers of a dataset come from one shared forward pass; hits cost ~0 s
        row["seconds"] = round(sum(0.0 if emb.cache_hits[tap] else emb.seconds for emb in results.values()), 2)
        rows.append(row)
    seconds = {role: round(emb.seconds, 2) for role, emb in results.items()}
    columns = (["layer", "dim"] + [f"n_{r}" for r in results] + [f"{r} cache" for r in results]
               + ["seconds"])
    print(f"{model.id} at {model.preprocessing.input_size}px — " +
          ", ".join(f"{r}: {s} s" for r, s in seconds.items()) +
          "".join(f" ({e.engine} engine, {e.images_per_second:.0f} images/s)" for e in results.values()
                  if e.images_per_second)[:200])
    print(_table(rows, columns))
    for role, emb in results.items():
        if emb.skipped:
            print(f"{role}: skipped {len(emb.skipped)} images that do not decode:")
            for path, reason in list(emb.skipped.items())[:20]:
                print(f"  {path}: {reason}")
            if len(emb.skipped) > 20:
                print(f"  ... and {len(emb.skipped) - 20} more (tldiag datasets SPEC lists them all)")
    _write_json(args.json, {"model": model.id, "weights_hash": model.weights_hash,
                            "preprocessing": model.preprocessing.__dict__,
                            "datasets": {r: e.dataset for r, e in results.items()},
                            "seconds": seconds, "layers": rows,
                            "skipped": {r: dict(e.skipped) for r, e in results.items()}})
    return 0


def _fmt(value: float, digits: int = 3) -> str:
    return "nan" if value != value else f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"


def cmd_shift(args: argparse.Namespace) -> int:
    from .embed import EmbeddingPair
    from .metrics import SEED_SCALE, Thresholds, shift_report

    thresholds = Thresholds.parse(args.thresholds)
    model, results, _ = _embed_roles(args, need_both=True)
    pair = EmbeddingPair(results["source"], results["target"], tuple(_taps(args, model)))
    with _stderr_progress("shift metrics") as progress:
        report = shift_report(pair, n_permutations=args.permutations, max_samples=args.max_samples,
                              thresholds=thresholds, random_state=args.seed, progress=progress)
    rows = [{"layer": x.layer, "dim": x.n_features,
             "MMD [95% CI]": f"{x.mmd.mmd:.3f} [{x.mmd.mmd_ci[0]:.3f}, {x.mmd.mmd_ci[1]:.3f}]",
             "p": f"{x.mmd.p_value:.3g}", "light": x.light.colour,
             "domain acc": f"{x.domain.balanced_accuracy:.3f}±{x.domain.balanced_accuracy_std:.3f}",
             "AUC": f"{x.domain.roc_auc:.3f}", "PAD": f"{x.domain.pad:.2f}",
             "ESS": f"{100 * x.domain.ess_fraction:.0f}%", "CORAL": _fmt(x.coral), "Frechet": _fmt(x.frechet)}
            for x in report.layers]
    head = report.head
    print(f"{model.id}: {pair.source.dataset} ({len(pair.source)}) -> {pair.target.dataset} ({len(pair.target)}); "
          f"{args.permutations} permutations, seed {args.seed}")
    print(_table(rows, list(rows[0])))
    print(f"\n{head.light.colour.upper()} at {head.layer}: {head.light.text}")
    print(f"MMD scale: {SEED_SCALE}; thresholds {thresholds.mmd_green:g} / {thresholds.mmd_red:g}.")
    if head.mmd.subsampled:
        print(f"(tests used {head.mmd.n_source} of {head.mmd.n_source_total} source and {head.mmd.n_target} of "
              f"{head.mmd.n_target_total} target samples: --max-samples)")
    if report.classes:
        print(f"\nPer class at {report.headline} (largest shift first):")
        print(_table([{k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in c.row().items()}
                      for c in report.classes], ["class", "n_source", "n_target", "mmd", "p_value", "light"]))
    for note in report.notes:
        print(f"note: {note}")
    _write_json(args.json, {"model": model.id, "weights_hash": model.weights_hash,
                            "source": pair.source.dataset, "target": pair.target.dataset,
                            "source_fingerprint": pair.source.fingerprint,
                            "target_fingerprint": pair.target.fingerprint, "scale": SEED_SCALE,
                            **report.to_dict()})
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    from .embed import EmbeddingPair
    from .projection import ProjectionParams, project_pair, thumbnail_images

    params = ProjectionParams(method=args.method, n_neighbors=args.neighbors, min_dist=args.min_dist,
                              metric=args.metric, pca_components=args.pca or None, max_samples=args.max_samples,
                              n_epochs=args.epochs, random_state=args.seed).validate()
    args.taps = args.tap
    model, results, datasets = _embed_roles(args, need_both=True)
    pair = EmbeddingPair(results["source"], results["target"], (args.tap,))
    with _stderr_progress(f"{args.method} projection", unit="%") as progress:
        proj = project_pair(pair, args.tap, params, progress=progress)
    mix = proj.mixing
    print(f"{model.id}: {pair.source.dataset} ({proj.n_source} of {proj.n_source_total}) -> {pair.target.dataset} "
          f"({proj.n_target} of {proj.n_target_total}) at {args.tap}")
    print(f"{proj.describe()}; computed in {proj.seconds['total']:.1f} s" + (" (read from the cache)" if proj.from_cache else ""))
    print(f"k-NN domain mixing (k={mix.n_neighbors}, original space): {mix.score:.3f} [95% CI {mix.ci[0]:.3f}, "
          f"{mix.ci[1]:.3f}]  (1 = indistinguishable, 0 = separate islands)")
    print(f"trustworthiness of the 2-D map (k={proj.trust_neighbors}): {proj.trustworthiness:.4f}")
    if mix.per_class:
        print("\nMixing within each class (lowest first):")
        print(_table([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in c.row().items()}
                      for c in mix.per_class], list(mix.per_class[0].row())))
    if args.csv:
        with open(args.csv, "w") as f:
            f.write(proj.to_csv(sample_ids=(pair.source.sample_ids, pair.target.sample_ids)))
    if args.html:
        from . import viz

        fig = viz.projection_figure(proj, title=f"{model.id} · {args.tap} · {proj.describe()}")
        images = thumbnail_images(datasets["source"], datasets["target"], proj)
        with open(args.html, "w") as f:
            f.write(viz.figure_html(fig, sprite=viz.thumbnail_sprite(images)))
    _write_json(args.json, {"model": model.id, "weights_hash": model.weights_hash, "source": pair.source.dataset,
                            "target": pair.target.dataset, **proj.summary()})
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .embed import EmbeddingPair, embed_dataset
    from .leaderboard import RANKED, leaderboard
    from .models import load_model, random_init_id
    from .probes import ProbeConfig, probe_report

    config = ProbeConfig(n_splits=args.splits).validate()
    model, results, datasets = _embed_roles(args, need_both=True)
    pair = EmbeddingPair(results["source"], results["target"], tuple(_taps(args, model)))
    floor = None
    rid = random_init_id(model.id) if args.random_init else None
    if rid:
        twin = load_model(rid, resolution=args.resolution)
        with _stderr_progress(f"target with random weights ({rid})", unit="img") as progress:
            floor = embed_dataset(twin, datasets["target"], [t for t in pair.target.taps if t in twin.tap_names],
                                  batch_size=args.batch_size, progress=progress)
    with _stderr_progress("probes") as progress:
        report = probe_report(pair, floor, depths=model.depths, config=config,
                              random_state=args.seed, progress=progress)
    target = report.target
    print(f"{model.id}: {pair.source.dataset} ({len(pair.source)}) -> {pair.target.dataset} ({len(pair.target)}); "
          f"{config.n_splits} splits of {target.n_train}/{target.n_val}/{target.n_test}, seed {args.seed}")
    rows = report.table()
    print(_table(rows, list(rows[0])))
    rec, best = target.recommended, target.best
    print(f"\nrecommended cut: {rec.tap} (accuracy {rec.mean:.3f} ± {rec.se:.3f}; best {best.tap} {best.mean:.3f}; "
          f"majority class {target.chance:.3f})")
    gain = report.gain_over_random()
    if gain is not None:
        print(f"gain over random init at {best.tap}: {100 * gain:+.1f} points")
    print(f"LEEP {_fmt(report.leep) if report.leep is not None else 'n/a'}, "
          f"NCE {_fmt(report.nce) if report.nce is not None else 'n/a'}")
    for note in report.notes + target.notes:
        print(f"note: {note}")
    payload = {"model": model.id, "weights_hash": model.weights_hash, "source_dataset": pair.source.dataset,
               "target_dataset": pair.target.dataset, **report.to_dict()}
    if args.leaderboard:
        ids = [m.strip() for m in args.leaderboard.split(",") if m.strip()]
        with _stderr_progress("leaderboard", unit="model") as progress:
            board = leaderboard(ids, datasets["source"], datasets["target"], resolution=args.resolution,
                                config=config, random_state=args.seed, progress=progress)
        table = board.table()
        print("\nLeaderboard (sorted by probe accuracy at the best tap):")
        print(_table(table, list(table[0])))
        print("\nKendall's tau against the probe accuracy: " + ", ".join(
            f"{r['score']} {'n/a' if r['Kendall τ vs probe acc'] is None else format(r['Kendall τ vs probe acc'], '+.2f')}"
            for r in board.agreement()))
        for note in board.notes:
            print(f"note: {note}")
        payload["leaderboard"] = board.to_dict()
        payload["leaderboard_columns"] = RANKED
    _write_json(args.json, payload)
    return 0


def _finetune_config(args: argparse.Namespace):
    """The run the arguments describe (``--strategy auto`` is settled by the caller's plan), checked."""
    from .training.finetune import FinetuneConfig

    if not args.target:
        raise TldiagError("Give --target, the labelled dataset to fine-tune on, e.g. --target demo:printed-digits.")
    return FinetuneConfig(
        model=args.model, target=_spec(args, args.target), source=_spec(args, args.source),
        resolution=args.resolution, strategy="full" if args.strategy == "auto" else args.strategy,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, backbone_lr_mult=args.backbone_lr_mult,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, augment=args.augment,
        patience=args.patience, frozen_stages=args.frozen_stages, head_epochs=args.head_epochs,
        l2sp_alpha=args.l2sp_alpha, seed=args.seed, device=args.device).validate()


def cmd_finetune(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .training.finetune import plan, strategy_title
    from .training.jobs import JobStore, launch
    from .models import load_model

    config = _finetune_config(args)
    model, dataset = load_model(config.model, resolution=config.resolution), load_dataset(config.target)
    p = plan(config, model=model, dataset=dataset)
    reasons: tuple[str, ...] = ()
    if args.strategy == "auto":
        reasons = p.recommendation.reasons
        config = p.recommendation.apply(config)
        p = plan(config, model=model, dataset=dataset)
    c = p.config
    print(f"{c.model} -> {c.target}: {len(p.classes)} classes, {p.n_train}/{p.n_val}/{p.n_test} train/val/test "
          f"images (seed {c.seed})")
    print(f"strategy: {strategy_title(c)}"
          + (f", bottom {c.frozen_stages} of {len(p.stages)} stages frozen" if c.strategy == "partial" else "")
          + f"; {p.trainable:,} of {p.total:,} parameters train; augmentation {c.augment}; device {c.device}")
    for reason in (*reasons, p.augment_reason, *p.notes):
        if reason:
            print(f"  why: {reason}" if reason in reasons or reason == p.augment_reason else f"  note: {reason}")
    store = JobStore()
    job = launch("finetune", c, name=args.name, store=store, model=model, dataset=dataset)
    print(f"job {job.id} {job.status} (log: {job.log_path})")
    if not args.wait:
        print(f"it runs in the background; `tldiag jobs show {job.id}` follows it, `tldiag jobs cancel {job.id}` "
              "stops it")
        _write_json(args.json, {"job": job.id, "status": job.status, "config": c.to_dict()})
        return 0
    return _follow(store, job.id, args.json)


def cmd_efficiency(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .training.efficiency import ARM_TITLES, EfficiencyConfig, budget_label, plan_experiment, schedule_caps
    from .training.jobs import JobStore, launch

    if not args.target:
        raise TldiagError("Give --target, the labelled dataset, e.g. --target demo:printed-digits --limit 50.")

    def ints(text: str, what: str) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise TldiagError(f"--{what} {text!r} must be comma-separated whole numbers, e.g. 1,2,5,10,20,50,100.") \
                from None

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    config = EfficiencyConfig(
        model=args.model, target=_spec(args, args.target), source=_spec(args, args.source),
        resolution=args.resolution, budgets=ints(args.budgets, "budgets"), include_all=not args.no_all,
        repeats=args.repeats, arms=arms, profile=args.profile, augment=args.augment, seed=args.seed,
        device=args.device, budget=args.budget,
        schedules=schedule_caps(arms, epochs=args.epochs, epoch_images=args.epoch_images))
    dataset = load_dataset(config.target)
    p = plan_experiment(config, dataset=dataset)
    c = p.config
    print(f"{c.model} -> {c.target}: {len(p.classes)} classes; pool {p.n_pool}, validation {p.n_val}, test {p.n_test} "
          f"images (seed {c.seed})")
    print(f"budgets per class: {', '.join(budget_label(b) for b in p.budgets)} x "
          f"{', '.join(str(p.draws(b)) for b in p.budgets)} draws; {p.n_runs} trained runs; {c.profile} settings on "
          f"{c.device}; augmentation {c.augment}")
    for arm, s in p.schedules.items():
        print(f"  {ARM_TITLES[arm]}: {s.title}")
    for note in p.notes:
        print(f"  note: {note}")
    store = JobStore()
    job = launch("efficiency", c, name=args.name, store=store, dataset=dataset)
    print(f"job {job.id} {job.status} (log: {job.log_path})")
    if args.detach:
        print(f"it runs in the background; `tldiag jobs show {job.id}` follows it, `tldiag jobs cancel {job.id}` "
              "stops it (finished runs are kept and reused)")
        _write_json(args.json, {"job": job.id, "status": job.status, "config": c.to_dict()})
        return 0
    return _follow(store, job.id, args.json)


def _follow(store, job_id: str, json_path: str | None) -> int:
    from tqdm import tqdm

    bar = tqdm(total=100, desc=job_id, unit="%", file=sys.stderr, leave=False,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    try:
        job = store.wait(job_id, poll_s=1.0, on_update=lambda j: (bar.update(round(100 * j.progress) - bar.n),
                                                                    bar.set_postfix_str(j.message, refresh=True)))
    except KeyboardInterrupt:
        bar.close()
        print(f"\nstopped following; job {job_id} goes on in the background (`tldiag jobs cancel {job_id}` stops it)",
              file=sys.stderr)
        return 130
    bar.close()
    _print_job(store, job)
    _write_json(json_path, _job_payload(store, job))
    return 0 if job.status == "done" else 1


def _job_payload(store, job) -> dict:
    if job.kind == "efficiency" and job.status == "done":
        from .training.efficiency import readouts, result_of

        return {"id": job.id, "name": job.name, "kind": job.kind, "status": job.status, **job.result,
                "readouts": readouts(result_of(job)).to_dict(), "log": str(job.log_path)}
    return {"id": job.id, "name": job.name, "kind": job.kind, "status": job.status, "config": dict(job.config),
            "created": job.created, "started": job.started, "finished": job.finished, "error": job.error,
            "result": job.result, "metrics": store.metrics(job.id), "log": str(job.log_path)}


def _print_job(store, job) -> None:
    print(f"{job.id}  {job.name}\nstatus {job.status}"
          + (f" after {job.seconds:.0f} s" if job.seconds is not None else "")
          + (f" ({100 * job.progress:.0f}%: {job.message})" if job.active else ""))
    rows = store.metrics(job.id) if job.kind == "finetune" else []
    if rows:
        cols = [c for c in ("epoch", "phase", "train_loss", "train_accuracy", "val_loss", "val_accuracy") if c in rows[0]]
        print(_table([{c: (f"{r[c]:.4f}" if isinstance(r[c], float) else r[c]) for c in cols} for r in rows], cols))
    if job.status == "done" and job.kind == "finetune":
        from .training.finetune import FinetuneResult

        r = FinetuneResult.from_dict(job.result)
        print(f"test accuracy {r.test_accuracy:.3f} (macro-F1 {r.test_f1:.3f}) on {r.n_test} images; best epoch "
              f"{r.best_epoch} of {r.epochs_run}{' (stopped early)' if r.stopped_early else ''}")
        if r.linear_probe:
            print(f"linear probe of the frozen features on the same split: {r.linear_probe['accuracy']:.3f} at "
                  f"{r.linear_probe['tap']} ({100 * (r.test_accuracy - r.linear_probe['accuracy']):+.1f} points "
                  "for fine-tuning)")
        print("changed most (1 - CKA with the pretrained features): "
              + ", ".join(f"{t} {v:.3f}" for t, v in r.changed_most))
        print(f"checkpoint: {r.checkpoint}  (`tldiag jobs register {job.id} NAME` makes it a model)")
    elif job.status == "done" and job.kind == "efficiency":
        from .training.efficiency import result_of

        _print_efficiency(result_of(job))
    elif job.error:
        print(f"error: {job.error}")


def _print_efficiency(result) -> None:
    from .training.efficiency import ARM_TITLES, budget_label, curves, readouts

    cs = curves(result)
    budgets = [b for b in result.budgets if any(b in c.budgets for c in cs.values())]
    rows = []
    for arm, c in cs.items():
        row = {"arm": ARM_TITLES[arm]}
        for b, m, lo, hi in zip(c.budgets, c.mean, c.low, c.high):
            row[budget_label(b)] = f"{m:.3f}" + (f" ({lo:.2f}-{hi:.2f})" if hi > lo else "")
        rows.append(row)
    print(f"test accuracy by labels per class: mean over the draws of the labelled images (95% interval over draws "
          f"and test images); {result.n_test} test images, chance {result.chance:.3f}")
    print(_table(rows, ["arm", *(budget_label(b) for b in budgets)]))
    for arm, s in result.schedules.items():
        print(f"  {ARM_TITLES[arm]}: {s.title}")
    for line in readouts(result, arm_curves=cs).summary:
        print(f"- {line}")
    for note in result.notes:
        print(f"  note: {note}")


def _check_output(path: str | None, flag: str) -> None:
    """Refuse an output path whose folder does not exist before anything is computed."""
    import os

    if path and path != "-":
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise TldiagError(f"{flag} {path!r}: the folder {folder!r} does not exist; create it or write elsewhere.")


class _Bars:
    """A :class:`_stderr_progress` bar per named step (one at a time), for progress(name, done, total, message)
    callbacks."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.bar: _stderr_progress | None = None
        self.update: Callable[[float, int, str], None] | None = None

    def __call__(self, name: str, done: float, total: int, message: str) -> None:
        if name != self.name:
            self.close()
            self.name, self.bar = name, _stderr_progress(name)
            self.update = self.bar.__enter__()
        self.update(done, total, message[:60])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.name = self.bar = self.update = None


def _start_job(store, kind: str, submit, setup):
    """The setup's running ``kind`` job, or a new one from ``submit()``; None when it cannot run (said why)."""
    from .decision.report import matching_jobs

    active = matching_jobs(setup, kind, store, done=False)
    try:
        job = active[0] if active else submit()
    except TldiagError as exc:  # e.g. a random-init model has no transfer to measure: the report goes on
        print(f"{kind}: not run: {exc}", file=sys.stderr)
        return None
    print(f"{kind}: {'following' if active else 'launched'} job {job.id} (log: {job.log_path})", file=sys.stderr)
    return job


def _run_job(store, kind: str, submit, setup, job=None) -> str:
    """Follow ``job`` (or the setup's running ``kind`` job, or one submitted with ``submit()``) until it ends; its
    status."""
    job = job or _start_job(store, kind, submit, setup)
    if job is None:
        return "not run"
    with _stderr_progress(f"{kind} job", unit="%") as progress:
        job = store.wait(job.id, poll_s=0.25, on_update=lambda j: progress(round(100 * j.progress), 100,
                                                                           (j.message or j.status)[:60]))
    if job.status != "done":
        print(f"{kind}: job {job.id} {job.status}{': ' + job.error if job.error else ''}; the report goes on "
              "without it", file=sys.stderr)
    return job.status


def cmd_report(args: argparse.Namespace) -> int:
    from .training.jobs import JobStore, launch
    from .decision.report import ANALYSES, COMPUTED_HERE, build_record, gather
    from .training.configs import efficiency_config, finetune_config
    from .setup import Setup
    from .decision.verdict import load_rules

    skip = tuple(a.strip() for a in (args.skip or "").split(",") if a.strip())
    if args.fast:
        skip += ("projection", "efficiency", "finetune")
    unknown = [a for a in skip if a not in ANALYSES]
    if unknown:
        raise TldiagError(f"--skip {args.skip!r}: unknown analysis {', '.join(unknown)}; choose from "
                          f"{', '.join(ANALYSES)}.")
    if not (args.source and args.target):
        raise TldiagError("Give both --source and --target, e.g. --source demo:digits --target demo:printed-digits.")
    _check_output(args.html, "--html")
    _check_output(args.json, "--json")
    rules = load_rules(args.rules)  # a bad rules file fails before anything is computed
    setup = Setup(model=args.model, source=args.source, target=args.target, resolution=args.resolution,
                  limit=args.limit, taps=tuple(t for t in (args.taps or "").split(",") if t), seed=args.seed,
                  budget=args.budget).validate()
    store = JobStore()
    bars = _Bars()
    t0 = time.perf_counter()
    here = [a for a in COMPUTED_HERE if a not in skip]
    # the UMAP map needs nothing the jobs make, and its first run in a process is mostly single-threaded numba
    # compilation: it is drawn while the data-efficiency job trains (which reads the embeddings and baselines)
    later = ["projection"] if "projection" in here and "efficiency" not in skip else []
    try:
        analyses = gather(setup, compute=[a for a in here if a not in later], store=store, progress=bars)
    finally:
        bars.close()
    for name, message in analyses.errors.items():
        print(f"{name}: not run: {message}", file=sys.stderr)
    failed, ran = [], False
    efficiency_job = None
    if "efficiency" not in skip and analyses.efficiency is None:
        ran = True
        config = efficiency_config(setup, profile=args.profile)
        efficiency_job = _start_job(store, "efficiency", lambda: launch("efficiency", config, store=store), setup)
    if later:
        ran, bars = True, _Bars()
        try:
            gather(setup, compute=later, store=store, progress=bars)
        finally:
            bars.close()
    if efficiency_job is not None:
        if _run_job(store, "efficiency", None, setup, job=efficiency_job) in ("failed", "cancelled"):
            failed.append("efficiency")
    if "finetune" not in skip and analyses.finetune is None:
        ran = True

        def launch_finetune():
            return launch("finetune", finetune_config(setup, epochs=args.epochs), store=store)

        if _run_job(store, "finetune", launch_finetune, setup) in ("failed", "cancelled"):
            failed.append("finetune")
    if ran:
        analyses = gather(setup, store=store)  # read back what the jobs wrote
    record = build_record(analyses, rules, base_url=args.base_url or "",
                          timings={"report_wall_seconds": round(time.perf_counter() - t0, 3)})
    v = record.verdict
    out = sys.stderr if args.json == "-" else sys.stdout

    def say(*parts: object) -> None:
        print(*parts, file=out)

    say(f"{v.decision or 'NO VERDICT'}  {v.headline}")
    if v.break_even:
        say(f"  {v.break_even}")
    for reason in v.reasons:
        say(f"  {reason}")
    say()
    say(_table([{"signal": s.title, "kind": s.kind, "status": s.status, "value": s.value} for s in v.signals],
               ["signal", "kind", "status", "value"]))
    for s in v.signals:
        say(f"- {s.title}: {s.rule}")
    for d in v.disagreements:
        say(f"disagreement: {d}")
    if v.recipe:
        say(f"\nrecipe: {v.recipe.title}")
        for step in v.recipe.steps:
            say(f"  - {step}")
        say(f"  source model: {v.recipe.another_source_reason}")
        say(f"  label savings: {v.recipe.label_savings}")
    for m in v.missing:
        say(f"not computed: {m.title} (would add {m.adds})")
    for name, message in analyses.errors.items():
        say(f"could not run: {name}: {message}")
    if args.html:
        from .cache import atomic_write_text

        atomic_write_text(Path(args.html), record.html())  # a killed run leaves no half-written report
    if args.json:
        _write_json(args.json, record.manifest)
    written = [p for p in (args.html, args.json) if p and p != "-"]
    print(f"\n{', '.join(written) + ' written; ' if written else ''}permalink: {record.manifest['permalink']} "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if failed:
        return 1
    fail_on = {"never": (), "no-go": ("NO-GO",), "caution": ("NO-GO", "CAUTION")}[args.fail_on]
    return 3 if v.decision in fail_on else 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import AuditLog

    log = AuditLog()
    entries = log.entries(user=args.user, action=args.action, last=args.last)
    if not entries:
        print(f"no audit entries{' matching' if args.user or args.action else ' yet'} in {log.path}")
    else:
        rows = [{"when": e.to_dict()["when"], "user": e.user, "action": e.action, "subject": e.subject,
                 "detail": json.dumps(dict(e.detail), sort_keys=True) if e.detail else ""} for e in entries]
        print(_table(rows, list(rows[0])))
    _write_json(args.json, [e.to_dict() for e in entries])
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from . import _config
    from .cache_limit import MAX_GB_ENV, entries, format_bytes, gb_to_bytes, max_cache_bytes, prune

    limit = gb_to_bytes(args.max_gb, f"--max-gb {args.max_gb}") if args.max_gb is not None else max_cache_bytes()
    shown_limit = format_bytes(limit) if limit is not None else f"none ({MAX_GB_ENV} is not set)"
    if args.action == "prune":
        if limit is None:
            raise TldiagError(f"No limit to prune to: set {MAX_GB_ENV} (e.g. {MAX_GB_ENV}=50) or pass --max-gb "
                              "(--max-gb 0 empties the embedding and projection caches).")
        result = prune(limit)
        print(f"removed {len(result.removed)} entries ({format_bytes(result.freed_bytes)}); "
              f"{format_bytes(result.kept_bytes)} kept, limit {shown_limit}")
        _write_json(args.json, {"removed": [e.to_dict() for e in result.removed],
                                "freed_bytes": result.freed_bytes, "kept_bytes": result.kept_bytes,
                                "limit_bytes": result.limit_bytes})
        return 0
    found = entries()
    if not found:
        print(f"no embeddings or projections cached under {_config.home()}")
    else:
        rows = [{"kind": e.kind, "key": e.key[:12], "size": format_bytes(e.size_bytes),
                 "last used": e.to_dict()["last_used"], "what": e.what} for e in found]
        print(_table(rows, list(rows[0])))
    total = sum(e.size_bytes for e in found)
    print(f"{len(found)} entries, {format_bytes(total)} in all; limit {shown_limit}; jobs and fine-tuned models "
          "are never evicted")
    _write_json(args.json, {"entries": [e.to_dict() for e in found], "total_bytes": total, "limit_bytes": limit})
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from .training.jobs import JobStore

    store = JobStore()
    if args.action == "list":
        jobs = store.list(limit=args.last)
        if not jobs:
            print(f"no jobs yet in {store.path}")
        else:
            rows = []
            for j in jobs:
                acc = (j.result or {}).get("test_accuracy")
                rows.append({"id": j.id, "status": j.status, "progress": f"{100 * j.progress:.0f}%",
                             "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(j.started)) if j.started else "",
                             "seconds": f"{j.seconds:.0f}" if j.seconds is not None else "",
                             "test acc": f"{acc:.3f}" if acc is not None else "", "owner": j.owner,
                             "name": j.name})
            print(_table(rows, list(rows[0])))
        _write_json(args.json, [_job_payload(store, j) for j in jobs])
        return 0
    if not args.ids:
        raise TldiagError(f"`tldiag jobs {args.action}` needs a job id; `tldiag jobs` lists them.")
    if args.action == "show":
        for job_id in args.ids:
            job = store.get(job_id)
            _print_job(store, job)
            print(f"--- last lines of {job.log_path}\n{job.log_tail(args.lines)}")
        _write_json(args.json, [_job_payload(store, store.get(i)) for i in args.ids])
        return 0
    if args.action == "cancel":
        for job_id in args.ids:
            print(f"{job_id}: {store.cancel(job_id).status}")
        return 0
    if args.action == "wait":
        return max(_follow(store, job_id, args.json) for job_id in args.ids)
    # register
    from .training.finetune import FinetuneResult, register_result

    if len(args.ids) != 2:
        raise TldiagError("Use `tldiag jobs register JOB_ID NAME`, e.g. tldiag jobs register finetune-20261122-1105-ab12 "
                          "lite0-digits.")
    job = store.get(args.ids[0])
    if job.kind != "finetune" or job.status != "done":
        raise TldiagError(f"Job {job.id} is a {job.status} {job.kind} job; only a finished fine-tuning job has a "
                          "checkpoint to register.")
    model_id = register_result(FinetuneResult.from_dict(job.result), args.ids[1], job=job.id)
    print(f"registered {model_id}: use it as --model {model_id} or pick it on the Setup page")
    return 0


class _stderr_progress:
    """A tqdm bar on stderr driven by tldiag's progress(done, total, message) callbacks."""

    def __init__(self, desc: str, unit: str = "it"):
        self.desc, self.unit = desc, unit

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(desc=self.desc, unit=self.unit, file=sys.stderr, leave=False)

        def progress(done: int, total: int, message: str) -> None:
            self.bar.total = total
            self.bar.n = done
            self.bar.set_postfix_str(message, refresh=True)
        return progress

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _add_pair_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet-lite0", help="model id (see `tldiag models`)")
    p.add_argument("--source", help="source dataset spec")
    p.add_argument("--target", help="target dataset spec")
    p.add_argument("--taps", help="comma-separated tap names (the layers read), or 'all' (default: a handful "
                                  "shallow to deep)")
    p.add_argument("--layers", dest="renamed_taps", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, help="at most N images per class from each dataset")
    p.add_argument("--resolution", type=int, help="input size in pixels (default: the weights' own)")
    p.add_argument("--batch-size", type=int, default=64)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tldiag", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tldiag {__import__('tldiag').__version__}")
    parser.add_argument("--ray", metavar="ADDRESS", help="run embedding passes, data-efficiency runs and leaderboard "
                        "rows on a Ray cluster: 'auto' (the one `ray start` began on this machine), host:port or "
                        "ray://host:10001 (the same as TLDIAG_RAY_ADDRESS; see the README's 'Scale out')")
    sub = parser.add_subparsers(dest="command", required=True)
    _models_parser(sub)
    _datasets_parser(sub)
    _embed_parser(sub)
    _shift_parser(sub)
    _project_parser(sub)
    _probe_parser(sub)
    _finetune_parser(sub)
    _efficiency_parser(sub)
    _report_parser(sub)
    _jobs_parser(sub)
    _audit_parser(sub)
    _cache_parser(sub)
    return parser


def _models_parser(sub) -> None:
    p = sub.add_parser("models", help="list the model registry (offline and cached models first)")
    p.add_argument("--all", action="store_true", help="also list models that need a download, and timm")
    p.add_argument("--json", metavar="FILE", help="also write the list as JSON ('-' for stdout)")
    p.set_defaults(func=cmd_models)


def _datasets_parser(sub) -> None:
    p = sub.add_parser("datasets", help="open dataset specs and print counts per class and skipped files")
    from .data import dataset_kinds_help

    p.add_argument("spec", nargs="+", help="one or more of: " + dataset_kinds_help())
    p.add_argument("--verify", action="store_true",
                   help="decode every image now (opening reads headers only) and list those that fail")
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=cmd_datasets)


def _embed_parser(sub) -> None:
    p = sub.add_parser("embed", help="compute (or read cached) embeddings of a source and a target dataset")
    _add_pair_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the per-class subsample (default 0, as in the app)")
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=cmd_embed)


def _shift_parser(sub) -> None:
    p = sub.add_parser("shift", help="MMD test, domain classifier, CORAL and Fréchet for every layer")
    _add_pair_arguments(p)
    p.add_argument("--permutations", type=int, default=1000, help="permutations of each MMD test (default 1000)")
    p.add_argument("--max-samples", type=int, default=5000,
                   help="at most N samples per domain in each test, drawn at random (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="seed of every test (default 0)")
    p.add_argument("--thresholds", default="0.1,0.5", metavar="GREEN,RED",
                   help="MMD traffic-light thresholds on the seed scale (default 0.1,0.5)")
    p.add_argument("--json", metavar="FILE", help="write every metric, null distributions included")
    p.set_defaults(func=cmd_shift)


def _project_parser(sub) -> None:
    p = sub.add_parser("project", help="2-D map (UMAP, PCA, t-SNE) of one layer, k-NN mixing, trustworthiness")
    _add_pair_arguments(p)
    p.add_argument("--tap", default="pre_logits", help="tap to project (default pre_logits)")
    p.add_argument("--layer", dest="renamed_taps", help=argparse.SUPPRESS)
    p.add_argument("--method", choices=["umap", "pca", "tsne"], default="umap")
    p.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors (default 15)")
    p.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist (default 0.1)")
    p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
    p.add_argument("--pca", type=int, default=50, help="PCA dimensions before UMAP / t-SNE; 0 for none (default 50)")
    p.add_argument("--max-samples", type=int, default=5000,
                   help="at most N images per domain, stratified by class (default 5000)")
    p.add_argument("--epochs", type=int, help="UMAP epochs (default: about a million point-epochs, 50-200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", metavar="FILE", help="write the coordinates, domain, row, sample id and label")
    p.add_argument("--html", metavar="FILE", help="write the map as a self-contained HTML page (thumbnails on hover)")
    p.add_argument("--json", metavar="FILE", help="write the scores, per-class mixing and settings")
    p.set_defaults(func=cmd_project)


def _probe_parser(sub) -> None:
    p = sub.add_parser("probe", help="linear probes at every layer, transferability scores, a leaderboard of models")
    _add_pair_arguments(p)
    p.add_argument("--splits", type=int, default=3, help="random train/validation/test splits (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    p.add_argument("--no-random-init", dest="random_init", action="store_false",
                   help="skip the random-init floor (the same architecture without pretraining)")
    p.add_argument("--leaderboard", metavar="IDS",
                   help="comma-separated model ids to compare on the same datasets, e.g. "
                        "efficientnet-lite0,efficientnet-lite1,random:efficientnet-lite0")
    p.add_argument("--json", metavar="FILE", help="write the curves, scores and leaderboard")
    p.set_defaults(func=cmd_probe)


def _finetune_parser(sub) -> None:
    from .training.finetune import AUGMENTATIONS, STRATEGIES, FinetuneConfig

    d = FinetuneConfig()
    p = sub.add_parser("finetune", help="fine-tune the model on the target as a background job (see `tldiag jobs`)")
    _add_pair_arguments(p)
    p.set_defaults(batch_size=d.batch_size, resolution=None)
    p.add_argument("--strategy", choices=["auto", *STRATEGIES], default="auto",
                   help="what trains (default auto: by the amount of target data, with the reason printed)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"most epochs (default {d.epochs})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate of the new head (default {d.lr:g})")
    p.add_argument("--backbone-lr-mult", type=float, default=d.backbone_lr_mult,
                   help=f"backbone learning rate as a fraction of --lr (default {d.backbone_lr_mult:g})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--augment", choices=AUGMENTATIONS, default="auto",
                   help="augmentation policy (default auto: no mirror images for digits, text or folders)")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs; 0 never stops")
    p.add_argument("--frozen-stages", type=int, help="partial: stages frozen from the bottom (default all but the last)")
    p.add_argument("--head-epochs", type=int, default=d.head_epochs, help="freeze-unfreeze: epochs of the head alone")
    p.add_argument("--l2sp-alpha", type=float, default=d.l2sp_alpha, help="l2-sp: pull toward the pretrained weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (the Probes page's first split) and training")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the GPU when there is one)")
    p.add_argument("--name", help="the job's name in lists (default: model -> target · strategy)")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 1 when it fails")
    p.add_argument("--json", metavar="FILE", help="write the job (with --wait: its result, metrics and log path)")
    p.set_defaults(func=cmd_finetune)


def _efficiency_parser(sub) -> None:
    from .training.finetune import AUGMENTATIONS
    from .training.efficiency import ARMS, BUDGETS, PROFILES, EfficiencyConfig

    e = EfficiencyConfig()
    p = sub.add_parser("efficiency", help="accuracy vs number of target labels, scratch vs transfer, as a background job")
    p.add_argument("--model", default=e.model, help="the pretrained model id (its architecture is the scratch arm)")
    p.add_argument("--source", help="source dataset spec (for the record)")
    p.add_argument("--target", help="labelled target dataset spec")
    p.add_argument("--limit", type=int, help="at most N images per class of the target")
    p.add_argument("--resolution", type=int, help="input size of the transfer arms (default: the weights' own)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default {','.join(ARMS)})")
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)),
                   help=f"labels per class to try (default {','.join(map(str, BUDGETS))}; those at or above the pool "
                        "become 'all')")
    p.add_argument("--budget", type=int, help="your label budget (labels per class): always run, and the budget "
                                              "the readouts answer for")
    p.add_argument("--no-all", action="store_true", help="do not add the run on every pool image")
    p.add_argument("--repeats", type=int, default=e.repeats, help=f"random subsets per budget (default {e.repeats})")
    p.add_argument("--profile", choices=PROFILES, default="auto",
                   help="cpu: reduced resolution and epochs; full: the model's resolution, longer schedules; "
                        "auto: full on a GPU (default)")
    p.add_argument("--augment", choices=AUGMENTATIONS, default="auto", help="augmentation of every trained arm")
    p.add_argument("--epochs", type=int, help="at most N epochs for every trained arm: a quicker, rougher first look "
                                              "(default: the profile's, shown in the plan)")
    p.add_argument("--epoch-images", type=int, metavar="N", help="at least N images per epoch for every trained arm "
                                                                 "(default: the profile's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, subsets and training (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the GPU when there is one)")
    p.add_argument("--name", help="the job's name in lists")
    p.add_argument("--detach", action="store_true", help="submit and return at once instead of following the job")
    p.add_argument("--json", metavar="FILE", help="write the result: every run, the settings and the readouts")
    p.set_defaults(func=cmd_efficiency)


def _report_parser(sub) -> None:
    from .training.efficiency import PROFILES
    from .training.finetune import FinetuneConfig

    d = FinetuneConfig()
    p = sub.add_parser("report", help="the whole analysis headless: go/no-go verdict, HTML report, JSON manifest")
    _add_pair_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the subsampling and every analysis (default 0)")
    p.add_argument("--budget", type=int, help="labelled target images per class you have or can afford: the verdict "
                                              "answers for this budget (default: every labelled target image)")
    p.add_argument("--skip", metavar="NAMES", help="comma-separated analyses to leave out: shift, probes, baselines, "
                                                 "projection, efficiency, finetune (those already computed are still "
                                                 "read)")
    p.add_argument("--fast", action="store_true", help="the fast verdict: shift tests, probes and the scratch "
                                                       "baselines at your budget, no fine-tuning and no data-efficiency "
                                                       "experiment (same as --skip projection,efficiency,finetune)")
    p.add_argument("--profile", choices=PROFILES, default="auto", help="settings of the data-efficiency experiment")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"most epochs of the fine-tuning run (default {d.epochs})")
    p.add_argument("--rules", metavar="FILE", help="verdict thresholds (TOML; default: "
                                                 "tldiag/decision/verdict_rules.toml, or the file "
                                                 "TLDIAG_VERDICT_RULES names)")
    p.add_argument("--base-url", help="the dashboard's address, for the permalink (e.g. http://tldiag.internal:8501)")
    p.add_argument("--fail-on", choices=["never", "no-go", "caution"], default="never",
                   help="exit with status 3 when the decision is NO-GO (no-go) or not GO (caution); default never")
    p.add_argument("--html", metavar="FILE", help="write the self-contained HTML report")
    p.add_argument("--json", metavar="FILE", help="write the JSON manifest ('-' for stdout)")
    p.set_defaults(func=cmd_report)


def _audit_parser(sub) -> None:
    from .audit import ACTIONS

    p = sub.add_parser("audit", help="the audit log: sign-ins, launches, cancels, exports and rule changes, by whom")
    p.add_argument("--user", help="only this user's entries (an e-mail address, or 'local user')")
    p.add_argument("--action", choices=ACTIONS, help="only this action")
    p.add_argument("--last", type=int, help="only the newest N entries")
    p.add_argument("--json", metavar="FILE", help="write the entries as JSON ('-' for stdout)")
    p.set_defaults(func=cmd_audit)


def _cache_parser(sub) -> None:
    p = sub.add_parser("cache", help="the embedding and projection caches: entries, sizes, last use; prune to a limit")
    p.add_argument("action", nargs="?", default="ls", choices=["ls", "prune"])
    p.add_argument("--max-gb", type=float, help="the limit to prune to (default: TLDIAG_CACHE_MAX_GB)")
    p.add_argument("--json", metavar="FILE", help="also write the listing or what was removed as JSON ('-' for stdout)")
    p.set_defaults(func=cmd_cache)


def _jobs_parser(sub) -> None:
    p = sub.add_parser("jobs", help="list, show, wait for, cancel background jobs; register a fine-tuned checkpoint")
    p.add_argument("action", nargs="?", default="list", choices=["list", "show", "wait", "cancel", "register"])
    p.add_argument("ids", nargs="*", help="job ids (register: JOB_ID NAME)")
    p.add_argument("--last", type=int, help="list only the newest N jobs")
    p.add_argument("--lines", type=int, default=20, help="show: lines of the log (default 20)")
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=cmd_jobs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "renamed_taps", None) is not None:
        print(f"tldiag: error: --layers/--layer {args.renamed_taps} is now --taps/--tap {args.renamed_taps} (the "
              "dashboard's URL and the JSON call them taps too).", file=sys.stderr)
        return 2
    if args.ray:
        os.environ["TLDIAG_RAY_ADDRESS"] = args.ray  # background jobs started from here inherit it
    try:
        return args.func(args)
    except TldiagError as exc:
        print(f"tldiag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tldiag: interrupted", file=sys.stderr)
        return 130


__all__ = ["cmd_models", "cmd_datasets", "cmd_embed", "cmd_shift", "cmd_project", "cmd_probe", "cmd_finetune",
           "cmd_efficiency", "cmd_report", "cmd_jobs", "cmd_audit", "cmd_cache", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
