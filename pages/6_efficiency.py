"""Data efficiency: test accuracy against the number of target labels, from scratch and with transfer."""
import json
import time
from dataclasses import replace

import pandas as pd
import streamlit as st

import app_state
from tldiag import viz
from tldiag.errors import TldiagError
from tldiag.training import configs
from tldiag.training.efficiency import (ARM_TITLES, ARMS, BUDGETS, PROFILES, budget_label, curves, partial_result,
                                        readouts, result_of, schedule_caps)

st.title("Data efficiency")
st.caption("How many labels does transfer save? Every arm learns from 1, 2, 5, … labels per class (several random "
           "subsets each) and is scored on the same held-out test images. Horizontal slices read labels saved, vertical "
           "slices accuracy gained; where scratch catches up, transfer stops paying. Runs as a background job: close the "
           "tab and it goes on; finished runs are stored and reused.")
setup = app_state.current_setup()
store = app_state.job_store()

# ---------------------------------------------------------------- form
base = configs.efficiency_config(setup)
st.subheader("New experiment")
st.markdown(f"{app_state.md_code(setup.model)} on {app_state.md_code(setup.target_spec)} · {setup.resolution or 'native'} px · seed {setup.seed} · "
            f"your label budget: {setup.budget or 'all'} per class (always run; change them on the Setup page)")
c1, c2 = st.columns([3, 2])
arms = c1.multiselect("Arms", ARMS, default=list(ARMS), format_func=ARM_TITLES.get, key="w_eff_arms",
                      help="At least one scratch arm and one transfer arm.")
budgets = c2.multiselect("Labels per class", BUDGETS, default=list(BUDGETS), key="w_eff_budgets",
                         help="Budgets at or above a class's pool of training images are replaced by 'all'.")
c1, c2, c3, c4 = st.columns(4)
repeats = c1.number_input("Repeats (label subsets)", 1, 20, base.repeats, key="w_eff_repeats",
                          help="Each budget is drawn this many times; 3 or more gives a confidence band.")
profile = c2.selectbox("Settings", PROFILES, key="w_eff_profile",
                       format_func={"auto": "auto (full on a GPU, cpu otherwise)", "cpu": "cpu (fast, reduced)",
                                    "full": "full"}.get)
include_all = c3.checkbox("Also all labels", True, key="w_eff_all")
name = c4.text_input("Job name", "", key="w_eff_name", placeholder="model → target · data efficiency")
c1, c2, _ = st.columns([1, 1, 2])
epochs = c1.number_input("Epochs of the trained arms (at most; 0 = the settings')", 0, 1000, 0, key="w_eff_epochs",
                         help="A quicker, rougher first look: every trained arm stops after this many epochs. The "
                              "table below shows what each arm runs.")
epoch_images = c2.number_input("Images per epoch (at least; 0 = the settings')", 0, 1_000_000, 0,
                               key="w_eff_epoch_images", help="Small budgets repeat their images up to this many.")
chosen = tuple(a for a in ARMS if a in arms)
config = replace(base, arms=chosen, budgets=tuple(sorted(budgets)), repeats=int(repeats), profile=profile,
                 include_all=include_all,
                 schedules=schedule_caps(chosen, epochs=int(epochs), epoch_images=int(epoch_images)))
try:
    the_plan = app_state.efficiency_plan(config)
except TldiagError as exc:
    app_state.show_error(exc)
    st.stop()
c = the_plan.config
st.caption(f"{the_plan.n_pool} pool, {the_plan.n_val} validation and {the_plan.n_test} test images in "
           f"{len(the_plan.classes)} classes · budgets {', '.join(budget_label(b) for b in the_plan.budgets)} × "
           f"{', '.join(str(the_plan.draws(b)) for b in the_plan.budgets)} draws · {the_plan.n_runs} trained runs · "
           f"{c.profile} settings on {c.device} · "
           f"augmentation {c.augment}")
st.dataframe(pd.DataFrame([{"arm": ARM_TITLES[a], "settings": s.summary, "note": s.note}
                           for a, s in the_plan.schedules.items()]),
             hide_index=True, width="stretch", column_config={"note": st.column_config.TextColumn(width="large")})
for note in the_plan.notes:
    st.caption(note)
app_state.launch_button("Launch the experiment", "launch_eff", "w_eff_job",
                        lambda: app_state.launch_efficiency(config, name.strip() or None))

# ---------------------------------------------------------------- jobs
st.subheader("Experiments")
job, jobs = app_state.pick_job("efficiency", "w_eff_job", label="Experiment",
                               empty="No experiments yet: launch one above, or from a shell with "
                                     "`tldiag efficiency --json result.json`.")


def _partial_chart(job, key: str) -> None:
    result = partial_result(job.config, store.metrics(job.id))
    if result is None:
        st.caption("The chart appears after the first run.")
        return
    st.plotly_chart(viz.efficiency_figure(curves(result), titles=ARM_TITLES), key=key)
    st.caption(f"{len(result.runs)} runs so far.")


def _show_live(job_id: str) -> None:
    job = store.get(job_id)
    if not job.active:
        st.rerun()  # the whole page: the result replaces the live view
    app_state.job_heading(job)
    st.progress(job.progress, text=f"{job.status}: {job.message or 'starting'}"
                + ("" if job.seconds is None else f" · {job.seconds:.0f} s"))
    _partial_chart(job, f"live_eff_{len(store.metrics(job_id))}")
    app_state.cancel_and_log(job, help="Stops the job; its finished runs stay stored and are reused when the same "
                                       "experiment is launched again.")


