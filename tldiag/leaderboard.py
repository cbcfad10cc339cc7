"""A leaderboard of candidate backbones for one source / target pair, and whether the scores agree.

Each candidate is embedded on both datasets (through the embedding cache) and gets: the linear-probe accuracy
at its best tap (:mod:`tldiag.probes`), LogME, H-score and kNN accuracy at its penultimate tap, LEEP and NCE
from its source head, the seed-scale MMD between source and target at the penultimate tap, its parameter
count and its inference speed. Rows are cached on disk per model, datasets, resolution and settings
(``$TLDIAG_HOME/leaderboard``), so adding a candidate computes only that one.

Kendall's tau (tau-b) between every two score columns over the candidates says whether the scores rank the
models the same way; with few candidates it is coarse (3 models give tau in {-1, -1/3, 1/3, 1}).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import numpy as np

from . import _config
from .cache import JsonStore, make_key
from .errors import TldiagError
from .probes import ProbeConfig, probe_curve
from .progress import ProgressFn

LEADERBOARD_VERSION = 1
# score columns compared by Kendall's tau (all: higher = better transfer)
RANKED = {"probe_accuracy": "Probe acc", "logme": "LogME", "leep": "LEEP", "nce": "NCE", "h_score": "H-score",
          "knn_accuracy": "kNN acc"}


@dataclass(frozen=True)
class LeaderboardEntry:
    """One candidate model's row (see the module docstring); None where a score does not apply."""

    model_id: str
    pretrained: bool
    n_parameters: int
    images_per_second: float
    device: str
    best_tap: str
    probe_accuracy: float
    probe_se: float
    recommended_tap: str
    penultimate_tap: str
    logme: float
    h_score: float
    knn_accuracy: float
    leep: float | None
    nce: float | None
    mmd: float
    mmd_p_value: float
    seconds: float
    cached: bool = False

    def row(self) -> dict:
        return {"model": self.model_id, "probe acc": round(self.probe_accuracy, 4), "± se": round(self.probe_se, 4),
                "best tap": self.best_tap, "cut": self.recommended_tap, "LogME": round(self.logme, 4),
                "LEEP": None if self.leep is None else round(self.leep, 4),
                "NCE": None if self.nce is None else round(self.nce, 4), "H-score": round(self.h_score, 3),
                "kNN acc": round(self.knn_accuracy, 4), f"MMD ({self.penultimate_tap})": round(self.mmd, 4),
                "params (M)": round(self.n_parameters / 1e6, 2), "images/s": round(self.images_per_second, 1)}


@dataclass(frozen=True)
class Leaderboard:
    """Rows sorted by probe accuracy, and Kendall's tau between the score columns."""

    entries: tuple[LeaderboardEntry, ...]
    kendall: dict[str, dict[str, float | None]]
    notes: tuple[str, ...] = ()

    def table(self) -> list[dict]:
        return [e.row() for e in self.entries]

    def agreement(self) -> list[dict]:
        """Tau of every score against the probe accuracy (the closest thing to ground truth here)."""
        return [{"score": RANKED[k], "Kendall τ vs probe acc": self.kendall["probe_accuracy"].get(k)}
                for k in RANKED if k != "probe_accuracy"]

    def to_dict(self) -> dict:
        return {"entries": [asdict(e) for e in self.entries], "kendall": self.kendall, "notes": list(self.notes)}


def kendall_matrix(entries: Sequence[LeaderboardEntry]) -> dict[str, dict[str, float | None]]:
    """Kendall's tau-b between every two :data:`RANKED` columns over the models where both are defined (None
    when fewer than 3 models have both, or a column is constant)."""
    from scipy.stats import kendalltau

    out: dict[str, dict[str, float | None]] = {a: {} for a in RANKED}
    for a, b in itertools.product(RANKED, RANKED):
        pairs = [(getattr(e, a), getattr(e, b)) for e in entries]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
        if len(pairs) < 3:
            out[a][b] = None
            continue
        # 6 significant digits: scores that agree to rounding (H-score saturating at K - 1) are ties, not ranks
        x, y = (np.asarray([float(f"{v:.6g}") for v in col]) for col in zip(*pairs))
        tau = kendalltau(x, y).statistic if np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")
        out[a][b] = None if not math.isfinite(tau) else round(float(tau), 4)
    return out


