"""The only glue between Streamlit and tldiag: cached loaders, the current setup, session keys.

Pages call these functions; tldiag itself never imports streamlit.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import streamlit as st

from app_cache import NoWarmUp, SharedResults, UmapWarmUp, start_umap_warm_up

from tldiag import access, viz
from tldiag.audit import ANONYMOUS, AuditLog
from tldiag.data import ImageDataset, load_dataset
from tldiag.training.efficiency import EfficiencyConfig, ExperimentPlan, plan_experiment
from tldiag.embed import EmbeddingPair, Embeddings, embed_dataset, embed_pair, is_cached
from tldiag.errors import TldiagError
from tldiag.training.finetune import FinetuneConfig, Plan, plan
from tldiag.training.jobs import Job, JobStore, launch as launch_job
from tldiag.metrics import ShiftReport, Thresholds, domain_classifier, shift_report
from tldiag.leaderboard import Leaderboard, leaderboard as run_leaderboard
from tldiag.models import Model, load_model, random_init_id
from tldiag.probes import ProbeConfig, ProbeReport, probe_report
from tldiag.projection import Projection, ProjectionParams, point_images, project_pair, thumbnail_images
from tldiag.setup import Setup
from tldiag.decision import report as decision_report
from tldiag.decision.verdict import Rules, load_rules, rules_changes, save_team_rules

SETUP_KEY = "setup"
SIGNED_IN_AT = "signed_in_at"


# ---------------------------------------------------------------- who is using it
def _secrets() -> dict[str, Any]:
    try:
        return st.secrets.to_dict()
    except Exception:  # no secrets file anywhere: Streamlit raises its own FileNotFoundError subclass
        return {}


def _only(render: Callable[[], None]) -> None:
    """Show ``render`` as the app's only page (no menu, no other page reachable by its URL), then stop."""
    st.navigation([st.Page(render, title="tldiag", url_path="welcome", default=True)], position="hidden").run()
    st.stop()


def _sign_in_page() -> None:
    st.title("tldiag")
    st.markdown("Sign in with your company account to open the dashboard.")
    st.button("Sign in", type="primary", on_click=st.login, key="sign_in")


def gate() -> access.ServingMode:
    """How this server serves (see :func:`tldiag.access.serving_mode`), before anything of the app renders: on an
    address other machines reach without sign-in, only the refusal; with sign-in configured, only a Sign-in
    button until the user signed in (and again once the identity token's ``exp`` passed, which Streamlit does not
    check)."""
    address = st.get_option("server.address") or "0.0.0.0"  # unset: Streamlit listens on every interface
    try:
        mode = access.serving_mode(address, auth_configured=access.auth_configured(_secrets()))
    except TldiagError as exc:
        refusal = str(exc)
        _only(lambda: st.error(refusal))
    if mode.mode != access.SIGNED_IN:
        return mode
    if not _logged_in():
        _only(_sign_in_page)
    exp = st.user.get("exp")
    if exp is not None and float(exp) <= time.time():
        st.session_state.pop(SIGNED_IN_AT, None)
        audit_log().record("sign-out", user_email(), reason="identity token expired")
        st.logout()
        st.stop()
    if SIGNED_IN_AT not in st.session_state:  # a new browser session: a sign-in only when the token is new
        st.session_state[SIGNED_IN_AT] = time.time()
        issued = st.user.get("iat")
        last = audit_log().entries(user=user_email(), action="sign-in", last=1)
        if not last or last[0].detail.get("issued_at") != issued:
            audit_log().record("sign-in", user_email(), role=user_role(), issued_at=issued)
    return mode


def user_email() -> str | None:
    """The signed-in user's address; None on a single-user or open server."""
    if not _signed_in_mode():
        return None
    return st.user.get("email") if _logged_in() else None


def _logged_in() -> bool:
    return bool(st.user.get("is_logged_in", False))  # absent where no sign-in ever ran (AppTest)


def _signed_in_mode() -> bool:
    return access.auth_configured(_secrets())


def user_role() -> str:
    """The user's role: from the access file when signed in; on a single-user (or open) server the one user may
    do everything."""
    if not _signed_in_mode():
        return "admin"
    return access.AccessPolicy.load().role_of(user_email())


