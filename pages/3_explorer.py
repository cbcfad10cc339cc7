"""Explorer: a 2-D map of source and target images (UMAP, PCA, t-SNE), with the numbers that keep it honest."""
import numpy as np
import pandas as pd
import streamlit as st

import app_state
from tldiag import viz
from tldiag.errors import TldiagError
from tldiag.metrics import headline_layer
from tldiag.projection import METHOD_NAMES, ProjectionParams

st.title("Embedding explorer")
st.caption("See where the target sits: inside the source's cloud, at its edge, or on an island of its own. Select "
           "points (drag a box, or lasso) to see their images. The two numbers above the map are computed in the "
           "original embedding space, not in the picture.")
setup = app_state.current_setup()
pair = app_state.require_embeddings(setup)

# ---------------------------------------------------------------- controls
layers = list(pair.taps)
c1, c2, c3 = st.columns([2, 2, 3])
layer = c1.selectbox("Layer", layers, index=layers.index(headline_layer(layers)), key="w_map_layer",
                     help="pre_logits (the penultimate layer) is what frozen-feature transfer uses.")
method = c2.segmented_control("Method", list(METHOD_NAMES), default="umap", required=True, format_func=METHOD_NAMES.get,
                              key="w_map_method", help="UMAP keeps neighbourhoods (the default); PCA is linear and "
                              "keeps global distances; t-SNE keeps neighbourhoods too, slower.") or "umap"
color = c3.segmented_control("Colour by", ["domain", "class", "p_target"], default="domain", required=True, key="w_map_color",
                             format_func={"domain": "Domain", "class": "Class",
                                          "p_target": "p(target | x)"}.get,
                             help="p(target | x): the out-of-fold probability of the domain classifier (as on the "
                                  "Shift page), fitted on these points: red = looks like the target, blue = like "
                                  "the source.") or "domain"
with st.expander("Projection settings"):
    e1, e2, e3, e4 = st.columns(4)
    n_neighbors = e1.slider("Neighbours", 5, 100, 15, key="w_map_neighbors",
                            help="UMAP's n_neighbors: small = local detail, large = global shape (t-SNE perplexity "
                                 "is twice this).")
    min_dist = e2.slider("Minimum distance", 0.0, 0.99, 0.1, 0.01, key="w_map_min_dist",
                         help="UMAP's min_dist: how tightly points may pack in the picture.")
    metric = e3.selectbox("Metric", ["euclidean", "cosine"], key="w_map_metric")
    pca = e4.selectbox("PCA dimensions first", [50, 20, 100, None], key="w_map_pca",
                       format_func=lambda v: "none" if v is None else str(v),
                       help="Reduce to this many principal components before UMAP / t-SNE: faster, less noise.")
    e5, e6, _, _ = st.columns(4)
    max_samples = e5.selectbox("Images per domain at most", [1000, 2000, 5000, 10000], index=2, key="w_map_samples",
                               help="A stratified random sample (each class in proportion) when a domain is larger.")
    epochs = e6.selectbox("UMAP epochs", [None, 50, 100, 200, 500], key="w_map_epochs",
                          format_func=lambda v: "auto" if v is None else str(v),
                          help="auto: about a million point-epochs, 50 to 200 (see the trustworthiness for the "
                               "price).")
params = ProjectionParams(method=method, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                          pca_components=pca, max_samples=max_samples, n_epochs=epochs, random_state=setup.seed)
try:
    proj = app_state.projection(setup, pair, layer, params)
    p_target = app_state.target_proba(setup, pair, proj) if color == "p_target" else None
except TldiagError as exc:
    app_state.show_error(exc)
    st.stop()
if app_state.umap_warm_up().error:
    st.caption(f"The UMAP warm-up at server start failed ({app_state.umap_warm_up().error}); projections still work.")

# ---------------------------------------------------------------- numbers
mix = proj.mixing
m1, m2, m3 = st.columns(3)
m1.metric("k-NN domain mixing", f"{mix.score:.2f}",
          help=f"Share of source images among each target image's {mix.n_neighbors} nearest neighbours (in the "
               f"{proj.layer} features, {mix.metric}), divided by the share expected if the domains were one "
               "distribution. 1 = indistinguishable, 0 = separate islands.")
m1.caption(f"95% CI {mix.ci[0]:.2f}–{mix.ci[1]:.2f} · observed {mix.observed_share:.2f} vs {mix.expected_share:.2f} "
           "expected")
m2.metric("Trustworthiness of the map", f"{proj.trustworthiness:.3f}",
          help=f"How many of each point's {proj.trust_neighbors} nearest neighbours in the picture are real "
               "neighbours in the original space (1 = all; scikit-learn's definition). Below about 0.9, read "
               "apparent clusters with care.")
