"""The one training loop: a new head, a strategy's frozen and trained stages, AdamW with warm-up and cosine decay,
batched device-side augmentation, early stopping on validation with the best weights restored.

Fine-tuning (:mod:`.finetune`) and every trained arm of the data-efficiency experiment (:mod:`.efficiency`) train
through :func:`fit` and score through :func:`score_test`; how a run trains is a :class:`TrainConfig` (the schedule:
strategy, rates, epochs, augmentation, early stopping), which :class:`~tldiag.training.finetune.FinetuneConfig`
extends with the model and the data.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..data import ImageDataset
from ..forward import ResizeCrop, autocast, normalise
from ..progress import ProgressFn
from ..errors import SpecError, TldiagError
from ..models import LOGITS, PRE_LOGITS, Model
from ..validation import check_int, check_number
from .augment import POLICIES, augment_batch

__all__ = ["STRATEGIES", "AUGMENTATIONS", "TrainConfig", "IN_MEMORY_BYTES", "Batches", "Fitted", "Stage", "fit",
           "head_name", "labelled_split", "replace_head", "save_state", "score_test", "stage_count", "stages_of",
           "trains"]

STRATEGIES = ("linear", "partial", "full", "freeze-unfreeze", "l2-sp")
"""What a run trains: the new head only, the top stages, everything (discriminative rates), the head first and
then everything, or everything pulled toward the pretrained weights (L2-SP)."""
AUGMENTATIONS = ("auto", *POLICIES)
"""The augmentation policies (:mod:`.augment`), and ``auto``: chosen by dataset."""


# ----------------------------------------------------------------------------- the schedule
@dataclass(frozen=True)
class TrainConfig:
    """How one run trains: what the loop (:func:`fit`, :func:`score_test`) reads.

    Attributes:
        strategy: One of :data:`STRATEGIES`.
        epochs: Most epochs (early stopping may end sooner).
        batch_size: Images per step.
        lr: Peak learning rate of the new classifier.
        backbone_lr_mult: The backbone's learning rate as a fraction of ``lr`` (discriminative rates).
        weight_decay: AdamW's decoupled weight decay (not applied to norms and biases; replaced by L2-SP there).
        warmup_epochs: Linear warm-up length (per phase), then a cosine decay to zero.
        label_smoothing: Cross-entropy label smoothing in [0, 1).
        augment: One of :data:`AUGMENTATIONS`; ``auto`` picks by dataset
            (:func:`tldiag.training.finetune.auto_augmentation`).
        patience: Stop after this many epochs without a better validation accuracy; 0 never stops early.
        min_epochs: Early stopping never ends a run before this epoch (a model trained from scratch may sit at
            chance for its first epochs).
        frozen_stages: ``partial``: how many stages from the bottom stay frozen; None: all but the last.
        head_epochs: ``freeze-unfreeze``: epochs of the head alone before everything unfreezes.
        l2sp_alpha: ``l2-sp``: strength of the pull toward the pretrained backbone weights.
        l2sp_beta: ``l2-sp``: L2 penalty of the new classifier.
        update_bn: Whether BatchNorm layers update their running statistics while training. None: not for a
            pretrained model (small target batches would overwrite statistics learned on far more data; its
            scale and shift still train), yes for a random-init one (its statistics are meaningless).
        seed: Seed of the split, the head's initialisation, shuffling and augmentation.
        device: Torch device; tldiag's default (the GPU when present) when None.
        num_workers: Data-loading worker processes; see :func:`tldiag.forward.default_num_workers`.
    """

    strategy: str = "freeze-unfreeze"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    augment: str = "auto"
    patience: int = 3
    min_epochs: int = 0
    frozen_stages: int | None = None
    head_epochs: int = 2
    l2sp_alpha: float = 0.1
    l2sp_beta: float = 0.01
    update_bn: bool | None = None
    seed: int = 0
    device: str | None = None
    num_workers: int | None = None

    def validate(self):
        """The schedule checked: raises :class:`~tldiag.errors.SpecError` naming the bad value and the fix."""
        if self.strategy not in STRATEGIES:
            raise SpecError(f"Unknown fine-tuning strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}.")
        if self.augment not in AUGMENTATIONS:
            raise SpecError(f"Unknown augmentation {self.augment!r}; valid: {', '.join(AUGMENTATIONS)}.")
        check_number(self.lr, "lr", low=0.0, low_open=True, high=10.0, fix="e.g. 1e-3 for the new head")
        check_number(self.backbone_lr_mult, "backbone_lr_mult", low=0.0, low_open=True, high=10.0,
                      fix="e.g. 0.1: the backbone learns 10x slower than the head")
        check_number(self.weight_decay, "weight_decay", low=0.0, high=10.0, fix="e.g. 0.01; 0 turns it off")
        check_number(self.label_smoothing, "label_smoothing", low=0.0, high=1.0, high_open=True,
                      fix="e.g. 0.1; 0 turns it off")
        check_number(self.l2sp_alpha, "l2sp_alpha", low=0.0, high=100.0, fix="e.g. 0.1")
        check_number(self.l2sp_beta, "l2sp_beta", low=0.0, high=100.0, fix="e.g. 0.01")
        check_int(self.epochs, "epochs", minimum=1, maximum=10_000)
        check_int(self.batch_size, "batch_size", minimum=1, maximum=65_536)
        check_int(self.patience, "patience", minimum=0, maximum=10_000)
        check_int(self.min_epochs, "min_epochs", minimum=0, maximum=10_000)
        check_int(self.head_epochs, "head_epochs", minimum=1, maximum=10_000)
        check_int(self.seed, "seed", minimum=0, maximum=2**32 - 1)
        check_number(self.warmup_epochs, "warmup_epochs", low=0.0, high=float(self.epochs), high_open=True,
                      fix=f"shorter than the {self.epochs} epochs")
        if self.update_bn is not None and not isinstance(self.update_bn, bool):
            raise SpecError(f"update_bn={self.update_bn!r} must be true, false or empty (automatic).")
        if self.frozen_stages is not None:
            check_int(self.frozen_stages, "frozen_stages", minimum=0, maximum=1000)
        if self.num_workers is not None:
            check_int(self.num_workers, "num_workers", minimum=0, maximum=64)
        if self.strategy == "freeze-unfreeze" and self.head_epochs >= self.epochs:
            raise SpecError(f"head_epochs={self.head_epochs} leaves no epoch to unfreeze in epochs={self.epochs}; "
                            f"use fewer head epochs or more epochs (e.g. head_epochs=2, epochs=10).")
        return self


# ----------------------------------------------------------------------------- the model's parts
@dataclass(frozen=True)
class Stage:
    """A group of backbone parameters that freezes together: everything up to the end of one tap's module."""

    name: str
    n_parameters: int


