"""Data efficiency: accuracy against the number of target labels, from scratch and with transfer.

The background calls this curve "the single most compelling business case for transfer learning": a horizontal
slice says how many labels transfer saves, a vertical slice how much accuracy it adds at a budget, and where the
curves cross, transfer stops paying. It is also the direct test for negative transfer.

The experiment (:func:`run_experiment`):

* One split of the labelled target, the first split of :func:`tldiag.probes.stratified_splits` with the seed (the
  one the Probes and Fine-tune pages score first): 20% of each class is the **test** set, fixed for every run;
  20% is the **validation** set, used for early stopping and for the probe's tap and regularisation, never for
  training and not counted in a budget; the other 60% is the **pool** the labels are drawn from.
* **Every spare labelled image in the test** (:func:`spare_test_images`): when the target spec samples a per-class
  ``limit``, the labelled images the limit left out join the test set after the pool and validation are drawn, up
  to ``test_per_class`` per class and ``test_max`` in all (100 and 2,000 by default). Only those extra images are
  embedded; the pool, the validation set and the budgets stay as they were.
* Label **budgets** per class (:data:`BUDGETS`, those smaller than the pool, plus all of the pool), each
  repeated ``repeats`` times with a different random subset of the pool, and more often at small budgets
  (:meth:`EfficiencyConfig.draws`: until budget x draws reaches ``draw_labels``, 8 draws at one label per class),
  where which images get labelled moves the answer most, and at least 6 at the team's budget, which the verdict
  reads. Within a repeat the subsets are nested (the 5 images of a class are among its 10), so a repeat's curve is
  one labelling campaign growing.
* **Arms** (:data:`ARMS`): ``scratch`` (the model's architecture from random initialisation, trained end to end),
  ``small-cnn`` (a 73k-parameter CNN sized for CPUs, from scratch), ``linear-probe`` (a logistic regression on
  the frozen pretrained features; tap and C chosen on validation, fitted on the budget only) and ``fine-tuned``
  (a short fine-tuning schedule from the pretrained weights). The trained arms share one training loop
  (:func:`tldiag.training.loop.fit`): the same augmentation, AdamW with warm-up and cosine decay, label smoothing,
  early stopping on the validation set with the best weights restored. Their settings (:class:`ArmSchedule`)
  come from a **profile**: ``cpu`` (reduced resolution and epochs, a partial fine-tune; labelled as such) or
  ``full`` (every arm at the full resolution with longer schedules); ``auto`` picks ``full`` on a GPU.

Every trained run is stored under ``$TLDIAG_HOME/efficiency`` as soon as it ends (one small JSON file, written
atomically), keyed by everything that determines it: a cancelled or failed experiment keeps the runs it finished,
and launching it again reuses them.

Readouts (:func:`readouts`): mean accuracy per budget with a 95% interval (:func:`crossed_interval`: the spread
between draws of the labelled images and the spread over test images, each with its own degrees of freedom, so
neither a difference of two test images nor a lucky draw of labels is mistaken for a finding), the labels each arm
needs to reach an accuracy (interpolated on a log scale) and their ratio (labels saved), the accuracy gain of
transfer at a budget (paired over repeats), the break-even budget where scratch catches up, and a
**negative-transfer flag** when scratch is at or above transfer at some budget, with the evidence.

The package, by what each file holds (lowest first; each imports only those above it):

* :mod:`.config`: the arms, budgets and profiles, each arm's schedule, :class:`EfficiencyConfig`;
* :mod:`.runs`: a :class:`Run`, an :class:`EfficiencyResult`, the run store;
* :mod:`.plan`: the split with the spare test images, the schedules resolved, the labelled subsets;
* :mod:`.intervals`: the t, bootstrap and crossed intervals;
* :mod:`.arms`: the fitted arms and the trained arms with their learning-rate search;
* :mod:`.readouts`: curves, labels to reach an accuracy, the gain at a budget, break-even, negative transfer;
* :mod:`.runner`: :func:`run_experiment`, here or on Ray;
* :mod:`.job`: the ``efficiency`` job kind.
"""
from __future__ import annotations

from .config import (
    ARMS, ARM_NAMES, ARM_TITLES, ArmSchedule, BUDGETS, BUDGET_DRAWS, DRAW_LABELS, EfficiencyConfig, FITTED_ARMS,
    KNN_GRID, LR_GRID, MAX_DRAWS, PROFILES, RUN_VERSION, SCRATCH_ARMS, TEST_MAX, TEST_PER_CLASS, TRAINED_ARMS,
    TRANSFER_ARMS, default_schedules, schedule_caps,
)
from .runs import EfficiencyResult, Run, budget_label, labels_per_class
from .plan import (
    ExperimentPlan, JoinedDataset, budget_subsets, parts_of, plan_experiment, prepare_experiment, spare_test_images,
)
from .intervals import CrossedInterval, bootstrap_interval, crossed_interval, se_of, t_interval, t_quantile, welch_df
from .arms import knn_predict
from .readouts import ArmCurve, Comparison, Reach, Readouts, curves, labels_to_reach, readouts
from .runner import run_experiment
from .job import config_of, partial_result, prepare_job, result_of, run_job

__all__ = [
    "ARMS", "ARM_NAMES", "ARM_TITLES", "ArmSchedule", "BUDGETS", "BUDGET_DRAWS", "DRAW_LABELS", "EfficiencyConfig",
    "FITTED_ARMS", "KNN_GRID", "LR_GRID", "MAX_DRAWS", "PROFILES", "RUN_VERSION", "SCRATCH_ARMS", "TEST_MAX",
    "TEST_PER_CLASS", "TRAINED_ARMS", "TRANSFER_ARMS", "default_schedules", "schedule_caps", "EfficiencyResult", "Run",
    "budget_label", "labels_per_class", "ExperimentPlan", "JoinedDataset", "budget_subsets", "parts_of",
    "plan_experiment", "prepare_experiment", "spare_test_images", "CrossedInterval", "bootstrap_interval",
    "crossed_interval", "se_of", "t_interval", "t_quantile", "welch_df", "knn_predict", "ArmCurve", "Comparison",
    "Reach", "Readouts", "curves", "labels_to_reach", "readouts", "run_experiment", "config_of", "partial_result",
    "prepare_job", "result_of", "run_job",
]
