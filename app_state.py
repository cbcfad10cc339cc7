"""The only glue between Streamlit and tldiag: cached loaders, the current setup, session keys.

Pages call these functions; tldiag itself never imports streamlit.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import streamlit as st

from tldiag.data import ImageDataset, load_dataset
from tldiag.embed import EmbeddingPair, embed_pair, is_cached
from tldiag.errors import TldiagError
from tldiag.models import Model, load_model
from tldiag.setup import Setup

SETUP_KEY = "setup"


def current_setup() -> Setup:
    """The setup of this session: from the URL on the first run, then from session state."""
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


def embeddings(setup: Setup, progress: Callable[[int, int, str], None] | None = None) -> EmbeddingPair:
    """Source and target embeddings of the setup: from the cache, or computed with a progress bar."""
    m = model(setup.model, setup.resolution)
    src, tgt = dataset(setup.source_spec), dataset(setup.target_spec)
    if progress is None:
        bar = st.progress(0.0, text="Computing embeddings…")

        def progress(done: int, total: int, message: str) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"Embedding {done}/{total} images — {message}")

    return embed_pair(m, src, tgt, resolved_taps(setup, m), progress=progress)


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
