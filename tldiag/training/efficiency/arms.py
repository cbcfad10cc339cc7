"""The arms' runs: the fitted ones (a linear model and k-NN on pixels, the linear probe on frozen features) and the
trained ones (the small CNN, the architecture from scratch, the fine-tune) with their learning-rate search."""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ...data import ImageDataset
from ...models import LOGITS, Model, load_model, random_init_id
from ...pixels import PIXEL_SIZE, pixel_features
from ...progress import ProgressFn
from ...stats import at_chance, chance_line as _chance_line
from ...validation import metric_device
from ..finetune import recommend
from ..loop import IN_MEMORY_BYTES, fit, head_name, score_test, stages_of
from ..smallcnn import small_cnn
from .config import ARM_TITLES, ArmSchedule, KNN_GRID
from .plan import ExperimentPlan, init_seed, parts_of, schedule_config, seed_of
from .runs import Run, correct_bits, labels_per_class, read_run, run_key, run_store


class _Preloaded:
    """The images of some rows of a dataset, decoded once (the arms read each image many times)."""

    def __init__(self, dataset: ImageDataset, rows: Iterable[int]):
        self.images = {int(r): dataset[int(r)] for r in rows}

    def __getitem__(self, row: int):
        return self.images[int(row)]


def _images_for(dataset: ImageDataset, rows: np.ndarray) -> tuple[Any, bool]:
    """The dataset to train from: decoded in memory when that takes at most :data:`tldiag.training.loop.IN_MEMORY_BYTES`
    (the same bound as a split held as one tensor), else read as needed."""
    first = dataset[int(rows[0])]
    if first.width * first.height * 3 * len(rows) > IN_MEMORY_BYTES:
        return dataset, False
    return _Preloaded(dataset, rows), True


class Ledger:
    """The experiment's progress: ``done`` of ``total`` runs (a trained run's steps count as a fraction of one)."""

    def __init__(self, total: int, progress: ProgressFn | None):
        self.done, self.total, self.progress = 0.0, total, progress

    def tick(self, message: str, fraction: float = 0.0) -> None:
        if self.progress:
            self.progress(self.done + fraction, self.total, message)


def fitted_runs(fitted: Sequence[str], base: Model | None, dataset: ImageDataset, rows: np.ndarray, y: np.ndarray,
                 split: tuple, subsets, n_classes: int, ledger: Ledger) -> Iterable[Run]:
    """The runs of the fitted arms (``linear-probe`` on the frozen features of ``base``, ``pixel-linear`` and
    ``pixel-knn`` on the raw pixels), one arm after the other."""
    if "linear-probe" in fitted:
        from ...embed import embed_dataset

        ledger.tick("linear probes on the frozen pretrained features: embedding")
        taps = [t for t in base.default_taps() if t != LOGITS]
        # each part on its own: the target's embeddings are in the cache already, only the spare test images are new
        embs = [embed_dataset(base, part, taps, progress=(lambda d, t, m, what=what: ledger.tick(
                    f"linear probes: embedding {what} ({d}/{t})")))
                for part, what in zip(parts_of(dataset), ("the target", "the spare test images"))]
        features = {t: np.concatenate([np.asarray(e[t]) for e in embs])[rows] for t in taps}
        yield from _linear_runs("linear-probe", features, y, split, subsets, n_classes,
                                progress=lambda m: ledger.tick(f"linear probes: {m}"))
        ledger.done += 1
    if "pixel-linear" in fitted or "pixel-knn" in fitted:
        ledger.tick(f"pixel baselines: reading the images at {PIXEL_SIZE}x{PIXEL_SIZE} px")
        pixels = pixel_features(dataset, rows)
        if "pixel-linear" in fitted:
            yield from _linear_runs("pixel-linear", {f"{PIXEL_SIZE}px": pixels}, y, split, subsets, n_classes,
                                    progress=lambda m: ledger.tick(f"linear model on pixels: {m}"))
            ledger.done += 1
        if "pixel-knn" in fitted:
            ledger.tick("k-NN on pixels")
            yield from _knn_runs(pixels, y, split, subsets)
            ledger.done += 1


