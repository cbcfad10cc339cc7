import pytest

from tldiag.errors import SpecError
from tldiag.setup import PRESETS, Setup


def test_query_roundtrip():
    setup = Setup(model="random:efficientnet-lite0", source="demo:digits",
                  target="demo:digits?shift=blur&severity=2", resolution=None, limit=20,
                  taps=("blocks.1", "pre_logits"), seed=3, budget=7)
    assert Setup.from_query(setup.to_query()) == setup
    assert Setup.from_query(setup.to_query()).budget == 7 and "budget" not in Setup().to_query()


def test_empty_query_is_the_demo():
    assert Setup.from_query({}) == Setup()
    assert PRESETS["Handwritten → printed digits (demo)"] == (Setup().source, Setup().target)


def test_limit_is_applied_unless_the_spec_has_one():
    setup = Setup(limit=10, seed=2)
    assert setup.with_limit("demo:digits") == "demo:digits?limit=10&seed=2"
    assert setup.with_limit("demo:digits?limit=3") == "demo:digits?limit=3"
    assert Setup(limit=None).with_limit("demo:digits") == "demo:digits"


def test_bad_url_values():
    with pytest.raises(SpecError, match="resolution='big'"):
        Setup.from_query({"resolution": "big"})
    with pytest.raises(SpecError, match="Unknown model id"):
        Setup(model="gpt").validate()


@pytest.mark.parametrize("budget, match", [(0, "budget=0 must be a whole number"), (-3, "budget=-3"),
                                           (2.5, "budget=2.5")])
def test_bad_budgets(budget, match):
    with pytest.raises(SpecError, match=match):
        Setup(budget=budget).validate()


def test_a_budget_the_target_cannot_hold_is_refused():
    from tldiag.data import load_dataset

    target = load_dataset("demo:digits?limit=5")
    Setup(budget=5).check_budget(target)
    with pytest.raises(SpecError, match="budget=6 labels per class is more than the target holds: its largest class "
                                        "has 5 labelled images"):
        Setup(budget=6).check_budget(target)