def allowed(action: str) -> bool:
    """Whether the current user may ``action`` (a key of :data:`tldiag.access.ACTIONS`): pages hide what is not."""
    return access.can(user_role(), action)


def require(action: str) -> None:
    """Refuse ``action`` on the server side (whatever the browser sent), and log the refusal."""
    try:
        access.require(user_email(), user_role(), action)
    except access.AccessDenied:
        audit_log().record("refused", user_email(), action, role=user_role())
        raise


def sign_out_button() -> None:
    """A sidebar sign-out button when signed in."""
    if user_email() is not None and st.button("Sign out", key="sign_out"):
        audit_log().record("sign-out", user_email())
        st.session_state.pop(SIGNED_IN_AT, None)
        st.logout()


def audit_log() -> AuditLog:
    """The audit log of this server's job store (``$TLDIAG_HOME/jobs``)."""
    return AuditLog()


def download_button(label: str, data: Callable[[], str | bytes], *, file_name: str, mime: str, key: str,
                    subject: str = "", where: Any = None, **kwargs: Any) -> None:
    """A download button whose file is made when it is clicked, and logged then as an export (``subject``: what it
    is about, e.g. a permalink; the file name when empty). The file is deferred (Streamlit makes it on the click,
    over this session's connection), so no ``/media/...`` URL of it exists before a signed-in user asks for it."""
    user = user_email()

    def make() -> str | bytes:
        payload = data()
        audit_log().record("export", user, subject or file_name, file=file_name)
        return payload
    (where or st).download_button(label, make, file_name=file_name, mime=mime, key=key, on_click="ignore", **kwargs)


