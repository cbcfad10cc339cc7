"""Fine-tune: launch a real fine-tuning run as a background job, follow it live, compare it, register it."""
import json
import time
from dataclasses import replace

import pandas as pd
import streamlit as st

import app_state
from tldiag import viz
from tldiag.errors import TldiagError
from tldiag.training import configs
from tldiag.training.finetune import (AUGMENTATION_TITLES, AUGMENTATIONS, STRATEGIES, STRATEGY_TITLES,
                                      FinetuneResult, register_result, scratch_config, scratch_job)
from tldiag.models import architecture_id

st.title("Fine-tune")
st.caption("Train the model on your labelled target as a background job. It runs in its own process: close the tab "
           "and it goes on; every job and its numbers stay in the history below. The test images are the first split "
           "of the Probes page, so the fine-tuned accuracy and the linear probe's are measured on the same images.")
setup = app_state.current_setup()
store = app_state.job_store()

# ---------------------------------------------------------------- form
base = configs.finetune_base(setup)
try:
    rec = app_state.finetune_plan(base).recommendation
except TldiagError as exc:
    app_state.show_error(exc)
    st.stop()

suggested = rec.apply(base)
st.subheader("New fine-tuning run")
st.markdown(f"{app_state.md_code(setup.model)} on {app_state.md_code(setup.target_spec)} · {setup.resolution or 'native'} px · seed {setup.seed} "
            "(change them on the Setup page)")
strategy = st.selectbox("Strategy", STRATEGIES, index=STRATEGIES.index(suggested.strategy),
                        format_func=lambda s: STRATEGY_TITLES[s] + (" — recommended" if s == suggested.strategy else ""),
                        key="w_ft_strategy")
for reason in rec.reasons:
    st.caption("Recommended because: " + reason)
c1, c2, c3, c4 = st.columns(4)
epochs = c1.number_input("Epochs (at most)", 1, 500, base.epochs, key="w_ft_epochs",
                         help="Early stopping may end sooner; the best validation epoch's weights are kept.")
lr = c2.number_input("Learning rate (new head)", 1e-6, 1.0, base.lr, format="%.0e", step=1e-4, key="w_ft_lr",
                     help="Peak rate of AdamW after a one-epoch linear warm-up, then a cosine decay to zero.")
mult = c3.number_input("Backbone rate × ", 1e-3, 1.0, suggested.backbone_lr_mult, format="%.3g", key="w_ft_mult",
                       help="The backbone learns at this fraction of the head's rate (discriminative learning rates); "
                            "freeze-then-unfreeze trains everything at this fraction after the head phase.")
batch_size = c4.number_input("Batch size", 1, 1024, base.batch_size, key="w_ft_batch")
c1, c2, c3, c4 = st.columns(4)
augment = c1.selectbox("Augmentation", AUGMENTATIONS, key="w_ft_augment",
                       format_func=lambda a: "auto (by dataset)" if a == "auto" else a,
                       help=" · ".join(f"{k}: {v}" for k, v in AUGMENTATION_TITLES.items()))
smoothing = c2.number_input("Label smoothing", 0.0, 0.5, base.label_smoothing, step=0.05, key="w_ft_smoothing")
patience = c3.number_input("Early-stopping patience", 0, 100, base.patience, key="w_ft_patience",
                           help="Epochs without a better validation accuracy before stopping; 0 never stops early.")
name = c4.text_input("Job name", "", key="w_ft_name", placeholder="model → target · strategy")
n_stages = len(app_state.finetune_plan(suggested).stages)
frozen, head_epochs, alpha = suggested.frozen_stages, base.head_epochs, base.l2sp_alpha
if strategy == "partial":
    default = frozen if frozen is not None else max(n_stages - 1, 0)
    frozen = st.slider("Frozen stages (from the bottom)", 0, n_stages, default, key="w_ft_frozen",
                       help="The stem and these stages keep their pretrained weights and statistics; the rest trains.")
elif strategy == "freeze-unfreeze":
    head_epochs = st.number_input("Epochs of the head alone", 1, max(1, int(epochs) - 1), min(base.head_epochs,
                                  max(1, int(epochs) - 1)), key="w_ft_head_epochs")
