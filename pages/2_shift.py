"""Shift: how far the target is from the source, layer by layer (MMD test, domain classifier)."""
import numpy as np
import pandas as pd
import streamlit as st

import app_state
from tldiag import sourcehead, viz
from tldiag.errors import TldiagError
from tldiag.metrics import SEED_SCALE, Thresholds

st.title("Domain shift")
st.caption("Measure first: how different the target looks to the model, at every depth. A large shift in the "
           "deep layers means frozen features will transfer poorly.")
setup = app_state.current_setup()
pair = app_state.require_embeddings(setup)

rules = app_state.verdict_rules().divergence  # the team's rules (Verdict page), or the shipped ones
with st.expander("Test settings and thresholds"):
    c1, c2, c3, c4 = st.columns(4)
    n_permutations = c1.selectbox("Permutations", [200, 1000, 5000], index=1, key="w_permutations",
                                  help="Size of the permutation null of each MMD test; the smallest possible "
                                       "p-value is 1 / (1 + permutations).")
    max_samples = c2.selectbox("Samples per domain", [1000, 5000, 20000], index=1, key="w_max_samples",
                               help="Larger domains are subsampled at random for the tests (reported below).")
    green = c3.number_input("Green below (MMD)", 0.0, 1.5, float(rules.mmd_green), 0.01, key="w_mmd_green")
    red = c4.number_input("Red from (MMD)", 0.0, 1.5, float(rules.mmd_red), 0.01, key="w_mmd_red")
    st.caption(f"Scale: {SEED_SCALE}. The defaults ({rules.mmd_green:g} / {rules.mmd_red:g}) are the verdict rules' "
               "[divergence] thresholds (edit them on the Verdict page); changing them here re-colours this page only.")
try:
    thresholds = Thresholds(green, red)
    report = app_state.shift(setup, pair, n_permutations=n_permutations, max_samples=max_samples,
                              thresholds=thresholds)
except TldiagError as exc:
    app_state.show_error(exc)
    st.stop()

layers = [x.layer for x in report.layers]
layer = st.selectbox("Layer", layers, index=layers.index(report.headline), key="w_shift_layer",
                     help="The cards, the null distribution and the galleries are for this layer. pre_logits "
                          "(the penultimate layer) is what a frozen-feature transfer uses.")
res = report.layer(layer)
mmd, dom = res.mmd, res.domain

# ---------------------------------------------------------------- cards
BADGE = {"green": ":green-badge[GREEN]", "amber": ":orange-badge[AMBER]", "red": ":red-badge[RED]"}
st.subheader(f"{layer} {BADGE[res.light.colour]}")
{"green": st.success, "amber": st.warning, "red": st.error}[res.light.colour](res.light.text)
c1, c2, c3, c4 = st.columns(4)
lo, hi = mmd.mmd_ci
p_text = f"≤ {mmd.p_value:.2g} (the smallest possible)" if mmd.p_value <= 1 / (1 + mmd.n_permutations) + 1e-12 \
    else f"{mmd.p_value:.3g}"
c1.metric("MMD (seed scale)", f"{mmd.mmd:.3f}",
          help="Kernel distance between the source and target distributions: 0 = same, about 1 = disjoint. "
               f"{SEED_SCALE}.")
c1.caption(f"95% CI {lo:.3f}–{hi:.3f} · p {p_text}")
c2.metric("Domain classifier accuracy", f"{dom.balanced_accuracy:.3f}",
          help="Balanced accuracy of a logistic regression telling target from source, out of fold "
               f"({dom.cv}-fold). 0.5 = indistinguishable.")
c2.caption(f"± {dom.balanced_accuracy_std:.3f} over folds · ROC-AUC {dom.roc_auc:.3f}")
c3.metric("Proxy A-distance", f"{dom.pad:.2f}",
          help="2 (1 − 2ε) with ε the classifier's cross-validated error (Ben-David et al.): 0 = same "
               "distribution, 2 = perfectly separable. It enters the bound on target error.")
c3.caption("0 = same · 2 = separable")
c4.metric("Usable source (ESS)", f"{100 * dom.ess_fraction:.0f}%",
          help="Effective sample size of the importance weights p(t|x)/p(s|x): the share of the source that "
               "still counts once re-weighted to look like the target.")
c4.caption(f"CORAL {res.coral:.3g} · Fréchet {res.frechet:.3g}")
if dom.pad >= app_state.verdict_rules().pages.shift_separable_pad and res.light.colour != "red":
    st.info(f"The two signals measure different things. A linear classifier tells the domains apart almost "
            f"perfectly (PAD {dom.pad:.2f}), so each image carries some trace of its domain, while the MMD says the "
            "two clouds overlap more than that suggests in this layer's geometry. A consistent but modest shift "
            "like this is typical of style differences (fonts against handwriting, another scanner, other "
            "lighting). The galleries below show what gives the domain away.")
st.caption(f"Effect size and significance are different questions: with {mmd.n_source:,} + {mmd.n_target:,} images "
           "almost any shift is significant (small p), so read the MMD with its interval and the classifier's "
           "AUC for *how large* the shift is."
           + (f" Tests used a random {mmd.n_source:,} of {mmd.n_source_total:,} source and {mmd.n_target:,} of "
              f"{mmd.n_target_total:,} target images." if mmd.subsampled else ""))