def _route_through_app() -> None:
    """Make every page run inside app.py's st.navigation.

    Streamlit starts in its legacy multipage mode when a pages/ folder sits beside the main script, and
    stays there until app.py's st.navigation runs once. A shared link to a page, opened first on a freshly
    started server, would then run that page alone: no sidebar, no wide layout. Leaving that mode and
    rerunning sends the same URL through app.py.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the legacy mode
        return
    first_run = "_tldiag_seen" not in st.session_state
    st.session_state["_tldiag_seen"] = True
    # Only on a session's first run, when no widget event can be lost. (The mode is per process, so
    # in a server this happens once; Streamlit's AppTest re-enters the mode on every run.)
    if first_run and getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def current_setup() -> Setup:
    """The setup of this session: from the URL on the first run, then from session state."""
    _route_through_app()
    if SETUP_KEY not in st.session_state:
        try:
            st.session_state[SETUP_KEY] = Setup.from_query(st.query_params.to_dict()).validate()
        except TldiagError as exc:
            st.warning(f"The link's setup is not valid ({md_message(exc)}); starting from the demo setup.")
            st.session_state[SETUP_KEY] = Setup()
    return st.session_state[SETUP_KEY]


def set_setup(setup: Setup) -> None:
    """Store the setup in the session and mirror it into the URL (a copyable permalink)."""
    st.session_state[SETUP_KEY] = setup
    query = setup.to_query()
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def model(model_id: str, resolution: int | None) -> Model:
    return load_model(model_id, resolution=resolution)


@st.cache_resource(show_spinner="Opening the dataset…", max_entries=16)
def dataset(spec: str) -> ImageDataset:
    return load_dataset(spec)


def resolved_taps(setup: Setup, m: Model) -> list[str]:
    return list(setup.taps) if setup.taps else m.default_taps()


def embeddings_cached(setup: Setup) -> bool:
    """Whether every tap of the setup is already in the embedding cache (no compute needed)."""
    m = model(setup.model, setup.resolution)
    taps = resolved_taps(setup, m)
    return all(is_cached(m, dataset(spec), taps) for spec in (setup.source_spec, setup.target_spec))


def _progress_bar(what: str, unit: str):
    """An empty slot and a tldiag progress(done, total, message) callback that draws a bar in it."""
    slot = st.empty()

    def progress(done: int, total: int, message: str) -> None:
        slot.progress(min(done / max(total, 1), 1.0), text=f"{what} {done}/{total} {unit} — {message}")
    return slot, progress


def embeddings(setup: Setup) -> EmbeddingPair:
    """Source and target embeddings of the setup: from the cache, or computed with a progress bar (shown
    only while something is computed)."""
    m = model(setup.model, setup.resolution)
    src, tgt = dataset(setup.source_spec), dataset(setup.target_spec)
    slot, progress = _progress_bar("Embedding", "images")
    user = user_email()
    pair = embed_pair(m, src, tgt, resolved_taps(setup, m), progress=progress, requested_by=user)
    slot.empty()
    _log_computed(setup, pair, user)
    return pair


def _log_computed(setup: Setup, pair: EmbeddingPair, user: str | None) -> None:
    """An audit row for each dataset whose embeddings this session computed (a cache read is not logged)."""
    for emb in (pair.source, pair.target):
        computed = sorted(t for t, hit in emb.cache_hits.items() if not hit)
        if computed:
            audit_log().record("compute", user, emb.dataset, model=setup.model, taps=computed,
                               images=len(emb), seconds=round(emb.seconds, 1))


def require_embeddings(setup: Setup) -> EmbeddingPair:
    """The setup's embeddings for an analysis page; when they are not computed yet, a Compute button
    (and the page stops there until it is clicked)."""
    try:
        if embeddings_cached(setup) or st.session_state.get("embedded") == setup:
            return embeddings(setup)
    except TldiagError as exc:
        show_error(exc)
        st.stop()
    prompt = st.empty()
    with prompt.container():
        st.info("This page needs the embeddings of the current setup, which are not computed yet. Compute them "
                "here, or review the setup first on the Setup page.", icon="ℹ️")
        clicked = allowed("compute") and st.button("Compute embeddings", type="primary", key="compute_here")
    if not clicked:
        st.stop()
    try:
        require("compute")
        pair = embeddings(setup)
    except TldiagError as exc:
        show_error(exc)
        st.stop()
    prompt.empty()
    st.session_state["embedded"] = setup
    return pair


@st.cache_resource
def _results() -> SharedResults:
    """Analysis results shared by every session of this server (see :class:`app_cache.SharedResults`)."""
    return SharedResults()


def _cached(key: tuple, compute: Callable[[], object], max_entries: int = 32):
    """``compute()`` once per key for the whole server: a second session asking while the first computes waits
    for that result instead of computing it again."""
    return _results().get(key, compute, max_entries=max_entries,
                          waiting=lambda: st.spinner("Another session is computing this right now; waiting for its "
                                                     "result…"))


def shift(setup: Setup, pair: EmbeddingPair, *, n_permutations: int = 1000, max_samples: int | None = 5000,
          thresholds: Thresholds = Thresholds()) -> ShiftReport:
    """Every shift metric of every tap of the setup's embeddings ``pair``, with a progress bar the first
    time; cached per setup and settings for every page and session (changing the thresholds only
    re-colours the lights)."""
    def compute() -> ShiftReport:
        slot, progress = _progress_bar("Shift tests", "steps")
        report = shift_report(pair, n_permutations=n_permutations, max_samples=max_samples,
                              random_state=setup.seed, progress=progress)
        slot.empty()
        if tuple(pair.taps) == tuple(resolved_taps(setup, model(setup.model, setup.resolution))):
            decision_report.remember_shift(context(setup), report, n_permutations=n_permutations, max_samples=max_samples)
        return report

    report = _cached(("shift", setup, n_permutations, max_samples), compute)
    return report.with_thresholds(thresholds)


@st.cache_resource(show_spinner=False)
def umap_warm_up() -> UmapWarmUp | NoWarmUp:
    """Start compiling UMAP in the background (once per server; app.py calls this on every run), unless
    ``TLDIAG_UMAP_WARMUP=0``."""
    return start_umap_warm_up()


def _wait_for_warm_up(expected_s: float = 30.0) -> None:
    """Block, with a progress bar, until the background UMAP compilation is over."""
    job = umap_warm_up()
    if not job.thread.is_alive():
        return
    slot = st.empty()
    while job.thread.is_alive():
        elapsed = time.monotonic() - job.started
        slot.progress(min(elapsed / expected_s, 0.99),
                      text=f"Preparing UMAP: one-time compilation when the server starts, {elapsed:.0f} s so far "
                           f"(usually {expected_s:.0f} s or less)")
        job.thread.join(0.5)
    slot.empty()


def projection(setup: Setup, pair: EmbeddingPair, layer: str, params: ProjectionParams) -> Projection:
    """The setup's projection of ``layer``: from this server's memory, the disk cache, or computed with a
    progress bar (after the UMAP warm-up when it is still running)."""
    def compute() -> Projection:
        if params.method == "umap":
            _wait_for_warm_up()
        slot, progress = _progress_bar("Projection", "%")
        result = project_pair(pair, layer, params, progress=progress)
        slot.empty()
        return result

    return _cached(("projection", setup, layer, params), compute)


def target_proba(setup: Setup, pair: EmbeddingPair, proj: Projection) -> np.ndarray:
    """Out-of-fold p(target | x) of the domain classifier for every point of ``proj`` (its own sample)."""
    def compute() -> np.ndarray:
        with st.spinner("Fitting the domain classifier on these points…"):
            src, tgt = proj.rows[proj.domain == 0], proj.rows[proj.domain == 1]
            res = domain_classifier(np.asarray(pair.source[proj.layer][src]), np.asarray(pair.target[proj.layer][tgt]),
                                    random_state=setup.seed)
        return np.concatenate([res.source_proba, res.target_proba])

    return _cached(("target_proba", setup, proj.layer, proj.params), compute)


@st.cache_resource(show_spinner="Loading the thumbnails…", max_entries=2)
def _thumbnails(setup: Setup, max_samples: int | None, seed: int, _proj: Projection) -> list:
    return thumbnail_images(dataset(setup.source_spec), dataset(setup.target_spec), _proj)


def thumbnails(setup: Setup, proj: Projection) -> list:
    """The image of every point of ``proj``, small (decoded once per setup and sample: the sample depends on
    the setup, the per-domain limit and the seed only, not on the layer or the method)."""
    return _thumbnails(setup, proj.params.max_samples, proj.params.random_state, proj)


def images_of(setup: Setup, proj: Projection, points: np.ndarray) -> list:
    """The full images of some points of ``proj`` (for a gallery of a selection)."""
    return point_images(dataset(setup.source_spec), dataset(setup.target_spec), proj, points)


def show_images(images, **kwargs) -> None:
    """``st.image`` of PIL images (one or a list), sent inline as data URIs: Streamlit's ``/media/...`` URLs are
    served to anyone who has the link, signed in or not, so a user's images never get one."""
    if isinstance(images, (list, tuple)):
        st.image([viz.data_uri(im) for im in images], **kwargs)
    else:
        st.image(viz.data_uri(images), **kwargs)