elif strategy == "l2-sp":
    alpha = st.number_input("L2-SP strength α", 0.0, 100.0, base.l2sp_alpha, format="%.3g", key="w_ft_alpha",
                            help="Penalty α/2 ‖w − w₀‖² pulling the backbone toward its pretrained weights w₀.")
# the warm-up must end before the last epoch: a one-epoch run warms up for half of it
config = replace(base, strategy=strategy, epochs=int(epochs), warmup_epochs=min(base.warmup_epochs, int(epochs) / 2),
                 lr=float(lr), backbone_lr_mult=float(mult),
                 batch_size=int(batch_size), augment=augment, label_smoothing=float(smoothing),
                 patience=int(patience), frozen_stages=frozen if strategy == "partial" else None,
                 head_epochs=int(head_epochs), l2sp_alpha=float(alpha))
try:
    the_plan = app_state.finetune_plan(config)
except TldiagError as exc:
    app_state.show_error(exc)
    st.stop()
c = the_plan.config
st.caption(f"{the_plan.n_train} training, {the_plan.n_val} validation and {the_plan.n_test} test images in "
           f"{len(the_plan.classes)} classes · {the_plan.trainable:,} of {the_plan.total:,} parameters train · "
           f"augmentation {c.augment}{': ' + the_plan.augment_reason if the_plan.augment_reason else ''} · "
           f"device {c.device}")
for note in the_plan.notes:
    st.caption(note)
app_state.launch_button("Launch fine-tuning", "launch_ft", "w_ft_job",
                        lambda: app_state.launch_finetune(config, name.strip() or None))

# ---------------------------------------------------------------- jobs
st.subheader("Jobs")
job, jobs = app_state.pick_job("finetune", "w_ft_job", label="Job",
                               empty="No fine-tuning jobs yet: launch one above, or from a shell with "
                                     "`tldiag finetune ... --wait`.")


def _show_live(job_id: str) -> None:
    job = store.get(job_id)
    if not job.active:
        st.rerun()  # the whole page: the result card replaces the live view
    waiting = job.status == "queued"
    app_state.job_heading(job)
    st.progress(job.progress, text=f"{job.status}: {job.message or 'starting'}"
                + ("" if waiting or job.seconds is None else f" · {job.seconds:.0f} s"))
    rows = store.metrics(job_id)
    if rows:
        st.plotly_chart(viz.training_curves_figure(rows), key=f"live_curves_{len(rows)}")
    else:
        st.caption("Curves appear after the first epoch.")
    app_state.cancel_and_log(job, help="Stops the job's process group; the job is kept as cancelled.")


def _arch(model_id: str) -> str | None:
    """The architecture of a model id, or None when it cannot be told (e.g. a fine-tune since unregistered)."""
    try:
        return architecture_id(model_id)
    except TldiagError:
        return None


def _scratch_job(result: FinetuneResult):
    """A finished from-scratch run with the same data, split and epochs, if there is one, and its configuration."""
    try:
        twin = scratch_config(result.config)
    except TldiagError:
        return None, None
    found = scratch_job(result.config, jobs)
    return (FinetuneResult.from_dict(found.result) if found else None), twin