def head_name(module: nn.Module, backend: str) -> str:
    if backend == "timm":
        clf = module.get_classifier()
        for name, m in module.named_modules():
            if m is clf:
                return name
    for name, m in reversed(list(module.named_modules())):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            return name
    raise TldiagError("Found no classifier layer to replace in this model.")


def replace_head(model: Model, n_classes: int, generator: torch.Generator) -> str:
    """Give ``model.module`` a new classifier for ``n_classes`` (seeded initialisation); returns its name."""
    module = model.module
    if model.backend == "torchscript":
        raise TldiagError(f"{model.id} is a TorchScript file, which cannot be fine-tuned; save a state dict "
                          "(torch.save(model.state_dict(), path)) and use checkpoint:<path>?arch=<id>.")
    name = head_name(module, model.backend)
    old = module.get_submodule(name)
    if isinstance(old, nn.Linear):
        module.set_submodule(name, nn.Linear(old.in_features, n_classes))
    elif isinstance(old, nn.Conv2d):
        module.set_submodule(name, nn.Conv2d(old.in_channels, n_classes, kernel_size=1))
    elif model.backend == "timm":
        module.reset_classifier(n_classes)
    else:
        raise TldiagError(f"The classifier {name} of {model.id} is a {type(old).__name__}; tldiag can replace a "
                          "Linear or 1x1 Conv2d head only.")
    if model.backend == "timm" and hasattr(module, "num_classes"):
        module.num_classes = n_classes
    with torch.no_grad():  # seeded here: the layers' own init draws from the global generator
        for p in module.get_submodule(name).parameters():
            if p.ndim > 1:
                bound = 1.0 / math.sqrt(p[0].numel())
                p.uniform_(-bound, bound, generator=generator)
            else:
                p.zero_()
    return name