def _entry_key(model, source, target, taps: Sequence[str], config: ProbeConfig, random_state: int | None) -> str:
    return make_key(kind="leaderboard", version=LEADERBOARD_VERSION, model=model.id, weights=model.weights_hash,
                    prep=model.preprocessing.key(), source=source.fingerprint, target=target.fingerprint,
                    taps=list(taps), config=asdict(config), seed=random_state)


def evaluate_model(model_id: str, source, target, *, resolution: int | None = None,
                   config: ProbeConfig = ProbeConfig(), random_state: int | None = 0, device: str | None = None,
                   progress: ProgressFn | None = None, use_cache: bool = True,
                   store: JsonStore | None = None) -> LeaderboardEntry:
    """One leaderboard row for ``model_id`` on the ``source`` and ``target`` datasets (see the module docstring).

    Args:
        model_id: A model id (:mod:`tldiag.models`).
        source / target: :class:`tldiag.data.ImageDataset` objects; the target must be labelled.
        resolution: Input size in pixels (the weights' own when None).
        config / random_state / device: As in :func:`tldiag.probes.probe_curve`.
        progress: ``progress(done, total, message)`` while embedding and probing.
        use_cache: Read and write the row in ``$TLDIAG_HOME/leaderboard``.
    """
    from .embed import embed_pair
    from .forward import measure_throughput
    from .metrics import headline_layer, seed_scale_mmd
    from .models import LOGITS, load_model
    from .transferability import head_scores, tap_scores

    t0 = time.perf_counter()
    model = load_model(model_id, resolution=resolution)
    taps = [t for t in model.tap_names if t != LOGITS]
    store = store or JsonStore("leaderboard")
    key = _entry_key(model, source, target, taps, config, random_state)
    if use_cache and (hit := store.get(key)) is not None:
        try:
            return LeaderboardEntry(**{**hit, "cached": True})
        except TypeError:
            store.discard(key)
    pair = embed_pair(model, source, target, taps, progress=progress)
    tgt = pair.target
    curve = probe_curve({t: tgt.features[t] for t in taps}, tgt.labels, classes=tgt.classes, depths=model.depths,
                        model_id=model.id, config=config, random_state=random_state, device=device)
    pen = headline_layer(model.tap_names)  # the penultimate representation
    (scores,) = tap_scores({pen: tgt.features[pen]}, tgt.labels, device=device)
    head = head_scores(tgt.features.get(LOGITS), tgt.labels)
    mmd = seed_scale_mmd(np.asarray(pair.source[pen]), np.asarray(tgt[pen]), n_permutations=200, n_bootstrap=0,
                         max_samples=2000, random_state=random_state, device=device)
    entry = LeaderboardEntry(
        model_id=model.id, pretrained=model.pretrained, n_parameters=model.n_parameters,
        images_per_second=measure_throughput(model, device=device), device=device or _config.device_name(),
        best_tap=curve.best.tap, probe_accuracy=curve.best.mean, probe_se=curve.best.se,
        recommended_tap=curve.recommended.tap, penultimate_tap=pen, logme=scores.logme, h_score=scores.h_score,
        knn_accuracy=scores.knn_accuracy, leep=head["leep"], nce=head["nce"], mmd=mmd.mmd,
        mmd_p_value=mmd.p_value, seconds=time.perf_counter() - t0)
    if use_cache:
        store.put(key, {f.name: getattr(entry, f.name) for f in fields(entry) if f.name != "cached"})
    return entry


