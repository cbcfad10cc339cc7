"""Verdict: GO / CAUTION / NO-GO for transferring, the recommended recipe, and the decision record to share."""
import pandas as pd
import streamlit as st

import app_state
from tldiag import viz
from tldiag.decision import report
from tldiag.errors import TldiagError
from tldiag.training import configs
from tldiag.training.finetune import scratch_config
from tldiag.decision.verdict import CAUTION, GO, NO_GO, RULES_FILE, SIGNALS, team_rules_path

st.title("Verdict")
st.caption("Should we transfer from this model to our data, and how? Every signal computed for this setup, read against "
           "a written rule: measured accuracy on your held-out target images decides, predictors computed before "
           "training temper it, and signals that disagree are shown side by side. Export the decision record for the "
           "meeting and for whoever asks in six months.")
setup = app_state.current_setup()
try:
    rules = app_state.verdict_rules()
    analyses = app_state.analyses(setup)
except TldiagError as exc:
    app_state.show_error(exc)
    st.stop()
record = report.build_record(analyses, rules, base_url=app_state.app_base_url(),
                               requested_by=app_state.user_email())
v = record.verdict

# ---------------------------------------------------------------- the decision
BOX = {GO: st.success, CAUTION: st.warning, NO_GO: st.error}
ICON = {GO: "✅", CAUTION: "⚠️", NO_GO: "⛔"}
if v.decision:
    BOX[v.decision](f"### {v.decision}{' (provisional)' if v.provisional else ''}\n{v.headline}", icon=ICON[v.decision])
else:
    st.info(v.headline + " Run the analyses listed below.", icon="ℹ️")
st.markdown(f"**Label budget:** {v.budget} (set it on the Setup page)"
            + (f" · {v.break_even}" if v.break_even else ""))
for reason in v.reasons:
    st.markdown("- " + reason)
if v.disagreements:
    st.warning("**Signals that disagree** (read both before deciding):\n\n"
               + "\n".join(f"- {d}" for d in v.disagreements), icon="↔️")
readings = [s.reading for s in v.signals if s.reading is not None]
if readings:
    st.subheader("Measured gains against their margins")
    st.caption("Each measured signal's gain of transfer over training from scratch with its 95% interval, and the "
               "worthwhile-gain margin it is read against (the bar). GO: the gain reaches the margin and the interval "
               "lies above 0; NO-GO: even the interval's upper end is below the margin; otherwise the sample cannot "
               "tell."
               + (f" The decision is led by {next(s.title for s in v.signals if s.key == v.led_by).lower()}."
                  if v.led_by else ""))
    st.plotly_chart(viz.gain_forest(readings), key="v_forest")
    for r in readings:
        if r.settle is not None:
            st.info(f"**What would settle {app_state.md_message(r.title.lower())}:** "
                    f"{app_state.md_message(r.settle.text)}.", icon="🎯")

# ---------------------------------------------------------------- signals
BADGE = {GO: ":green-badge[GO]", CAUTION: ":orange-badge[CAUTION]", NO_GO: ":red-badge[NO-GO]",
         "INFO": ":gray-badge[INFO]"}
if v.signals:
    st.subheader("Signals")
for s in v.signals:
    with st.container(border=True):
        c1, c2 = st.columns([1, 5])
        c1.markdown(BADGE[s.status])
        c1.caption(s.kind)
        c2.markdown(f"**{s.title}** · {s.value}")
        c2.markdown(s.evidence)
        c2.caption("Rule: " + s.rule + (f" · {SIGNALS[s.key].explains}" if s.key in SIGNALS else ""))

# ---------------------------------------------------------------- the fair baselines
b = analyses.evidence.baseline
if b is not None:
    st.subheader(f"Transfer against training from scratch at {v.budget}")
    draws = b.comparison.n or b.repeats
    st.caption(f"Every arm learns from the same label subsets ({draws} draws of the labelled images, "
               f"{b.per_class:.3g} labels per class on average) and is scored on the same {b.n_test:,} held-out test "
               "images (the split's and every spare labelled image up to the cap); 95% intervals over the draws and "
               "the test images. An arm whose validation accuracy was still at chance when its schedule ended did not "
               "converge and does not vote.")
    st.dataframe(pd.DataFrame([{"arm": a.title, "test accuracy": round(a.mean, 3),
                                "95% interval": f"{a.low:.3f}–{a.high:.3f}",
                                "converged": "yes" if a.converged else "no (does not vote)", "settings": a.settings}
                               for a in b.arms]),
                 hide_index=True, width="stretch", column_config={"settings": st.column_config.TextColumn(width="large")})
    st.caption(b.comparison.text)

# ---------------------------------------------------------------- recipe
if v.recipe:
    r = v.recipe
    st.subheader(f"Recommended recipe: {r.title}")
    st.markdown("\n".join(f"{i}. {step}" for i, step in enumerate(r.steps, 1)))
    c1, c2 = st.columns(2)
    c1.markdown(f"**Freeze up to:** `{r.freeze_up_to}`" if r.freeze_up_to else "**Freeze up to:** unknown until the "
                                                                               "probes run")
    c1.markdown(f"**Source model:** {r.another_source_reason}")
    c2.markdown(f"**Expected label savings:** {r.label_savings}")

# ---------------------------------------------------------------- what is missing
store = app_state.job_store()
active = {kind: report.matching_jobs(setup, kind, store, done=False) for kind in ("efficiency", "finetune")}


def _launch(what: str, launch) -> None:
    try:
        job = launch()
    except TldiagError as exc:
        app_state.show_error(exc)
    else:
        st.toast(f"Launched {what}: {job.id}")
        st.rerun()