def stages_of(model: Model, head: str) -> tuple[list[Stage], dict[str, int]]:
    """The model's stages (one per tap whose name is a module, stem included in the first) and, for every
    parameter name, its stage index; parameters after the last stage (e.g. a final 1x1 conv) get ``len(stages)``
    and the classifier's get -1."""
    module = model.module
    order = {name: i for i, (name, _) in enumerate(module.named_modules())}
    ends = []
    for tap in model.taps:
        if tap.name in (PRE_LOGITS, LOGITS) or tap.name not in order:
            continue
        ends.append((tap.name, max(order[n] for n in order if n == tap.name or n.startswith(tap.name + "."))))
    stage_of: dict[str, int] = {}
    counts = [0] * (len(ends) + 1)
    for pname, p in module.named_parameters():
        owner = pname.rsplit(".", 1)[0] if "." in pname else ""
        if owner == head or owner.startswith(head + "."):
            stage_of[pname] = -1
            continue
        i = next((k for k, (_, end) in enumerate(ends) if order.get(owner, 0) <= end), len(ends))
        stage_of[pname] = i
        counts[i] += p.numel()
    return [Stage(name, counts[k]) for k, (name, _) in enumerate(ends)], stage_of


def stage_count(model: Model) -> int | None:
    """How many stages fine-tuning can freeze in ``model`` (see :func:`stages_of`); None when it has no classifier
    to replace (a TorchScript file, a headless backbone)."""
    try:
        return len(stages_of(model, head_name(model.module, model.backend))[0]) or None
    except TldiagError:
        return None


# ----------------------------------------------------------------------------- data
class _Split(torch.utils.data.Dataset):
    def __init__(self, dataset: ImageDataset, rows: np.ndarray, labels: np.ndarray, transform: Callable):
        self.dataset, self.rows, self.labels, self.transform = dataset, rows, labels, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.dataset[int(self.rows[i])]), int(self.labels[i])


IN_MEMORY_BYTES = 1 << 30
"""A split whose images at the model's input size take at most this many bytes (uint8) is read once and kept as
one tensor; larger ones are read per batch by a ``DataLoader`` (with workers)."""


class Batches:
    """Batches of ``(uint8 images at the model's input size, labels)`` of a split, in a fixed order or shuffled
    (an epoch then draws ``epoch_size`` images: each image once per pass, passes repeated as needed).

    Small splits are decoded once into one tensor (the trained arms read each image many times); large ones go
    through a ``DataLoader``. The augmentation is not applied here but per batch on the device
    (:func:`tldiag.training.augment.augment_batch`)."""

    def __init__(self, dataset: Any, rows: np.ndarray, labels: np.ndarray, prep, batch_size: int, *, shuffle: bool,
                 workers: int, seed: int, dev: torch.device, epoch_size: int | None = None):
        self.batch_size, self.shuffle = batch_size, shuffle
        self.n = len(rows)
        self.epoch_size = epoch_size or self.n
        self.generator = torch.Generator().manual_seed(seed)
        split = _Split(dataset, rows, labels, ResizeCrop(prep))
        self.images: torch.Tensor | None = None
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if self.n * 3 * prep.input_size ** 2 <= IN_MEMORY_BYTES:
            self.images = torch.stack([split[i][0] for i in range(self.n)]) if self.n else \
                torch.zeros(0, 3, prep.input_size, prep.input_size, dtype=torch.uint8)
            self.loader = None
        else:
            sampler = torch.utils.data.RandomSampler(split, num_samples=self.epoch_size, generator=self.generator) \
                if shuffle else None
            self.loader = torch.utils.data.DataLoader(
                split, batch_size=batch_size, sampler=sampler, drop_last=False, num_workers=workers,
                pin_memory=dev.type == "cuda", persistent_workers=workers > 0, prefetch_factor=4 if workers else None)

    def __len__(self) -> int:
        return math.ceil((self.epoch_size if self.shuffle else self.n) / self.batch_size)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        passes = [torch.randperm(self.n, generator=self.generator) for _ in range(math.ceil(self.epoch_size / self.n))]
        return torch.cat(passes)[:self.epoch_size]

    def __iter__(self):
        if self.loader is not None:
            yield from self.loader
            return
        order = self._order()
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.images[idx], self.labels[idx]