def _show_result(job) -> None:
    result = result_of(job)
    cs = curves(result)  # once per rerun: both readouts below reuse it
    try:
        default = readouts(result, arm_curves=cs)
    except TldiagError as exc:  # e.g. no scratch arm converged: the curves and every run still show
        app_state.show_error(exc)
        st.plotly_chart(viz.efficiency_figure(cs, chance=result.chance, titles=ARM_TITLES), key=f"eff_{job.id}")
        for note in result.notes:
            st.caption(note)
        st.dataframe(result.table(), hide_index=True, width="stretch")
        return
    shared = [c.budget for c in default.comparisons]  # the budgets every arm ran
    c1, c2 = st.columns(2)
    target = c1.slider("Target accuracy (labels needed to reach it)", 0.05, 1.0, float(default.target_accuracy), 0.001,
                       format="%.3f",
                       key=f"target_{job.id}", help="Default: the best accuracy both the best transfer arm and the best "
                                                   "scratch arm reach.")
    budget = c2.select_slider("Budget for the accuracy gain", shared, value=default.budget, key=f"budget_{job.id}",
                              format_func=lambda b: budget_label(b) + " per class")
    try:
        ro = readouts(result, target_accuracy=float(target), budget=budget, arm_curves=cs)
    except TldiagError as exc:
        app_state.show_error(exc)
        return
    if ro.negative_transfer:
        worse = any(e.verdict == "scratch better" for e in ro.evidence)
        (st.error if worse else st.warning)(
            ("**Negative transfer**: scratch beats transfer" if worse else
             "**Negative-transfer flag**: scratch is at or above transfer (within noise)")
            + f" at {len(ro.evidence)} budget(s). Evidence: " + "; ".join(e.describe() for e in ro.evidence) + ".",
            icon="🚩")
    else:
        st.success("No negative transfer: transfer beats scratch at every budget tried.", icon="✅")
    m1, m2, m3 = st.columns(3)
    m1.metric("Labels saved", "—" if ro.labels_saved is None else f"{ro.labels_saved_bound}{ro.labels_saved:.3g}×",
              help=f"Labels the best scratch arm needs / labels the best transfer arm needs to reach "
                   f"{ro.target_accuracy:.1%} (interpolated on a log scale).")
    g = ro.gain
    m2.metric(f"Gain at {budget_label(g.budget, g.per_class)} labels/class", f"{100 * g.gain:+.1f} pts",
              help=f"{ARM_TITLES[g.transfer_arm]} − {ARM_TITLES[g.scratch_arm]}, paired over {g.n} repeats"
                   + (f"; 95% CI {100 * g.low:+.1f} to {100 * g.high:+.1f} pts" if g.n > 1 else ""))
    m2.caption(g.verdict)
    m3.metric("Break-even (labels/class)", "not reached" if ro.break_even is None
              else f"{ro.break_even_bound}{ro.break_even:.3g}",
              help="Where scratch catches up with transfer; beyond it transfer stops paying.")
    st.plotly_chart(viz.efficiency_figure(cs, chance=result.chance, readouts=ro, titles=ARM_TITLES),
                    key=f"eff_{job.id}")
    for line in ro.summary:
        st.markdown("- " + line)
    st.caption(f"{result.n_pool} pool, {result.n_val} validation (early stopping, probe choices; never trained on) "
               f"and {result.n_test} fixed test images · {result.config.repeats} repeats (more at small budgets) · "
               f"{result.seconds:.0f} s on {result.device} · bands: 95% intervals over the draws of the labelled "
               "images and the test images")
    with st.expander("How each arm was trained"):
        st.dataframe(pd.DataFrame([{"arm": ARM_TITLES[a], "settings": s.title} for a, s in result.schedules.items()]
                                  + ([{"arm": ARM_TITLES["linear-probe"], "settings":
                                       f"{result.config.resolution or 'native'} px frozen features; tap and C chosen "
                                       "on validation; fitted on the budget only"}]
                                     if "linear-probe" in result.arms else [])), hide_index=True, width="stretch")
        st.caption(f"Augmentation for every trained arm: {result.config.augment}"
                   + (f" ({result.augment_reason})" if result.augment_reason else ""))
        for note in result.notes:
            st.caption(note)
    with st.expander("Every run"):
        table = result.table()
        st.dataframe(table, hide_index=True, width="stretch")
    d1, d2 = st.columns(2)
    app_state.download_button("Download the result (JSON)",
                              lambda: json.dumps({"job": job.id, **result.to_dict(), "readouts": ro.to_dict()},
                                                 indent=1, default=str),
                              file_name=f"{job.id}.json", mime="application/json", key=f"json_{job.id}", where=d1)
    app_state.download_button("Download the runs (CSV)", lambda: result.table().to_csv(index=False),
                              file_name=f"{job.id}.csv", mime="text/csv", key=f"csv_{job.id}", where=d2)


if not job.active:
    app_state.job_heading(job)
if job.active:
    st.fragment(run_every=2.0)(_show_live)(job.id)
elif job.status == "done":
    _show_result(job)
else:
    if job.status == "failed":
        st.error(app_state.md_message(job.error or "failed"), icon="⚠️")
    else:
        st.warning(f"Cancelled after {job.seconds or 0:.0f} s. Its finished runs are stored: launching the same "
                   "experiment again reuses them.")
    _partial_chart(job, "stopped_eff")

# ---------------------------------------------------------------- history
st.markdown("**History**")


def _history() -> None:
    rows = [{"name": j.name, "status": j.status, "progress": j.progress, "model": j.config.get("model"),
             "target": j.config.get("target"), "repeats": j.config.get("repeats"),
             "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created)),
             "seconds": None if j.seconds is None else round(j.seconds), "id": j.id}
            for j in store.list(kind="efficiency")]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)})


st.fragment(run_every=3.0 if any(j.active for j in jobs) else None)(_history)()
