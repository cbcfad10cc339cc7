"""A person's path through the dashboard in a real Chromium: open, compute, share the link."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_compute_embeddings_on_the_demo(page: Page, streamlit_url, artifacts):
    page.set_viewport_size({"width": 1400, "height": 1600})
    page.goto(f"{streamlit_url}/?limit=4")  # the built-in demo, 4 images per class
    expect(page.get_by_role("heading", name="Setup", exact=True)).to_be_visible(timeout=120_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    expect(page.get_by_text("Source and target share all 10 classes.")).to_be_visible()
    page.get_by_role("button", name="Compute embeddings").click()
    expect(page.get_by_text(re.compile(r"Embeddings ready: 40 source and 40 target images"))).to_be_visible(
        timeout=180_000)
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    # the grid draws on a canvas; its accessible cells are in the DOM but hidden
    expect(page.locator("[role=gridcell]", has_text=re.compile(r"^pre_logits$"))).to_have_count(1)
    page.screenshot(path=str(artifacts / "setup-computed.png"), full_page=True)
    # the URL holds the setup: a copied link reopens it
    assert "limit=4" in page.url and "model=efficientnet-lite0" in page.url


def test_preset_changes_the_permalink(page: Page, streamlit_url, artifacts):
    page.goto(f"{streamlit_url}/?limit=3")
    expect(page.get_by_role("heading", name="Setup", exact=True)).to_be_visible(timeout=120_000)
    page.get_by_text("Digits → rotated digits (demo)").click()
    expect(page).to_have_url(re.compile(r"shift%3Drotate"), timeout=60_000)
    page.goto(page.url)  # reopen the copied link
    expect(page.get_by_role("textbox", name="Target dataset")).to_have_value(
        "demo:digits?shift=rotate&severity=3", timeout=120_000)
    page.screenshot(path=str(artifacts / "setup-permalink.png"), full_page=True)


def test_shift_page_on_the_demo(page: Page, streamlit_url, artifacts):
    page.set_viewport_size({"width": 1400, "height": 2400})
    page.goto(f"{streamlit_url}/shift?limit=4")
    expect(page.get_by_role("heading", name="Domain shift")).to_be_visible(timeout=120_000)
    compute = page.get_by_role("button", name="Compute embeddings")
    heading = page.get_by_role("heading", name=re.compile("Which classes shifted most"))
    expect(compute.or_(heading)).to_be_visible(timeout=180_000)
    if compute.is_visible():  # this test may run before the embeddings are cached
        compute.click()
    expect(heading).to_be_visible(timeout=240_000)
    expect(page.get_by_test_id("stMetric").filter(has_text="MMD (seed scale)")).to_be_visible()
    expect(page.locator(".js-plotly-plot")).to_have_count(3, timeout=60_000)  # null, by depth, per class
    expect(page.get_by_text("Target images least like the source")).to_be_visible()
    expect(page.get_by_test_id("stImage").locator("img")).to_have_count(24)  # two galleries of 12
    page.screenshot(path=str(artifacts / "shift.png"), full_page=True)
    assert "limit=4" in page.url


def test_a_page_link_on_a_fresh_server_opens_inside_the_app(page: Page, fresh_streamlit_url):
    """A shared link to a page, opened first on a server, gets the app's navigation and sidebar
    (Streamlit would otherwise run that page alone in its legacy pages/ mode)."""
    page.goto(f"{fresh_streamlit_url}/shift?limit=3")
    expect(page.get_by_role("heading", name="Domain shift")).to_be_visible(timeout=120_000)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Current setup")).to_be_visible(timeout=30_000)
    expect(sidebar.get_by_role("link", name=re.compile("Shift"))).to_be_visible()
    expect(sidebar.get_by_text("app", exact=True)).to_have_count(0)


def test_explorer_box_selection_shows_the_images(page: Page, streamlit_url, artifacts):
    page.set_viewport_size({"width": 1400, "height": 1800})
    page.goto(f"{streamlit_url}/explorer?limit=4")
    expect(page.get_by_role("heading", name="Embedding explorer")).to_be_visible(timeout=120_000)
    compute = page.get_by_role("button", name="Compute embeddings")
    mixing = page.get_by_test_id("stMetric").filter(has_text="k-NN domain mixing")
    expect(compute.or_(mixing)).to_be_visible(timeout=180_000)
    if compute.is_visible():
        compute.click()
    expect(mixing).to_be_visible(timeout=240_000)
    expect(page.get_by_test_id("stMetric").filter(has_text="Images shown")).to_contain_text("80")
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts / "explorer.png"), full_page=True)
    # drag a box over the whole plotting area (the map's default drag mode is box select)
    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + 3, box["y"] + 3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] - 3, steps=5)
    page.mouse.up()
    expect(page.get_by_text(re.compile(r"80 selected: 40 source, 40 target"))).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stImage").locator("img")).to_have_count(48, timeout=30_000)  # the first 48
    page.screenshot(path=str(artifacts / "explorer-selection.png"), full_page=True)


def test_exported_map_shows_the_thumbnail_under_the_mouse(page: Page, tmp_path):
    """The downloadable HTML: hovering a point shows that point's image from the embedded sprite."""
    import numpy as np
    from PIL import Image

    from tldiag import viz
    from tldiag.projection import ProjectionParams, project

    rng = np.random.default_rng(0)
    proj = project(rng.normal(size=(30, 5)), rng.normal(size=(20, 5)) + 3, params=ProjectionParams(method="pca"),
                   use_cache=False)
    images = [Image.new("RGB", (20, 20), (5 * k, 0, 0)) for k in range(50)]
    html = tmp_path / "map.html"
    html.write_text(viz.figure_html(viz.projection_figure(proj), sprite=viz.thumbnail_sprite(images, cell=20),
                                    cell=20))
    page.goto(html.as_uri())
    page.locator(".js-plotly-plot").wait_for(timeout=30_000)
    x, y = page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot');
        const r = gd.querySelector('.nsewdrag').getBoundingClientRect(), t = gd._fullData[1];
        return [r.left + gd._fullLayout.xaxis.l2p(t.x[7]), r.top + gd._fullLayout.yaxis.l2p(t.y[7])]; }""")
    page.mouse.move(x, y)
    tip = page.locator("#tldiag-thumbnail")
    expect(tip).to_be_visible(timeout=10_000)
    expect(tip).to_contain_text(f"target #{proj.rows[37]}")
    # point 37 of the projection: column 37 % 8 = 5, row 4 of the sprite, drawn at 96 px per cell
    assert tip.locator("div").first.evaluate("e => e.style.backgroundPosition") == "-480px -384px"


def test_a_running_job_updates_live_and_cancels(page: Page, fresh_streamlit_url, tmp_path, artifacts):
    """The Fine-tune page follows a job without any click (st.fragment polling), and Cancel stops it."""
    from tldiag.training.finetune import FinetuneConfig
    from tldiag.training.jobs import JobStore, launch

    store = JobStore(tmp_path / "home" / "jobs")  # the server's TLDIAG_HOME
    config = FinetuneConfig(model="random:timm:test_resnet", target="demo:digits?limit=3", resolution=32, epochs=5000,
                            patience=0, num_workers=0)
    job = launch("finetune", config, store=store, name="long tiny run")
    page.set_viewport_size({"width": 1400, "height": 1800})
    page.goto(f"{fresh_streamlit_url}/finetune?model=random:timm:test_resnet&resolution=32&limit=3&target=demo:digits")
    # both the per-step and the end-of-epoch status read "running: epoch N/5000 ..."
    status = page.get_by_text(re.compile(r"^running: epoch \d+/5000"))
    expect(status).to_be_visible(timeout=180_000)
    first = status.inner_text()
    expect(status).not_to_have_text(first, timeout=30_000)  # it moved on by itself
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # the curves after the first epoch
    page.screenshot(path=str(artifacts / "finetune-live.png"), full_page=True)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text(re.compile(r"Cancelled after \d+ s"))).to_be_visible(timeout=60_000)
    assert store.get(job.id).status == "cancelled"


def test_data_efficiency_fills_in_live_and_ends_with_the_readouts(page: Page, fresh_streamlit_url, tmp_path,
                                                                  artifacts):
    """The Data efficiency page draws the chart from a running experiment's finished runs, then shows the
    readouts when it ends, without a click."""
    from tldiag.training.efficiency import EfficiencyConfig
    from tldiag.training.jobs import JobStore, launch

    store = JobStore(tmp_path / "home" / "jobs")  # the server's TLDIAG_HOME
    # a short small CNN may stay at chance (it then does not vote): the pixel baseline stands for scratch
    config = EfficiencyConfig(target="demo:digits?limit=12", resolution=32,
                              arms=("small-cnn", "pixel-linear", "linear-probe"),
                              budgets=(1, 2), repeats=3, device="cpu",
                              schedules={"small-cnn": {"epochs": 4, "min_epochs": 4, "min_epoch_images": 64}})
    job = launch("efficiency", config, store=store, name="tiny efficiency")
    page.set_viewport_size({"width": 1400, "height": 2000})
    page.goto(f"{fresh_streamlit_url}/efficiency?resolution=32&limit=12&target=demo:digits")
    expect(page.get_by_text(re.compile(r"^\d+ runs so far\.$"))).to_be_visible(timeout=180_000)
    page.screenshot(path=str(artifacts / "efficiency-live.png"), full_page=True)
    expect(page.get_by_text("Labels saved", exact=True)).to_be_visible(timeout=300_000)
    expect(page.get_by_text("Break-even (labels/class)", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"Gain at \d+ labels/class")).first).to_be_visible()
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "efficiency-result.png"), full_page=True)
    assert store.get(job.id).status == "done"