def labelled_split(dataset: ImageDataset, seed: int, task: str = "fine-tuning"
                    ) -> tuple[np.ndarray, np.ndarray, tuple, tuple[str, ...]]:
    """Rows with labels, their labels re-indexed 0..K-1, the first stratified split (the Probes page's), and the
    class names; refuses data that ``task`` cannot use."""
    from ..splits import check_class_sizes, check_labels, stratified_splits

    rows, labels = check_labels(dataset.labels, len(dataset), what=f"target ({dataset.spec})", task=task)
    check_class_sizes(labels, dataset.classes, f"target ({dataset.spec})", task=task)
    present, y = np.unique(labels, return_inverse=True)
    names = tuple(dataset.classes[i] if i < len(dataset.classes) else str(i) for i in present)
    return rows, y, stratified_splits(y, 1, random_state=seed)[0], names


def trains(config: TrainConfig, stage: int, *, final_phase: bool) -> bool:
    """Whether a backbone parameter of ``stage`` trains (the classifier, stage -1, always does)."""
    if stage == -1:
        return True
    if config.strategy == "linear" or (config.strategy == "freeze-unfreeze" and not final_phase):
        return False
    if config.strategy == "partial":
        return stage >= (config.frozen_stages or 0)
    return True


# ----------------------------------------------------------------------------- training
def _param_groups(module: nn.Module, stage_of: Mapping[str, int], config: TrainConfig, *,
                  final_phase: bool) -> list[dict[str, Any]]:
    """AdamW groups: head / backbone x decayed / not decayed (norms and biases). Frozen parameters get
    ``requires_grad=False``. Under L2-SP the penalty replaces weight decay."""
    head_lr = config.lr * (config.backbone_lr_mult if config.strategy == "freeze-unfreeze" and final_phase else 1.0)
    backbone_lr = config.lr * config.backbone_lr_mult
    wd = 0.0 if config.strategy == "l2-sp" else config.weight_decay
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        stage = stage_of.get(name, 0)
        p.requires_grad_(trains(config, stage, final_phase=final_phase))
        if p.requires_grad:
            groups.setdefault(("head" if stage == -1 else "backbone", p.ndim > 1), []).append(p)
    return [{"params": ps, "lr": head_lr if part == "head" else backbone_lr, "weight_decay": wd if decay else 0.0,
             "name": f"{part}{'' if decay else ' (no decay)'}"} for (part, decay), ps in groups.items()]


