"""Benchmarks that print ratios: ``python -m tldiag.bench embed [--model M] [--n N] ...``.

``embed``: images/s of the embedding engine on the demo data (decode, resize, normalise, all
taps + logits, from a dataset spec) against a bare ``model(x)`` on preloaded, normalised
channels_last tensors of the same images, same batch size and device. Target ratio >= 0.9.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def bench_embed(model_id: str, spec: str, n: int, batch_size: int, resolution: int | None,
                repeats: int, num_workers: int | None) -> dict:
    from .data import load_dataset, with_options
    from .embed import ResizeCrop, default_num_workers, embed_dataset, normalise
    from .models import load_model
    from . import _config

    device = torch.device(_config.device_name())
    model = load_model(model_id, resolution=resolution)
    ds = load_dataset(with_options(spec, n=n) if spec.startswith("demo:printed-digits") else spec)
    taps = model.default_taps()
    workers = default_num_workers() if num_workers is None else num_workers

    # (b) the ceiling: bare forward passes on preloaded tensors
    resize = ResizeCrop(model.preprocessing)
    batches = [normalise(torch.stack([resize(ds[i]) for i in range(s, min(s + batch_size, len(ds)))]),
                         model.preprocessing).to(device) for s in range(0, len(ds), batch_size)]
    module = model.module.to(device).to(memory_format=torch.channels_last).eval()

    def bare() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                module(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(ds) / (time.perf_counter() - t)

    def engine() -> float:
        t = time.perf_counter()
        embed_dataset(model, ds, taps, batch_size=batch_size, device=str(device), num_workers=workers,
                      use_cache=False)
        return len(ds) / (time.perf_counter() - t)

    bare()  # warm-up (allocator, kernels)
    engine()
    bare_ips, engine_ips = [], []
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        bare_ips.append(bare())
        engine_ips.append(engine())
    # Each engine run is compared with the bare run just before it (same machine state); the
    # median of those ratios is robust to the drift of a shared machine.
    ratios = sorted(e / b for e, b in zip(engine_ips, bare_ips))
    return {"model": model.id, "dataset": ds.spec, "n": len(ds), "batch_size": batch_size,
            "input_size": model.preprocessing.input_size, "device": str(device), "workers": workers,
            "taps": len(taps) + 1, "bare_ips": statistics.median(bare_ips),
            "engine_ips": statistics.median(engine_ips), "ratio": statistics.median(ratios),
            "ratio_range": (ratios[0], ratios[-1]), "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tldiag.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("embed", help="embedding engine vs bare forward pass")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--dataset", default="demo:digits", help="dataset spec (default: the demo's source)")
    p.add_argument("--n", type=int, default=1000, help="images for demo:printed-digits")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--resolution", type=int, default=128, help="input px (the demo's default: 128)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    r = bench_embed(args.model, args.dataset, args.n, args.batch_size, args.resolution, args.repeats,
                    args.workers)
    print(f"model {r['model']} at {r['input_size']} px on {r['device']} ({r['torch_threads']} torch threads), "
          f"{r['n']} images of {r['dataset']}, batch {r['batch_size']}, {r['workers']} loader workers, "
          f"{r['taps']} taps incl. logits")
    print(f"bare forward on preloaded channels_last tensors: {r['bare_ips']:8.1f} images/s")
    print(f"tldiag engine (decode + resize + all taps):      {r['engine_ips']:8.1f} images/s")
    lo, hi = r["ratio_range"]
    print(f"ratio engine/bare: {r['ratio']:.3f}  (median of {args.repeats} paired runs, range {lo:.3f}-{hi:.3f}; "
          f"target >= 0.9: {'PASS' if r['ratio'] >= 0.9 else 'FAIL'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
