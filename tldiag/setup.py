"""The analysis setup every page and command works from: model, source, target, taps, sizes.

A :class:`Setup` round-trips through URL query parameters, so a copied link reopens the same
analysis (and, through the embedding cache, the same numbers).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

from .data import parse_dataset_spec, with_options
from .errors import SpecError
from .models import DEFAULT_MODEL, parse_model_id

PRESETS: dict[str, tuple[str, str]] = {
    "Handwritten → printed digits (demo)": ("demo:digits", "demo:printed-digits"),
    "Digits → rotated digits (demo)": ("demo:digits", "demo:digits?shift=rotate&severity=3"),
    "Digits → blurred digits (demo)": ("demo:digits", "demo:digits?shift=blur&severity=4"),
}
SOURCE_MODEL_PRESET = "A model trained on handwritten digits → printed digits (demo)"
"""The preset that tells the source-model story: the model is ``finetuned:demo-digits-lite0``, trained on the
source (:mod:`tldiag.demo`), asked about printed digits."""
PRESET_MODELS: dict[str, tuple[str, int]] = {SOURCE_MODEL_PRESET: ("finetuned:demo-digits-lite0", 128)}
"""Presets that also choose the model and its input size (a head trained at 128 px only reads 128-px features)."""
PRESETS[SOURCE_MODEL_PRESET] = ("demo:digits", "demo:printed-digits")
DEMO_RESOLUTION = 128
DEMO_LIMIT = 50


@dataclass(frozen=True)
class Setup:
    """What to analyse.

    Attributes:
        model: Model id (see :mod:`tldiag.models`).
        source: Source dataset spec (what the model was trained on, or a proxy of it).
        target: Target dataset spec (the user's data).
        resolution: Model input size in pixels; None keeps the weights' own.
        limit: At most this many images per class from each dataset; None takes all.
        taps: Tap names; empty means the model's default handful.
        seed: Seed for subsampling and every randomised analysis.
        budget: Labelled target images per class the team has or can afford (the label budget the verdict answers
            for); None: every labelled target image.
    """

    model: str = DEFAULT_MODEL
    source: str = "demo:digits"
    target: str = "demo:printed-digits"
    resolution: int | None = DEMO_RESOLUTION
    limit: int | None = DEMO_LIMIT
    taps: tuple[str, ...] = ()
    seed: int = 0
    budget: int | None = None

    def validate(self) -> "Setup":
        parse_model_id(self.model)
        parse_dataset_spec(self.source)
        parse_dataset_spec(self.target)
        if self.limit is not None and self.limit < 1:
            raise SpecError(f"limit={self.limit} must be at least 1 image per class (or empty for all images).")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int)
                                        or self.budget < 1):
            raise SpecError(f"budget={self.budget!r} must be a whole number of labelled images per class, at least 1 "
                            "(or empty for every labelled target image).")
        return self

    def check_budget(self, target) -> None:
        """Refuse a label budget the opened ``target`` dataset cannot hold: no labels, or fewer images per class."""
        if self.budget is None:
            return
        counts = {c: k for c, k in target.class_counts().items() if k > 0} if target.is_labelled else {}
        if not counts:
            raise SpecError(f"budget={self.budget} labels per class, but the target {target.spec} has no labels; a "
                            "label budget needs a labelled target (a folder with one sub-folder per class), or leave "
                            "the budget empty.")
        most = max(counts.values())
        if self.budget > most:
            raise SpecError(f"budget={self.budget} labels per class is more than the target holds: its largest class "
                            f"has {most} labelled images ({target.spec}). Lower the budget to at most {most}, raise "
                            "the per-class limit, or leave it empty for every labelled image.")

    def with_limit(self, spec: str) -> str:
        """``spec`` with this setup's per-class limit and seed, unless it sets its own."""
        if self.limit is None or "limit" in dict(parse_dataset_spec(spec).options):
            return str(parse_dataset_spec(spec))
        return with_options(spec, limit=self.limit, seed=self.seed or None)

    @property
    def source_spec(self) -> str:
        return self.with_limit(self.source)

    @property
    def target_spec(self) -> str:
        return self.with_limit(self.target)

    def to_query(self) -> dict[str, str]:
        q = {"model": self.model, "source": self.source, "target": self.target,
             "resolution": str(self.resolution or ""), "limit": str(self.limit or ""), "seed": str(self.seed)}
        if self.taps:
            q["taps"] = ",".join(self.taps)
        if self.budget is not None:
            q["budget"] = str(self.budget)
        return q

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> "Setup":
        """A setup from URL query parameters; absent keys take the demo defaults."""
        d = cls()

        def as_int(key: str, default: int | None) -> int | None:
            raw = params.get(key)
            if raw is None:
                return default
            if raw == "":
                return None
            try:
                return int(raw)
            except ValueError:
                raise SpecError(f"URL parameter {key}={raw!r} must be a whole number.") from None

        taps = tuple(t for t in params.get("taps", "").split(",") if t)
        return cls(model=params.get("model", d.model), source=params.get("source", d.source),
                   target=params.get("target", d.target), resolution=as_int("resolution", d.resolution),
                   limit=as_int("limit", d.limit), taps=taps, seed=as_int("seed", d.seed) or 0,
                   budget=as_int("budget", d.budget))

    def as_dict(self) -> dict:
        return asdict(self)


__all__ = ["PRESETS", "SOURCE_MODEL_PRESET", "PRESET_MODELS", "DEMO_RESOLUTION", "DEMO_LIMIT", "Setup"]
