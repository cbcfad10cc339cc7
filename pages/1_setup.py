"""Setup: pick the model, the source and target datasets and the taps; compute embeddings."""
import pandas as pd
import streamlit as st

import app_state
from tldiag import viz
from tldiag.data import compare_classes, dataset_kinds_help
from tldiag.forward import estimate_seconds
from tldiag.errors import TldiagError
from tldiag.models import LOGITS, list_models
from tldiag.setup import PRESET_MODELS, PRESETS, Setup

st.title("Setup")
st.caption("Choose a pretrained model, the source data it stands for, and your target data. "
           "Embeddings of several layers are computed once and cached for every other page.")

setup = app_state.current_setup()


@st.cache_data(show_spinner=False)
def _model_choices() -> list[tuple[str, str]]:
    return [(m.id, f"{m.id}  —  {m.status}") for m in list_models()]


# ---------------------------------------------------------------- model
choices = _model_choices()
ids = [c[0] for c in choices]
labels = dict(choices)
col_model, col_res = st.columns([3, 1])
with col_model:
    custom = setup.model not in ids
    picked = st.selectbox("Pretrained model", ids, index=ids.index(setup.model) if not custom else 0,
                          format_func=lambda i: labels[i], key="w_model",
                          help="Offline models come first; 'needs download' models load only where their "
                               "weights are cached (TORCH_HOME) or the internet is reachable.")
    typed = st.text_input("…or any model id", value=setup.model if custom else "", key="w_model_custom",
                          placeholder="timm:convnext_tiny.fb_in1k · checkpoint:/data/model.pt?arch=timm:resnet18",
                          help="`tldiag models --all` lists every id. finetuned:demo-digits-lite0 is the demo's "
                               "model trained on the handwritten digits (built on first use, about 30 s).")
with col_res:
    resolution = st.number_input("Input size (px)", min_value=0, max_value=1024, step=16,
                                 value=setup.resolution or 0, key="w_resolution",
                                 help="0 keeps the weights' own size. Smaller is faster on CPU; the demo "
                                      "uses 128 px (its digits are 8 px and 32 px images).")

# ---------------------------------------------------------------- datasets
preset_names = list(PRESETS) + ["Custom"]


def _is_preset(name: str) -> bool:
    """The setup's datasets are the preset's, and so is its model where the preset names one."""
    if PRESETS[name] != (setup.source, setup.target):
        return False
    models = {m for m, _ in PRESET_MODELS.values()}
    return setup.model == PRESET_MODELS[name][0] if name in PRESET_MODELS else setup.model not in models


current_preset = next((k for k in PRESETS if _is_preset(k)), "Custom")


def _apply_preset() -> None:
    name = st.session_state["w_preset"]
    if name in PRESETS:
        st.session_state["w_source"], st.session_state["w_target"] = PRESETS[name]
        model_id, size = PRESET_MODELS.get(name, ("", None))
        st.session_state["w_model_custom"] = model_id
        if size:
            st.session_state["w_resolution"] = size


st.radio("Datasets", preset_names, index=preset_names.index(current_preset), key="w_preset",
         horizontal=True, on_change=_apply_preset)
col_s, col_t, col_l, col_b = st.columns([2, 2, 1, 1])
source = col_s.text_input("Source dataset", value=setup.source, key="w_source",
                          help=dataset_kinds_help() + ".")
target = col_t.text_input("Target dataset", value=setup.target, key="w_target")
limit = col_l.number_input("Images per class (0 = all)", min_value=0, max_value=100_000, step=10,
                           value=setup.limit or 0, key="w_limit",
                           help="A seeded per-class subsample (N in all for unlabelled data) keeps the demo fast; "
                                "raise it for real runs.")
budget = col_b.number_input("Label budget per class (0 = all)", min_value=0, max_value=1_000_000, step=5,
                            value=setup.budget or 0, key="w_budget",
                            help="How many labelled target images per class your team has or can afford. The verdict "
                                 "answers for this budget: transfer against the best model trained from scratch on "
                                 "the same number of labels, and where the answer would change.")

new = Setup(model=typed.strip() or picked, source=source.strip(), target=target.strip(),
            resolution=int(resolution) or None, limit=int(limit) or None, taps=setup.taps, seed=setup.seed,
            budget=int(budget) or None)
