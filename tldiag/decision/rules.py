"""The verdict's rules: every threshold and margin, read from ``verdict_rules.toml`` (shipped), the team's copy an
admin edits on the Verdict page, or a file named by ``TLDIAG_VERDICT_RULES``; and the decisions they give."""
from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from ..errors import TldiagError


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib
GO, CAUTION, NO_GO, INFO = "GO", "CAUTION", "NO-GO", "INFO"
DECISIONS = (GO, CAUTION, NO_GO)
MEASURED, PREDICTED = "measured", "predicted"
RULES_FILE = Path(__file__).with_name("verdict_rules.toml")
RULES_ENV = "TLDIAG_VERDICT_RULES"


@dataclass(frozen=True)
class DivergenceRules:
    mmd_green: float = 0.1
    mmd_red: float = 0.5
    alpha: float = 0.05


@dataclass(frozen=True)
class TransferabilityRules:
    logme_gap_go: float = 0.1
    logme_gap_no_go: float = 0.0


@dataclass(frozen=True)
class GainRules:
    """The probe against the random-init floor (context: it does not vote; kept for the Probes page's note)."""

    gain_go: float = 0.05
    gain_no_go: float = 0.0


@dataclass(frozen=True)
class MarginRules:
    """A measured gain of transfer over scratch, read with its 95% interval against one worthwhile-gain ``margin``:

    * GO when the gain reaches the margin and its interval lies above 0;
    * NO-GO when the interval's upper end is below the margin (transfer cannot be worth it at this budget), or
      scratch is ahead with its interval clear of 0;
    * otherwise CAUTION: the interval reaches both sides, so the sample cannot tell (it never reads as a NO-GO).

    Set from the scenario panel (``python -m tldiag.bench verdict --sweep``)."""

    margin: float = 0.03


LEGACY_GAIN_KEYS = ("gain_go", "gain_no_go")
"""Keys of the measured sections before the verdict read intervals (issue 28): refused with the new key named."""


@dataclass(frozen=True)
class RecipeRules:
    headroom: float = 0.02
    finetune_over_probe: float = 0.01


@dataclass(frozen=True)
class PageRules:
    """The notes the analysis pages show beside their numbers (they do not vote): the Shift page's "the two signals
    measure different things" from ``shift_separable_pad`` (PAD, with an MMD that is not red), the Explorer's
    "the target forms its own islands" below ``explorer_islands_mixing`` (k-NN mixing), the Probes page's "barely
    better than random weights" below ``probes_floor_gain`` (probe minus the random-init floor)."""

    shift_separable_pad: float = 1.5
    explorer_islands_mixing: float = 0.3
    probes_floor_gain: float = 0.02


