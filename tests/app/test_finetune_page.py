"""The Fine-tune page under AppTest: launch a real job, see it live, see the result card, register the model."""
from __future__ import annotations

import pytest

from tldiag.training.finetune import FinetuneConfig
from tldiag.training.jobs import launch
from tldiag.training.jobs import JobStore
from tldiag.models import list_models

QUERY = dict(model="random:timm:test_resnet", resolution="32", limit="3", target="demo:digits")
PAGE = "pages/5_finetune.py"


def test_the_form_shows_the_recommendation_and_the_plan(open_page):
    at = open_page(PAGE, QUERY)
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="w_ft_strategy").value == "full"  # random init: train everything from scratch
    captions = " ".join(c.value for c in at.caption)
    assert "Recommended because: The model has random weights" in captions
    assert "10 training, 10 validation and 10 test images in 10 classes" in captions
    assert "augmentation light" in captions
    assert any("No fine-tuning jobs yet" in i.value for i in at.info)
    at.selectbox(key="w_ft_strategy").set_value("partial").run()
    assert at.slider(key="w_ft_frozen").value == 4
    assert "the stem and these stages keep" in at.slider(key="w_ft_frozen").help.lower()


@pytest.mark.slow
def test_launch_follow_and_register(open_page, tmp_path):
    at = open_page(PAGE, QUERY)
    at.number_input(key="w_ft_epochs").set_value(2).run()
    at.button(key="launch_ft").click().run()
    assert not at.exception, [e.value for e in at.exception]
    store = JobStore()
    (job,) = store.list()
    assert job.config["epochs"] == 2 and job.config["model"] == "random:timm:test_resnet"
    assert at.session_state["w_ft_job"] == job.id
    assert job.active and any("Cancel" == b.label for b in at.button)  # the live view while it runs
    done = store.wait(job.id, timeout=300)
    assert done.status == "done", done.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {m.label: m.value for m in at.metric}
    assert labels["Fine-tuned test accuracy"] == f"{done.result['test_accuracy']:.3f}"
    assert labels["From scratch"] == "—"  # the model is itself random: no scratch twin of a random model
    at.text_input(key=f"reg_name_{job.id}").set_value("tiny-ft").run()
    at.button(key=f"register_{job.id}").click().run()
    assert not at.exception
    assert any("Registered `finetuned:tiny-ft`" in s.value for s in at.success)
    assert "finetuned:tiny-ft" in [m.id for m in list_models()]
    table = at.dataframe[-1].value
    assert list(table["status"]) == ["done"] and list(table["id"]) == [job.id]


def test_failed_and_cancelled_jobs_show_why(open_page):
    store = JobStore()
    bad = store.submit("finetune", {**FinetuneConfig(model="random:timm:test_resnet", target="demo:digits?limit=3",
                                                     resolution=32).to_dict(), "lr": -1.0})
    store.wait(bad.id, timeout=120)
    at = open_page(PAGE, QUERY)
    assert not at.exception, [e.value for e in at.exception]
    assert any("lr=-1.0 must be a number" in e.value for e in at.error)  # the job's own check, from its record
    queued = launch("finetune", FinetuneConfig(model="random:timm:test_resnet", target="demo:digits?limit=3",
                                               resolution=32, epochs=50), store=store)
    store.cancel(queued.id)
    at.run()
    at.selectbox(key="w_ft_job").set_value(queued.id).run()
    assert any("Cancelled after" in w.value for w in at.warning)


def test_a_one_epoch_run_can_be_planned(open_page):
    """The warm-up shrinks to half an epoch (it must end before the last epoch)."""
    at = open_page(PAGE, QUERY)
    at.number_input(key="w_ft_epochs").set_value(1).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "launch_ft" in {b.key for b in at.button}