try:
    new.validate()
    if new != setup:
        # taps belong to a model: keep them only while the model stays the same
        if new.model != setup.model or new.resolution != setup.resolution:
            new = app_state.update(new, taps=())
        else:
            app_state.set_setup(new)
    setup = new
    model = app_state.model(setup.model, setup.resolution)
    src = app_state.dataset(setup.source_spec)
    tgt = app_state.dataset(setup.target_spec)
    setup.check_budget(tgt)
except TldiagError as exc:
    app_state.show_error(exc)
    st.stop()

# ---------------------------------------------------------------- summaries
st.subheader("Datasets")
comparison = compare_classes(src, tgt)
(st.success if comparison.identical else st.warning)(app_state.md_text(comparison.message()))
st.plotly_chart(viz.class_counts_figure(src.class_counts(), tgt.class_counts()), width="stretch")
for role, ds in (("Source", src), ("Target", tgt)):
    st.markdown(f"**{role}** {app_state.md_code(ds.spec)} — {len(ds):,} images, {len(ds.classes) or 'no'} classes · "
                f"{app_state.md_text(ds.description)}")
    idx, columns = ds.gallery_indices(2, random_state=setup.seed)
    caption = (f"one column per class: {' · '.join(map(app_state.md_text, columns))}" if columns
               else "random sample (unlabelled)")
    if len(ds.classes) > len(columns) > 0:
        caption += f" (first {len(columns)} of {len(ds.classes)} classes)"
    app_state.show_images(viz.image_grid([ds.get(i) if i is not None else None for i in idx], ncols=len(columns) or 10,
                                         cell=56), caption=caption)
    if not ds.verified:
        st.caption("Opened from file names and image headers; an image whose pixels do not decode is found, skipped "
                   "and listed here when the embeddings are computed.")
    if ds.skipped:
        with st.expander(f"{len(ds.skipped)} files skipped"):
            st.dataframe(pd.DataFrame([s.__dict__ for s in ds.skipped]), hide_index=True)

# ---------------------------------------------------------------- taps
st.subheader("Layers")
tap_options = [t.name for t in model.taps if t.name != LOGITS]
tap_labels = {t.name: f"{t.label} · depth {t.depth:.2f}" for t in model.taps}
chosen = st.multiselect("Taps (layers to embed, shallow to deep)", tap_options,
                        default=[t for t in app_state.resolved_taps(setup, model) if t in tap_options],
                        format_func=lambda t: tap_labels[t], key=f"w_taps_{model.id}_{setup.resolution}",
                        help="Each tap's output is global-average-pooled to a vector. The logits are "
                             "always computed too.")
chosen = [t for t in tap_options if t in chosen]
if not chosen:
    st.info("Pick at least one layer.")
    st.stop()
if tuple(chosen) != tuple(app_state.resolved_taps(setup, model)):
    setup = app_state.update(setup, taps=tuple(chosen))

# ---------------------------------------------------------------- compute
n_images = len(src) + len(tgt)
st.caption(f"{model.id}: {model.n_parameters / 1e6:.1f} M parameters, input {model.preprocessing.input_size} px "
           f"({model.preprocessing.interpolation}, crop {model.preprocessing.crop_pct:.3f}), "
           f"weights {model.weights_hash[:12]}.")
cached = app_state.embeddings_cached(setup)
estimate = estimate_seconds(model, n_images)
if cached:
    hint = "All embeddings are cached: loading is instant."
elif estimate:
    hint = f"About {estimate:.0f} s for {n_images:,} images (from this model's last measured speed here)."
else:
    hint = f"{n_images:,} images; the speed is measured on the first batches and the time left is shown."
st.caption(hint)

if (app_state.allowed("compute") and st.button("Compute embeddings", type="primary", key="compute")) \
        or st.session_state.get("embedded") == setup:
    try:
        pair = app_state.embeddings(setup)
    except TldiagError as exc:
        app_state.show_error(exc)
        st.stop()
    st.session_state["embedded"] = setup
    rows = [{"layer": t, "dim": pair.source[t].shape[1], "n_source": len(pair.source), "n_target": len(pair.target),
             "cache": "hit" if pair.source.cache_hits[t] and pair.target.cache_hits[t] else "computed"}
            for t in pair.source.taps]
    seconds = pair.source.seconds + pair.target.seconds
    st.success(f"Embeddings ready: {len(pair.source):,} source and {len(pair.target):,} target images, "
               f"{len(pair.taps)} layers + logits, in {seconds:.1f} s.", icon="✅")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.page_link("pages/2_shift.py", label="Next: how far is the target from the source? Open **Shift**", icon="➡️")
