"""The ``tldiag`` command line: list models, inspect datasets, compute embeddings.

Errors caused by input exit with status 2 and one line on stderr (no traceback).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import TldiagError


def _table(rows: list[dict], columns: Sequence[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns),
             "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _write_json(path: str | None, payload: object) -> None:
    if not path:
        return
    text = json.dumps(payload, indent=2, default=str)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text + "\n")


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models

    infos = list_models(include_timm=args.all)
    if not args.all:
        shown = [m for m in infos if m.status != "needs download"]
        hidden = len(infos) - len(shown)
    else:
        shown, hidden = infos, 0
    print(_table([{"id": m.id, "status": m.status, "description": m.title} for m in shown],
                 ["id", "status", "description"]))
    if hidden:
        print(f"\n(+{hidden} torchvision models whose weights need a download; --all lists them and "
              "every timm model with pretrained weights)")
    _write_json(args.json, [m.__dict__ for m in shown])
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import load_dataset

    payload = []
    for spec in args.spec:
        ds = load_dataset(spec)
        print(f"{ds.spec}: {len(ds)} images, {len(ds.classes) or 'no'} classes — {ds.description}")
        counts = ds.class_counts()
        print(_table([{"class": k, "images": v} for k, v in counts.items()], ["class", "images"]))
        if ds.skipped:
            print(f"skipped {len(ds.skipped)} files:")
            for s in ds.skipped[:20]:
                print(f"  {s.path}: {s.reason}")
            if len(ds.skipped) > 20:
                print(f"  ... and {len(ds.skipped) - 20} more")
        print()
        payload.append({"spec": ds.spec, "n": len(ds), "classes": counts, "fingerprint": ds.fingerprint,
                        "skipped": [s.__dict__ for s in ds.skipped]})
    _write_json(args.json, payload)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .data import compare_classes, load_dataset, with_options
    from .embed import embed_dataset
    from .models import load_model

    model = load_model(args.model, resolution=args.resolution)
    datasets = {role: load_dataset(with_options(spec, limit=args.limit))
                for role, spec in (("source", args.source), ("target", args.target)) if spec}
    if not datasets:
        raise TldiagError("Give at least --source or --target, e.g. --source demo:digits.")
    if "source" in datasets and "target" in datasets:
        print(compare_classes(datasets["source"], datasets["target"]).message(), file=sys.stderr)
    taps = args.layers.split(",") if args.layers else model.default_taps()
    if args.layers == "all":
        taps = model.tap_names
    results = {}
    for role, ds in datasets.items():
        with tqdm(total=len(ds), desc=f"{role} {ds.spec}", unit="img", file=sys.stderr, leave=False) as bar:
            def progress(done: int, total: int, message: str) -> None:
                bar.n = done
                bar.set_postfix_str(message, refresh=True)
            results[role] = embed_dataset(model, ds, taps, batch_size=args.batch_size, progress=progress)
    first = next(iter(results.values()))
    rows = []
    for tap in first.taps:
        row = {"layer": tap, "dim": first[tap].shape[1]}
        for role, emb in results.items():
            row[f"n_{role}"] = len(emb)
            row[f"{role} cache"] = "hit" if emb.cache_hits[tap] else "miss"
        # all computed layers of a dataset come from one shared forward pass; hits cost ~0 s
        row["seconds"] = round(sum(0.0 if emb.cache_hits[tap] else emb.seconds for emb in results.values()), 2)
        rows.append(row)
    seconds = {role: round(emb.seconds, 2) for role, emb in results.items()}
    columns = (["layer", "dim"] + [f"n_{r}" for r in results] + [f"{r} cache" for r in results]
               + ["seconds"])
    print(f"{model.id} at {model.preprocessing.input_size}px — " +
          ", ".join(f"{r}: {s} s" for r, s in seconds.items()))
    print(_table(rows, columns))
    _write_json(args.json, {"model": model.id, "weights_hash": model.weights_hash,
                            "preprocessing": model.preprocessing.__dict__,
                            "datasets": {r: e.dataset for r, e in results.items()},
                            "seconds": seconds, "layers": rows})
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tldiag", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tldiag {__import__('tldiag').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model registry (offline and cached models first)")
    p.add_argument("--all", action="store_true", help="also list models that need a download, and timm")
    p.add_argument("--json", metavar="FILE", help="also write the list as JSON ('-' for stdout)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("datasets", help="open dataset specs and print counts per class and skipped files")
    p.add_argument("spec", nargs="+", help="e.g. demo:digits, folder:/data/xrays, torchvision:MNIST?split=test")
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("embed", help="compute (or read cached) embeddings of a source and a target dataset")
    p.add_argument("--model", default="efficientnet-lite0", help="model id (see `tldiag models`)")
    p.add_argument("--source", help="source dataset spec")
    p.add_argument("--target", help="target dataset spec")
    p.add_argument("--layers", help="comma-separated tap names, or 'all' (default: a handful shallow to deep)")
    p.add_argument("--limit", type=int, help="at most N images per class from each dataset")
    p.add_argument("--resolution", type=int, help="input size in pixels (default: the weights' own)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=cmd_embed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TldiagError as exc:
        print(f"tldiag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tldiag: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
