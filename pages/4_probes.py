"""Probes: how transferable each depth is (linear probes), training-free scores, and a leaderboard of backbones."""
import json

import pandas as pd
import streamlit as st

import app_state
from tldiag import viz
from tldiag.errors import TldiagError
from tldiag.leaderboard import RANKED
from tldiag.models import OFFLINE_MODELS, list_models, random_init_id
from tldiag.probes import DEFAULT_C_GRID, ProbeConfig
from tldiag.transferability import EXPLANATIONS

st.title("Linear probes and transferability")
st.caption("Up to which layer should you freeze, and which pretrained model should you start from? A linear "
           "classifier on each layer's frozen features answers the first (Kornblith et al. 2019); training-free "
           "scores and a leaderboard of candidate backbones answer the second.")
setup = app_state.current_setup()
pair = app_state.require_embeddings(setup)

with st.expander("Probe settings"):
    c1, c2, c3 = st.columns(3)
    n_splits = c1.selectbox("Random splits", [3, 5, 10], key="w_probe_splits",
                            help="Each split is a stratified 60/20/20 train/validation/test split; the band is one "
                                 "standard error of the mean over splits.")
    with_floor = c2.toggle("Random-init floor", value=True, key="w_probe_floor",
                           help="Also probe the same architecture with random weights: what the layers give without "
                                "pretraining.")
    c3.caption(f"Regularisation: C chosen on validation from {len(DEFAULT_C_GRID)} values, "
               f"{min(DEFAULT_C_GRID):g} to {max(DEFAULT_C_GRID):g} (log-spaced), then refitted on train + "
               "validation. Features are standardised.")
config = ProbeConfig(n_splits=n_splits)
try:
    report = app_state.probes(setup, pair, config, with_floor)
except TldiagError as exc:
    app_state.show_error(exc)
    st.stop()

target, floor = report.target, report.random_init
rec, best = target.recommended, target.best

# ---------------------------------------------------------------- cards
c1, c2, c3, c4 = st.columns(4)
c1.metric("Recommended cut", rec.tap, help="The shallowest tap whose accuracy is within one standard error of the "
                                           "best: freeze up to here and train what follows (or a linear head).")
c1.caption(f"accuracy {rec.mean:.3f} ± {rec.se:.3f}")
c2.metric("Best tap", f"{best.mean:.3f}", help="The highest mean test accuracy of a linear probe on the target.")
c2.caption(f"{best.tap} · macro-F1 {best.f1_mean:.3f}")
gain = report.gain_over_random()
c3.metric("Gain over random init", "—" if gain is None else f"{100 * gain:+.1f} pts",
          help="Pretrained minus random-init probe accuracy at the best tap: what pretraining buys with frozen "
               "features. Near zero or negative: the pretrained features do not help this target.")
c3.caption("at " + best.tap if floor is not None else "not computed (see settings)")
c4.metric("Chance (majority class)", f"{target.chance:.3f}", help="Always predicting the most frequent target class.")
c4.caption(f"{len(target.classes)} classes · {target.n_train}/{target.n_val}/{target.n_test} train/val/test")
if gain is not None and gain < app_state.verdict_rules().pages.probes_floor_gain:
    st.warning(f"The pretrained features are barely better than random weights on this target ({100 * gain:+.1f} "
               "points at the best tap): a sign of negative or no transfer. Check the shift, or fine-tune deeper.")

st.plotly_chart(viz.probe_curves_figure(report), key="probe_curves")
st.caption(f"Mean test accuracy of {config.n_splits} splits; the band is ± 1 standard error. The star is the "
           "recommended cut. Where the pretrained curve sits above the random-init one the layer carries transferable "
           "features; the source curve shows how much the same layer knows about the source task (Yosinski et al.: "
           "early layers general, late layers specific).")

# ---------------------------------------------------------------- scores
st.subheader("Training-free transferability scores")
s1, s2 = st.columns(2)
s1.metric("LEEP", "—" if report.leep is None else f"{report.leep:.3f}", help=EXPLANATIONS["leep"])
s1.caption(EXPLANATIONS["leep"])
s2.metric("NCE", "—" if report.nce is None else f"{report.nce:.3f}", help=EXPLANATIONS["nce"])
s2.caption(EXPLANATIONS["nce"])
st.plotly_chart(viz.tap_scores_figure(report.scores), key="tap_scores")
for key in ("logme", "h_score", "knn_accuracy"):
    st.caption("• " + EXPLANATIONS[key])
if any(s["tap"] == target.taps[-1].tap for s in report.scores) and target.n_samples <= target.taps[-1].dim:
    st.caption(f"With {target.n_samples} images and up to {max(t.dim for t in target.taps)} features, the H-score "
               f"of wide taps saturates at K − 1 = {len(target.classes) - 1}: any labelling is linearly separable there. "
               "Compare the probe and LogME instead.")
with st.expander("All numbers by tap"):
    st.dataframe(pd.DataFrame(report.table()), hide_index=True, width="stretch")
    app_state.download_button("Download the report (JSON)", lambda: json.dumps(report.to_dict(), indent=1),
                              file_name="tldiag-probes.json", mime="application/json", key="probe_json")
for note in report.notes + target.notes:
    st.caption(note)

# ---------------------------------------------------------------- leaderboard
st.subheader("Leaderboard of backbones")
st.caption("The same probe and scores for several candidate models on this source and target (same resolution, "
           "same splits). Rows are cached per model, so adding a candidate computes only that one.")
available = [m.id for m in list_models() if m.status != "needs download"]
default = list(dict.fromkeys([setup.model, *OFFLINE_MODELS, *(r for r in [random_init_id(setup.model)] if r)]))
default = [m for m in default if m in available or m == setup.model]
chosen = st.multiselect("Candidate models", list(dict.fromkeys([*default, *available])), default=default,
                        key="w_board_models", help="Installed and cached models. Others need their weights downloaded "
                                                   "first (see the Setup page).")
ids = tuple(chosen)
board = app_state.leaderboard_if_cached(setup, ids, config) if ids else None
if board is None and ids:
    if app_state.allowed("compute") and st.button(f"Evaluate {len(ids)} models", type="primary", key="run_board",
                 help="Embeds both datasets with each model (cached), then probes and scores it."):
        try:
            board = app_state.leaderboard(setup, ids, config)
        except TldiagError as exc:
            app_state.show_error(exc)
if board is not None:
    st.dataframe(pd.DataFrame(board.table()), hide_index=True, width="stretch",
                 column_config={"probe acc": st.column_config.ProgressColumn("probe acc", min_value=0.0, max_value=1.0,
                                                                             format="%.3f")})
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Do the scores agree?** Kendall's τ between the rankings they give the models")
        st.plotly_chart(viz.kendall_heatmap(board.kendall, RANKED), key="kendall")
    with right:
        st.dataframe(pd.DataFrame(board.agreement()), hide_index=True, width="stretch")
        st.caption("τ = 1: the same order as the probe; 0: unrelated; −1: reversed. With a handful of models τ is "
                   "coarse, and ties (equal accuracies) lower it. Trust a score for choosing only where it agrees "
                   "with the probe here.")
    for note in board.notes:
        st.caption(note)
    app_state.download_button("Download the leaderboard (JSON)",
                              lambda: json.dumps(board.to_dict(), indent=1, default=str),
                              file_name="tldiag-leaderboard.json", mime="application/json", key="board_json")
st.page_link("pages/5_finetune.py", label="Next: fine-tune the model on the target and compare with the probe. "
             "Open **Fine-tune**", icon="➡️")