def leaderboard(model_ids: Sequence[str], source, target, *, resolution: int | None = None,
                config: ProbeConfig = ProbeConfig(), random_state: int | None = 0, device: str | None = None,
                progress: ProgressFn | None = None, use_cache: bool = True) -> Leaderboard:
    """Evaluate every candidate (see :func:`evaluate_model`) and compare the scores' rankings.

    A candidate whose weights cannot be loaded is left out with a note (the others still run); no candidate
    at all is an error. With a Ray cluster configured (``TLDIAG_RAY_ADDRESS``) the rows run there as tasks.
    """
    ids = list(dict.fromkeys(model_ids))
    if not ids:
        raise TldiagError("No candidate models given; pass at least one model id, e.g. efficientnet-lite0.")
    where = _rows_on_ray if _config.ray_address() else _rows_here
    entries, notes = where(ids, source, target, resolution=resolution, config=config, random_state=random_state,
                           device=device, progress=progress, use_cache=use_cache)
    if not entries:
        raise TldiagError("None of the candidate models could be loaded: " + " ".join(notes))
    if progress:
        progress(len(ids), len(ids), "done")
    entries.sort(key=lambda e: -e.probe_accuracy)
    if len(entries) < 3:
        notes.append("Rank agreement (Kendall τ) needs at least 3 models; add candidates to see it.")
    return Leaderboard(tuple(entries), kendall_matrix(entries), tuple(notes))


def _rows_here(ids: Sequence[str], source, target, *, progress: ProgressFn | None, **kwargs
               ) -> tuple[list[LeaderboardEntry], list[str]]:
    """Every candidate's row, one after the other, on this machine."""
    from .errors import ModelUnavailableError

    entries, notes = [], []
    for i, mid in enumerate(ids):
        def sub(done: int, total: int, message: str, i: int = i, mid: str = mid) -> None:
            if progress:
                progress(i, len(ids), f"{mid}: embedding {done}/{total} — {message}")
        if progress:
            progress(i, len(ids), f"{mid}: probing")
        try:
            entries.append(evaluate_model(mid, source, target, progress=sub, **kwargs))
        except ModelUnavailableError as exc:
            notes.append(f"{mid} left out: {exc}")
    return entries, notes


def _rows_on_ray(ids: Sequence[str], source, target, *, resolution: int | None, config: ProbeConfig,
                 random_state: int | None, device: str | None, progress: ProgressFn | None, use_cache: bool
                 ) -> tuple[list[LeaderboardEntry], list[str]]:
    """Every candidate's row as a Ray task (one GPU each on a GPU cluster; see :mod:`tldiag.distributed`), in the order
    of ``ids``; each worker reads and stores its row in the leaderboard store as a local run does. ``device`` is the
    worker's own (its GPU when it has one)."""
    from .distributed import Call, run_tasks

    calls = [Call(mid, (mid,), dict(resolution=resolution, config=config, random_state=random_state,
                                    use_cache=use_cache)) for mid in ids]
    results = run_tasks(remote_row, calls, shared={"source": source, "target": target},
                        progress=(lambda done, running, message: progress(done + running, len(ids), message))
                        if progress else None)
    entries, notes = [], []
    for mid in ids:
        value = results[mid]
        if "error" in value:
            notes.append(f"{mid} left out: {value['error']}")
        else:
            entries.append(LeaderboardEntry(**value))
    return entries, notes


def remote_row(model_id: str, *, source, target, report, **kwargs) -> dict:
    """One leaderboard row inside a Ray task (the model's weights missing on the worker: an ``error`` to report)."""
    from .errors import ModelUnavailableError

    def sub(done: int, total: int, message: str) -> None:
        report(0.5 * done / max(total, 1), f"{model_id}: embedding {done}/{total}")

    try:
        entry = evaluate_model(model_id, source, target, progress=sub, **kwargs)
    except ModelUnavailableError as exc:
        return {"error": str(exc)}
    return {f.name: getattr(entry, f.name) for f in fields(entry)}


__all__ = ["ProgressFn", "LEADERBOARD_VERSION", "RANKED", "LeaderboardEntry", "Leaderboard", "kendall_matrix",
           "evaluate_model", "leaderboard"]