def _compute(what: tuple[str, ...]) -> None:
    try:
        result = app_state.analyses(setup, compute=what)
    except TldiagError as exc:
        app_state.show_error(exc)
        return
    for name in what:
        if name in result.errors:
            st.error(f"{report.ANALYSIS_TITLES[name]} could not run: {app_state.md_message(result.errors[name])}", icon="⚠️")
    if not any(name in result.errors for name in what):
        st.rerun()


if v.missing:
    st.subheader("Not computed yet")
    st.caption("The verdict uses whatever exists. Each analysis below adds a signal; jobs run in the background and "
               "this page updates when they finish.")
def _job_launcher(key: str):
    """How the Verdict page launches the job a missing analysis needs (its own page's defaults)."""
    if key == "efficiency":
        return "the data-efficiency experiment", lambda: app_state.launch_efficiency(configs.efficiency_config(setup),
                                                                                      None)
    if key == "finetune":
        return "fine-tuning", lambda: app_state.launch_finetune(
            configs.finetune_config(setup, model=app_state.model(setup.model, setup.resolution),
                                    dataset=app_state.dataset(setup.target_spec)), None)
    if key == "scratch" and analyses.finetune:
        from tldiag.training.finetune import FinetuneConfig

        twin = scratch_config(FinetuneConfig.from_dict(analyses.finetune["settings"]))
        return "the scratch baseline", lambda: app_state.launch_finetune(
            twin, f"{twin.model} → {twin.target} · scratch baseline")
    return None


for m in v.missing:  # each registered signal says what it lacks and how to get it (tldiag.decision.signals.SIGNALS)
    with st.container(border=True):
        c1, c2 = st.columns([3, 2])
        c1.markdown(f"**{m.title}**: adds {m.adds}.")
        kind = {"efficiency": "efficiency", "finetune": "finetune", "scratch": "finetune"}.get(m.key)
        running = active.get(kind) if kind else None
        launcher = _job_launcher(m.key) if m.action == "job" else None
        if running:
            job = running[0]
            c2.progress(job.progress, text=f"{job.status}: {job.message or 'starting'} ({job.id})")
            c2.page_link("pages/6_efficiency.py" if kind == "efficiency" else "pages/5_finetune.py",
                         label="Follow it on its page", icon="➡️")
        elif not m.action:
            c2.caption("Not available for this model.")
        elif not app_state.allowed("compute" if m.action == "compute" else "launch"):
            c2.caption("A runner or an admin computes this.")
        elif m.action == "compute" and c2.button(m.button, key=f"v_run_{m.key}", type="primary", help=m.help):
            _compute((m.key,))
        elif launcher is not None and c2.button(m.button, key=f"v_run_{m.key}", help=m.help):
            _launch(*launcher)


def _watch() -> None:
    """Rerun the page when a job it waits for ends."""
    still = [j for jobs in active.values() for j in jobs if store.get(j.id).active]
    if len(still) < sum(len(j) for j in active.values()):
        st.rerun()


if any(active.values()):
    st.fragment(run_every=2.0)(_watch)()

# ---------------------------------------------------------------- the record
st.subheader("Decision record")
st.caption("A self-contained HTML report (every figure and plotly.js inlined: it opens offline, in an email or a "
           "wiki) and the JSON manifest it embeds: versions, the model's weights hash, dataset fingerprints and sizes, "
           "taps, seeds, every metric with its settings, timings, the verdict and its reasons.")
stem = f"tldiag-{setup.model}-{setup.target}".replace(":", "-").replace("/", "-").replace("?", "-").replace("&", "-")
c1, c2 = st.columns(2)
app_state.download_button("Download the report (HTML)", record.html, file_name=f"{stem}.html", mime="text/html",
                          subject=record.manifest["permalink"], key="v_html", where=c1, type="primary", icon="📄")
app_state.download_button("Download the manifest (JSON)", record.json, file_name=f"{stem}.json",
                          mime="application/json", subject=record.manifest["permalink"], key="v_json", where=c2,
                          icon="🧾")
st.markdown("**Permalink**: this setup's Verdict page. Anyone with access to this dashboard reopens the same analysis "
            "from the cache.")
st.code(record.manifest["permalink"], language=None)
st.caption("Headless, for pipelines: `tldiag report --model M --source S --target T --html report.html --json "
           "manifest.json` (the same analyses, the same caches).")
with st.expander("Rules (thresholds) in use"):
    st.caption(f"From {rules.origin}. Change them with a TOML file named by TLDIAG_VERDICT_RULES (a file may hold only "
               f"the values it changes), or, as an admin, below; the defaults and their sources are in {RULES_FILE}.")
    st.dataframe(pd.DataFrame([{"rule": f"{section}.{key}", "value": value}
                               for section, values in rules.to_dict().items() if isinstance(values, dict)
                               for key, value in values.items()]), hide_index=True, width="stretch")
    if app_state.allowed("change_rules"):
        team = team_rules_path()
        text = st.text_area("The team's rules (TOML: only the values to change)", key="v_rules_text",
                            value=team.read_text() if team.is_file() else "# e.g.\n# [baseline]\n# margin = 0.03\n",
                            help=f"Saved to {team}; every verdict of this server (and tldiag report with the same "
                                 "TLDIAG_HOME) then reads them, unless TLDIAG_VERDICT_RULES names another file.")
        if st.button("Save the rules", key="v_rules_save"):
            try:
                app_state.save_rules(text)
            except TldiagError as exc:
                app_state.show_error(exc)
            else:
                st.rerun()