class TrainedArms:
    """The trained arms of one experiment: their starting weights (loaded once), one trained run
    (:meth:`train`), its test score and record (:meth:`finish`), and the run store's key of each run."""

    def __init__(self, the_plan: ExperimentPlan, dataset: ImageDataset, rows: np.ndarray, y: np.ndarray,
                 split: tuple, subsets, ledger: Ledger, *, base: Model | None, workers: int | None = None):
        config = the_plan.config
        self.plan, self.config, self.rows, self.y, self.split, self.subsets = the_plan, config, rows, y, split, subsets
        self.ledger, self.n_classes = ledger, len(the_plan.classes)
        tr, va, te = split
        self.images, preloaded = _images_for(dataset, rows)
        # workers measured slower here: fork + IPC per run; a Ray task takes the driver's number (part of the run)
        self.workers = workers if workers is not None else 0 if preloaded else _default_workers()
        # data-loading workers draw their own augmentation streams, so their number is part of what a run is
        self.common = {"target": dataset.fingerprint, "classes": the_plan.classes, "seed": config.seed,
                       "augment": config.augment, "workers": self.workers, "label_smoothing": config.label_smoothing,
                       "split": [int(len(tr)), int(len(va)), int(len(te))]}
        self.base = base
        if "fine-tuned" in config.arms:
            self.base = base or load_model(config.model, resolution=config.resolution)
        val_counts = np.bincount(y[va], minlength=self.n_classes)
        self.val_chance = float(val_counts.max() / val_counts.sum())
        self.chance_line = _chance_line(self.val_chance, len(va))  # what at_chance calls chance
        self.models: dict[tuple[str, int], Model] = {}

    def start_model(self, arm: str, repeat: int, schedule: ArmSchedule) -> Model:
        """A fresh copy of the arm's starting weights (loaded once per arm, and per repeat for random inits)."""
        config = self.config
        key = (arm, 0 if arm == "fine-tuned" else repeat)
        if key not in self.models:
            if arm == "small-cnn":
                self.models[key] = small_cnn(self.n_classes, resolution=schedule.resolution or 32,
                                             seed=init_seed(arm, config.seed, repeat))
            elif arm == "scratch":
                rid = random_init_id(config.model)
                self.models[key] = load_model(f"{rid}?seed={init_seed(arm, config.seed, repeat)}",
                                              resolution=schedule.resolution)
            else:
                self.base = self.base or load_model(config.model, resolution=config.resolution)
                self.models[key] = self.base if schedule.resolution == config.resolution else \
                    load_model(config.model, resolution=schedule.resolution)
        m = self.models[key]
        return m.with_module(copy.deepcopy(m.module))

    def train(self, arm: str, b: int, r: int, lr: float, label: str) -> tuple[Run, Any]:
        """One trained run of ``arm`` at budget ``b``, repeat ``r`` and peak rate ``lr`` (not yet tested)."""

        config, (tr, va, _), y, rows, n_classes = self.config, self.split, self.y, self.rows, self.n_classes
        schedule = self.plan.schedules[arm]
        sub = tr[self.subsets[(b, r)]]
        model = self.start_model(arm, r, schedule)
        n_stages = len(stages_of(model, head_name(model.module, model.backend))[0])
        strategy, frozen, mult = schedule.strategy, None, schedule.backbone_lr_mult
        if strategy == "auto":
            rec = recommend(len(sub), n_stages, pretrained=model.pretrained)
            strategy, frozen, mult = rec.strategy, rec.frozen_stages, rec.backbone_lr_mult
        if strategy == "partial" and frozen is None:
            frozen = max(n_stages - 1, 0)
        cfg = schedule_config(schedule, config, strategy=strategy, backbone_lr_mult=mult, lr=lr,
                               frozen_stages=frozen, seed=seed_of(config.seed, r, b, 3), num_workers=self.workers)
        if strategy == "freeze-unfreeze" and schedule.epochs < 2:
            cfg = replace(cfg, strategy="partial", frozen_stages=max(n_stages - 1, 0))
        cfg.validate()
        t1 = time.perf_counter()

        def step(k: int, steps: int, message: str) -> None:
            self.ledger.tick(f"{label}: {message}", k / max(steps, 1))

        out = fit(model, self.images, (rows[sub], y[sub]), (rows[va], y[va]), cfg, n_classes, workers=self.workers,
                  progress=step, min_epoch_images=schedule.min_epoch_images, keep_pretrained=False,
                  learning_above=self.chance_line)
        run = Run(arm=arm, budget=b, repeat=r, n_train=len(sub), per_class=len(sub) / n_classes, accuracy=0.0,
                  macro_f1=0.0, val_accuracy=round(out.val_accuracy, 6), epochs=out.epochs_run,
                  best_epoch=out.best_epoch,
                  detail=cfg.strategy + (f", {cfg.frozen_stages} stages frozen" if cfg.strategy == "partial" else "")
                  + f", lr {lr:g}",
                  seconds=round(time.perf_counter() - t1, 3), lr=float(lr), steps=int(out.steps_done),
                  converged=not at_chance(out.val_accuracy, self.val_chance, len(va)))
        return run, (out, model, cfg)

    def finish(self, run: Run, trained: Any, path: Path | None) -> Run:
        """Score a trained run on the test images and store it in the run store (unless ``path`` is None)."""
        from ...cache import atomic_write_text

        out, model, cfg = trained
        te, y = self.split[2], self.y
        acc, f1, pred = score_test(out.module, model, self.images, (self.rows[te], y[te]), cfg, self.n_classes,
                                   self.workers)
        run = replace(run, accuracy=round(acc, 6), macro_f1=round(f1, 6), correct=correct_bits(pred == y[te]))
        if path is not None:
            atomic_write_text(path, json.dumps(run.to_dict()))
        return run

    def key_path(self, arm: str, b: int, r: int, lr: float | str) -> Path:
        config = self.config
        weights = self.base.weights_hash if arm == "fine-tuned" else f"random init {init_seed(arm, config.seed, r)}"
        key = run_key(**self.common, arm=arm, model=config.model if arm != "small-cnn" else "small-cnn",
                       weights=weights, schedule=asdict(self.plan.schedules[arm]), budget=b, repeat=r, lr=lr)
        return run_store() / f"{key}.json"

    def reused(self, arm: str, b: int, r: int, path: Path, chosen_lr: dict[str, float], *, search: bool
               ) -> Run | None:
        """The run stored at ``path`` (counted as done; a search sets ``chosen_lr[arm]`` from it), or None."""
        cached = read_run(path) if path.is_file() else None
        if cached is not None:
            schedule = self.plan.schedules[arm]
            if search:
                chosen_lr[arm] = float(cached.lr or schedule.lr)
            self.ledger.done += len(schedule.lr_grid) if search else 1
            self.ledger.tick(f"{ARM_TITLES[arm]} · {labels_per_class(b)} · repeat {r + 1}/{self.plan.draws(b)}: "
                             "reused")
        return cached

    def run(self, arm: str, b: int, r: int, chosen_lr: dict[str, float], *, search: bool, reuse: bool,
            store: bool = True) -> Run:
        """The run of ``arm`` at budget ``b`` and repeat ``r``: from the run store, or trained, tested and stored
        (``store=False``: the caller stores it, as the driver of a Ray task does). With ``search`` (the reference
        budget, repeat 0) it searches the learning rate on validation and sets ``chosen_lr[arm]`` for the others."""
        ledger = self.ledger
        schedule = self.plan.schedules[arm]
        label = f"{ARM_TITLES[arm]} · {labels_per_class(b)} · repeat {r + 1}/{self.plan.draws(b)}"
        path = self.key_path(arm, b, r, "search" if search else chosen_lr[arm])
        if reuse and (cached := self.reused(arm, b, r, path, chosen_lr, search=search)) is not None:
            return cached
        if search:
            tried = []
            for g in schedule.lr_grid:
                lr = schedule.lr * g
                run, state = self.train(arm, b, r, lr, f"{label} · learning-rate search, lr {lr:g}")
                tried.append((run.val_accuracy, -abs(math.log(g)), lr, run, state))
                ledger.done += 1
                ledger.tick(f"{label}: lr {lr:g} → validation accuracy {run.val_accuracy:.3f}")
            _, _, lr, run, state = max(tried, key=lambda t: t[:2])
            chosen_lr[arm] = lr
            run = replace(run, detail=run.detail + " (chosen on validation from "
                          + ", ".join(f"{t[2]:g}: {t[0]:.3f}" for t in tried) + ")")
            del tried
        else:
            run, state = self.train(arm, b, r, chosen_lr[arm], label)
            ledger.done += 1
        run = self.finish(run, state, path if store else None)
        del state
        ledger.tick(f"{label}: test accuracy {run.accuracy:.3f}" + ("" if run.converged else " (did not converge)"))
        return run


