"""Shift diagnostics between source and target embeddings. numpy / torch / scikit-learn only.

Public API::

    from tldiag import metrics
    r = metrics.mmd_test(X_source, X_target, random_state=0)      # MMDResult: mmd2, p_value, bandwidth...
    d = metrics.domain_classifier(X_source, X_target, random_state=0)  # balanced accuracy, PAD, weights
    metrics.coral_distance(X_source, X_target); metrics.frechet_distance(X_source, X_target)
    metrics.linear_cka(X_a, X_b)                                    # two representations of the same inputs
    metrics.seed_scale_mmd(X_source, X_target)                      # the scale of the 0.1 / 0.5 rule
    metrics.shift_report(pair)                                      # all of it, for every tap
    metrics.knn_mixing(X_source, X_target, y_source=..., y_target=...)  # 1 = interleaved, 0 = islands
    metrics.trustworthiness(X, X_2d)                                # faithfulness of a 2-D picture
"""
from .divergence import coral_distance, frechet_distance, linear_cka
from .domain import DomainClassifierResult, domain_classifier
from .layers import ClassShift, LayerShift, ShiftReport, headline_layer, shift_by_layer, shift_report
from .mmd import MMDResult, median_heuristic, mmd_test
from .neighbours import ClassMixing, MixingResult, knn_mixing, nearest_neighbours, trustworthiness
from .scale import SEED_SCALE, Light, Thresholds, l2_normalise, seed_scale_mmd, traffic_light

__all__ = [
    "mmd_test", "MMDResult", "median_heuristic", "domain_classifier", "DomainClassifierResult",
    "coral_distance", "frechet_distance", "linear_cka", "seed_scale_mmd", "SEED_SCALE", "Thresholds",
    "Light", "traffic_light", "l2_normalise", "shift_by_layer", "shift_report", "ShiftReport", "LayerShift",
    "ClassShift", "headline_layer", "knn_mixing", "MixingResult", "ClassMixing", "nearest_neighbours",
    "trustworthiness",
]
