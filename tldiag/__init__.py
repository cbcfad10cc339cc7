"""tldiag: transfer-learning diagnostics for a pretrained model, a source and a target dataset.

Public API::

    from tldiag import load_model, load_dataset, embed_pair
    model = load_model("efficientnet-lite0", resolution=128)
    pair = embed_pair(model, load_dataset("demo:digits"), load_dataset("demo:printed-digits"))
    pair.source["pre_logits"]            # (n_source, 1280) float32

    from tldiag import metrics
    metrics.mmd_test(pair.source["pre_logits"], pair.target["pre_logits"], random_state=0)
    metrics.shift_report(pair)           # MMD, domain classifier, CORAL, Fréchet for every layer

    from tldiag import probes, transferability
    probes.probe_curve(pair.target.features, pair.target.labels)   # linear probe per tap; .recommended
    transferability.logme(pair.target["pre_logits"], pair.target.labels)

    from tldiag.training import efficiency   # labels saved by transfer: accuracy vs labels, scratch vs transfer
    result = efficiency.run_experiment(efficiency.EfficiencyConfig(target="demo:printed-digits?limit=50"))
    efficiency.readouts(result).summary

    from tldiag.training.jobs import launch  # the same as a background job (any kind: finetune, efficiency)
    launch("efficiency", efficiency.EfficiencyConfig(target="demo:printed-digits?limit=50"))

    from tldiag.setup import Setup      # the go/no-go verdict and its decision record
    from tldiag.decision.report import gather, build_record
    record = build_record(gather(Setup(), compute=("shift", "probes")))
    record.verdict.decision, record.verdict.recipe, record.html(), record.manifest
"""
from __future__ import annotations

from ._version import __version__

from typing import TYPE_CHECKING

from .errors import DatasetError, ModelUnavailableError, SpecError, TldiagError

# The heavy parts (torch, torchvision, timm) load on first use, so that light entry points (a queued job's
# process, `tldiag jobs`) do not pay for them.
_LAZY = {
    "ImageDataset": "data", "load_dataset": "data", "parse_dataset_spec": "data", "compare_classes": "data",
    "Embeddings": "embed", "EmbeddingPair": "embed", "embed_dataset": "embed", "embed_pair": "embed",
    "Model": "models", "list_models": "models", "load_model": "models", "parse_model_id": "models",
}

if TYPE_CHECKING:
    from .data import ImageDataset, compare_classes, load_dataset, parse_dataset_spec
    from .embed import EmbeddingPair, Embeddings, embed_dataset, embed_pair
    from .models import Model, list_models, load_model, parse_model_id


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tldiag' has no attribute {name!r}")


__all__ = [
    "__version__", "ImageDataset", "load_dataset", "parse_dataset_spec", "compare_classes",
    "Embeddings", "EmbeddingPair", "embed_dataset", "embed_pair", "Model", "load_model", "list_models",
    "parse_model_id", "TldiagError", "SpecError", "DatasetError", "ModelUnavailableError",
]