def random_init_embeddings(setup: Setup, pair: EmbeddingPair) -> Embeddings | None:
    """Target embeddings of the setup's architecture with random weights (the no-pretraining floor), at the
    same taps; None when the model has no such twin (already random, or TorchScript)."""
    rid = random_init_id(setup.model)
    if rid is None:
        return None
    m = model(rid, setup.resolution)
    taps = [t for t in pair.target.taps if t in m.tap_names]
    slot, progress = _progress_bar("Embedding the target with random weights", "images")
    emb = embed_dataset(m, dataset(setup.target_spec), taps, progress=progress, requested_by=user_email())
    slot.empty()
    return emb


def probes(setup: Setup, pair: EmbeddingPair, config: ProbeConfig, with_floor: bool = True) -> ProbeReport:
    """Probe curves and transferability scores of the setup (with a progress bar the first time; cached per
    setup and settings for every session of this server)."""
    def compute() -> ProbeReport:
        floor = random_init_embeddings(setup, pair) if with_floor else None
        m = model(setup.model, setup.resolution)
        slot, progress = _progress_bar("Probes", "steps")
        report = probe_report(pair, floor, depths=m.depths, config=config,
                              random_state=setup.seed, progress=progress)
        slot.empty()
        if tuple(pair.taps) == tuple(resolved_taps(setup, m)):
            decision_report.remember_probes(context(setup), report, config)  # the Verdict page reads it
        return report

    return _cached(("probes", setup, config, with_floor), compute)


