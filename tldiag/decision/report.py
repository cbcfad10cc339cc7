"""The decision record: every analysis of a setup, gathered from the caches or computed, read into a verdict, and
exported as a JSON manifest and a self-contained HTML report.

* :func:`gather` collects what exists for a :class:`~tldiag.setup.Setup`: the shift tests and the probes (summaries
  stored under ``$TLDIAG_HOME/analyses``, keyed by the model's weights hash, the datasets' fingerprints, the taps,
  the seed and the settings), the UMAP map (``$TLDIAG_HOME/projections``), and the newest finished data-efficiency
  and fine-tuning jobs of the same model, target, resolution and seed. ``compute=`` names the analyses to run when
  they are missing; the others are only read.
* :func:`build_record` applies :func:`tldiag.decision.verdict.decide` and writes the manifest: versions, model id and
  weights hash, dataset specs, fingerprints and sizes, taps, seeds, every metric with its settings, timings, the
  verdict and its reasons, the rules.
* :meth:`DecisionRecord.html` renders the report: plotly.js and every figure inlined, the manifest embedded, no
  network needed to open it.

The dashboard's pages and ``tldiag report`` share these functions, so a pipeline's report and the Verdict page
read the same cached numbers.
"""
from __future__ import annotations

import datetime as _dt
import html as _html
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlencode

from ..audit import ANONYMOUS
from ..cache import JsonStore, json_default, make_key
from ..errors import TldiagError
from ..setup import Setup
from ..training.configs import baselines_config
from .verdict import (DivergenceEvidence, EfficiencyEvidence, Evidence, FinetuneEvidence, ProbeEvidence, Rules,
                      PIXELS_REFERENCE, TransferabilityEvidence, Verdict, decide)

ANALYSES = ("shift", "probes", "baselines", "projection", "efficiency", "finetune")
COMPUTED_HERE = ("shift", "probes", "baselines", "projection")
"""The analyses :func:`gather` computes in-process (the others are background jobs)."""
FAST = ("shift", "probes", "baselines")
"""The fast verdict: no training beyond the seconds-long baselines."""
ANALYSIS_TITLES = {"shift": "Shift tests", "probes": "Linear probes and transferability scores",
                   "baselines": "Scratch baselines at your budget", "projection": "UMAP map",
                   "efficiency": "Data-efficiency experiment", "finetune": "Fine-tuning",
                   "source_head": "Source model on the target"}
SUMMARY_VERSION = 1
RECORD_VERSION = 1
SHIFT_SETTINGS = {"n_permutations": 1000, "max_samples": 5000}  # the Shift page's defaults
LIBRARIES = ("torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "umap-learn", "pandas", "plotly",
             "pillow", "streamlit")
Progress = Callable[[int, int, str], None]


# ----------------------------------------------------------------------------- a setup, opened
@dataclass
class Context:
    """A setup with its model and datasets loaded (pass the dashboard's cached ones to avoid reloading)."""

    setup: Setup
    model: Any
    source: Any
    target: Any
    taps: tuple[str, ...]
    user: str = ANONYMOUS
    """Who asks (the signed-in user, or "local user"): kept with the analyses and embeddings computed for them."""

    @classmethod
    def open(cls, setup: Setup, *, model=None, source=None, target=None, user: str | None = None) -> "Context":
        from ..data import load_dataset
        from ..models import load_model

        setup = setup.validate()
        model = model or load_model(setup.model, resolution=setup.resolution)
        source = source or load_dataset(setup.source_spec)
        target = target or load_dataset(setup.target_spec)
        setup.check_budget(target)
        taps = tuple(setup.taps) if setup.taps else tuple(model.default_taps())
        return cls(setup, model, source, target, taps, user or ANONYMOUS)

    def key(self, kind: str, settings: Mapping[str, Any]) -> str:
        m = self.model
        return make_key(kind=kind, version=SUMMARY_VERSION, model=m.id, weights=m.weights_hash,
                        preprocessing=m.preprocessing.key(), source=self.source.fingerprint,
                        target=self.target.fingerprint, taps=list(self.taps), seed=self.setup.seed, settings=settings)

    def pair(self, progress: Progress | None = None):
        from ..embed import embed_pair

        return embed_pair(self.model, self.source, self.target, list(self.taps), progress=progress,
                          requested_by=self.user)

    def embedded(self) -> bool:
        from ..embed import is_cached

        return all(is_cached(self.model, ds, list(self.taps)) for ds in (self.source, self.target))


