"""The demo's source model: EfficientNet-Lite0 fine-tuned on the handwritten digits, so that the demo's "source"
means what it means in real use, the data the model was trained on.

:func:`ensure_source_model` builds it once and registers it as ``finetuned:demo-digits-lite0``: the ImageNet
backbone stays frozen and a new 10-class head is trained on the pre-logits features of the train and validation
parts of the demo source's first stratified split (400 of ``demo:digits?limit=50`` at 128 px; a standardised L2
logistic regression, folded into the head's weights). The test part (100 images) stays held out, which is what the
source-model check (:mod:`tldiag.sourcehead`) scores it on. About 10 s on a 2-core CPU the first time (less when the
demo's embeddings are cached); the registry then holds it like any fine-tune.
"""
from __future__ import annotations

import numpy as np

DEMO_SOURCE_MODEL = "demo-digits-lite0"
DEMO_SOURCE_SPEC = "demo:digits?limit=50"
DEMO_SOURCE_RESOLUTION = 128


def ensure_source_model() -> str:
    """The model id of the demo's source model, built and registered on first use."""
    import torch
    from filelock import FileLock
    from sklearn.linear_model import LogisticRegression

    from . import _config
    from .data import load_dataset
    from .embed import embed_dataset
    from .training.loop import save_state
    from .models import PRE_LOGITS, load_model, register_model, registered_models
    from .splits import stratified_splits

    model_id = f"finetuned:{DEMO_SOURCE_MODEL}"
    folder = _config.home() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f"{DEMO_SOURCE_MODEL}.lock"), timeout=600):
        if DEMO_SOURCE_MODEL in registered_models():
            return model_id
        base = load_model("efficientnet-lite0", resolution=DEMO_SOURCE_RESOLUTION)
        source = load_dataset(DEMO_SOURCE_SPEC)
        emb = embed_dataset(base, source, [PRE_LOGITS])
        X, y = np.asarray(emb[PRE_LOGITS], dtype=np.float64), np.asarray(source.labels)
        train, val, _ = stratified_splits(y, 1, random_state=0)[0]
        fit_rows = np.concatenate([train, val])
        mu, sd = X[fit_rows].mean(0), X[fit_rows].std(0) + 1e-6
        clf = LogisticRegression(C=1.0, max_iter=5000).fit((X[fit_rows] - mu) / sd, y[fit_rows])
        state = dict(base.module.state_dict())
        head = base.module.get_classifier()
        name = next(n for n, m in base.module.named_modules() if m is head)
        weight = clf.coef_ / sd
        state[f"{name}.weight"] = torch.as_tensor(weight, dtype=head.weight.dtype)
        state[f"{name}.bias"] = torch.as_tensor(clf.intercept_ - weight @ mu, dtype=head.bias.dtype)
        path = folder / f"{DEMO_SOURCE_MODEL}.pt"
        save_state(state, path)
        register_model(DEMO_SOURCE_MODEL, path, "efficientnet-lite0", classes=tuple(source.classes),
                       trained_on=DEMO_SOURCE_SPEC,
                       description=f"EfficientNet-Lite0 with a head trained on {len(fit_rows)} handwritten digits "
                                   f"({DEMO_SOURCE_SPEC}, {DEMO_SOURCE_RESOLUTION} px, backbone frozen); the demo's "
                                   "source model")
    return model_id


__all__ = ["DEMO_SOURCE_MODEL", "DEMO_SOURCE_RESOLUTION", "DEMO_SOURCE_SPEC", "ensure_source_model"]
