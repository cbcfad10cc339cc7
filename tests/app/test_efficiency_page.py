"""The Data efficiency page under AppTest: the plan before launch, a real experiment, its chart and readouts."""
from __future__ import annotations

import pytest

from tldiag.training.jobs import JobStore

QUERY = dict(model="efficientnet-lite0", resolution="32", limit="12", target="demo:digits")
PAGE = "pages/6_efficiency.py"


def test_the_form_shows_the_plan_and_the_cpu_settings(open_page):
    at = open_page(PAGE, QUERY)
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    # the split's 2 test images per class and the spare labelled ones up to the tests' cap of 20 per class
    assert "80 pool, 20 validation and 200 test images in 10 classes" in captions
    # the small CNN at 4 budgets x (8, 4, 3, 6) draws + 2 more learning rates; on a CPU fine-tuning at the budget only
    # ("all", the one the readouts answer for: 6 draws + 2)
    assert "budgets 1, 2, 5, all × 8, 4, 3, 6 draws · 31 trained runs · cpu settings on cpu" in captions
    assert "Budgets 10, 20, 50, 100 per class are at or above the 8 pool images" in captions
    assert "same-architecture scratch arm is left out on a CPU" in captions
    table = at.dataframe[0].value
    assert list(table["arm"]) == ["Scratch (small CNN)", "Transfer, fine-tuned"]
    assert "CPU setting" in table["note"].iloc[1] and table["settings"].iloc[0].startswith("32 px, ≤ 12 epochs")
    assert table["settings"].iloc[1].endswith("at your budget only")
    assert all("× {0.3, 1, 3} searched on validation" in s for s in table["settings"])
    assert any("No experiments yet" in i.value for i in at.info)
    at.multiselect(key="w_eff_arms").set_value(["small-cnn", "scratch"]).run()
    assert any("compare nothing" in e.value for e in at.error)


def test_a_random_init_model_is_explained(open_page):
    at = open_page(PAGE, QUERY, model="random:efficientnet-lite0")
    assert not at.exception
    assert any("no transfer to measure" in e.value for e in at.error)


@pytest.mark.slow
def test_launch_and_read_the_result(open_page):
    at = open_page(PAGE, QUERY)
    # a 2-epoch small CNN may stay at chance (it then does not vote): the pixel baseline stands for scratch
    at.multiselect(key="w_eff_arms").set_value(["small-cnn", "pixel-linear", "linear-probe"]).run()
    at.multiselect(key="w_eff_budgets").set_value([1]).run()
    at.number_input(key="w_eff_repeats").set_value(2).run()
    at.number_input(key="w_eff_epochs").set_value(2).run()  # a quick first look: every trained arm capped
    at.number_input(key="w_eff_epoch_images").set_value(48).run()
    assert at.dataframe[0].value["settings"].iloc[0].startswith("32 px, ≤ 2 epochs of ≥ 48 images")
    at.button(key="launch_eff").click().run()
    assert not at.exception, [e.value for e in at.exception]
    store = JobStore()
    (job,) = store.list(kind="efficiency")
    assert job.config["arms"] == ["small-cnn", "pixel-linear", "linear-probe"] and job.config["repeats"] == 2
    assert job.config["schedules"] == {"small-cnn": {"epochs": 2, "min_epoch_images": 48}}
    assert at.session_state["w_eff_job"] == job.id
    done = store.wait(job.id, timeout=300)
    assert done.status == "done", done.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {m.label for m in at.metric}
    assert {"Labels saved", "Break-even (labels/class)"} <= labels
    assert any(label.startswith("Gain at all (8) labels/class") for label in labels)
    flags = [*at.error, *at.warning, *at.success]
    assert any("transfer" in f.value.lower() for f in flags)
    assert any(md.value.startswith("- To reach") or md.value.startswith("- No transfer arm") for md in at.markdown)
    at.slider(key=f"target_{job.id}").set_value(0.3).run()
    assert not at.exception, [e.value for e in at.exception]
