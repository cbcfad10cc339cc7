"""The one place that turns a :class:`~tldiag.setup.Setup` into job configurations: the Fine-tune and Data
efficiency pages, ``tldiag report`` and the Verdict page's fast baselines all start from these."""
from __future__ import annotations

from typing import Any

from ..setup import Setup

__all__ = ["BASELINE_ARMS", "baselines_config", "efficiency_config", "finetune_base", "finetune_config"]

BASELINE_ARMS = ("small-cnn", "pixel-linear", "pixel-knn", "linear-probe")
"""The fast verdict's budget comparison: the frozen-feature probe against the cheapest honest scratch baselines."""


def finetune_base(setup: Setup, **overrides: Any):
    """The fine-tuning run of a setup with the class defaults (its model, target, source, resolution and seed)."""
    from .finetune import FinetuneConfig

    return FinetuneConfig(model=setup.model, target=setup.target_spec, source=setup.source_spec,
                          resolution=setup.resolution, seed=setup.seed, **overrides)


def finetune_config(setup: Setup, *, model=None, dataset=None, **overrides: Any):
    """The fine-tuning run of a setup with the Fine-tune page's defaults: the strategy recommended for the amount of
    target data (checked against the model and the data, nothing trains)."""
    from .finetune import plan

    base = finetune_base(setup, **overrides)
    return plan(base, model=model, dataset=dataset).recommendation.apply(base)


def efficiency_config(setup: Setup, **overrides: Any):
    """The data-efficiency experiment of a setup with the Data efficiency page's defaults (the label budget always
    included)."""
    from .efficiency import EfficiencyConfig

    return EfficiencyConfig(model=setup.model, target=setup.target_spec, source=setup.source_spec,
                            resolution=setup.resolution, seed=setup.seed, budget=setup.budget, **overrides)


def baselines_config(setup: Setup):
    """The fast verdict's budget comparison as a data-efficiency experiment: the frozen-feature probe against a
    linear model and k-NN on the raw pixels and the small CNN (the CPU profile's tuned schedule), at the setup's
    budget only, 3 repeats. Its trained runs land in the run store, so the full experiment reuses them."""
    b = setup.budget
    return efficiency_config(setup, arms=BASELINE_ARMS, budgets=(b,) if b else (), include_all=b is None,
                             profile="cpu")
