"""The only glue between Streamlit and tldiag: cached loaders, the current setup, session keys.

Pages call these functions; tldiag itself never imports streamlit.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Callable

import streamlit as st

from tldiag.data import ImageDataset, load_dataset
from tldiag.embed import EmbeddingPair, embed_pair, is_cached
from tldiag.errors import TldiagError
from tldiag.metrics import ShiftReport, Thresholds, shift_report
from tldiag.models import Model, load_model
from tldiag.setup import Setup

SETUP_KEY = "setup"


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
            st.warning(f"The link's setup is not valid ({exc}); starting from the demo setup.")
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
    pair = embed_pair(m, src, tgt, resolved_taps(setup, m), progress=progress)
    slot.empty()
    return pair


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
        clicked = st.button("Compute embeddings", type="primary", key="compute_here")
    if not clicked:
        st.stop()
    try:
        pair = embeddings(setup)
    except TldiagError as exc:
        show_error(exc)
        st.stop()
    prompt.empty()
    st.session_state["embedded"] = setup
    return pair


@st.cache_resource
def _results() -> tuple[threading.Lock, OrderedDict]:
    """Analysis results shared by every session of this server, most recently used last."""
    return threading.Lock(), OrderedDict()


def _cached(key: tuple, compute: Callable[[], object], max_entries: int = 32):
    lock, store = _results()
    with lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = compute()
    with lock:
        store[key] = value
        while len(store) > max_entries:
            store.popitem(last=False)
    return value


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
        return report

    report = _cached(("shift", setup, n_permutations, max_samples), compute)
    return report.with_thresholds(thresholds)


def show_error(exc: Exception) -> None:
    """One clear line for input errors; a full report only for real bugs."""
    if isinstance(exc, TldiagError):
        st.error(str(exc), icon="⚠️")
    else:
        st.exception(exc)


def update(setup: Setup, **changes) -> Setup:
    new = replace(setup, **changes)
    set_setup(new)
    return new
