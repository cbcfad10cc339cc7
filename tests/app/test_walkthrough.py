"""End to end in a real Chromium: the demo through every page in order, as a new user would walk it, ending with the
verdict and its export. Each page must show its result; the screenshots stay in test-artifacts/walkthrough/."""
from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tldiag.decision.report import embedded_manifest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
QUERY = "limit=4&resolution=32"  # the demo (handwritten → printed digits), small enough for a CI machine


def _go(page: Page, name: str) -> None:
    """Open a page through the sidebar's navigation (the session and its setup carry over)."""
    page.get_by_test_id("stSidebar").get_by_role("link", name=re.compile(name)).click()


def _set_number(page: Page, label: str, value: int) -> None:
    box = page.get_by_role("spinbutton", name=label)
    expect(box).to_be_visible(timeout=120_000)
    box.fill(str(value))
    box.press("Enter")


def _card(page: Page, title: str):
    """A signal card's title (bold on the Verdict page; the forest plot's axis repeats some titles as SVG text)."""
    return page.locator("strong", has_text=re.compile(rf"^{re.escape(title)}$"))


def _done(page: Page, locator, timeout_s: float) -> None:
    expect(locator).to_be_visible(timeout=timeout_s * 1000)
    page.wait_for_timeout(500)  # let the last elements of the run draw before the screenshot