def _schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _freeze_bn(module: nn.Module, *, update_bn: bool) -> None:
    """BatchNorm layers in eval mode (fixed running statistics) when ``update_bn`` is False or when none of their
    parameters train: a frozen layer keeps the statistics its weights were learned with."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if not update_bn or not any(p.requires_grad for p in m.parameters(recurse=False)):
                m.eval()


@torch.no_grad()
def _evaluate(module: nn.Module, loader, model: Model, dev: torch.device, n_classes: int
              ) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and the predictions over a loader."""
    module.eval()
    total, loss, preds = 0, 0.0, []
    ce = nn.CrossEntropyLoss(reduction="sum")
    correct = 0
    for x, y in loader:
        x, y = normalise(x.to(dev, non_blocking=True), model.preprocessing), y.to(dev)
        with autocast(dev):
            logits = module(x)
        logits = logits.float()
        loss += float(ce(logits, y))
        pred = logits.argmax(1)
        correct += int((pred == y).sum())
        total += len(y)
        preds.append(pred.cpu().numpy())
    return loss / max(total, 1), correct / max(total, 1), np.concatenate(preds) if preds else np.zeros(0, int)


@dataclass
class Fitted:
    """A trained classifier: the module with its best weights loaded (on the training device), the starting
    weights, and how the training went."""

    module: nn.Module
    pretrained: nn.Module | None
    state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    val_accuracy: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    total_steps: int
    steps_done: int = 0


