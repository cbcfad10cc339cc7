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
"""
from __future__ import annotations

__version__ = "0.1.0"

from .data import ImageDataset, compare_classes, load_dataset, parse_dataset_spec
from .embed import EmbeddingPair, Embeddings, embed_dataset, embed_pair
from .errors import DatasetError, ModelUnavailableError, SpecError, TldiagError
from .models import Model, list_models, load_model, parse_model_id

__all__ = [
    "__version__", "ImageDataset", "load_dataset", "parse_dataset_spec", "compare_classes",
    "Embeddings", "EmbeddingPair", "embed_dataset", "embed_pair", "Model", "load_model", "list_models",
    "parse_model_id", "TldiagError", "SpecError", "DatasetError", "ModelUnavailableError",
]