def test_the_demo_from_setup_to_an_exported_verdict(page: Page, fresh_streamlit_url, artifacts):
    shots = artifacts / "walkthrough"
    shots.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 2000})

    # 1. Setup: the team's label budget, then the embeddings of the demo
    page.goto(f"{fresh_streamlit_url}/?{QUERY}")
    expect(page.get_by_role("heading", name="Setup", exact=True)).to_be_visible(timeout=120_000)
    _set_number(page, "Label budget per class (0 = all)", 2)
    page.wait_for_url(re.compile(r"budget=2"), timeout=60_000)
    page.get_by_role("button", name="Compute embeddings").click()
    _done(page, page.get_by_text(re.compile(r"Embeddings ready: 40 source and 40 target images")), 240)
    page.screenshot(path=str(shots / "1-setup.png"), full_page=True)

    # 2. Shift: the tests of every layer
    _go(page, "Shift")
    _done(page, page.get_by_role("heading", name=re.compile("Which classes shifted most")), 300)
    expect(page.get_by_test_id("stMetric").filter(has_text="MMD (seed scale)")).to_be_visible()
    page.screenshot(path=str(shots / "2-shift.png"), full_page=True)

    # 3. Explorer: the UMAP map and its scores
    _go(page, "Explorer")
    _done(page, page.get_by_test_id("stMetric").filter(has_text="k-NN domain mixing"), 300)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "3-explorer.png"), full_page=True)

    # 4. Probes: the curves and the recommended cut
    _go(page, "Probes")
    _done(page, page.get_by_test_id("stMetric").filter(has_text="Recommended cut"), 400)
    expect(page.get_by_test_id("stMetric").filter(has_text="Gain over random init")).to_be_visible()
    page.screenshot(path=str(shots / "4-probes.png"), full_page=True)

    # 5. Data efficiency: one repeat of every arm (more draws at small budgets and at the readouts' budget), short
    # schedules, launched from the page, followed to its readouts
    _go(page, "Data efficiency")
    _set_number(page, "Repeats (label subsets)", 1)
    # a quick first look: every trained arm capped at 2 epochs of ≥ 32 images
    _set_number(page, "Epochs of the trained arms", 2)
    _set_number(page, "Images per epoch", 32)
    expect(page.get_by_text(re.compile(r"× 8(, \d+)* draws · \d+ trained runs"))).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Launch the experiment").click()
    _done(page, page.get_by_text("Labels saved", exact=True), 1200)  # 8 draws at 1 label/class, 6 at "all"
    page.screenshot(path=str(shots / "5-efficiency.png"), full_page=True)

    # 6. Fine-tune: a tiny job (one epoch), launched from the page, followed to its result card
    _go(page, "Fine-tune")
    _set_number(page, "Epochs (at most)", 1)
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Launch fine-tuning").click()
    _done(page, page.get_by_test_id("stMetric").filter(has_text="Fine-tuned test accuracy"), 400)
    page.screenshot(path=str(shots / "6-finetune.png"), full_page=True)

    # 7. Verdict: every analysis above is read; the scratch baselines at the budget run from the page
    _go(page, "Verdict")
    decision = page.get_by_role("heading", name=re.compile(r"^(GO|CAUTION|NO-GO)\b"))
    _done(page, decision, 180)
    expect(page.get_by_text(re.compile(r"Label budget: 2 labels per class"))).to_be_visible()
    page.get_by_role("button", name="Run the scratch baselines").click()
    _done(page, _card(page, "Transfer vs the best scratch baseline at your budget"), 400)
    expect(page.get_by_role("heading", name="Transfer against training from scratch at 2 labels per class")) \
        .to_be_visible()
    for title in ("Divergence at the penultimate layer", "Transferability score (LogME)",
                  "Linear probe vs random-init floor", "Data efficiency at your budget (scratch vs transfer)",
                  "Fine-tuning result"):
        expect(_card(page, title)).to_be_visible()
    # the measured gains against their margins (the forest plot names the same signals on its axis)
    expect(page.get_by_role("heading", name="Measured gains against their margins")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^Recommended recipe: "))).to_be_visible()
    expect(page.get_by_text("From-scratch baseline", exact=True)).to_be_visible()
    page.screenshot(path=str(shots / "7-verdict.png"), full_page=True)
    assert "/verdict?" in page.url and "limit=4" in page.url and "budget=2" in page.url

    # 8. Export: the HTML report and the JSON manifest, one click each
    with page.expect_download(timeout=120_000) as got:
        page.get_by_role("button", name="Download the report (HTML)").click()
    report = shots / "report.html"
    got.value.save_as(report)
    with page.expect_download(timeout=60_000) as got:
        page.get_by_role("button", name="Download the manifest (JSON)").click()
    manifest_path = shots / "manifest.json"
    got.value.save_as(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    shown = re.match(r"(NO-GO|GO|CAUTION)", decision.inner_text().strip()).group(1)
    assert manifest["verdict"]["decision"] == shown
    assert set(manifest["computed"]) == {"shift", "probes", "baselines", "projection", "efficiency", "finetune"}
    assert manifest["budget"] == 2 and manifest["verdict"]["budget"] == "2 labels per class"
    assert embedded_manifest(report.read_text())["verdict"] == manifest["verdict"]

    # the report opens offline and shows every figure
    page.route("**/*", lambda route: route.abort() if route.request.url.startswith("http") else route.continue_())
    page.goto(report.as_uri())
    expect(page.get_by_text(shown, exact=True).first).to_be_visible(timeout=30_000)
    # the measured gains against their margins, divergence and probes by depth, UMAP, data efficiency, training curves
    # and the CKA change
    expect(page.locator(".js-plotly-plot")).to_have_count(7, timeout=60_000)
    page.screenshot(path=str(shots / "8-report.png"), full_page=True)

    # 9. The source-model preset: a model trained on the handwritten digits, asked about the printed ones
    page.unroute("**/*")
    page.goto(f"{fresh_streamlit_url}/?{QUERY}")
    expect(page.get_by_role("heading", name="Setup", exact=True)).to_be_visible(timeout=120_000)
    page.get_by_text("A model trained on handwritten digits → printed digits (demo)").click()
    page.wait_for_url(re.compile(r"model=finetuned%3Ademo-digits-lite0.*resolution=128"), timeout=240_000)
    page.get_by_role("button", name="Compute embeddings").click()
    _done(page, page.get_by_text(re.compile(r"Embeddings ready: 40 source and 40 target images")), 300)
    _go(page, "Shift")
    _done(page, page.get_by_role("heading", name="What the shift costs the source model"), 300)
    expect(page.get_by_test_id("stMetric").filter(has_text="Target accuracy, no adaptation")).to_be_visible()
    held_out = page.get_by_test_id("stMetric").filter(has_text="Held-out source accuracy")
    assert float(held_out.get_by_test_id("stMetricValue").inner_text()) >= 0.7  # it knows its own source
    page.screenshot(path=str(shots / "9-source-model.png"), full_page=True)
    _go(page, "Verdict")
    _done(page, page.get_by_text("Source model on the target, no adaptation", exact=True), 300)