def fit(model: Model, dataset: Any, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
         config: TrainConfig, n_classes: int, *, workers: int, progress: ProgressFn | None = None,
         on_epoch: Callable[[dict[str, Any]], None] | None = None, min_epoch_images: int = 0,
         keep_pretrained: bool = True, learning_above: float | None = None) -> Fitted:
    """Train ``model`` (a new head for ``n_classes``, then ``config.strategy``) on the ``train`` rows of ``dataset``
    with early stopping on the ``val`` rows: the one training loop of fine-tuning and of the data-efficiency arms.

    ``config`` must be resolved (:func:`plan`: device, augmentation, frozen stages). An epoch covers every training
    image once, or ``min_epoch_images`` draws when that is more (tiny label budgets repeat their images, so that an
    epoch is more than one step and early stopping has something to compare). ``keep_pretrained=False`` skips the
    copy of the starting weights (``Fitted.pretrained`` is then None) unless L2-SP needs it. With
    ``learning_above``, patience only counts once the validation accuracy has risen above it (chance level): a model
    trained from scratch often sits at chance for its first epochs, and stopping it there would measure nothing.
    """
    dev = torch.device(config.device or "cpu")
    generator = torch.Generator().manual_seed(config.seed)
    pretrained = copy.deepcopy(model.module) if keep_pretrained or config.strategy == "l2-sp" else None
    head = replace_head(model, n_classes, generator)
    module = model.module
    _, stage_of = stages_of(model, head)
    module.to(dev).to(memory_format=torch.channels_last)
    anchor = {n: p.detach().clone().to(dev) for n, p in pretrained.named_parameters()
              if stage_of.get(n, -1) != -1} if config.strategy == "l2-sp" else {}

    prep = model.preprocessing
    train_loader = Batches(dataset, train[0], train[1], prep, config.batch_size, shuffle=True, workers=workers,
                            seed=config.seed, dev=dev, epoch_size=max(len(train[0]), min_epoch_images))
    val_loader = Batches(dataset, val[0], val[1], prep, 2 * config.batch_size, shuffle=False, workers=workers,
                          seed=config.seed, dev=dev)
    augmentation = torch.Generator().manual_seed(config.seed + 1)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    use_scaler = dev.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    update_bn = (not model.pretrained) if config.update_bn is None else config.update_bn
    phases = [(False, config.head_epochs), (True, config.epochs - config.head_epochs)] \
        if config.strategy == "freeze-unfreeze" else [(True, config.epochs)]
    steps_per_epoch = len(train_loader)
    total_steps, step_done = config.epochs * steps_per_epoch, 0
    best = {"acc": -1.0, "loss": math.inf, "epoch": 0, "state": None}
    history: list[dict[str, Any]] = []
    epoch, stale, stopped = 0, 0, False
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(config.seed)
        for final_phase, n_epochs in phases:
            groups = _param_groups(module, stage_of, config, final_phase=final_phase)
            optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))
            schedule = _schedule(optimizer, n_epochs * steps_per_epoch,
                                 int(round(min(config.warmup_epochs, n_epochs - 1e-9) * steps_per_epoch)))
            phase = "fine-tune" if final_phase else "head only"
            for _ in range(n_epochs):
                epoch += 1
                te0 = time.perf_counter()
                module.train()
                _freeze_bn(module, update_bn=update_bn)
                seen, loss_sum, correct = 0, 0.0, 0
                for x, target in train_loader:
                    x = augment_batch(x.to(dev, non_blocking=True), config.augment, augmentation)
                    x, target = normalise(x, prep), target.to(dev)
                    with autocast(dev):
                        logits = module(x)
                        loss = criterion(logits.float(), target)
                    total_loss = loss + _l2sp(module, anchor, stage_of, config) if anchor else loss
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(total_loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    schedule.step()
                    seen += len(target)
                    loss_sum += float(loss.detach()) * len(target)
                    correct += int((logits.detach().argmax(1) == target).sum())
                    step_done += 1
                    if progress:
                        progress(step_done, total_steps, f"epoch {epoch}/{config.epochs} ({phase}), "
                                                         f"train loss {loss_sum / seen:.3f}")
                val_loss, val_acc, _ = _evaluate(module, val_loader, model, dev, n_classes)
                lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
                row = {"epoch": epoch, "phase": phase, "train_loss": loss_sum / max(seen, 1),
                       "train_accuracy": correct / max(seen, 1), "val_loss": val_loss, "val_accuracy": val_acc,
                       "lr_head": max((v for k, v in lrs.items() if k.startswith("head")), default=0.0),
                       "lr_backbone": max((v for k, v in lrs.items() if k.startswith("backbone")), default=0.0),
                       "seconds": time.perf_counter() - te0}
                history.append(row)
                if on_epoch:
                    on_epoch(row)
                if val_acc > best["acc"] or (val_acc == best["acc"] and val_loss < best["loss"]):
                    best = {"acc": val_acc, "loss": val_loss, "epoch": epoch,
                            "state": {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}}
                    stale = 0
                elif final_phase and (learning_above is None or best["acc"] > learning_above):
                    stale += 1
                if final_phase and config.patience and stale >= config.patience and epoch >= config.min_epochs:
                    stopped = epoch < config.epochs
                    break  # the final phase is the last one, so this ends the training
        module.load_state_dict(best["state"])
    return Fitted(module, pretrained, best["state"], history, float(best["acc"]), int(best["epoch"]), epoch,
                   stopped, total_steps, step_done)


def score_test(module: nn.Module, model: Model, dataset: Any, test: tuple[np.ndarray, np.ndarray],
          config: TrainConfig, n_classes: int, workers: int) -> tuple[float, float, np.ndarray]:
    """Accuracy, macro-F1 (over the classes of the test rows) and the predictions of a trained module on the
    ``test`` rows."""
    from sklearn.metrics import f1_score

    dev = torch.device(config.device or "cpu")
    loader = Batches(dataset, test[0], test[1], model.preprocessing, 2 * config.batch_size, shuffle=False,
                      workers=workers, seed=config.seed, dev=dev)
    _, acc, pred = _evaluate(module, loader, model, dev, n_classes)
    f1 = float(f1_score(test[1], pred, labels=np.unique(test[1]), average="macro", zero_division=0))
    return float(acc), f1, pred


def _l2sp(module: nn.Module, anchor: Mapping[str, torch.Tensor], stage_of: Mapping[str, int],
          config: TrainConfig) -> torch.Tensor:
    pull, head = 0.0, 0.0
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if stage_of.get(name, 0) == -1:
            head = head + p.pow(2).sum()
        elif name in anchor:
            pull = pull + (p - anchor[name]).pow(2).sum()
    return 0.5 * config.l2sp_alpha * pull + 0.5 * config.l2sp_beta * head  # type: ignore[return-value]


def save_state(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write a state dict atomically: a reader (or a registry entry) never sees half a checkpoint."""
    from ..cache import atomic_write

    atomic_write(path, lambda f: torch.save(dict(state), f))
