"""A dataset whose folder, class and file names are HTML, script, Markdown links and path tricks, through every page
and the exported report in a real Chromium: the names show as text, and none of them becomes an element, a link or
running script (checked in the DOM)."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from .conftest import _serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# each payload, were it ever markup, would set window.__pwned (or open a dialog, or add a javascript: link)
CLASSES = ('<img src=x onerror="window.__pwned=1">', "[click](javascript:window.__pwned=2)",
           '<svg onload="window.__pwned=3">', "**loud** [home](https:example.com)",
           '<a href="https:example.com">here<a> <b>heavy<b>')
# Streamlit and plotly already refuse scripts and handlers; what they do render is their formatting (Markdown's
# strong text and links, plotly's <a> and <b>), so these are what would show if a name were not escaped
# (Streamlit's own chart theme bolds every plotly title, an empty one included, so a bold tspan alone proves
# nothing: the one to look for starts with the text a name would have put in bold)
FORMATTED = ("a[href*='example.com']", "strong:text-is('loud')", "b:text-is('heavy')",
             ".js-plotly-plot a", ".js-plotly-plot tspan[style*='bold']:text-matches('^(bold|heavy)')")
FILES = ("<script>window.__pwned=4<script>.png", "![x](javascript:window.__pwned=5).png", "..%2F..%2Fpasswd.png")
PAGES = (("Shift", "Domain shift"), ("Explorer", "Embedding explorer"), ("Probes", "Linear probes"),
         ("Fine-tune", "Fine-tune"), ("Data efficiency", "Data efficiency"), ("Verdict", "Verdict"))


def _hostile_folder(root: Path) -> Path:
    folder = root / "evil <b>bold<b> **x** `tick`"
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (24, 24), (80 * c, 40 * i, 200 - 60 * c)).save(folder / name / f"{i}.png")
        for f in FILES:
            Image.new("RGB", (24, 24), (10, 200 - 50 * c, 90)).save(folder / name / f)
    return folder


def _assert_inert(page: Page, where: str, dialogs: list) -> None:
    page.wait_for_timeout(800)  # an onerror/onload handler would have run by now
    assert page.evaluate("window.__pwned") is None, where
    assert not dialogs, (where, dialogs)
    for selector in ("img[src='x']", "[onerror]", "[onload]", "a[href^='javascript']", "b:has-text('bold')",
                     *FORMATTED):
        assert page.locator(selector).count() == 0, (where, selector, page.locator(selector).first.evaluate("e => e.parentElement.parentElement.outerHTML.slice(0, 600)") if page.locator(selector).count() else "")
    scripts = page.evaluate("[...document.scripts].map(s => s.textContent).filter(t => t.includes('__pwned'))")
    # the only scripts that may mention a name are data blocks (plotly's figure JSON, the report's manifest)
    assert all(not re.search(r"^\s*window\.__pwned", t) for t in scripts), where


def test_hostile_names_stay_text_on_every_page_and_in_the_report(page: Page, tmp_path, artifacts):
    folder = _hostile_folder(tmp_path)
    dialogs: list = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_viewport_size({"width": 1400, "height": 2000})
    query = f"model=random:timm:test_resnet&resolution=32&limit=6&target={quote('folder:' + str(folder))}"
    with _serve(tmp_path) as url:
        page.goto(f"{url}/?{query}")
        expect(page.get_by_role("heading", name="Setup", exact=True)).to_be_visible(timeout=120_000)
        page.get_by_role("button", name="Compute embeddings").click()
        expect(page.get_by_text(re.compile(r"Embeddings ready: \d+ source and 30 target images"))).to_be_visible(
            timeout=120_000)
        # the names are on the page as text: in Markdown, in the sidebar's spec, and on the class-count chart
        expect(page.get_by_text(CLASSES[0], exact=False).first).to_be_attached()
        expect(page.get_by_test_id("stSidebar").get_by_text("evil <b>bold<b> **x** `tick`", exact=False)
               ).to_be_attached()
        assert page.locator(".js-plotly-plot text", has_text=CLASSES[2]).count() >= 1
        _assert_inert(page, "Setup", dialogs)
        for link, heading in PAGES:
            page.get_by_test_id("stSidebar").get_by_role("link", name=re.compile(link)).click()
            expect(page.get_by_role("heading", name=re.compile(heading)).first).to_be_visible(timeout=120_000)
            page.wait_for_load_state("networkidle")
            running = page.get_by_test_id("stStatusWidget")
            expect(running).to_have_count(0, timeout=300_000)  # the page's computations are over
            _assert_inert(page, link, dialogs)
        page.screenshot(path=str(artifacts / "hostile-verdict.png"), full_page=True)
        with page.expect_download(timeout=120_000) as got:
            page.get_by_role("button", name="Download the report (HTML)").click()
        report = tmp_path / "report.html"
        got.value.save_as(report)
    page.goto(report.as_uri())
    expect(page.get_by_text("requested by", exact=False).first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("evil <b>bold<b> **x** `tick`", exact=False).first).to_be_attached()
    _assert_inert(page, "the HTML report", dialogs)