def _show_result(job) -> None:
    result = FinetuneResult.from_dict(job.result)
    scratch, twin = _scratch_job(result)
    probe = result.linear_probe
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Fine-tuned test accuracy", f"{result.test_accuracy:.3f}",
              help=f"Best validation epoch's weights on the {result.n_test} test images (never used for a choice).")
    m1.caption(f"macro-F1 {result.test_f1:.3f} · best epoch {result.best_epoch} of {result.epochs_run}"
               + (" (stopped early)" if result.stopped_early else ""))
    if probe:
        m2.metric("Linear probe (frozen)", f"{probe['accuracy']:.3f}",
                  delta=f"{100 * (result.test_accuracy - probe['accuracy']):+.1f} pts by fine-tuning",
                  help="A logistic regression on the frozen pretrained features of the best tap, same split.")
        m2.caption(f"at {probe['tap']}")
    else:
        m2.metric("Linear probe (frozen)", "—", help="Not computed: the model has no pretrained weights.")
    if scratch is not None:
        m3.metric("From scratch", f"{scratch.test_accuracy:.3f}",
                  delta=f"{100 * (result.test_accuracy - scratch.test_accuracy):+.1f} pts by transfer",
                  help=f"{scratch.config.model}, every layer trained, same data, split and epochs.")
    else:
        m3.metric("From scratch", "—", help="No finished from-scratch run with the same data and split yet.")
        if twin is not None and app_state.allowed("launch") and st.button("Launch the scratch baseline",
                                                                          key=f"scratch_{job.id}",
                                          help=f"The same run with {twin.model}: random weights, every layer trains."):
            try:
                st.session_state["w_ft_job"] = app_state.launch_finetune(twin, f"{twin.model} → {twin.target} · "
                                                                                "scratch baseline").id
                st.rerun()
            except TldiagError as exc:
                app_state.show_error(exc)
    m4.metric("Trained parameters", f"{result.trainable / 1e6:.2f} M", help=f"of {result.total / 1e6:.2f} M")
    m4.caption(f"{result.config.strategy} · {result.seconds:.0f} s on {result.device}")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Training curves**")
        st.plotly_chart(viz.training_curves_figure(result.history, best_epoch=result.best_epoch),
                        key=f"curves_{job.id}")
    with right:
        st.markdown("**Which layers changed most** (1 − linear CKA with the starting weights, on target images)")
        st.plotly_chart(viz.cka_change_figure(result.cka), key=f"cka_{job.id}")
        top = result.changed_most[:2]
        if top:
            st.caption(f"Most changed: {', '.join(f'{t} ({v:.3f})' for t, v in top)}. Near 0: the layer kept its "
                       "pretrained representation; large values deep and small ones shallow are the usual pattern.")
    for reason in result.reasons:
        st.caption("Defaults: " + reason)
    r1, r2, r3 = st.columns([2, 1, 1])
    arch = _arch(result.config.model)
    default_name = f"{arch or 'model'}-{job.id[-4:]}".replace(":", "-").replace("/", "-")
    reg_name = r1.text_input("Register the fine-tuned weights as a model named", default_name, key=f"reg_name_{job.id}")
    if r2.button("Register as a model", key=f"register_{job.id}",
                 help="Adds finetuned:<name> to the model list, so every page can diagnose the fine-tuned model."):
        try:
            model_id = register_result(result, reg_name, job=job.id)
        except TldiagError as exc:
            app_state.show_error(exc)
        else:
            st.session_state["ft_registered"] = model_id
    if st.session_state.get("ft_registered"):
        registered = st.session_state["ft_registered"]
        st.success(f"Registered `{registered}`.")
        if st.button(f"Diagnose {registered} (make it the setup's model)", key="use_registered"):
            app_state.update(setup, model=registered, taps=())
            del st.session_state["ft_registered"]
            st.switch_page("pages/1_setup.py")
    app_state.download_button("Download the result (JSON)", lambda: json.dumps({"job": job.id, **result.to_dict()},
                                                                                indent=1),
                              file_name=f"{job.id}.json", mime="application/json", key=f"json_{job.id}", where=r3)


if not job.active:
    app_state.job_heading(job)
if job.active:
    st.fragment(run_every=1.0)(_show_live)(job.id)
elif job.status == "done":
    _show_result(job)
elif job.status == "failed":
    st.error(app_state.md_message(job.error or "failed"), icon="⚠️")
else:
    st.warning(f"Cancelled after {job.seconds or 0:.0f} s.")
    rows = store.metrics(job.id)
    if rows:
        st.plotly_chart(viz.training_curves_figure(rows), key="cancelled_curves")

# ---------------------------------------------------------------- history
st.markdown("**History**")


def _row(j) -> dict:
    cfg, res = j.config, j.result or {}
    return {"name": j.name, "status": j.status, "progress": j.progress, "strategy": cfg.get("strategy"),
            "model": cfg.get("model"), "target": cfg.get("target"), "test acc": res.get("test_accuracy", float("nan")),
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created)),
            "seconds": None if j.seconds is None else round(j.seconds), "id": j.id}


def _history() -> None:
    st.dataframe(pd.DataFrame([_row(j) for j in store.list(kind="finetune")]), hide_index=True, width="stretch",
                 column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
                                "test acc": st.column_config.NumberColumn("test acc", format="%.3f")})


# refreshed every few seconds while a job runs (another user's jobs included); static otherwise
st.fragment(run_every=3.0 if any(j.active for j in jobs) else None)(_history)()