def _default_workers() -> int:
    from ...forward import default_num_workers

    return default_num_workers()


def _by_budget(subsets: Mapping[tuple[int, int], np.ndarray]) -> dict[int, list[int]]:
    by: dict[int, list[int]] = {}
    for (b, r) in subsets:
        by.setdefault(b, []).append(r)
    return by


def _linear_runs(arm: str, features: Mapping[str, np.ndarray], y: np.ndarray, split: tuple,
                 subsets: Mapping[tuple[int, int], np.ndarray], n_classes: int,
                 progress: Callable[[str], None] | None = None) -> list[Run]:
    """A fitted linear arm (the probe on frozen features, or the linear model on pixels): for every budget and
    repeat, a logistic regression per feature set fitted on the budget's images only (no refit on validation),
    the feature set and C with the best validation accuracy, scored on test."""
    from ...probes import ProbeConfig, probe_tap

    t0 = time.perf_counter()
    tr, va, te = split
    dev = metric_device(None)
    config = ProbeConfig()
    runs = []
    for b, repeats in _by_budget(subsets).items():
        if progress:
            progress(labels_per_class(b))
        splits = [(tr[subsets[(b, r)]], va, te) for r in repeats]
        scores = []
        for t, X in features.items():
            acc, f1, chosen, val_acc, _, pred = probe_tap(X, y, splits, n_classes, config, dev, refit=False)
            scores.append((t, acc, f1, chosen, [max(v) for v in val_acc], pred))
        for i, r in enumerate(repeats):
            # the best validation accuracy; ties go to the deeper tap (taps run shallow to deep)
            t, acc, f1, chosen, best_val, pred = max(reversed(scores), key=lambda s: s[4][i])
            n = len(splits[i][0])
            what = f"tap {t}" if arm == "linear-probe" else f"{t} RGB"
            runs.append(Run(arm=arm, budget=b, repeat=r, n_train=n, per_class=n / n_classes,
                            accuracy=round(acc[i], 6), macro_f1=round(f1[i], 6), val_accuracy=round(best_val[i], 6),
                            detail=f"{what}, C={chosen[i]:.3g}", correct=correct_bits(pred[i] == y[te])))
    seconds = (time.perf_counter() - t0) / max(len(runs), 1)
    return [replace(r, seconds=round(seconds, 3)) for r in runs]


