"""``python -m tldiag.bench scale``: data at the size teams have (issue 20), printed as ratios.

1. **Open time**: a 100,000-file class-folder tree (the generated JPEGs, hard-linked five times over) opened by
   ``load_dataset`` in a fresh process, cold (no header scan cached) and warm (the scan read back).
2. **Engines**: images/s of one embedding pass over the 20,000 generated JPEGs (listed in a CSV manifest) with the
   local engine and with the Ray engine (a local Ray instance, one model replica per CPU: 2 here), each in a fresh
   process from an empty cache. Target: Ray / local >= 0.85 (on one machine Ray has no more cores to give, so this
   measures its overhead only).
3. **Memory**: peak resident memory of a fresh process that opens N images (source and target halves of the
   manifest), embeds them with the local engine, and runs the shift report, a PCA map and the linear probes with
   sample limits of 1,000 images per domain: N = 2,000 against N = 20,000. Target: ratio <= 1.3 (memory follows
   the batch and the sample limits, not N).

The images are synthetic (10 classes: oriented stripes of a class-specific angle and colour, random phase, noise)
at 96x96 px, JPEG quality 90: real decodes of real JPEGs, at a size that keeps the whole run to several minutes on 2
cores. ``--keep DIR`` reuses a generated set.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_CLASSES = 10
SIZE = 96
LIMIT = 1000  # the sample limits of the memory runs (per domain): shift, projection and probes


def make_images(folder: Path, n: int, *, seed: int = 0) -> list[tuple[str, int, str]]:
    """``n`` synthetic JPEGs in one subfolder per class; (relative path, class, split) of each."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    rows = []
    for c in range(N_CLASSES):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % N_CLASSES
        angle = np.pi * c / N_CLASSES + rng.normal(0, 0.05)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (0.2 + 0.02 * c) + rng.uniform(0, 2 * np.pi))
        colour = np.array([(c * 37) % 255, (c * 91) % 255, (c * 151) % 255], dtype=np.float32)
        img = 127 + 60 * wave[..., None] * (colour / 255 + 0.3) + rng.normal(0, 12, (SIZE, SIZE, 3))
        rel = f"class{c}/{i:06d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / rel, quality=90)
        rows.append((rel, c, "a" if (i // N_CLASSES) % 2 == 0 else "b"))
    return rows


def write_manifest(folder: Path, rows: list[tuple[str, int, str]]) -> Path:
    path = folder / "labels.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "label", "split"])
        w.writerows((rel, f"class{c}", split) for rel, c, split in rows)
    return path


def link_tree(images: Path, rows: list[tuple[str, int, str]], out: Path, n: int) -> None:
    """A class-folder tree of ``n`` files, each a hard link to a generated JPEG (cheap to make, real to open)."""
    for c in range(N_CLASSES):
        (out / f"class{c}").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        rel, c, _ = rows[k % len(rows)]
        os.link(images / rel, out / f"class{c}" / f"{k:06d}.jpg")


def _worker(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process; prints nothing but its JSON."""
    if args.task == "open":
        from .data import load_dataset

        t0 = time.perf_counter()
        ds = load_dataset(args.spec)
        return {"seconds": time.perf_counter() - t0, "n": len(ds)}
    from .data import load_dataset
    from .embed import embed_dataset, embed_pair
    from .models import load_model

    model = load_model(args.model, resolution=args.resolution)
    if args.task == "engine":
        if args.engine == "ray":
            from . import distributed

            distributed.connect()  # the cluster's start is not part of a pass
        ds = load_dataset(args.spec)
        t0 = time.perf_counter()
        emb = embed_dataset(model, ds, batch_size=args.batch_size)
        return {"seconds": time.perf_counter() - t0, "images_per_second": emb.images_per_second, "n": len(emb),
                "engine": emb.engine}
    # memory: open, embed, shift, a PCA map and probes, all with sample limits
    from .metrics import shift_report
    from .probes import ProbeConfig, probe_curve
    from .projection import ProjectionParams, project_pair

    source, target = load_dataset(f"{args.spec}&split=a"), load_dataset(f"{args.spec}&split=b")
    pair = embed_pair(model, source, target, batch_size=args.batch_size)
    rss_embed = _peak_mb()
    report = shift_report(pair, n_permutations=200, n_bootstrap=50, class_permutations=50, max_samples=LIMIT)
    proj = project_pair(pair, report.headline, ProjectionParams(method="pca", max_samples=LIMIT, random_state=0))
    curve = probe_curve({t: pair.target[t] for t in pair.taps if t in pair.target.features}, pair.target.labels,
                        classes=pair.target.classes, config=ProbeConfig(n_splits=1, max_samples=LIMIT))
    return {"n": len(pair.source) + len(pair.target), "peak_rss_mb": _peak_mb(), "peak_rss_mb_after_embedding":
            rss_embed, "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "mmd": report.layer(report.headline).mmd.mmd, "points": len(proj.coords),
            "probe_accuracy": curve.best.mean}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _run(home: Path, *argv: str, env: dict | None = None) -> dict:
    """A worker in a fresh process with its own ``TLDIAG_HOME`` (no cache hits), its JSON result."""
    environ = {**os.environ, "TLDIAG_HOME": str(home), **(env or {})}
    environ.setdefault("TLDIAG_DATA_ROOTS", os.pathsep.join([str(home.parent), os.getcwd()]))
    if "TLDIAG_RAY_ADDRESS" not in (env or {}):
        environ.pop("TLDIAG_RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-m", "tldiag.bench", "scale-worker", *argv], capture_output=True,
                         text=True, env=environ)
    if out.returncode != 0:
        raise RuntimeError(f"scale-worker {' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_scale(args: argparse.Namespace) -> int:
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tldiag-scale-"))
    images = work / "images"
    try:
        t0 = time.perf_counter()
        if (images / "labels.csv").is_file() and args.keep:
            with open(images / "labels.csv") as f:
                rows = [(r["filepath"], int(r["label"][5:]), r["split"]) for r in csv.DictReader(f)][:args.n]
        else:
            shutil.rmtree(images, ignore_errors=True)
            rows = make_images(images, args.n)
            write_manifest(images, rows)
        tree = work / f"tree{args.open_n}"
        if not tree.is_dir():
            link_tree(images, rows, tree, args.open_n)
        print(f"data: {len(rows):,} JPEGs at {SIZE}x{SIZE} px in {N_CLASSES} class folders and a CSV manifest, and a "
              f"{args.open_n:,}-file tree of hard links to them ({time.perf_counter() - t0:.0f} s to make) in {work}")
        home = work / "home"
        common = ["--model", args.model, "--resolution", str(args.resolution), "--batch-size", str(args.batch_size)]

        parts = set(args.parts.split(","))
        result: dict = {}
        ok = True
        # 1. open time
        if "open" in parts:
            result.update(_open_times(home, tree, images))
        manifest = f"csv:{images / 'labels.csv'}?path=filepath&label=label"
        if "engines" in parts:
            ratio, speeds = _engines(home, manifest, common)
            ok &= ratio >= 0.85
            result.update(local_images_per_second=speeds["local"], ray_images_per_second=speeds["ray"],
                          ray_ratio=ratio)
        if "memory" in parts:
            mem, peaks = _memory(home, manifest, common, args.small)
            ok &= mem <= 1.3
            result.update(peak_rss_mb={k: v["peak_rss_mb"] for k, v in peaks.items()}, rss_ratio=mem)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _open_times(home: Path, tree: Path, images: Path) -> dict:
    shutil.rmtree(home, ignore_errors=True)
    cold = _run(home, "open", "--spec", f"folder:{tree}")
    warm = _run(home, "open", "--spec", f"folder:{tree}")
    print(f"open {cold['n']:,}-file folder: cold {cold['seconds']:.1f} s (names, sizes and headers read), "
          f"warm {warm['seconds']:.1f} s (the header scan read back)")
    manifest = f"csv:{images / 'labels.csv'}?path=filepath&label=label"
    shutil.rmtree(home, ignore_errors=True)
    opened = _run(home, "open", "--spec", manifest)
    print(f"open the CSV manifest of {opened['n']:,} images: cold {opened['seconds']:.1f} s")
    return {"open_cold_s": cold["seconds"], "open_warm_s": warm["seconds"], "manifest_open_s": opened["seconds"]}


def _engines(home: Path, manifest: str, common: list[str]) -> tuple[float, dict]:
    speeds = {}
    for engine in ("local", "ray"):
        shutil.rmtree(home, ignore_errors=True)
        env = {"TLDIAG_RAY_ADDRESS": "local"} if engine == "ray" else {}
        r = _run(home, "engine", "--spec", manifest, *common, "--engine", engine, env=env)
        speeds[engine] = r["images_per_second"]
        print(f"{engine:5s} engine: {r['n']:,} images in {r['seconds']:.1f} s, {r['images_per_second']:.0f} "
              f"images/s ({r['engine']})")
    ratio = speeds["ray"] / speeds["local"]
    print(f"Ray / local images/s: {ratio:.2f}  (target >= 0.85) {'PASS' if ratio >= 0.85 else 'FAIL'}")
    return ratio, speeds


def _memory(home: Path, manifest: str, common: list[str], n_small: int) -> tuple[float, dict]:
    peaks = {}
    small = max(1, n_small // N_CLASSES // 2)  # per class in each half (source and target)
    for label, spec in (("small", f"{manifest}&limit={small}&seed=0"), ("large", f"{manifest}&seed=0")):
        shutil.rmtree(home, ignore_errors=True)
        r = _run(home, "memory", "--spec", spec, *common)
        peaks[label] = r
        print(f"N = {r['n']:>6,}: peak RSS {r['peak_rss_mb']:.0f} MB (after embedding "
              f"{r['peak_rss_mb_after_embedding']:.0f} MB; largest decoding worker {r['children_peak_rss_mb']:.0f} "
              f"MB); MMD {r['mmd']:.3f}, probe {r['probe_accuracy']:.3f}")
    mem = peaks["large"]["peak_rss_mb"] / peaks["small"]["peak_rss_mb"]
    print(f"peak RSS {peaks['large']['n']:,} / {peaks['small']['n']:,} images: {mem:.2f}  (target <= 1.3; sample "
          f"limits {LIMIT:,} per domain) {'PASS' if mem <= 1.3 else 'FAIL'}")
    return mem, peaks


def add_arguments(sub) -> None:
    p = sub.add_parser("scale", help="open 100k files, local vs Ray engine, peak memory at 2k vs 20k images")
    p.add_argument("--n", type=int, default=20_000, help="generated JPEGs (default 20,000)")
    p.add_argument("--open-n", type=int, default=100_000, help="files in the folder whose open is timed")
    p.add_argument("--small", type=int, default=2_000, help="images of the small memory run (default 2,000)")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it (reused by the next run)")
    p.add_argument("--parts", default="open,engines,memory", help="which to measure (default: all three)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p = sub.add_parser("scale-worker")  # internal: one measurement of `scale` in a fresh process
    p.add_argument("task", choices=["open", "engine", "memory"])
    p.add_argument("--spec", required=True)
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--engine", choices=["local", "ray"], default="local")


def run(args: argparse.Namespace) -> int | None:
    if args.what == "scale":
        return bench_scale(args)
    if args.what == "scale-worker":
        print(json.dumps(_worker(args)))
        return 0
    return None


__all__ = ["make_images", "write_manifest", "link_tree", "bench_scale", "add_arguments", "run"]