def leaderboard(setup: Setup, model_ids: tuple[str, ...], config: ProbeConfig) -> Leaderboard:
    """The leaderboard of ``model_ids`` on the setup's datasets (rows cached on disk per model)."""
    def compute() -> Leaderboard:
        slot, progress = _progress_bar("Leaderboard", "models")
        result = run_leaderboard(model_ids, dataset(setup.source_spec), dataset(setup.target_spec),
                                 resolution=setup.resolution, config=config, random_state=setup.seed,
                                 progress=progress)
        slot.empty()
        return result

    return _cached(("leaderboard", setup, model_ids, config), compute)


def leaderboard_if_cached(setup: Setup, model_ids: tuple[str, ...], config: ProbeConfig) -> Leaderboard | None:
    """The leaderboard when this server has already computed it, else None (nothing is computed)."""
    return _results().peek(("leaderboard", setup, model_ids, config))


def show_error(exc: Exception) -> None:
    """One clear line for input errors; a full report only for real bugs."""
    if isinstance(exc, TldiagError):
        st.error(md_message(exc), icon="⚠️")
    else:
        st.exception(exc)


def update(setup: Setup, **changes) -> Setup:
    new = replace(setup, **changes)
    set_setup(new)
    return new


def job_store() -> JobStore:
    """The job store of this server's TLDIAG_HOME (a SQLite file: every call reads the current state)."""
    return JobStore()


def finetune_plan(config: FinetuneConfig) -> Plan:
    """The plan of a fine-tuning configuration on the setup's cached model and target (no training)."""
    return _cached(("finetune_plan", config), lambda: plan(config, model=model(config.model, config.resolution),
                                                           dataset=dataset(config.target)), max_entries=64)


def launch_finetune(config: FinetuneConfig, name: str | None) -> Job:
    """Check and launch a fine-tuning job (a separate process that outlives this session)."""
    require("launch")
    return launch_job("finetune", config, name=name, store=job_store(), model=model(config.model, config.resolution),
                      dataset=dataset(config.target), user=user_email())


def efficiency_plan(config: EfficiencyConfig) -> ExperimentPlan:
    """The plan of a data-efficiency experiment on the setup's cached target (nothing loads or trains)."""
    key = ("efficiency_plan", json.dumps(config.to_dict(), sort_keys=True))
    return _cached(key, lambda: plan_experiment(config, dataset=dataset(config.target)), max_entries=64)


def launch_efficiency(config: EfficiencyConfig, name: str | None) -> Job:
    """Check and launch a data-efficiency experiment as a background job."""
    require("launch")
    return launch_job("efficiency", config, name=name, store=job_store(), dataset=dataset(config.target),
                      user=user_email())


# ---------------------------------------------------------------- the parts every job page shares
def launch_button(label: str, key: str, job_key: str, launch: Callable[[], Job]) -> None:
    """A primary button that launches a job (``launch()``) and selects it on the page (``job_key``); not shown to
    a user whose role may not launch jobs."""
    if not allowed("launch"):
        st.caption("Your role (viewer) reads results; a runner or an admin launches jobs.")
        return
    if st.button(label, type="primary", key=key):
        try:
            job = launch()
        except TldiagError as exc:
            show_error(exc)
        else:
            st.session_state[job_key] = job.id
            st.toast(f"Launched {job.id}")