m2.caption("1 = every neighbour in the picture is a real one")
m3.metric("Images shown", f"{len(proj.coords):,}",
          help="A stratified random sample per domain when a domain is larger than the limit.")
m3.caption(f"{proj.n_source:,} of {proj.n_source_total:,} source · {proj.n_target:,} of {proj.n_target_total:,} target")
if mix.score < app_state.verdict_rules().pages.explorer_islands_mixing:
    st.warning(f"The target forms its own islands at {proj.layer}: few of its nearest neighbours are source images "
               f"(mixing {mix.score:.2f}). Frozen features from this layer will see it as out of distribution.")

# ---------------------------------------------------------------- the map
tab_map, tab_classes, tab_mixing = st.tabs(["Map", "Per class", "Mixing by class"])
with tab_map:
    hover = st.toggle("Thumbnails on hover", key="w_map_hover",
                      help="Shows a larger interactive view in which hovering a point shows its image (selection is "
                           "off in that view). The downloadable HTML has the same.")
    fig = viz.projection_figure(proj, color=color, p_target=p_target)
    if hover:
        sprite = viz.thumbnail_sprite(app_state.thumbnails(setup, proj))
        st.iframe(viz.figure_html(fig, sprite=sprite), height=660)
        selected = np.zeros(0, dtype=np.int64)
    else:
        event = st.plotly_chart(fig, key="explorer_map", on_select="rerun", selection_mode=("box", "lasso", "points"),
                                config={"displaylogo": False})
        selected = viz.selected_indices(event.selection if event else None)
    st.caption(f"{proj.describe()} · computed in {proj.seconds.get('total', 0):.1f} s"
               + (" (read from the cache)" if proj.from_cache else "")
               + (f" · PCA kept {100 * proj.pca_variance:.0f}% of the variance" if proj.pca_variance else ""))

    if len(selected):
        n_show = 48
        sel_domain = proj.domain[selected]
        st.markdown(f"**{len(selected):,} selected**: {int((sel_domain == 0).sum()):,} source, "
                    f"{int((sel_domain == 1).sum()):,} target"
                    + (f" (first {n_show} shown)" if len(selected) > n_show else ""))
        labels = pd.Series(proj.labels[selected]).replace("", "(unlabelled)").value_counts()
        st.caption("Classes: " + ", ".join(f"{app_state.md_text(name)} {count}"
                                           for name, count in labels.head(12).items()))
        picks = selected[:n_show]
        app_state.show_images(app_state.images_of(setup, proj, picks), width=64,
                              caption=[f"{'S' if proj.domain[k] == 0 else 'T'} #{proj.rows[k]} · "
                                       f"{app_state.md_text(proj.labels[k] or '?')}" for k in picks])
    elif not hover:
        st.caption("Drag a box (or pick the lasso in the chart's toolbar) to see the selected images here.")

    d1, d2 = st.columns(2)
    app_state.download_button("Download coordinates (CSV)",
                              lambda: proj.to_csv(p_target, (pair.source.sample_ids, pair.target.sample_ids)),
                              file_name=f"map-{layer}.csv", mime="text/csv", key="dl_csv", where=d1)
    app_state.download_button("Download the figure (HTML, thumbnails on hover)",
                              lambda: viz.figure_html(fig, sprite=viz.thumbnail_sprite(app_state.thumbnails(setup, proj))),
                              file_name=f"map-{layer}.html", mime="text/html", key="dl_html", where=d2)

with tab_classes:
    if (proj.labels != "").any():
        st.plotly_chart(viz.class_small_multiples(proj), key="small_multiples")
        st.caption("Each panel: one class's source (●) and target (◆) images on the same map, the rest in grey. A "
                   "class whose target sits apart from its source has shifted in appearance (p(x | y)).")
    else:
        st.info("No class labels in this setup, so there are no per-class panels.")

with tab_mixing:
    if mix.per_class:
        st.plotly_chart(viz.class_mixing_figure(mix.per_class), key="class_mixing")
        st.caption(f"Within each class: the share of source images among a target image's {mix.n_neighbors} nearest "
                   "neighbours of the same class, against the share expected under perfect mixing. This separates a "
                   "change of appearance within a class from a change of the class mix.")
        st.dataframe(pd.DataFrame([c.row() for c in mix.per_class]), hide_index=True, width="stretch")
    else:
        st.info("No class is labelled in both domains, so there is no per-class mixing.")
st.page_link("pages/4_probes.py", label="Next: how transferable each layer is, and which backbone to start from. "
             "Open **Probes**", icon="➡️")