def knn_predict(X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray, k: int) -> np.ndarray:
    """k-NN by cosine similarity of mean-centred features (the mean of the training rows); each of the k
    nearest votes with its similarity, so ties between classes go to the closer images."""
    mu = X_train.mean(0, keepdims=True)

    def unit(X: np.ndarray) -> np.ndarray:
        Z = X - mu
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    S = unit(X_eval) @ unit(X_train).T
    k = min(k, len(X_train))
    idx = np.argpartition(-S, k - 1, axis=1)[:, :k]
    n_classes = int(max(y_train.max(), 0)) + 1
    votes = np.zeros((len(X_eval), n_classes))
    np.add.at(votes, (np.arange(len(X_eval))[:, None], y_train[idx]), 1.0 + 1e-3 * np.take_along_axis(S, idx, 1))
    return votes.argmax(1)


def _knn_runs(X: np.ndarray, y: np.ndarray, split: tuple, subsets: Mapping[tuple[int, int], np.ndarray]
              ) -> list[Run]:
    """The k-NN arm on pixels: for every budget and repeat, k chosen on validation from :data:`KNN_GRID`
    (ties: the smaller k), scored on test."""
    from sklearn.metrics import f1_score

    t0 = time.perf_counter()
    tr, va, te = split
    n_classes = int(y.max()) + 1
    runs = []
    for (b, r), pos in subsets.items():
        sub = tr[pos]
        grid = [k for k in KNN_GRID if k <= len(sub)] or [1]
        val = [float(np.mean(knn_predict(X[sub], y[sub], X[va], k) == y[va])) for k in grid]
        k = grid[int(np.argmax(val))]
        pred = knn_predict(X[sub], y[sub], X[te], k)
        runs.append(Run(arm="pixel-knn", budget=b, repeat=r, n_train=len(sub), per_class=len(sub) / n_classes,
                        accuracy=round(float(np.mean(pred == y[te])), 6),
                        macro_f1=round(float(f1_score(y[te], pred, labels=np.unique(y[te]), average="macro",
                                                      zero_division=0)), 6),
                        val_accuracy=round(max(val), 6), detail=f"{PIXEL_SIZE}px RGB, k={k}",
                        correct=correct_bits(pred == y[te])))
    seconds = (time.perf_counter() - t0) / max(len(runs), 1)
    return [replace(r, seconds=round(seconds, 3)) for r in runs]


__all__ = ["Ledger", "TrainedArms", "fitted_runs", "knn_predict"]