@dataclass(frozen=True)
class Rules:
    """The thresholds of every signal (see ``verdict_rules.toml`` for what each means and where it comes from).

    Attributes:
        origin: Where they were read from ("defaults" or a file path), for the record.
    """

    divergence: DivergenceRules = DivergenceRules()
    transferability: TransferabilityRules = TransferabilityRules()
    probe: GainRules = GainRules()
    baseline: MarginRules = MarginRules()
    efficiency: MarginRules = MarginRules()
    finetune: MarginRules = MarginRules()
    recipe: RecipeRules = RecipeRules()
    pages: PageRules = PageRules()
    origin: str = "defaults"

    def validate(self) -> "Rules":
        d, t, p, e, f, r = (self.divergence, self.transferability, self.probe, self.efficiency, self.finetune,
                            self.recipe)
        b = self.baseline
        checks = [
            (0 <= d.mmd_green < d.mmd_red, f"divergence.mmd_green={d.mmd_green!r} must be >= 0 and below "
                                           f"divergence.mmd_red={d.mmd_red!r} (defaults 0.1 and 0.5)"),
            (0 < d.alpha < 1, f"divergence.alpha={d.alpha!r} must be a significance level in (0, 1), e.g. 0.05"),
            (t.logme_gap_no_go <= t.logme_gap_go, f"transferability.logme_gap_no_go={t.logme_gap_no_go!r} must not "
                                                  f"exceed transferability.logme_gap_go={t.logme_gap_go!r}"),
            (p.gain_no_go <= p.gain_go, f"probe.gain_no_go={p.gain_no_go!r} must not exceed probe.gain_go={p.gain_go!r}"),
            *((0 <= m.margin < 1, f"{name}.margin={m.margin!r} must be a worthwhile accuracy gain in [0, 1), e.g. "
                                  "0.03 (3 points)") for name, m in (("baseline", b), ("efficiency", e),
                                                                      ("finetune", f))),
            (0 <= r.headroom < 1, f"recipe.headroom={r.headroom!r} must be an accuracy gap in [0, 1), e.g. 0.02"),
            (-1 < r.finetune_over_probe < 1, f"recipe.finetune_over_probe={r.finetune_over_probe!r} must be an "
                                             "accuracy difference in (-1, 1), e.g. 0.01"),
            (0 <= self.pages.shift_separable_pad <= 2, f"pages.shift_separable_pad={self.pages.shift_separable_pad!r} "
                                                       "must be a proxy A-distance in [0, 2], e.g. 1.5"),
            (0 <= self.pages.explorer_islands_mixing <= 1, "pages.explorer_islands_mixing="
                                                           f"{self.pages.explorer_islands_mixing!r} must be a mixing "
                                                           "score in [0, 1], e.g. 0.3"),
            (-1 < self.pages.probes_floor_gain < 1, f"pages.probes_floor_gain={self.pages.probes_floor_gain!r} must "
                                                    "be an accuracy difference in (-1, 1), e.g. 0.02"),
        ]
        for ok, message in checks:
            if not ok:
                raise TldiagError(f"Verdict rules ({self.origin}): {message}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], origin: str = "defaults") -> "Rules":
        """Rules from a mapping of sections (a subset is enough; the rest keep their defaults); unknown sections or
        keys and values that are not numbers are refused with their name and the valid ones."""
        sections = {f.name: f.type for f in fields(cls) if f.name != "origin"}
        defaults = cls()
        values: dict[str, Any] = {}
        for section, content in d.items():
            if section == "origin":
                continue
            if section not in sections:
                raise TldiagError(f"Verdict rules ({origin}): unknown section [{section}]; the sections are "
                                  f"{', '.join(f'[{s}]' for s in sections)}.")
            current = getattr(defaults, section)
            known = {f.name for f in fields(current)}
            if not isinstance(content, Mapping):
                raise TldiagError(f"Verdict rules ({origin}): [{section}] must be a table of numbers, got {content!r}.")
            for key, value in content.items():
                if key in LEGACY_GAIN_KEYS and isinstance(current, MarginRules):
                    raise TldiagError(f"Verdict rules ({origin}): {section}.{key} is no longer read: the measured "
                                      f"signals read their 95% interval against one worthwhile-gain margin. Replace "
                                      f"[{section}] gain_go and gain_no_go with margin = {current.margin:g} (GO when "
                                      "the gain reaches it with the interval above 0, NO-GO when the interval's upper "
                                      "end is below it, CAUTION between; see verdict_rules.toml).")
                if key not in known:
                    raise TldiagError(f"Verdict rules ({origin}): unknown key {section}.{key}; [{section}] has "
                                      f"{', '.join(sorted(known))}.")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise TldiagError(f"Verdict rules ({origin}): {section}.{key} = {value!r} must be a finite "
                                      f"number (the default is {getattr(current, key)!r}).")
            values[section] = replace(current, **{k: float(v) for k, v in content.items()})
        return replace(defaults, **values, origin=origin).validate()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise TldiagError(f"Verdict rules file {str(path)!r} does not exist; copy {RULES_FILE} and edit it, or leave "
                          f"{RULES_ENV} unset for the defaults.") from None
    except tomllib.TOMLDecodeError as exc:
        raise TldiagError(f"Verdict rules file {str(path)!r} is not valid TOML ({exc}); see {RULES_FILE} for the "
                          "format.") from None


def team_rules_path() -> Path:
    """The team's rules, which an admin edits on the Verdict page: ``$TLDIAG_HOME/verdict_rules.toml``."""
    from .. import _config

    return _config.home() / "verdict_rules.toml"


def load_rules(path: str | os.PathLike[str] | None = None) -> Rules:
    """The verdict's rules: from ``path``, else from the file ``TLDIAG_VERDICT_RULES`` names, else the team's
    (:func:`team_rules_path`, when an admin saved some), else the defaults. A file needs only the values it
    changes."""
    chosen = path or os.environ.get(RULES_ENV, "").strip() or None
    if chosen is None:
        team = team_rules_path()
        if not team.is_file():
            return Rules()
        chosen = team
    p = Path(chosen).expanduser()
    return Rules.from_dict(_read_toml(p), origin=str(p))


def save_team_rules(text: str) -> Rules:
    """Check ``text`` (TOML: the values to change, as in ``verdict_rules.toml``) and make it the team's rules
    (written atomically; nothing is written when a value is refused). Returns the rules it gives."""
    from ..cache import atomic_write_text

    path = team_rules_path()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TldiagError(f"The rules are not valid TOML ({exc}); write sections and values as in {RULES_FILE}, "
                          "e.g. [baseline] then gain_go = 0.03.") from None
    rules = Rules.from_dict(data, origin=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return rules


def rules_changes(before: Rules, after: Rules) -> dict[str, list[float]]:
    """``section.key -> [before, after]`` of every threshold that differs (for the audit log)."""
    a, b = before.to_dict(), after.to_dict()
    return {f"{s}.{k}": [a[s][k], b[s][k]] for s in a if isinstance(a[s], dict) for k in a[s] if a[s][k] != b[s][k]}


__all__ = ["CAUTION", "DECISIONS", "DivergenceRules", "GO", "GainRules", "INFO", "LEGACY_GAIN_KEYS", "MEASURED",
           "MarginRules", "NO_GO", "PREDICTED", "PageRules", "RULES_ENV", "RULES_FILE", "RecipeRules",
           "Rules", "TransferabilityRules", "load_rules", "rules_changes", "save_team_rules",
           "team_rules_path"]