def pick_job(kind: str, job_key: str, *, label: str, empty: str) -> tuple[Job, list[Job]]:
    """The job selector of a job page (newest first; the last launched one selected) and the jobs listed; the
    page stops with the ``empty`` message when there is none."""
    jobs = job_store().list(kind=kind)
    if not jobs:
        st.info(empty)
        st.stop()
    ids = [j.id for j in jobs]
    if st.session_state.get(job_key) not in ids:
        st.session_state[job_key] = ids[0]
    by_id = {j.id: j for j in jobs}
    job_id = st.selectbox(label, ids, key=job_key,
                          format_func=lambda i: f"{by_id[i].name} · {by_id[i].owner or ANONYMOUS} · {i}")
    return by_id[job_id], jobs


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md_text(text: object) -> str:
    """``text`` as inert Markdown: every character Markdown (or Streamlit's HTML and LaTeX) would act on is
    escaped, so a user's file, class or job name shows as typed, never as a link, an image or markup."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


_MESSAGE_SPECIAL = re.compile(r"([\\`*\[\]<>$~|])")
_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+[.)])", re.M)


def md_message(text: object) -> str:
    """A message that quotes users' values (an error naming a file, a class, a spec), as Markdown that renders it
    as typed: the characters that make links, images, HTML, code, math, * emphasis or tables are escaped, and so are
    list, heading and quote markers at a line's start; the rest (dots, hyphens, brackets of prose) is left alone,
    so the message reads as written. Line breaks are kept."""
    escaped = _MESSAGE_SPECIAL.sub(r"\\\1", str(text))
    return _LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", escaped).replace("\n", "  \n")


def md_code(text: object) -> str:
    """``text`` as an inline code span that no backtick inside it can close (CommonMark: a fence longer than any
    run of backticks in the text), for specs, paths and ids typed by users."""
    s = str(text).replace("\n", " ")
    fence = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s[:1] in ("`", " ") or s[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def job_heading(job: Job) -> None:
    """A job's name (as typed), id, owner and status, with its place in the queue while it waits."""
    place = job_store().queue_position(job)
    status = f"queued, {place} in line" if place else job.status
    st.markdown(f"**{md_text(job.name)}** · `{job.id}` · {md_text(job.owner or ANONYMOUS)} · {status}")


def cancel_and_log(job: Job, *, help: str) -> None:
    """A running job's Cancel button (for its owner when a runner, for anyone's job when an admin) and the tail of
    its log."""
    action = "cancel_own" if job.owner == (user_email() or ANONYMOUS) else "cancel_any"
    if allowed(action) and st.button("Cancel", key=f"cancel_{job.id}", help=help):
        try:
            require(action)
            job_store().cancel(job.id, user=user_email())
        except TldiagError as exc:
            show_error(exc)
        st.rerun()
    with st.expander("Log"):
        st.code(job.log_tail(30) or "(empty)", language=None)


# ---------------------------------------------------------------- the verdict
def _loaded(setup: Setup) -> dict[str, Any]:
    """This server's cached model and datasets of the setup, as keywords of the report functions."""
    return dict(model=model(setup.model, setup.resolution), source=dataset(setup.source_spec),
                target=dataset(setup.target_spec))


def context(setup: Setup) -> decision_report.Context:
    """The setup with this server's cached model and datasets."""
    return decision_report.Context.open(setup, user=user_email(), **_loaded(setup))


def save_rules(text: str) -> Rules:
    """An admin's new team rules (checked, written, logged with what changed)."""
    require("change_rules")
    before = verdict_rules()
    after = save_team_rules(text)
    audit_log().record("rules-change", user_email(), after.origin, changed=rules_changes(before, after))
    return after


def verdict_rules() -> Rules:
    """The verdict's thresholds: the defaults, or the file TLDIAG_VERDICT_RULES names (read on every run, so an
    edit shows at once)."""
    return load_rules()


def analyses(setup: Setup, compute: tuple[str, ...] = ()) -> decision_report.Analyses:
    """What exists for the setup (summaries on disk, finished jobs); ``compute`` runs the missing in-process
    analyses with progress bars."""
    slot = st.empty()

    def progress(name: str, done: int, total: int, message: str) -> None:
        slot.progress(min(done / max(total, 1), 1.0), text=f"{decision_report.ANALYSIS_TITLES.get(name, name.capitalize())}: "
                                                           f"{done}/{total} — {message}")
    result = decision_report.gather(setup, compute=compute, store=job_store(), progress=progress, user=user_email(),
                             **_loaded(setup))
    slot.empty()
    return result


def app_base_url() -> str:
    """This dashboard's address as the browser sees it (for permalinks); empty when unknown (tests)."""
    try:
        url = st.context.url or ""
    except Exception:  # an older Streamlit without st.context.url
        url = ""
    return url.rstrip("/")
