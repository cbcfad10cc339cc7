"""Work past one machine, on a Ray cluster: the only module that imports Ray, and only when one is configured.

With ``TLDIAG_RAY_ADDRESS`` set (``tldiag --ray ADDRESS``; ``auto`` for the cluster ``ray start --head`` began on
this machine, ``host:port``, ``ray://host:10001``, or ``local`` for a one-machine instance started on the spot):

* an **embedding pass** (:func:`ray_embedding_pass`) is a Ray Data ``map_batches`` over an actor pool, one model
  replica per GPU of the cluster (per CPU worker when it has none); each replica decodes its batches' images on a
  few threads and runs the forward pass. The driver writes the features into the very same cache entries as the
  local engine (:func:`tldiag.embed.embed_dataset` does not know which engine ran);
* the **trained runs of a data-efficiency experiment** and the **rows of a leaderboard** are Ray tasks
  (:func:`run_tasks`) with their resource needs (one GPU per training run on a GPU cluster); finished ones come back
  to the driver as they finish, which stores them and reports them as today; their progress is gathered by a small
  actor the driver reads; a cancelled driver (a cancelled job) cancels every task it started.

Without ``TLDIAG_RAY_ADDRESS`` none of this runs and Ray is never imported. The workers need tldiag installed, the
data at the same paths, and ``TLDIAG_HOME`` on a shared file system when the runs and caches should be shared (the
driver forwards its ``TLDIAG_*``, ``TORCH_HOME`` and ``HF_*`` settings to them).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import _config
from .errors import TldiagError

INSTALL_HINT = 'pip install "tldiag[ray]" (or pip install "ray[data]")'
FORWARDED_ENV = ("TLDIAG_HOME", "TLDIAG_DATA_ROOTS", "TLDIAG_DEVICE", "TLDIAG_CACHE_MAX_GB", "TORCH_HOME", "HF_HOME",
                 "HF_HUB_OFFLINE", "HF_HUB_CACHE")
"""Settings the workers get from the driver (the data roots, the caches, offline switches)."""

_connect_lock = threading.Lock()


def _ray():
    try:
        import ray
    except ImportError:
        raise TldiagError(f"TLDIAG_RAY_ADDRESS={_config.ray_address()!r} asks for a Ray cluster, but Ray is not "
                          f"installed here. Install it with {INSTALL_HINT}, or unset TLDIAG_RAY_ADDRESS to run on this "
                          "machine.") from None
    return ray


def connect():
    """The ``ray`` module, connected to the configured cluster (once per process)."""
    address = _config.ray_address()
    if address is None:
        raise TldiagError("No Ray cluster is configured: set TLDIAG_RAY_ADDRESS (or pass --ray ADDRESS) to run there.")
    ray = _ray()
    with _connect_lock:
        if ray.is_initialized():
            return ray
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False,
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            cause = f"{exc} {exc.__cause__ or ''}"
            auth = ("; the cluster wants a token: set RAY_AUTH_MODE=token here, with the cluster's token in "
                    "~/.ray/auth_token or RAY_AUTH_TOKEN_PATH (`ray get-auth-token` on the head prints it)"
                    if "AuthToken" in cause or "uthentication" in cause else "")
            raise TldiagError(f"Could not connect to the Ray cluster at TLDIAG_RAY_ADDRESS={address!r} "
                              f"({type(exc).__name__}: {str(exc)[:200]}){auth}. Start one with `ray start --head` and "
                              "use auto, check the address, or unset TLDIAG_RAY_ADDRESS to run on this machine.") from None
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` that nothing answers at (Ray itself retries for minutes)."""
    import socket

    if address == "local":
        return
    given = address
    if address == "auto":  # what Ray resolves it to: RAY_ADDRESS, else the last cluster `ray start` began here
        from pathlib import Path

        current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        resolved = os.environ.get("RAY_ADDRESS") or (current.read_text().strip() if current.is_file() else "")
        if not resolved:
            raise TldiagError("TLDIAG_RAY_ADDRESS=auto, but no Ray cluster was started on this machine. Start one "
                              "with `ray start --head`, give the address of an existing cluster, or unset "
                              "TLDIAG_RAY_ADDRESS to run on this machine.")
        address = resolved
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise TldiagError(f"TLDIAG_RAY_ADDRESS={address!r} is not a Ray address; use auto, local, host:port (e.g. "
                          "10.0.0.5:6379) or ray://host:10001.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        resolved = " (the last cluster started here)" if given != address else ""
        raise TldiagError(f"Could not connect to the Ray cluster at TLDIAG_RAY_ADDRESS={given!r}: nothing answers "
                          f"at {host}:{port}{resolved} ({exc.strerror or exc}). Start one with `ray start --head` and use auto, "
                          "check the address, or unset TLDIAG_RAY_ADDRESS to run on this machine.") from None


def runtime_env() -> dict[str, Any]:
    """The runtime environment of the workers of one call: the driver's settings as they are now (a long-lived
    driver, or a test, may change them between calls)."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    env["TLDIAG_HOME"] = str(_config.home())
    env["TLDIAG_RAY_ADDRESS"] = ""  # the work a worker does runs there, not on the cluster again
    return {"env_vars": env}


@dataclass(frozen=True)
class Workers:
    """How work is spread over the cluster: ``size`` replicas or concurrent tasks, each with these resources."""

    size: int
    num_cpus: float
    num_gpus: float

    @property
    def threads(self) -> int:
        return max(1, int(self.num_cpus))


def workers(*, size: int | None = None) -> Workers:
    """One worker per GPU of the cluster (with a CPU beside it), else one per CPU (``size`` caps the number).

    On a CPU-only cluster the workers take a little less than a CPU each, so that Ray Data's own tasks always find
    room (a pool that takes every CPU waits for them forever)."""
    ray = connect()
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus:
        n = min(gpus, size or gpus)
        return Workers(n, max(1.0, min(4.0, (cpus - 1) / n)), 1.0)
    n = max(1, min(int(cpus), size or int(cpus)))
    return Workers(n, round(max(0.25, min(1.0, (cpus - 0.25) / n)), 3), 0.0)


# ----------------------------------------------------------------------------- embedding passes (Ray Data)
_TAP_PREFIX = "tap:"


class _Embedder:
    """One model replica in Ray Data's actor pool: decodes its batches' images on a few threads, runs the model on
    its device, and returns each image's position, features (zeros for an image that did not decode) and reason."""

    def __init__(self, *, model_id: str, resolution: int | None, weights_hash: str, prep_key: str, dataset: list,
                 taps: list[str], threads: int, gpu: bool):
        import torch

        from .forward import Forward, ResizeCrop
        from .models import load_model

        ray = _ray()
        torch.set_num_threads(threads)
        self.model = load_model(model_id, resolution=resolution)
        if self.model.weights_hash != weights_hash:
            raise TldiagError(f"The Ray worker on {os.uname().nodename} loaded other weights for {model_id} "
                              f"({self.model.weights_hash[:12]} instead of {weights_hash[:12]}); give every node the "
                              "same model files (a shared TORCH_HOME / HF_HOME / checkpoint path).")
        if self.model.preprocessing.key() != prep_key:
            raise TldiagError(f"The Ray worker preprocesses {model_id} differently ({self.model.preprocessing.key()} "
                              f"instead of {prep_key}); install the same tldiag and timm versions on every node.")
        self.dataset = ray.get(dataset[0])
        self.taps = list(taps)
        self.dev = torch.device("cuda" if gpu else "cpu")
        self.module = self.model.module.to(self.dev).to(memory_format=torch.channels_last).eval()
        self.forward = Forward(self.model, frozenset(self.taps), self.dev, 256)
        self.transform = ResizeCrop(self.model.preprocessing)
        self.decoders = ThreadPoolExecutor(max(2, threads))
        size = self.model.preprocessing.input_size
        with torch.inference_mode():
            probe = self.forward(torch.zeros(1, 3, size, size, device=self.dev))
        self.dims = {t: int(probe[t].shape[1]) for t in self.taps}

    def _load(self, row: int):
        from .errors import UndecodableImage

        try:
            return self.transform(self.dataset[int(row)]), ""
        except UndecodableImage as exc:
            return None, exc.reason

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from .forward import normalise

        positions, rows = np.asarray(batch["position"]), np.asarray(batch["row"])
        loaded = list(self.decoders.map(self._load, rows))
        ok = np.array([x is not None for x, _ in loaded], dtype=bool)
        out = {"position": positions, "reason": np.array([r for _, r in loaded], dtype=object)}
        for t in self.taps:
            out[_TAP_PREFIX + t] = np.zeros((len(rows), self.dims[t]), dtype=np.float32)
        if ok.any():
            x = torch.stack([x for x, _ in loaded if x is not None]).to(self.dev, non_blocking=True)
            with torch.inference_mode():
                result = self.forward(normalise(x, self.model.preprocessing))
            for t in self.taps:
                out[_TAP_PREFIX + t][ok] = result[t].cpu().numpy()
        return out


def ray_embedding_pass(model, dataset, taps: Sequence[str], *, allocate, batch_size: int = 64,
                       device: str | None = None, num_workers: int | None = None, progress=None, offset: int = 0,
                       total: int | None = None, indices: Sequence[int] | None = None):
    """The Ray engine of :func:`tldiag.embed.embed_dataset`: the same :class:`tldiag.forward.Pass` as the local engine
    (``allocate`` gives the arrays to fill, the cache's entries being written), computed by an actor pool.

    ``num_workers`` caps the number of model replicas (default: every GPU of the cluster, else every CPU);
    ``device`` is ignored (each replica uses its GPU when the cluster has them)."""
    from ray.data import ActorPoolStrategy

    from .forward import Pass, write_batch

    ray = connect()
    cluster = workers(size=num_workers or None)
    rows = np.arange(len(dataset), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    n = len(rows)
    total = n if total is None else total
    positions = np.arange(n, dtype=np.int64)
    # blocks of a few batches each: every replica gets work, and the driver hears back often
    step = max(batch_size, min(batch_size * 4, -(-n // (cluster.size * 4))))
    import pandas as pd

    data = ray.data.from_pandas([pd.DataFrame({"position": positions[s:s + step], "row": rows[s:s + step]})
                                 for s in range(0, n, step)])
    dataset_ref = ray.put(dataset)
    mapped = data.map_batches(
        _Embedder, batch_size=batch_size, batch_format="numpy",
        compute=ActorPoolStrategy(size=cluster.size), num_cpus=cluster.num_cpus, num_gpus=cluster.num_gpus,
        runtime_env=runtime_env(),
        fn_constructor_kwargs=dict(model_id=model.id, resolution=model.preprocessing.input_size,
                                   weights_hash=model.weights_hash, prep_key=model.preprocessing.key(), dataset=[dataset_ref], taps=list(taps), threads=cluster.threads,
                                   gpu=cluster.num_gpus > 0))
    out: dict[str, np.ndarray] = {}
    failures: dict[int, str] = {}
    done = 0
    t_start = time.perf_counter()
    for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
        pos = np.asarray(batch["position"], dtype=np.int64)
        reasons = batch["reason"]
        bad = np.array([bool(r) for r in reasons], dtype=bool)
        failures.update({int(p): str(r) for p, r in zip(pos[bad], reasons[bad])})
        good = ~bad
        if good.any():
            write_batch(out, {t: np.asarray(batch[_TAP_PREFIX + t])[good] for t in taps}, pos[good], taps, n,
                        allocate)
        done += len(pos)
        if progress:
            rate = done / max(time.perf_counter() - t_start, 1e-9)
            progress(offset + done, total, f"{rate:.0f} images/s on {cluster.size} Ray workers, "
                                           f"about {(total - offset - done) / max(rate, 1e-9):.0f} s left")
    for t in taps:
        if t not in out:
            out[t] = allocate(t, n, 0)
    return Pass(out, n / max(time.perf_counter() - t_start, 1e-9), failures)


# ----------------------------------------------------------------------------- independent runs (Ray tasks)
class _ProgressBoard:
    """Where tasks post how far they are (task key -> fraction, message); the driver reads the whole board."""

    def __init__(self):
        self.board: dict[str, tuple[float, str]] = {}

    def post(self, key: str, fraction: float, message: str) -> None:
        self.board[key] = (float(fraction), str(message))

    def read(self) -> dict[str, tuple[float, str]]:
        return dict(self.board)


@dataclass(frozen=True)
class Call:
    """One task: ``fn(*args, report=..., **kwargs)`` known to the driver by ``key``; ``report(fraction, message)``
    posts its progress."""

    key: str
    args: tuple = ()
    kwargs: Mapping[str, Any] | None = None


def _task(fn: Callable, board, key: str, threads: int, args: tuple, kwargs: Mapping[str, Any]):
    import torch

    ray = _ray()
    torch.set_num_threads(threads)
    kwargs = {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in dict(kwargs or {}).items()}
    last = [0.0]

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or fraction >= 1.0:
            last[0] = now
            board.post.remote(key, fraction, message)
    return fn(*args, report=report, **kwargs)


def run_tasks(fn: Callable, calls: Sequence[Call], *, gpu: bool | None = None,
              on_result: Callable[[str, Any], None] | None = None,
              progress: Callable[[int, float, str], None] | None = None, poll_s: float = 0.5,
              shared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``fn`` once per call as Ray tasks, as many at a time as the cluster has workers (one GPU each on a GPU
    cluster), and return key -> result.

    ``on_result(key, result)`` runs in the driver as each task finishes (in the order they finish);
    ``progress(finished, running, message)`` gets the number of finished tasks, the sum of the running ones' posted
    fractions and the latest message. ``shared`` objects are put in the object store once and passed to every task
    by those keyword names. An error in a task is raised here after the others are cancelled; so is a cancel of the
    driver (a cancelled job): every task it started is cancelled.
    """
    ray = connect()
    cluster = workers()
    use_gpu = cluster.num_gpus > 0 if gpu is None else gpu
    board = ray.remote(num_cpus=0)(_ProgressBoard).remote()
    remote = ray.remote(_task).options(num_cpus=cluster.num_cpus if not use_gpu else 1, num_gpus=1 if use_gpu else 0,
                                       max_retries=0, runtime_env=runtime_env())
    refs_shared = {k: ray.put(v) for k, v in (shared or {}).items()}
    pending: dict[Any, str] = {}
    results: dict[str, Any] = {}
    try:
        for call in calls:
            kwargs = {**dict(call.kwargs or {}), **refs_shared}
            pending[remote.remote(fn, board, call.key, cluster.threads, tuple(call.args), kwargs)] = call.key
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            for ref in ready:
                key = pending.pop(ref)
                try:
                    results[key] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # a bad input in a task reads as it does here
                    if isinstance(getattr(exc, "cause", None), TldiagError):
                        raise exc.cause from None
                    raise
                if on_result:
                    on_result(key, results[key])
            if progress and pending:
                posted = ray.get(board.read.remote())
                running = [posted[k] for k in pending.values() if k in posted]
                latest = running[-1][1] if running else "waiting for a Ray worker"
                progress(len(results), sum(f for f, _ in running),
                         f"{len(results)}/{len(calls)} done, {len(running)} running on Ray · {latest}")
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.kill(board)
    return results


__all__ = ["INSTALL_HINT", "FORWARDED_ENV", "connect", "runtime_env", "Workers", "workers", "ray_embedding_pass", "Call", "run_tasks"]