def _store() -> JsonStore:
    return JsonStore("analyses")


def _stamped(ctx: Context, summary: dict[str, Any]) -> dict[str, Any]:
    """A summary as stored: with who asked for it and when."""
    return {**summary, "requested_by": ctx.user, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _probe_settings(config) -> dict[str, Any]:
    return {**asdict(config), "transferability_reference": PIXELS_REFERENCE}


# ----------------------------------------------------------------------------- shift and probes (cached summaries)
def shift_summary(ctx: Context, report) -> dict[str, Any]:
    """The stored form of a :class:`~tldiag.metrics.ShiftReport` (permutation nulls left out)."""
    d = report.to_dict()
    for layer in d["layers"]:
        layer["mmd_test"].pop("null", None)
    return {"settings": {**SHIFT_SETTINGS, "random_state": ctx.setup.seed}, "result": d, "seconds": report.seconds}


def remember_shift(ctx: Context, report, *, n_permutations: int, max_samples: int | None) -> None:
    """Store a shift report computed elsewhere (the Shift page) when it used the verdict's settings."""
    if {"n_permutations": n_permutations, "max_samples": max_samples} == SHIFT_SETTINGS \
            and report.random_state == ctx.setup.seed:
        _store().put(ctx.key("shift", SHIFT_SETTINGS), _stamped(ctx, shift_summary(ctx, report)))


def _stored(ctx: Context, kind: str, settings: Mapping[str, Any], compute: bool,
            summarise: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The stored summary of ``kind``; when there is none and ``compute``, ``summarise()`` it and store it."""
    store, key = _store(), ctx.key(kind, settings)
    hit = store.get(key)
    if hit is not None or not compute:
        return hit
    payload = _stamped(ctx, summarise())
    store.put(key, payload)
    return payload


def verdict_taps(taps: Sequence[str]) -> list[str]:
    """The taps whose shift and probe the verdict computes: every tap but the logits (when another is left). The
    logits are a linear map of the penultimate features, so neither a linear probe nor a kernel two-sample test
    learns more from them, and on a 1,000-class head they were a fifth of the fast verdict's time; they still
    feed LEEP and NCE. The Shift and Probes pages show every tap."""
    from ..models import LOGITS

    rest = [t for t in taps if t != LOGITS]
    return rest or list(taps)


def shift(ctx: Context, *, compute: bool, pair=None, progress: Progress | None = None) -> dict[str, Any] | None:
    """The setup's shift summary: stored, or (``compute``) computed from the embeddings and stored; else None."""
    from ..metrics import shift_report

    def summarise() -> dict[str, Any]:
        embedded = pair or ctx.pair()
        report = shift_report(embedded, layers=verdict_taps(embedded.taps), random_state=ctx.setup.seed,
                              progress=progress, **SHIFT_SETTINGS)
        return shift_summary(ctx, report)
    return _stored(ctx, "shift", SHIFT_SETTINGS, compute, summarise)


def _transferability(report, target, headline: str) -> dict[str, Any]:
    """LogME and kNN at the headline tap, of the pretrained features and of the target's raw pixels
    (:func:`tldiag.transferability.pixel_reference`)."""
    from ..transferability import pixel_reference

    scores = {s["tap"]: s for s in report.scores}.get(headline, {})
    logme_pixels, knn_pixels = pixel_reference(target)
    return {"tap": headline, "logme": scores.get("logme"), "knn_accuracy": scores.get("knn_accuracy"),
            "reference": PIXELS_REFERENCE, "logme_reference": logme_pixels, "knn_reference": knn_pixels}


def probes_summary(ctx: Context, report) -> dict[str, Any]:
    """The stored form of a :class:`~tldiag.probes.ProbeReport`, with LogME and kNN of the target's raw pixels at
    the headline tap (the transferability signal compares the two)."""
    from ..metrics.layers import headline_layer

    headline = headline_layer([t.tap for t in report.target.taps])
    return {"settings": {**_probe_settings(report.target.config), "random_state": ctx.setup.seed},
            "result": report.to_dict(), "transferability": _transferability(report, ctx.target, headline),
            "seconds": report.seconds}


def remember_probes(ctx: Context, report, config) -> None:
    """Store a probe report computed elsewhere (the Probes page) when it used the verdict's settings."""
    from ..probes import ProbeConfig

    if config == ProbeConfig():
        _store().put(ctx.key("probes", _probe_settings(config)), _stamped(ctx, probes_summary(ctx, report)))


def probes(ctx: Context, *, compute: bool, pair=None, progress: Progress | None = None) -> dict[str, Any] | None:
    """The setup's probe summary (the target curve, and LogME and kNN of the raw pixels at the headline tap):
    stored (the Probes page's, with all three curves, when it ran with these settings), or computed and stored;
    else None."""
    from ..probes import ProbeConfig, probe_report

    config = ProbeConfig()

    def summarise() -> dict[str, Any]:
        embedded = pair or ctx.pair()
        # the verdict reads the target curve and LogME / kNN against the raw pixels (transferability); the source
        # and random-init curves are the Probes page's context (two thirds of the probes' time, and a second model)
        report = probe_report(embedded, None, depths=ctx.model.depths, config=config, random_state=ctx.setup.seed,
                              progress=progress, include_source=False, taps=verdict_taps(embedded.taps))
        return probes_summary(ctx, report)
    return _stored(ctx, "probes", _probe_settings(config), compute, summarise)


def baselines(ctx: Context, *, compute: bool, pair=None, progress: Progress | None = None
              ) -> dict[str, Any] | None:
    """The setup's budget comparison (see :func:`baselines_config`): stored, or computed and stored; else None."""
    from ..training.efficiency import readouts, run_experiment

    if not ctx.model.pretrained:  # nothing to transfer: the verdict says so without measuring
        return None
    config = baselines_config(ctx.setup)
    settings = config.to_dict()

    def summarise() -> dict[str, Any]:
        t0 = time.perf_counter()
        result = run_experiment(config, progress=progress, dataset=ctx.target, model=ctx.model)
        ro = readouts(result)
        return {"settings": settings, "result": result.to_dict(), "readouts": ro.to_dict(),
                "seconds": time.perf_counter() - t0}
    return _stored(ctx, "baselines", settings, compute, summarise)


def baseline_evidence(summary: Mapping[str, Any]):
    from ..training.efficiency import EfficiencyResult, readouts
    from .verdict import BaselineEvidence

    result = EfficiencyResult.from_dict(summary["result"])
    return BaselineEvidence.from_result(result, readouts(result))


def projection(ctx: Context, *, compute: bool, pair=None, progress: Progress | None = None):
    """The UMAP map of the headline tap (the Explorer's defaults): from the cache, or computed; else None."""
    from ..metrics.layers import headline_layer
    from ..projection import ProjectionParams, project_pair

    if not compute and not ctx.embedded():
        return None
    pair = pair or ctx.pair()
    layer = headline_layer(list(pair.taps))
    return project_pair(pair, layer, ProjectionParams(random_state=ctx.setup.seed), compute=compute,
                        progress=progress)


# ----------------------------------------------------------------------------- jobs of the setup
def _same_run(job, setup: Setup, model_id: str) -> bool:
    from ..training.jobs import config_of

    c = config_of(job)
    return c is not None and (c.model, c.target, c.resolution, c.seed) == (model_id, setup.target_spec,
                                                                           setup.resolution, setup.seed)


def matching_jobs(setup: Setup, kind: str, store=None, *, model_id: str | None = None, done: bool = True,
                  jobs: Sequence[Any] | None = None) -> list:
    """Jobs of ``kind`` on the setup's model (or ``model_id``), target, resolution and seed, newest first; only the
    finished ones unless ``done=False`` (then only the queued or running ones). ``jobs``: the store's jobs of
    ``kind``, when the caller has read them already."""
    from ..training.jobs import JobStore

    if jobs is None:
        jobs = (store or JobStore()).list(kind=kind)
    model_id = model_id or setup.model
    return [j for j in jobs if ((j.status == "done" and j.result) if done else j.active)
            and _same_run(j, setup, model_id)]


def _run_budget(result, budget: int | None) -> int | None:
    """The budget of an experiment that answers for the team's ``budget`` (0 = all of the pool), or None when it
    did not run it."""
    if budget is None:
        return None
    if budget in result.budgets:
        return budget
    return result.reference if result.config.budget == budget else -1


def efficiency_of(job, budget: int | None = None) -> tuple[dict[str, Any], EfficiencyEvidence] | None:
    """The summary and evidence of a finished data-efficiency job, read at the team's ``budget``; None when its arms
    cannot be compared there (or it did not run that budget)."""
    from ..training.efficiency import curves, readouts, result_of

    result = result_of(job)
    at = _run_budget(result, budget)
    if at == -1:
        return None
    try:
        ro = readouts(result, arm_curves=curves(result), budget=at)
    except TldiagError:
        return None
    summary = {"job": job.id, "settings": result.config.to_dict(), "result": result.to_dict(),
               "readouts": ro.to_dict(), "seconds": result.seconds}
    return summary, EfficiencyEvidence.from_readouts(ro, result, job=job.id)


def efficiency(setup: Setup, store=None):
    """The newest finished data-efficiency experiment of the setup that has readouts: (summary, evidence) or None."""
    for job in matching_jobs(setup, "efficiency", store):
        got = efficiency_of(job, setup.budget)
        if got is not None:
            return got
    return None


def finetune(setup: Setup, store=None):
    """The newest finished fine-tuning run of the setup and its from-scratch twin when one ran:
    (summary, evidence) or None."""
    from ..training.finetune import config_of, scratch_job
    from ..training.jobs import JobStore

    listed = (store or JobStore()).list(kind="finetune")  # one read: the run and its scratch twin
    jobs = matching_jobs(setup, "finetune", jobs=listed)
    if not jobs:
        return None
    job = jobs[0]
    s = scratch_job(config_of(job), listed)
    summary = {"job": job.id, "settings": job.result["config"], "result": job.result,
               "scratch_job": s.id if s else None, "scratch": s.result if s else None,
               "seconds": job.result.get("seconds")}
    return summary, FinetuneEvidence.from_results(job.result, s.result if s else None, job=job.id,
                                                  scratch_job=s.id if s else None)


# ----------------------------------------------------------------------------- gathering
@dataclass(frozen=True)
class Analyses:
    """What exists for a setup (None: not computed). ``shift``, ``probes``, ``efficiency`` and ``finetune`` are
    the stored summaries; ``projection`` the :class:`~tldiag.projection.Projection` object."""

    setup: Setup
    model: Mapping[str, Any]
    datasets: Mapping[str, Mapping[str, Any]]
    taps: tuple[str, ...]
    embedded: bool
    shift: Mapping[str, Any] | None
    probes: Mapping[str, Any] | None
    projection: Any = field(default=None, repr=False)
    baselines: Mapping[str, Any] | None = None
    source_head: Mapping[str, Any] | None = None
    efficiency: Mapping[str, Any] | None = None
    finetune: Mapping[str, Any] | None = None
    evidence: Evidence = Evidence()
    timings: Mapping[str, float] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def computed(self) -> tuple[str, ...]:
        return tuple(k for k in ANALYSES if getattr(self, k) is not None)


def _model_info(model) -> dict[str, Any]:
    params = sum(p.numel() for p in model.module.parameters())
    return {"id": model.id, "weights_hash": model.weights_hash, "preprocessing": asdict(model.preprocessing),
            "parameters": int(params), "num_classes": model.num_classes}


def _dataset_info(ds) -> dict[str, Any]:
    return {"spec": ds.spec, "fingerprint": ds.fingerprint, "n": len(ds), "classes": len(ds.classes),
            "class_counts": ds.class_counts(), "description": ds.description}


def evidence_of(analyses_parts: Mapping[str, Any], *, n_stages: int | None, pretrained: bool,
                budget: int | None = None, model: str = "", source_head: Mapping[str, Any] | None = None) -> Evidence:
    """The verdict's :class:`~tldiag.decision.verdict.Evidence` from the summaries (read back into their typed results)."""
    from ..metrics import ShiftReport
    from ..probes import ProbeReport

    sh, pr, bl = (analyses_parts.get(k) for k in ("shift", "probes", "baselines"))
    tr = pr.get("transferability") if pr else None
    transfer = TransferabilityEvidence.from_dict(tr) if tr and tr.get("logme") is not None else None
    return Evidence(divergence=DivergenceEvidence.from_report(ShiftReport.from_dict(sh["result"])) if sh else None,
                    transferability=transfer,
                    probe=ProbeEvidence.from_report(ProbeReport.from_dict(pr["result"])) if pr else None,
                    efficiency=analyses_parts.get("efficiency_evidence"), finetune=analyses_parts.get("finetune_evidence"),
                    n_stages=n_stages, pretrained=pretrained, baseline=baseline_evidence(bl) if bl else None,
                    budget=budget, model=model, source_head=_source_head_evidence(source_head))


def _source_head_evidence(summary: Mapping[str, Any] | None):
    from ..sourcehead import SourceHeadResult

    return None if summary is None else SourceHeadResult.from_dict(summary)


def gather(setup: Setup, *, compute: Sequence[str] = (), store=None, model=None, source=None, target=None,
           progress: Callable[[str, int, int, str], None] | None = None, user: str | None = None) -> Analyses:
    """Everything that exists for ``setup``; the analyses named in ``compute`` (of :data:`COMPUTED_HERE`: ``shift``,
    ``probes``, ``baselines``, ``projection``) are computed when missing. Jobs (``efficiency``, ``finetune``) are
    only read: see :func:`tldiag.training.jobs.launch` to run them.

    Args:
        progress: ``progress(analysis, done, total, message)``.
        user: Who asks (the signed-in user); kept with what is computed and stored for them.
    """
    unknown = [c for c in compute if c not in COMPUTED_HERE]
    if unknown:
        raise TldiagError(f"gather(compute=...) computes {', '.join(COMPUTED_HERE)}; {unknown} are jobs or unknown. "
                          "Launch efficiency and fine-tuning as jobs (tldiag efficiency / tldiag finetune).")
    from ..training.loop import stage_count

    t0 = time.perf_counter()
    ctx = Context.open(setup, model=model, source=source, target=target, user=user)
    timings: dict[str, float] = {}
    pair = None

    def step(name: str):
        return (lambda d, t, m: progress(name, d, t, m)) if progress else None

    if compute:
        t = time.perf_counter()
        pair = ctx.pair(progress=step("embeddings"))
        timings["embeddings"] = time.perf_counter() - t
    parts: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, fn in (("shift", shift), ("probes", probes), ("baselines", baselines), ("projection", projection)):
        t = time.perf_counter()
        try:
            parts[name] = fn(ctx, compute=name in compute, pair=pair, progress=step(name))
        except TldiagError as exc:  # e.g. probes of an unlabelled target: the other analyses still count
            parts[name], errors[name] = None, str(exc)
        timings[name] = time.perf_counter() - t
    for name, fn in (("efficiency", efficiency), ("finetune", finetune)):
        t = time.perf_counter()
        got = fn(ctx.setup, store)
        parts[name], parts[f"{name}_evidence"] = got if got else (None, None)
        timings[name] = time.perf_counter() - t
    source_head = None
    if pair is not None or ctx.embedded():
        from ..sourcehead import measure

        t = time.perf_counter()
        try:
            got = measure(pair or ctx.pair(), ctx.model, seed=ctx.setup.seed)
            source_head = None if got is None else got.to_dict()
        except TldiagError as exc:  # e.g. no target class the source model knows
            errors["source_head"] = str(exc)
        timings["source_head"] = time.perf_counter() - t
    ev = evidence_of(parts, n_stages=stage_count(ctx.model), pretrained=ctx.model.pretrained, budget=setup.budget,
                     model=ctx.model.id, source_head=source_head)
    timings["total"] = time.perf_counter() - t0
    return Analyses(setup=ctx.setup, model=_model_info(ctx.model),
                    datasets={"source": _dataset_info(ctx.source), "target": _dataset_info(ctx.target)},
                    taps=ctx.taps, embedded=pair is not None or ctx.embedded(), shift=parts["shift"],
                    probes=parts["probes"], baselines=parts["baselines"], source_head=source_head,
                    projection=parts["projection"],
                    efficiency=parts["efficiency"],
                    finetune=parts["finetune"], evidence=ev, timings={k: round(v, 3) for k, v in timings.items()},
                    errors=errors)


# ----------------------------------------------------------------------------- the record
def permalink(setup: Setup, base_url: str = "") -> str:
    """The dashboard URL of the Verdict page for ``setup`` (``base_url`` like ``http://host:8501``)."""
    return f"{base_url.rstrip('/')}/verdict?{urlencode(setup.to_query())}"


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _seeds(a: Analyses) -> dict[str, Any]:
    return {"setup": a.setup.seed, "shift": a.shift["settings"]["random_state"] if a.shift else None,
            "probes": a.probes["settings"]["random_state"] if a.probes else None,
            "projection": a.projection.params.random_state if a.projection is not None else None,
            "baselines": a.baselines["settings"]["seed"] if a.baselines else None,
            "efficiency": a.efficiency["settings"]["seed"] if a.efficiency else None,
            "finetune": a.finetune["settings"]["seed"] if a.finetune else None}


def _projection_summary(p) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"settings": asdict(p.params), "result": p.summary(), "seconds": p.seconds.get("total")}


@dataclass(frozen=True)
class DecisionRecord:
    """The verdict of a setup with everything it rests on (``manifest`` is JSON-ready)."""

    analyses: Analyses
    verdict: Verdict
    manifest: Mapping[str, Any]

    def json(self) -> str:
        return json.dumps(self.manifest, indent=1)

    def html(self) -> str:
        return render_html(self)


def _json_default(value: Any) -> Any:
    """The stores' encoding (numpy scalars and arrays), sets as lists, anything else as its text."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    try:
        return json_default(value)
    except TypeError:
        return str(value)


def _compute_seconds(a: Analyses) -> dict[str, float | None]:
    """How long each analysis took when it was computed (its summary's record; not this read)."""
    out: dict[str, float | None] = {}
    for name in ANALYSES:
        got = getattr(a, name)
        if name == "projection":
            value = None if got is None else got.seconds.get("total")
        else:
            value = None if got is None else got.get("seconds")
        out[name] = None if value is None else round(float(value), 3)
    return out


def build_record(analyses: Analyses, rules: Rules | None = None, *, base_url: str = "",
                 created: str | None = None, timings: Mapping[str, float] | None = None,
                 requested_by: str | None = None) -> DecisionRecord:
    """Decide on ``analyses`` and assemble the manifest (``timings``: more wall times to record, e.g. the whole
    headless run's; ``requested_by``: who asked for the record, the signed-in user or "local user")."""
    from .._version import __version__
    from .._config import device_name

    verdict = decide(analyses.evidence, rules)
    a = analyses
    manifest = {
        "record": "tldiag decision record", "record_version": RECORD_VERSION,
        "created": created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "requested_by": requested_by or ANONYMOUS,
        "tldiag_version": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "libraries": _versions(), "device": device_name(),
        "setup": a.setup.as_dict(), "permalink": permalink(a.setup, base_url),
        "model": dict(a.model), "datasets": {k: dict(v) for k, v in a.datasets.items()}, "taps": list(a.taps),
        "seeds": _seeds(a),
        "budget": a.setup.budget,
        "analyses": {"shift": a.shift, "probes": a.probes, "baselines": a.baselines, "source_head": a.source_head,
                     "projection": _projection_summary(a.projection), "efficiency": a.efficiency,
                     "finetune": a.finetune},
        "computed": list(a.computed), "errors": dict(a.errors),
        "timings": {"computed_seconds": _compute_seconds(a), "read_seconds": dict(a.timings), **(timings or {})},
        "evidence": a.evidence.to_dict(), "verdict": verdict.to_dict(),
    }
    return DecisionRecord(a, verdict, json.loads(json.dumps(manifest, default=_json_default)))


# ----------------------------------------------------------------------------- figures and HTML
def figures(analyses: Analyses, verdict=None) -> dict[str, Any]:
    """Every figure the computed analyses have, by section: plotly Figures (with ``verdict``, first the measured gains
    against their margins)."""
    from .. import viz

    out: dict[str, Any] = {}
    readings = [s.reading for s in verdict.signals if s.reading is not None] if verdict is not None else []
    if readings:
        out["Measured gains of transfer over scratch, against their margins"] = viz.gain_forest(readings)
    if analyses.shift:
        out["Divergence by depth"] = viz.divergence_by_layer(analyses.shift["result"])
    if analyses.probes:
        from ..probes import ProbeReport

        out["Linear probe by depth"] = viz.probe_curves_figure(ProbeReport.from_dict(analyses.probes["result"]))
    if analyses.projection is not None:
        out[f"UMAP of {analyses.projection.layer}, coloured by domain"] = viz.projection_figure(analyses.projection)
    if analyses.efficiency:
        from ..training.efficiency import ARM_TITLES, EfficiencyResult, curves, readouts

        result = EfficiencyResult.from_dict(analyses.efficiency["result"])
        cs = curves(result)
        out["Data efficiency: test accuracy against labels per class"] = viz.efficiency_figure(
            cs, chance=result.chance, readouts=readouts(result, arm_curves=cs), titles=ARM_TITLES)
    if analyses.finetune:
        r = analyses.finetune["result"]
        out["Fine-tuning: training curves"] = viz.training_curves_figure(r["history"], best_epoch=r["best_epoch"])
        if r.get("cka"):
            out["Fine-tuning: which layers changed most (1 − CKA)"] = viz.cka_change_figure(r["cka"])
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.decision{font-size:1.6em;font-weight:700;padding:.5em .8em;border-radius:8px;margin:.6em 0}
.GO{background:#e6f4ea;color:#137333} .CAUTION{background:#fef7e0;color:#8a5a00} .NO-GO{background:#fce8e6;color:#a50e0e}
.none{background:#eee;color:#555}
.badge{display:inline-block;min-width:5.5em;text-align:center;font-weight:700;border-radius:4px;padding:.1em .4em}
.badge.INFO{background:#e8eaed;color:#444}
table{border-collapse:collapse;width:100%;margin:.5em 0} td,th{border:1px solid #ddd;padding:.35em .5em;
vertical-align:top;text-align:left;font-size:.92em} th{background:#f6f6f6}
.muted{color:#666;font-size:.9em} code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
"""


def _e(x: Any) -> str:
    return _html.escape(str(x))


def render_html(record: DecisionRecord) -> str:
    """A self-contained HTML page of ``record`` (plotly.js inlined, the manifest embedded as JSON)."""
    from plotly.offline import get_plotlyjs

    m, v, a = record.manifest, record.verdict, record.analyses
    decision = v.decision or "none"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>tldiag decision record: "
             f"{_e(a.setup.model)} → {_e(a.setup.target)}</title><style>{_CSS}</style>"
             f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
             "<h1>Transfer decision record</h1>",
             f"<p class='muted'>{_e(m['created'])} · requested by {_e(m.get('requested_by', ''))} · tldiag "
             f"{_e(m['tldiag_version'])} · model <code>{_e(a.setup.model)}"
             f"</code> · source <code>{_e(a.setup.source_spec)}</code> · target <code>{_e(a.setup.target_spec)}</code>"
             f" · {a.setup.resolution or 'native'} px · seed {a.setup.seed}</p>",
             f"<div class='decision {decision}'>{_e(v.decision or 'No verdict yet')}</div>",
             f"<p><b>{_e(v.headline)}</b></p>",
             f"<p><b>Label budget:</b> {_e(v.budget)}" + (f" · {_e(v.break_even)}" if v.break_even else "") + "</p>"]
    parts += ["<ul>"] + [f"<li>{_e(r)}</li>" for r in v.reasons] + ["</ul>"]
    if v.disagreements:
        parts += ["<h2>Signals that disagree</h2><ul>"] + [f"<li>{_e(d)}</li>" for d in v.disagreements] + ["</ul>"]
    parts.append("<h2>Signals</h2><table><tr><th>signal</th><th>status</th><th>value</th><th>evidence</th>"
                 "<th>rule that fired</th></tr>")
    for s in v.signals:
        parts.append(f"<tr><td>{_e(s.title)}<br><span class='muted'>{_e(s.kind)}</span></td><td><span class='badge "
                     f"{_e(s.status)}'>{_e(s.status)}</span></td><td>{_e(s.value)}</td><td>{_e(s.evidence)}</td>"
                     f"<td>{_e(s.rule)}</td></tr>")
    parts.append("</table>")
    b = a.evidence.baseline
    if b is not None:
        parts.append(f"<h2>Transfer against training from scratch at {_e(v.budget)}</h2><p class='muted'>The same label "
                     f"subsets ({b.repeats} repeats) and the same {b.n_test} test images for every arm; 95% intervals "
                     "over the draws and the test images. An arm still at chance when its schedule ended did not converge "
                     "and does not vote.</p><table><tr><th>arm</th><th>test accuracy</th><th>95% interval</th>"
                     "<th>converged</th><th>settings</th></tr>")
        parts += [f"<tr><td>{_e(x.title)}</td><td>{x.mean:.3f}</td><td>{x.low:.3f}–{x.high:.3f}</td><td>"
                  f"{'yes' if x.converged else 'no (does not vote)'}</td><td>{_e(x.settings)}</td></tr>" for x in b.arms]
        parts.append(f"</table><p>{_e(b.comparison.text)}</p>")
    if a.errors:
        parts += ["<h2>Could not run</h2><ul>"] + [f"<li><b>{_e(ANALYSIS_TITLES[k])}</b>: {_e(msg)}</li>"
                                                   for k, msg in a.errors.items()] + ["</ul>"]
    if v.missing:
        parts += ["<h2>Not computed yet</h2><ul>"] + [f"<li><b>{_e(x.title)}</b>: would add {_e(x.adds)}.</li>"
                                                      for x in v.missing] + ["</ul>"]
    if v.recipe:
        r = v.recipe
        parts += [f"<h2>Recommended recipe: {_e(r.title)}</h2>", "<ol>"] + [f"<li>{_e(s)}</li>" for s in r.steps] + \
            ["</ol>", f"<p><b>Freeze up to:</b> {_e(r.freeze_up_to or '—')}</p>",
             f"<p><b>Source model:</b> {_e(r.another_source_reason)}</p>",
             f"<p><b>Expected label savings:</b> {_e(r.label_savings)}</p>"]
    figs = figures(a, v)
    if figs:
        parts.append("<h2>Figures</h2>")
        for title, fig in figs.items():
            parts.append(f"<h3>{_e(title)}</h3>")
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
    parts.append("<h2>Provenance</h2><table>")
    rows = [("tldiag", m["tldiag_version"]), ("Python", m["python"]), ("platform", m["platform"]),
            ("device", m["device"]), ("model", f"{m['model']['id']} · weights sha256 {m['model']['weights_hash']} · "
                                               f"{m['model']['parameters']:,} parameters"),
            *((f"{role} dataset", f"{d['spec']} · {d['n']} images, {d['classes']} classes · fingerprint "
                                  f"{d['fingerprint']}") for role, d in m["datasets"].items()),
            ("taps", ", ".join(m["taps"])), ("seeds", json.dumps(m["seeds"])),
            ("libraries", ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)),
            ("rules", f"{v.rules.origin}: {json.dumps({k: val for k, val in v.rules.to_dict().items() if k != 'origin'})}"),
            ("timings (s)", json.dumps(m["timings"])), ("permalink", m["permalink"])]
    parts += [f"<tr><th>{_e(k)}</th><td>{_e(val)}</td></tr>" for k, val in rows] + ["</table>"]
    for name in ANALYSES:
        s = m["analyses"].get(name)
        if s and s.get("settings") is not None:
            parts.append(f"<p class='muted'><b>{_e(ANALYSIS_TITLES[name])}</b> settings: "
                         f"<code>{_e(json.dumps(s['settings']))}</code></p>")
    manifest = json.dumps(record.manifest).replace("</", "<\\/")
    parts.append(f"<p class='muted'>The full manifest (every metric with its settings) is embedded in this file as "
                 f"JSON: <code>document.getElementById('tldiag-manifest')</code>.</p>"
                 f"<script type='application/json' id='tldiag-manifest'>{manifest}</script></body></html>")
    return "\n".join(parts)


def embedded_manifest(page: str) -> dict[str, Any]:
    """The manifest embedded in a report page written by :func:`render_html`."""
    start = page.find("<script type='application/json' id='tldiag-manifest'>")
    if start < 0:
        raise TldiagError("This HTML page has no embedded tldiag manifest (was it written by tldiag report?).")
    start = page.index(">", start) + 1
    return json.loads(page[start:page.index("</script>", start)].replace("<\\/", "</"))


__all__ = ["ANALYSES", "COMPUTED_HERE", "FAST", "Analyses", "Context", "DecisionRecord", "build_record",
           "embedded_manifest", "figures", "gather", "matching_jobs", "permalink", "render_html"]