left, right = st.columns(2)
with left:
    st.markdown("**Permutation null**")
    st.plotly_chart(viz.null_histogram(mmd), key="null_hist")
    st.caption(f"MMD² of {mmd.n_permutations:,} random re-splits of the pooled images; σ = {mmd.bandwidth:.3g} "
               f"({mmd.bandwidth_method}).")
with right:
    st.markdown("**Divergence by depth**")
    st.plotly_chart(viz.divergence_by_layer(report), key="by_layer")
    st.caption("Where the domains start to separate. Dots are coloured by traffic light.")
with st.expander("All metrics by layer"):
    st.dataframe(pd.DataFrame(report.table()), hide_index=True, width="stretch")

# ---------------------------------------------------------------- the source model itself
try:
    head = sourcehead.measure(pair, app_state.model(setup.model, setup.resolution), seed=setup.seed)
except TldiagError as exc:
    head = None
    st.warning(f"Source model on the target: {app_state.md_message(exc)}", icon="⚠️")
if head is not None:
    st.subheader("What the shift costs the source model")
    st.caption(f"{setup.model} was trained on the source's classes ({head.head}), so the most direct measurement of "
               "the shift is its own accuracy: on held-out source images against the target with no adaptation, on "
               f"the {len(head.classes)} shared classes. 95% Wilson intervals.")
    c1, c2, c3 = st.columns(3)
    c1.metric("Held-out source accuracy", f"{head.source_accuracy:.3f}",
              help=f"{head.n_source} source images of the source's test split (seed {setup.seed}).")
    c1.caption(f"{head.source_ci[0]:.3f}–{head.source_ci[1]:.3f} · {head.n_source} images")
    c2.metric("Target accuracy, no adaptation", f"{head.target_accuracy:.3f}",
              help=f"The same classifier on {head.n_target} target images.")
    c2.caption(f"{head.target_ci[0]:.3f}–{head.target_ci[1]:.3f} · {head.n_target} images")
    c3.metric("What the shift costs", f"{100 * head.drop:+.1f} pts")
    c3.caption(f"95% CI {100 * head.drop_ci[0]:+.1f} to {100 * head.drop_ci[1]:+.1f}")
    st.dataframe(pd.DataFrame([{"class": c.name, "source acc": round(c.source, 3),
                                "source 95%": f"{c.source_ci[0]:.2f}–{c.source_ci[1]:.2f}", "n source": c.n_source,
                                "target acc": round(c.target, 3),
                                "target 95%": f"{c.target_ci[0]:.2f}–{c.target_ci[1]:.2f}", "n target": c.n_target,
                                "drop (pts)": round(100 * c.drop, 1)} for c in head.per_class]),
                 hide_index=True, width="stretch")
    for note in head.notes:
        st.caption(note)

# ---------------------------------------------------------------- galleries
st.subheader("Images the domain classifier is surest about")
n_show = 12


def gallery(emb, spec: str, rows: np.ndarray, proba: np.ndarray, caption: str) -> None:
    ds = app_state.dataset(spec)
    order = np.argsort(-proba)[:n_show]
    names = emb.classes
    images = [ds[int(rows[k])] for k in order]
    captions = [f"p={proba[k]:.2f}" + (f" · {app_state.md_text(names[emb.labels[rows[k]]])}"
                                       if emb.labels[rows[k]] >= 0 else "")
                for k in order]
    app_state.show_images(images, caption=captions, width=72)
    st.caption(caption)


g1, g2 = st.columns(2)
with g1:
    st.markdown("**Target images least like the source**")
    gallery(pair.target, setup.target_spec, dom.target_indices, dom.target_proba,
            "Highest out-of-fold p(target | x) among target images: what the source does not cover.")
with g2:
    st.markdown("**Source images most like the target**")
    gallery(pair.source, setup.source_spec, dom.source_indices, dom.source_proba,
            "Highest p(target | x) among source images: the part of the source closest to the target "
            "(the largest importance weights).")

# ---------------------------------------------------------------- per class
st.subheader(f"Which classes shifted most (at {report.headline})")
if report.classes:
    st.plotly_chart(viz.class_shift_figure(report.classes), key="class_shift")
    st.caption("MMD between each class's source and target images (the seed scale applied to that class alone): a "
               "change of p(x | y) that the overall number can hide. Small classes have wide uncertainty (see n "
               "in the table), and the p-values are per class, not corrected for testing every class.")
    with st.expander("Per-class table"):
        st.dataframe(pd.DataFrame([c.row() for c in report.classes]), hide_index=True, width="stretch")
else:
    st.info("No class is labelled in both domains, so there is no per-class breakdown.")
for note in report.notes:
    st.caption(note)
st.caption(f"Computed in {report.seconds:.1f} s (cached: changing the thresholds only re-colours). "
           f"Seed {report.random_state}.")
st.page_link("pages/3_explorer.py", label="Next: see where the target sits on a map of the images. Open **Explorer**",
             icon="➡️")
