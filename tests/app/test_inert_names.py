"""File, class-folder and dataset names typed by users are inert: never markup on a page, never HTML in the report."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = {"<img src=x onerror=alert(1)>": 3, "[click](javascript:alert(1))": 3, "``tick`` **bold**": 3}
pytestmark = pytest.mark.usefixtures("at_repo_root")


def test_md_text_and_md_code_keep_markup_as_text(monkeypatch):
    import app_state

    assert app_state.md_text("[x](javascript:alert(1)) <b>*y*</b>") == \
        r"\[x\]\(javascript:alert\(1\)\) \<b\>\*y\*\</b\>"
    assert app_state.md_code("folder:/data/a`b") == "``folder:/data/a`b``"
    assert app_state.md_code("``x``") == "``` ``x`` ```"  # padded: a fence next to a backtick would merge


def test_md_message_keeps_values_inert_and_prose_readable():
    import app_state

    msg = "No class '[x](javascript:alert(1))' or '<img src=x onerror=alert(1)>' in folder:/d/`a`; use $HOME, limit=3."
    assert app_state.md_message(msg) == (r"No class '\[x\](javascript:alert(1))' or '\<img src=x onerror=alert(1)\>' in "
                                         r"folder:/d/\`a\`; use \$HOME, limit=3.")
    assert app_state.md_message("- a\n# b\n1. c") == "\\- a  \n\\# b  \n\\1. c"  # no list, heading, numbering


def test_plot_labels_show_names_as_typed():
    """Plotly reads <b>, <br>, <a href> in labels: a class name reaches a figure with its markup as entities."""
    from types import SimpleNamespace

    import numpy as np

    from tldiag import viz

    fig = viz.class_counts_figure({"<b>x</b>": 2, "a&b": 1}, {"<b>x</b>": 1})
    assert list(fig.data[0].x) == ["&lt;b&gt;x&lt;/b&gt;", "a&amp;b"]
    labels = np.array(["<a href='http://evil'>cat</a>", "dog"])
    proj = SimpleNamespace(coords=np.zeros((2, 2)), labels=labels, domain=np.array([0, 1]), rows=np.array([0, 0]))
    fig = viz.projection_figure(proj, color="class")
    names = {t.name for t in fig.data}
    assert "&lt;a href='http://evil'&gt;cat&lt;/a&gt;" in names and not any("<a" in n for n in names)
    hover = {row[5] for t in fig.data for row in t.customdata}
    assert hover == {"&lt;a href='http://evil'&gt;cat&lt;/a&gt;", "dog"}
    assert {row[3] for t in fig.data for row in t.customdata} == set(labels)  # the export's caption: set as text


def test_a_hostile_target_folder_renders_as_typed(make_folder):
    import app_state

    folder = make_folder(HOSTILE, name="evil `<script>alert(1)</script>` x")  # a backtick would end a code span
    spec = f"folder:{folder}"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(model="random:timm:test_resnet", resolution="32", limit="3", target=spec)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert app_state.md_code(spec) in sidebar and app_state.md_code(spec).startswith("``")
    assert f"**Target** `{spec}`" not in sidebar  # a one-backtick span would close inside the name
    bodies = [m.value for m in (*at.markdown, *at.warning, *at.success, *at.error)]
    for text in bodies:  # every class name that reaches Markdown is escaped or inside a code span
        for name in HOSTILE:
            if name in text:
                assert f"`{spec}`" in text or text.count("`") >= 2, text


def test_the_html_report_escapes_names(make_folder, tiny_model_id):
    from tldiag.decision.report import build_record, embedded_manifest, gather
    from tldiag.setup import Setup

    folder = make_folder(HOSTILE, name="evil <script>alert(1)</script>")
    setup = Setup(model=tiny_model_id, source="demo:digits", target=f"folder:{folder}", resolution=32, limit=3)
    record = build_record(gather(setup, compute=("shift",)))
    html = record.html()
    # outside the script blocks (plotly.js, the figures, the embedded manifest) no name is markup; a name that
    # closed a script block early ("</script>" in its JSON) would leave the rest of that block out here too
    outside = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)
    for raw in ("<script>alert(1)</script>", "<img src=x onerror", "javascript:alert"):
        assert raw not in outside, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in outside  # the folder name, shown as text
    assert embedded_manifest(html) == record.manifest  # no name ended the manifest's script block early
