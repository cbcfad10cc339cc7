"""Every page runs under AppTest without an exception; the Setup page computes embeddings."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))


def _app(**query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    for k, v in query.items():
        at.query_params[k] = v
    return at


pytestmark = pytest.mark.usefixtures("at_repo_root")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs(page):
    at = _app(model="random:timm:test_resnet", resolution="48", limit="2").run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]


def test_setup_page_computes_embeddings_from_a_link():
    at = _app(model="random:timm:test_resnet", resolution="48", limit="3",
              target="demo:digits?shift=rotate&severity=2").run()
    assert not at.exception
    assert at.title[0].value == "Setup"
    assert at.session_state["setup"].target == "demo:digits?shift=rotate&severity=2"
    assert at.text_input(key="w_target").value == "demo:digits?shift=rotate&severity=2"
    at.button(key="compute").click().run()
    assert not at.exception
    done = [s.value for s in at.success if s.value.startswith("Embeddings ready")]
    assert done and "30 source and 30 target images" in done[0]
    table = at.dataframe[-1].value
    assert list(table["layer"])[-1] == "logits" and set(table["n_source"]) == {30}


def test_bad_input_shows_an_error_not_a_traceback(tmp_path):
    at = _app(model="random:timm:test_resnet", resolution="48", limit="2").run()
    at.text_input(key="w_source").set_value(f"folder:{tmp_path / 'missing'}").run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_preset_fills_the_dataset_fields():
    at = _app(model="random:timm:test_resnet", resolution="48", limit="2").run()
    at.radio(key="w_preset").set_value("Digits → rotated digits (demo)").run()
    assert not at.exception
    assert at.text_input(key="w_target").value == "demo:digits?shift=rotate&severity=3"
    assert at.session_state["setup"].target == "demo:digits?shift=rotate&severity=3"


def test_model_that_needs_a_download_explains_itself(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(self, *args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    at = _app(limit="2").run()
    at.selectbox(key="w_model").set_value("torchvision:resnet18:IMAGENET1K_V1").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "resnet18-f37072fd.pth" in errors[0] and "not cached" in errors[0]


def test_unlabelled_target_folder(make_folder):
    flat = make_folder(flat=6, name="unlabelled")
    at = _app(model="random:timm:test_resnet", resolution="48", limit="2", target=f"folder:{flat}").run()
    assert not at.exception
    assert any("target is unlabelled" in w.value for w in at.warning)
    at.button(key="compute").click().run()
    assert not at.exception
    assert any("20 source and 2 target images" in s.value for s in at.success)  # limit: 2 in all


def test_shift_page_computes_and_reports():
    at = _app(model="random:timm:test_resnet", resolution="48", limit="4", target="demo:digits?shift=invert").run()
    at.switch_page("pages/2_shift.py").run()
    assert not at.exception
    assert any("not computed yet" in i.value for i in at.info)
    at.button(key="compute_here").click().run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["MMD (seed scale)", "Domain classifier accuracy", "Proxy A-distance",
                                            "Usable source (ESS)"]
    assert at.selectbox(key="w_shift_layer").value == "pre_logits"
    lights = [*at.success, *at.warning, *at.error]
    assert len(lights) == 1 and "MMD" in lights[0].value
    assert len(at.get("plotly_chart")) == 3  # null histogram, by depth, per class
    assert len(at.get("image")) == 2  # the two galleries
    assert any("Per-class table" in e.label for e in at.expander)
    # stricter thresholds re-colour without recomputing; a bad pair is explained
    at.number_input(key="w_mmd_green").set_value(0.0).run()
    at.number_input(key="w_mmd_red").set_value(0.01).run()
    assert not at.exception and any("≥ 0.01" in e.value for e in at.error)
    at.number_input(key="w_mmd_green").set_value(0.5).run()
    assert any(r"green \< red, got green=0.5 and red=0.01" in e.value for e in at.error)  # escaped: shows as typed
    # another layer
    at.number_input(key="w_mmd_green").set_value(0.1)
    at.number_input(key="w_mmd_red").set_value(0.5).run()
    first = at.selectbox(key="w_shift_layer").options[0]
    at.selectbox(key="w_shift_layer").set_value(first).run()
    assert not at.exception and at.subheader[0].value.startswith(first)


def test_explorer_page_maps_scores_and_recolours():
    at = _app(model="random:timm:test_resnet", resolution="48", limit="8", target="demo:digits?shift=rotate&severity=3").run()
    at.switch_page("pages/3_explorer.py").run()
    assert not at.exception
    at.button(key="compute_here").click().run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["k-NN domain mixing", "Trustworthiness of the map", "Images shown"]
    assert at.metric[2].value == "160"  # 8 per class x 10 classes x 2 domains
    assert 0.0 <= float(at.metric[0].value) <= 1.2 and 0.5 < float(at.metric[1].value) <= 1.0
    assert at.selectbox(key="w_map_layer").value == "pre_logits"
    assert any(c.value.startswith("UMAP · euclidean · PCA 50 · 15 neighbours") for c in at.caption)
    assert len(at.get("plotly_chart")) == 3  # map, small multiples, per-class mixing
    assert len(at.get("download_button")) == 2
    for colour in ("class", "p_target"):
        at.segmented_control(key="w_map_color").set_value(colour).run()
        assert not at.exception
    at.segmented_control(key="w_map_method").set_value("pca").run()
    assert not at.exception and any(c.value.startswith("PCA · euclidean") for c in at.caption)
    at.toggle(key="w_map_hover").set_value(True).run()  # the hover-thumbnail view (an iframe)
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_explorer_page_explains_bad_settings():
    at = _app(model="random:timm:test_resnet", resolution="48", limit="1").run()
    at.switch_page("pages/3_explorer.py").run()
    at.button(key="compute_here").click().run()
    assert not at.exception
    # 10 + 10 images cannot have 60 neighbours: a clear message, not a traceback
    at.slider(key="w_map_neighbors").set_value(60).run()
    assert not at.exception
    assert any("n_neighbors=60 needs more than 60 images, but the sample has 20" in e.value for e in at.error)


def test_probes_page_curves_scores_and_leaderboard():
    at = _app(model="random:timm:test_resnet", resolution="48", limit="5",
              target="demo:digits?shift=rotate&severity=3").run()
    at.switch_page("pages/4_probes.py").run()
    assert not at.exception
    at.button(key="compute_here").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.label for m in at.metric][:4] == ["Recommended cut", "Best tap", "Gain over random init",
                                                "Chance (majority class)"]
    assert at.metric[3].value == "0.100"  # 10 balanced classes
    assert at.metric[2].value == "—"  # a random model has no random-init twin
    assert [m.label for m in at.metric][4:] == ["LEEP", "NCE"]
    assert len(at.get("plotly_chart")) == 2  # curves, scores by tap
    # the leaderboard: one candidate, evaluated on click, with its row
    at.multiselect(key="w_board_models").set_value(["random:timm:test_resnet"]).run()
    at.button(key="run_board").click().run()
    assert not at.exception, [e.value for e in at.exception]
    board = at.dataframe[1].value  # [0] is the per-tap table in its expander
    assert list(board["model"]) == ["random:timm:test_resnet"] and 0 <= board["probe acc"][0] <= 1
    assert any("at least 3 models" in c.value for c in at.caption)


def test_shift_page_thresholds_default_to_the_team_rules(tmp_path, monkeypatch):
    """The traffic light starts from the verdict's [divergence] thresholds, the team's when an admin saved them."""
    from tldiag import _config
    from tldiag.decision.verdict import RULES_FILE, team_rules_path

    text = RULES_FILE.read_text().replace("mmd_green = 0.1 ", "mmd_green = 0.07").replace("mmd_red = 0.5 ",
                                                                                            "mmd_red = 0.35")
    assert "mmd_green = 0.07" in text and "mmd_red = 0.35" in text
    monkeypatch.setenv("TLDIAG_HOME", str(tmp_path))
    assert team_rules_path() == _config.home() / "verdict_rules.toml"
    team_rules_path().write_text(text)
    at = _app(model="random:timm:test_resnet", resolution="48", limit="4", target="demo:digits?shift=invert").run()
    at.switch_page("pages/2_shift.py").run()
    at.button(key="compute_here").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert (at.number_input(key="w_mmd_green").value, at.number_input(key="w_mmd_red").value) == (0.07, 0.35)
    assert any("0.07 / 0.35" in c.value for c in at.caption)
