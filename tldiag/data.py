"""Datasets from short spec strings: image folders, torchvision datasets and offline demos.

A spec is ``kind:name?key=value&...`` and names everything needed to rebuild the same images:

``folder:/data/xrays``                 ImageFolder layout (class subfolders; a flat folder is unlabelled)
``torchvision:MNIST?split=test``       a torchvision dataset under ``root`` (default ``$TLDIAG_HOME/datasets``)
``demo:digits``                        scikit-learn's 1,797 handwritten digits (offline)
``demo:printed-digits``                digits 0-9 rendered from installed TrueType fonts with affine jitter
``csv:/data/labels.csv?path=filepath&label=diagnosis``  a table of image paths (and labels, and splits)
``parquet:/data/labels.parquet?...``   the same table as Parquet (pandas with pyarrow)
``demo:tiles?set=photos``              which of scikit-image's photographs a 32x32 tile comes from (non-overlapping
                                       tiles, so no two images share a region; ``set`` photos, gray or all)
``hf:user/name?split=test``            a Hugging Face ``datasets`` image dataset from the local cache (or a folder
                                       written by ``save_to_disk``: ``hf:/data/saved``); ``image``, ``label``, ``config``

Options for every kind: ``shift`` (a corruption from :data:`tldiag.shifts.CORRUPTIONS`) with
``severity`` 1..5, ``limit`` (at most N images per class, N in all when unlabelled; a seeded
choice) and ``seed``.
Every dataset has a content :attr:`ImageDataset.fingerprint` that keys the embedding cache.

Opening a dataset of files reads their names, sizes and image headers only (cached under the listing's
fingerprint), so a folder of 100,000 images opens in seconds. A file whose header is fine but whose pixels do not
decode is found when it is first read in full (embedding, :meth:`ImageDataset.verify`): it is recorded under the
listing's fingerprint (``$TLDIAG_HOME/scans``), listed in :attr:`ImageDataset.skipped`, and dropped from the dataset
in place, which changes its fingerprint; every later open leaves it out from the start.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import warnings
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, urlencode

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import _config
from .cache import atomic_write_text
from .errors import DatasetError, SpecError, UndecodableImage
from .shifts import CORRUPTIONS, apply_shift

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TORCHVISION_DATASETS = ("MNIST", "FashionMNIST", "KMNIST", "EMNIST", "QMNIST", "CIFAR10", "CIFAR100",
                        "SVHN", "USPS", "STL10", "GTSRB", "Flowers102", "DTD", "OxfordIIITPet",
                        "EuroSAT", "Food101", "FGVCAircraft", "StanfordCars", "Country211",
                        "PCAM", "RenderedSST2", "SEMEION", "Caltech101", "Imagenette")
_COMMON_KEYS = ("shift", "severity", "limit", "seed")
_MANIFEST_KEYS = ("path", "label", "split", "split_column")
UNLABELLED = -1


# ----------------------------------------------------------------------------- spec strings
@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec; ``str(spec)`` gives the canonical string (sorted options)."""

    kind: str
    name: str
    options: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def __str__(self) -> str:
        query = f"?{urlencode(self.options)}" if self.options else ""
        return f"{self.kind}:{self.name}{query}"


def parse_dataset_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """Parse and validate ``kind:name?options`` without touching any file."""
    if isinstance(spec, DatasetSpec):
        return spec
    spec = str(spec).strip()
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in DATASET_KINDS:
        raise SpecError(f"Unknown dataset spec '{spec}': it must start with one of "
                        f"{', '.join(k + ':' for k in DATASET_KINDS)} e.g. 'folder:/data/xrays' or 'demo:digits'.")
    entry = DATASET_KINDS[kind]
    name, _, query = rest.partition("?")
    if not name:
        raise SpecError(f"Dataset spec '{spec}' names no {'path' if entry.path else 'dataset'} after '{kind}:'.")
    try:
        pairs = parse_qsl(query, strict_parsing=True) if query else []
    except ValueError:
        raise SpecError(f"Dataset spec '{spec}' has malformed options '{query}'; "
                        "write them as key=value pairs joined by '&', e.g. '?shift=blur&severity=3'.") from None
    valid = _COMMON_KEYS + entry.options
    options: dict[str, str] = {}
    for key, value in pairs:
        if key not in valid:
            raise SpecError(f"Unknown option '{key}' in dataset spec '{spec}'; valid options for "
                            f"{kind}: {', '.join(valid)}.")
        options[key] = value
    if kind == "demo" and name not in DEMO_DATASETS:
        raise SpecError(f"Unknown demo dataset '{name}'; valid: {', '.join(DEMO_DATASETS)}.")

    if kind == "torchvision" and name not in TORCHVISION_DATASETS:
        close = [n for n in TORCHVISION_DATASETS if n.lower() == name.lower()]
        hint = f" Did you mean '{close[0]}'?" if close else f" Valid: {', '.join(TORCHVISION_DATASETS)}."
        raise SpecError(f"Unknown torchvision dataset '{name}' in '{spec}'.{hint}")
    if "set" in options and (kind, name) != ("demo", "tiles"):
        raise SpecError(f"Option 'set' in '{spec}' belongs to demo:tiles only (its photos: "
                        f"{', '.join(TILE_SETS)}).")
    if "set" in options and options["set"] not in TILE_SETS:
        raise SpecError(f"Unknown tile set '{options['set']}' in '{spec}'; valid: {', '.join(TILE_SETS)}.")
    if "shift" in options and options["shift"] not in CORRUPTIONS:
        raise SpecError(f"Unknown shift '{options['shift']}' in '{spec}'; valid: {', '.join(CORRUPTIONS)}.")
    if "split_column" in options and "split" not in options:
        raise SpecError(f"Dataset spec '{spec}' names a split column but no split to keep; add e.g. '&split=train'.")
    if "severity" in options and "shift" not in options:
        raise SpecError(f"Dataset spec '{spec}' sets severity without a shift; add e.g. '&shift=blur'.")
    for key, low, high in (("severity", 1, 5), ("limit", 1, None), ("seed", 0, None), ("n", 1, 100_000)):
        if key in options:
            _check_int(spec, key, options[key], low, high)
    return DatasetSpec(kind, name, tuple(sorted(options.items())))


def with_options(spec: str | DatasetSpec, **defaults: object) -> str:
    """``spec`` with each of ``defaults`` added unless the spec sets it already (None skips a key).

    >>> with_options("demo:digits?limit=3", limit=50, seed=1)
    'demo:digits?limit=3&seed=1'
    """
    parsed = parse_dataset_spec(spec)
    options = dict(parsed.options)
    for key, value in defaults.items():
        if value is not None:
            options.setdefault(key, str(value))
    return str(parse_dataset_spec(str(DatasetSpec(parsed.kind, parsed.name, tuple(sorted(options.items()))))))


def _check_int(spec: str, key: str, value: str, low: int, high: int | None) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise SpecError(f"Option {key}={value!r} in dataset spec '{spec}' must be an integer {bound}.")
    return number


# ----------------------------------------------------------------------------- image helpers
def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL image (grayscale, palette, alpha, 16-bit, float) to 8-bit RGB.

    Transparent pixels are composited on white; 16-bit and 32-bit integer images are scaled by
    their bit depth, float images by their own range.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        elif img.mode.startswith("I;16") or arr.max() > 255:
            arr = arr / 65535.0 * 255.0
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


def _load_image_file(path: str) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return to_rgb(img)


# ----------------------------------------------------------------------------- sources
@dataclass
class _Source:
    """Raw images before shifts and subsampling: ``load(i)`` returns a PIL RGB image."""

    labels: np.ndarray
    classes: tuple[str, ...]
    sample_ids: list[str]
    fingerprint: str
    load: Callable[[int], Image.Image]
    skipped: list[SkippedFile] = field(default_factory=list)
    description: str = ""
    files: bool = False
    """Whether the images are files that may turn out damaged (generated and packaged datasets cannot)."""


class _FolderLoader:
    """Picklable loader for DataLoader workers; a file that does not decode raises :class:`UndecodableImage`."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __call__(self, i: int) -> Image.Image:
        try:
            return _load_image_file(self.paths[i])
        except Exception as exc:  # PIL raises many types for corrupt data
            raise UndecodableImage(self.paths[i], _reason(exc)) from None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _check_header(path: str) -> str | None:
    """Read the image header only (format and size, no pixels); return the reason if the file is unusable."""
    try:
        with Image.open(path) as img:
            if img.size[0] < 1 or img.size[1] < 1:
                return "empty image"
    except Exception as exc:  # PIL raises many types for corrupt data
        return _reason(exc)
    return None


_PARALLEL_HEADERS = 20_000
"""From this many files on, headers are read by a pool of processes (parsing them is Python work that threads would
serialise on the GIL: measured slower than one thread)."""


def _check_headers(paths: list[str]) -> list[str | None]:
    """:func:`_check_header` of each path, in order; in a pool of fresh processes for large listings."""
    workers = min(_config.cpu_count(), 16)
    if len(paths) < _PARALLEL_HEADERS or workers < 2:
        return [_check_header(p) for p in paths]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawned, not forked: the caller may be a threaded server (Streamlit) or hold a CUDA context
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_check_header, paths, chunksize=2048))


# ----------------------------------------------------------------------------- what reading the files found
_SCAN_VERSION = 2


def _scan_dir() -> Path:
    return _config.home() / "scans"


def _scan_file(fingerprint: str) -> Path:
    return _scan_dir() / f"{fingerprint}.v{_SCAN_VERSION}.json"


def _read_scan(fingerprint: str) -> dict[str, dict[str, str]] | None:
    """``{"header": {path: reason}, "decode": {path: reason}}`` recorded for a listing, or None before its first
    header check."""
    try:
        scan = json.loads(_scan_file(fingerprint).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return {"header": dict(scan.get("header", {})), "decode": dict(scan.get("decode", {}))}


def _update_scan(fingerprint: str, *, header: dict[str, str] | None = None,
                 decode: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Set the header failures and/or add decode failures to the record of the listing ``fingerprint``, keeping
    what another process recorded meanwhile (a file lock, an atomic write); the record as written."""
    from filelock import FileLock

    folder = _scan_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f"{fingerprint}.lock")):
        scan = _read_scan(fingerprint) or {"header": {}, "decode": {}}
        if header is not None:
            scan["header"] = header
        scan["decode"].update(decode or {})
        atomic_write_text(_scan_file(fingerprint), json.dumps({"version": _SCAN_VERSION, **scan}))
    return scan


def record_undecodable(fingerprint: str, failures: dict[str, str]) -> None:
    """Add files that failed to decode (sample id -> reason) to the record of the listing ``fingerprint``, so that
    every later open leaves them out."""
    if failures:
        _update_scan(fingerprint, decode=failures)


def _verified_marker(fingerprint: str) -> Path:
    return _scan_dir() / "verified" / fingerprint


def _folder_source(spec: DatasetSpec) -> _Source:
    root = _config.check_data_path(spec.name, what="dataset folder")
    if not root.exists():
        raise DatasetError(f"Dataset folder '{spec.name}' does not exist. Check the path, "
                           f"or create it with one subfolder of images per class.")
    if not root.is_dir():
        raise DatasetError(f"Dataset path '{spec.name}' is a file, not a folder. Point folder: at the folder "
                           "that holds one subfolder per class (or the images themselves, if unlabelled).")
    skipped: list[SkippedFile] = []
    class_dirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    entries: list[tuple[str, int]] = []
    outside = "a link to a place outside the data roots"
    linked_dirs = [c for c in class_dirs if os.path.islink(root / c) and not _config.inside_data_roots(root / c)]
    skipped += [SkippedFile(str(root / c), outside) for c in linked_dirs]
    class_dirs = [c for c in class_dirs if c not in linked_dirs]
    linked_out: list[str] = []  # a file may be a link too: one that leads out of the data roots is never read
    inside = _config.roots_test()

    def images_in(folder: Path, label: int, recurse: bool) -> None:
        found = []
        with os.scandir(folder) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if recurse and not e.name.startswith("."):  # hidden folders are skipped, as os.walk did here
                        found.append((e.name, e.path, True, False))
                elif e.name.lower().endswith(IMAGE_EXTENSIONS):
                    found.append((e.name, e.path, False, e.is_symlink()))
        # as os.walk lists them: a folder's own files by name, then its subfolders by name
        for is_dir, name, path, link in sorted((d, n, p, k) for n, p, d, k in found):
            if is_dir:
                images_in(Path(path), label, recurse)
            elif link and not inside(path):
                linked_out.append(path)
            else:
                entries.append((path, label))

    if class_dirs:
        for label, cls in enumerate(class_dirs):
            images_in(root / cls, label, True)
        for e in os.scandir(root):
            if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS):
                skipped.append(SkippedFile(e.path, "image outside the class subfolders"))
        classes = tuple(class_dirs)
    else:
        images_in(root, UNLABELLED, False)
        classes = ()
    skipped += [SkippedFile(p, outside) for p in sorted(linked_out)]
    if not entries:
        anything = any(True for _ in root.iterdir())
        raise DatasetError(
            f"Dataset folder '{spec.name}' {'holds no images' if anything else 'is empty'}. "
            f"Expected files ending in {', '.join(IMAGE_EXTENSIONS)}, either in one subfolder per class "
            "(labelled) or directly in the folder (unlabelled).")

    return _checked_files(spec, root, entries, classes, skipped, description=f"image folder {root}")


def _checked_files(spec: DatasetSpec, root: Path, entries: list[tuple[str, int]], classes: tuple[str, ...],
                   skipped: list[SkippedFile], *, description: str) -> _Source:
    """A source of image files: a content fingerprint from their names (relative to ``root``), labels, sizes and
    mtimes, and a header check of each (cached under that fingerprint, read in parallel); files whose header does
    not parse are skipped, and so are files recorded as undecodable when they were first read in full."""
    h = hashlib.sha256()
    stats = []
    prefix = os.path.join(str(root), "")
    for path, label in entries:
        st = os.stat(path)
        # what os.path.relpath gives, without its cost (a third of a 100k-file open) where a slice says the same
        rel = path[len(prefix):] if path.startswith(prefix) and "/." not in path else os.path.relpath(path, root)
        stats.append((rel, label, st.st_size, st.st_mtime_ns))
    h.update(json.dumps([str(root), classes, stats]).encode())
    fingerprint = h.hexdigest()
    scan = _read_scan(fingerprint)
    if scan is None:
        reasons = _check_headers([p for p, _ in entries])
        scan = _update_scan(fingerprint, header={p: r for (p, _), r in zip(entries, reasons) if r is not None})
    bad = scan["header"]
    skipped = skipped + [SkippedFile(p, r) for p, r in bad.items()]
    good = [(p, lab) for p, lab in entries if p not in bad]
    if not good:  # (the images recorded as undecodable are left out by ImageDataset, which reads that record)
        raise DatasetError(f"None of the {len(entries)} images in '{spec.name}' could be decoded "
                           f"(first: {skipped[-1].path}: {skipped[-1].reason}). Check that the files are images.")
    paths = [p for p, _ in good]
    return _Source(labels=np.array([lab for _, lab in good], dtype=np.int64), classes=classes,
                   sample_ids=paths, fingerprint=fingerprint, load=_FolderLoader(paths),
                   skipped=skipped, description=description, files=True)


def _read_table(spec: DatasetSpec, file: Path):
    import pandas as pd

    try:
        if spec.kind == "csv":
            return pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8")
        return pd.read_parquet(file)
    except ImportError as exc:
        raise DatasetError(f"Reading the Parquet manifest '{spec.name}' needs pyarrow ({exc}). Install it with "
                           "pip install pyarrow, or save the table as CSV and use csv:.") from None
    except Exception as exc:  # pandas and pyarrow raise many types for a malformed file
        raise DatasetError(f"Could not read the {spec.kind} manifest '{spec.name}' ({type(exc).__name__}: {exc}). "
                           f"Check that it is a {'comma-separated table with a header row' if spec.kind == 'csv' else 'Parquet file'}.") from None


def _column(table, spec: DatasetSpec, column: str, option: str) -> Any:
    if column not in table.columns:
        raise DatasetError(f"The manifest '{spec.name}' has no column '{column}' ({option}={column}); its columns are "
                           f"{', '.join(map(str, table.columns))}. Name the right one with ?{option}=COLUMN.")
    return table[column]


def _manifest_source(spec: DatasetSpec) -> _Source:
    """Images listed in a CSV or Parquet table: a column of paths (relative ones resolve against the table's
    folder), an optional column of labels and an optional split to keep."""
    file = _config.check_data_path(spec.name, what=f"{spec.kind} manifest")
    if not file.is_file():
        raise DatasetError(f"The {spec.kind} manifest '{spec.name}' does not exist{' (it is a folder)' if file.is_dir() else ''}. "
                           f"Check the path, or use folder: for a folder of class subfolders.")
    table = _read_table(spec, file)
    path_col, label_col = spec.get("path", "path"), spec.get("label")
    paths = _column(table, spec, path_col, "path").fillna("").astype(str)
    if spec.get("split") is not None:
        split_col = spec.get("split_column", "split")
        split_values = _column(table, spec, split_col, "split_column").astype(str)
        keep = split_values == spec.get("split")
        if not keep.any():
            raise DatasetError(f"No row of the manifest '{spec.name}' has {split_col} = '{spec.get('split')}'; its "
                               f"{split_col} values are {', '.join(sorted(split_values.unique())[:20])}.")
        table, paths = table[keep], paths[keep]
    labels_raw = _column(table, spec, label_col, "label").fillna("").astype(str) if label_col else None
    classes = tuple(sorted({v for v in labels_raw if v.strip()})) if labels_raw is not None else ()
    code = {c: k for k, c in enumerate(classes)}
    entries: list[tuple[str, int]] = []
    skipped: list[SkippedFile] = []
    inside = _config.roots_test()
    base = str(file.parent)
    values = labels_raw.tolist() if labels_raw is not None else None
    for row, (index, raw) in enumerate(zip(paths.index, paths.tolist())):
        if not raw.strip():  # named by its line in a CSV (the header is line 1), by its row number in Parquet
            where = f"line {index + 2}" if spec.kind == "csv" else f"row {index}"
            skipped.append(SkippedFile(f"{spec.name} {where}", f"no path in column '{path_col}'"))
            continue
        path = os.path.expanduser(raw)
        path = path if os.path.isabs(path) else os.path.join(base, path)
        if not inside(path):
            skipped.append(SkippedFile(path, "outside the data roots"))
            continue
        if not os.path.isfile(path):
            skipped.append(SkippedFile(path, "missing file"))
            continue
        if values is not None:
            value = values[row]
            if not value.strip():
                skipped.append(SkippedFile(path, f"no label in column '{label_col}'"))
                continue
            entries.append((path, code[value]))
        else:
            entries.append((path, UNLABELLED))
    if not entries:
        first = f" (first: {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise DatasetError(f"The manifest '{spec.name}' lists no usable image: {len(paths)} rows, {len(skipped)} "
                           f"skipped{first}.")
    split = f", split {spec.get('split')}" if spec.get("split") is not None else ""
    return _checked_files(spec, file.parent, entries, classes, skipped,
                          description=f"{spec.kind} manifest {file} ({len(paths)} rows{split})")


class _TorchvisionLoader:
    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __call__(self, i: int) -> Image.Image:
        img = self.dataset[i][0]
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.asarray(img))
        return to_rgb(img)


def _torchvision_source(spec: DatasetSpec) -> _Source:
    import inspect

    import torchvision

    root = spec.get("root") or str(_config.datasets_dir())
    root_path = _config.check_data_path(root, what="dataset root")
    cls = getattr(torchvision.datasets, spec.name)
    params = inspect.signature(cls).parameters
    split = spec.get("split", "train")
    kwargs: dict[str, Any] = {}
    if "train" in params:
        if split not in ("train", "test"):
            raise SpecError(f"torchvision:{spec.name} has splits train and test, not split={split!r}.")
        kwargs["train"] = split == "train"
    elif "split" in params:
        kwargs["split"] = split
    elif spec.get("split"):
        raise SpecError(f"torchvision:{spec.name} has no splits; remove split={split!r}.")
    if spec.name == "EMNIST":
        kwargs.setdefault("split", "balanced")
    try:
        dataset = cls(str(root_path), download=False, **kwargs)
    except (RuntimeError, FileNotFoundError, OSError):
        try:
            dataset = cls(str(root_path), download=True, **kwargs)
        except Exception as exc:
            raise DatasetError(
                f"torchvision dataset {spec.name} (split {split}) is not in {root_path} and could not be "
                f"downloaded ({type(exc).__name__}: {str(exc)[:120]}). On a machine with internet run "
                f"python -c \"import torchvision; torchvision.datasets.{spec.name}('{root_path}', download=True"
                f"{''.join(f', {k}={v!r}' for k, v in kwargs.items())})\" and copy the folder to {root_path}."
            ) from None
    except ValueError as exc:
        raise SpecError(f"torchvision:{spec.name} rejected its options: {exc}") from None
    labels = None
    for attr in ("targets", "labels", "_labels", "y"):
        value = getattr(dataset, attr, None)
        if value is not None and len(value) == len(dataset):
            labels = np.asarray([int(v) for v in value], dtype=np.int64)
            break
    if labels is None:
        labels = np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    classes = tuple(str(c) for c in getattr(dataset, "classes", [])) or tuple(str(i) for i in range(n_classes))
    h = hashlib.sha256(json.dumps([spec.name, split, len(dataset), classes]).encode())
    h.update(labels.tobytes())
    return _Source(labels=labels, classes=classes,
                   sample_ids=[f"{spec.name}/{split}[{i}]" for i in range(len(dataset))],
                   fingerprint=h.hexdigest(), load=_TorchvisionLoader(dataset),
                   description=f"torchvision {spec.name} ({split}) in {root_path}")


class _HFLoader:
    """One image of a Hugging Face dataset (memory-mapped Arrow, picklable), decoded on demand."""

    def __init__(self, dataset: Any, column: str, name: str):
        self.dataset, self.column, self.name = dataset, column, name

    def __call__(self, i: int) -> Image.Image:
        try:
            img = self.dataset[int(i)][self.column]
            if not isinstance(img, Image.Image):
                img = Image.fromarray(np.asarray(img))
            img.load()
            return to_rgb(img)
        except Exception as exc:  # PIL and Arrow raise many types for damaged data
            raise UndecodableImage(f"{self.name}[{i}]", _reason(exc)) from None


def _hf_source(spec: DatasetSpec) -> _Source:
    """A Hugging Face ``datasets`` image dataset: from the local cache by its hub id (offline: no download), or from
    a folder written by ``save_to_disk`` (under the data roots)."""
    try:
        import datasets as hf
    except ImportError:
        raise DatasetError(f"'{spec}' needs the Hugging Face datasets library: pip install datasets") from None
    split, config = spec.get("split", "train"), spec.get("config")
    on_disk = spec.name.startswith(("/", "~", "."))
    where = ""
    try:
        if on_disk:
            path = _config.check_data_path(Path(spec.name).expanduser(), what="saved Hugging Face dataset")
            where = f" in {path}"
            data = hf.load_from_disk(str(path))
            if isinstance(data, hf.DatasetDict):
                if split not in data:
                    raise DatasetError(f"The saved dataset {path} has no split {split!r}; its splits are "
                                       f"{', '.join(data)}. Choose one with ?split=NAME.")
                data = data[split]
        else:
            data = hf.load_dataset(spec.name, config, split=split)
    except DatasetError:
        raise
    except (ConnectionError, FileNotFoundError, OSError, ValueError) as exc:
        cache = os.environ.get("HF_DATASETS_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        fix = (f"write it with dataset.save_to_disk('{spec.name}')" if on_disk else
               f"on a machine with internet run python -c \"import datasets; datasets.load_dataset('{spec.name}'"
               f"{f', {config!r}' if config else ''}, split='{split}')\" and copy {cache} here (or save_to_disk it "
               "and use hf:/path/to/folder)")
        raise DatasetError(f"The Hugging Face dataset '{spec.name}' (split {split}){where} is not available here and "
                           f"could not be downloaded ({type(exc).__name__}: {str(exc)[:160]}); {fix}.") from None
    features = data.features
    images = [k for k, f in features.items() if isinstance(f, hf.Image)]
    image_col = spec.get("image") or (images[0] if images else None)
    if image_col is None or image_col not in images:
        raise DatasetError(f"The Hugging Face dataset '{spec.name}' has no image column "
                           f"{'named ' + repr(image_col) + ' ' if image_col else ''}(image columns: "
                           f"{', '.join(images) or 'none'}; all columns: {', '.join(features)}). Name one with "
                           "?image=COLUMN.")
    label_col = spec.get("label") or next((k for k, f in features.items() if isinstance(f, hf.ClassLabel)),
                                          "label" if "label" in features else None)
    if label_col is not None and label_col not in features:
        raise DatasetError(f"The Hugging Face dataset '{spec.name}' has no column '{label_col}' (label={label_col}); "
                           f"its columns are {', '.join(features)}. Name the right one with ?label=COLUMN.")
    if label_col is None:
        labels, classes = np.full(len(data), UNLABELLED, dtype=np.int64), ()
    elif isinstance(features[label_col], hf.ClassLabel):
        classes = tuple(features[label_col].names)
        labels = np.asarray(data[label_col], dtype=np.int64)
    else:
        raw = [str(v) for v in data[label_col]]
        classes = tuple(sorted(set(raw)))
        code = {c: k for k, c in enumerate(classes)}
        labels = np.asarray([code[v] for v in raw], dtype=np.int64)
    h = hashlib.sha256(json.dumps(["hf", spec.name, config, split, image_col, label_col, data._fingerprint,
                                   len(data), classes]).encode())
    h.update(labels.tobytes())
    name = f"{spec.name}/{split}"
    return _Source(labels=labels, classes=classes, sample_ids=[f"{name}[{i}]" for i in range(len(data))],
                   fingerprint=h.hexdigest(), load=_HFLoader(data, image_col, name),
                   description=f"Hugging Face dataset {spec.name} ({split}{', ' + config if config else ''}; "
                               f"{len(data):,} images)", files=True)


class _ArrayLoader:
    def __init__(self, images: np.ndarray):
        self.images = images

    def __call__(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i], mode="L").convert("RGB")


def _digits_source(spec: DatasetSpec) -> _Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 ink intensities -> dark ink on white paper, like the printed demo.
    images = (255 - np.round(digits.images * (255.0 / 16.0))).astype(np.uint8)
    h = hashlib.sha256(b"sklearn-digits-v1")
    h.update(images.tobytes())
    h.update(digits.target.astype(np.int64).tobytes())
    return _Source(labels=digits.target.astype(np.int64), classes=tuple(str(c) for c in range(10)),
                   sample_ids=[f"digits[{i}]" for i in range(len(images))], fingerprint=h.hexdigest(),
                   load=_ArrayLoader(images),
                   description="scikit-learn handwritten digits (8x8, 1,797 images)")


def find_fonts() -> list[str]:
    """TrueType fonts for the printed-digits demo, sorted by file name.

    The DejaVu family (Debian's fonts-dejavu-core and -extra) when installed, so that the demo
    does not change when unrelated fonts come and go; otherwise every installed TrueType font.
    """
    found: set[str] = set()
    for pattern in ("/usr/share/fonts/**/*.ttf", "/usr/local/share/fonts/**/*.ttf",
                    os.path.expanduser("~/.fonts/**/*.ttf"), "/Library/Fonts/*.ttf",
                    "/System/Library/Fonts/*.ttf", "C:/Windows/Fonts/*.ttf"):
        found.update(glob.glob(pattern, recursive=True))
    usable = [p for p in found if "emoji" not in p.lower() and "math" not in os.path.basename(p).lower()]
    dejavu = [p for p in usable if os.path.basename(p).lower().startswith("dejavu")]
    fonts = dejavu or usable
    # one file per font name (the same font may be installed in several folders)
    by_name = {os.path.basename(p): p for p in sorted(fonts)}
    return [by_name[n] for n in sorted(by_name)]


_PRINTED_SIZE = 32
_PRINTED_VERSION = "printed-digits-v1"


class _PrintedDigitsLoader:
    """Renders digit ``i % 10`` in font ``fonts[i % len(fonts)]`` with a seeded affine jitter."""

    def __init__(self, fonts: Sequence[str], seed: int):
        self.fonts = list(fonts)
        self.seed = seed

    def __call__(self, i: int) -> Image.Image:
        rng = np.random.default_rng([self.seed, i, 7919])
        digit = i % 10
        size = _PRINTED_SIZE
        big = Image.new("L", (size * 4, size * 4), 255)
        font_size = int(size * 4 * rng.uniform(0.55, 0.8))
        if self.fonts:
            font = ImageFont.truetype(self.fonts[(i // 10) % len(self.fonts)], font_size)
        else:
            font = ImageFont.load_default(font_size)
        draw = ImageDraw.Draw(big)
        draw.text((size * 2, size * 2), str(digit), fill=int(rng.integers(0, 60)), font=font, anchor="mm")
        angle = float(rng.uniform(-12, 12))
        shear = float(rng.uniform(-0.2, 0.2))
        dx, dy = (float(v) for v in rng.uniform(-0.08, 0.08, size=2) * size * 4)
        # inverse affine map (output -> input) around the centre: shear, then shift
        c = size * 2
        big = big.transform(big.size, Image.AFFINE, (1, shear, -shear * c - dx, 0, 1, -dy),
                            resample=Image.BILINEAR, fillcolor=255)
        big = big.rotate(angle, resample=Image.BILINEAR, fillcolor=255)
        return big.resize((size, size), Image.LANCZOS).convert("RGB")


def _printed_digits_source(spec: DatasetSpec) -> _Source:
    n = int(spec.get("n", 1000))
    fonts = find_fonts()
    if not fonts:
        warnings.warn("No TrueType fonts found (e.g. Debian's fonts-dejavu-core); demo:printed-digits "
                      "falls back to Pillow's built-in font, a much smaller domain.", stacklevel=2)
    h = hashlib.sha256(json.dumps([_PRINTED_VERSION, n, [os.path.basename(f) for f in fonts],
                                   [os.path.getsize(f) for f in fonts]]).encode())
    labels = np.arange(n, dtype=np.int64) % 10
    return _Source(labels=labels, classes=tuple(str(c) for c in range(10)),
                   sample_ids=[f"printed-digits[{i}]" for i in range(n)], fingerprint=h.hexdigest(),
                   load=_PrintedDigitsLoader(fonts, seed=0),
                   description=f"digits rendered from {len(fonts)} TrueType fonts with affine jitter "
                               f"({_PRINTED_SIZE}x{_PRINTED_SIZE}, {n} images)")


TILE_SETS: dict[str, tuple[str, ...]] = {
    "photos": ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
               "stereo_motorcycle"),
    "gray": ("brick", "grass", "gravel", "camera", "coins", "moon", "page", "text", "clock", "cell"),
}
TILE_SETS["all"] = TILE_SETS["photos"] + TILE_SETS["gray"]
_TILE, _TILE_SIDE, _TILES_PER_CLASS, _TILES_VERSION = 32, 384, 200, "tiles-v1"


def _tile_photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos as RGB uint8, resized so that its shorter side is :data:`_TILE_SIDE`."""
    try:
        from skimage import data as skdata
    except ImportError:
        raise SpecError("demo:tiles reads scikit-image's bundled photographs: pip install scikit-image "
                        "(make test installs it).") from None
    img = getattr(skdata, name)()
    img = img[0] if isinstance(img, tuple) else img
    pil = Image.fromarray(np.asarray(img, dtype=np.uint8)).convert("RGB")
    scale = _TILE_SIDE / min(pil.size)
    pil = pil.resize((max(_TILE_SIDE, round(pil.width * scale)), max(_TILE_SIDE, round(pil.height * scale))),
                     Image.BICUBIC)
    return np.asarray(pil)


class _TilesLoader:
    def __init__(self, photos: Sequence[np.ndarray], cells: np.ndarray):
        self.photos, self.cells = photos, cells

    def __call__(self, i: int) -> Image.Image:
        k, r, c = (int(v) for v in self.cells[i])
        return Image.fromarray(self.photos[k][r:r + _TILE, c:c + _TILE])


def _tiles_source(spec: DatasetSpec) -> _Source:
    """Tiles of 32x32 px cut on a grid from scikit-image's photographs (gray ones as RGB), 200 per photo drawn from
    the whole grid with a fixed seed; the class is the photo. Tiles never overlap, so a train and a test tile always
    come from disjoint regions: the task is to recognise a photo's texture and content, not to match pixels."""
    names = TILE_SETS[spec.get("set", "photos")]
    photos = [_tile_photo(n) for n in names]
    cells, labels = [], []
    h = hashlib.sha256(_TILES_VERSION.encode())
    for k, photo in enumerate(photos):
        h.update(photo.tobytes())
        grid = [(k, r, c) for r in range(0, photo.shape[0] - _TILE + 1, _TILE)
                for c in range(0, photo.shape[1] - _TILE + 1, _TILE)]
        rng = np.random.default_rng([k, 20261204])
        take = np.sort(rng.choice(len(grid), size=min(_TILES_PER_CLASS, len(grid)), replace=False))
        cells.extend(grid[i] for i in take)
        labels.extend([k] * len(take))
    cells_arr = np.asarray(cells, dtype=np.int64)
    h.update(cells_arr.tobytes())
    n = len(cells_arr)
    return _Source(labels=np.asarray(labels, dtype=np.int64), classes=tuple(names),
                   sample_ids=[f"tiles/{names[k]}[{r},{c}]" for k, r, c in cells], fingerprint=h.hexdigest(),
                   load=_TilesLoader(photos, cells_arr),
                   description=f"{_TILE}x{_TILE} tiles of {len(names)} scikit-image photographs ({n:,} images, "
                               f"non-overlapping)")


# ----------------------------------------------------------------------------- the dataset
class ImageDataset:
    """A dataset opened from a spec: ``ds[i]`` is a PIL RGB image with the spec's shift applied.

    Attributes:
        spec: The canonical spec string.
        labels: ``(n,)`` int64 class indices, ``-1`` for unlabelled images.
        classes: Class names, index-aligned with labels (empty when unlabelled).
        sample_ids: A stable identifier per image (file path or ``name[index]``).
        skipped: Files that could not be used, with the reason.
        fingerprint: Hex digest of the content and options; keys the embedding cache.
    """

    def __init__(self, spec: str | DatasetSpec):
        self.spec_ = parse_dataset_spec(spec)
        self.spec = str(self.spec_)
        source = DATASET_KINDS[self.spec_.kind].source(self.spec_)
        self._source = source
        self.seed = int(self.spec_.get("seed", 0))
        self.shift = self.spec_.get("shift")
        self.severity = int(self.spec_.get("severity", 3)) if self.shift else 0
        index = np.arange(len(source.labels))
        self._limited = self.spec_.get("limit") is not None
        if self._limited:
            # drawn from every file whose header parses, so that a file found undecodable later only leaves the
            # sample (the others stay): the same images whether the failure was known at open or found since
            index = _per_class_subsample(source.labels, int(self.spec_.get("limit")), self.seed)
        self._drawn = index
        self.classes = source.classes
        self.description = source.description
        # images found not to decode when they were first read in full (recorded under the listing's fingerprint)
        self._set_rows((_read_scan(source.fingerprint) or {}).get("decode", {}) if source.files else {})
        labelled = self.labels[self.labels >= 0]
        if self.classes and len(np.unique(labelled)) < 2:
            raise DatasetError(f"Dataset '{self.spec}' has only one class ({self.classes[int(labelled[0])]}); "
                               "class-based diagnostics need at least two. Add images of other classes, "
                               "or use a flat folder for an unlabelled dataset.")

    def _set_rows(self, undecodable: dict[str, str]) -> None:
        """The rows: the drawn images less those known not to decode; the labels, ids, skipped list and fingerprint
        that go with them (assigned together, so that readers in other threads see one state or the other)."""
        source = self._source
        ids = source.sample_ids
        keep = np.array([ids[i] not in undecodable for i in self._drawn], dtype=bool) if undecodable else \
            np.ones(len(self._drawn), dtype=bool)
        index = self._drawn[keep]
        if len(index) == 0:
            raise DatasetError(f"None of the images of '{self.spec}' could be decoded (first: "
                               f"{next(iter(undecodable.items()))}). Check that the files are images.")
        dropped = {ids[i]: undecodable[ids[i]] for i in self._drawn[~keep]}
        h = hashlib.sha256(source.fingerprint.encode())
        h.update(json.dumps([self.shift, self.severity, self.seed if (self.shift or self._limited) else None]).encode())
        h.update(index.astype(np.int64).tobytes())
        self.__dict__.update(
            index=index, labels=source.labels[index], sample_ids=[ids[i] for i in index], fingerprint=h.hexdigest(),
            skipped=list(source.skipped) + [SkippedFile(p, f"does not decode: {r}") for p, r in dropped.items()],
            _undecodable=dict(undecodable), _dropped=dropped)

    @property
    def undecodable(self) -> dict[str, str]:
        """Images of this dataset found not to decode when they were read in full (sample id -> reason)."""
        return dict(self._dropped)

    def drop_undecodable(self, failures: dict[int, str]) -> None:
        """Leave out the rows ``failures`` (row -> reason) found not to decode, here and in every later open.

        They are recorded under the listing's fingerprint (``$TLDIAG_HOME/scans``), listed in :attr:`skipped`, and
        the rows, labels, ids and fingerprint change in place: a row index taken before the call is stale after it.
        """
        if not failures:
            return
        found = {self.sample_ids[int(row)]: reason for row, reason in failures.items()}
        record_undecodable(self._source.fingerprint, found)
        self._set_rows({**self._undecodable, **found})

    def refresh(self) -> bool:
        """Take in the undecodable files another process recorded since this dataset was opened; whether the rows
        changed."""
        scan = _read_scan(self._source.fingerprint)
        known = {**self._undecodable, **(scan or {}).get("decode", {})}
        if known.keys() == self._undecodable.keys():
            return False
        self._set_rows(known)
        return True

    @property
    def verified(self) -> bool:
        """Whether every image of this dataset (as it is now) has been decoded once (by an embedding pass or
        :meth:`verify`), so none of them can fail while training (always, for datasets that are not files)."""
        return not self._source.files or _verified_marker(self.fingerprint).exists()

    def mark_verified(self) -> None:
        """Record that every image of this dataset decodes (the engines call it after a full pass)."""
        if not self._source.files:
            return
        marker = _verified_marker(self.fingerprint)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def verify(self, *, progress: Callable[[int, int, str], None] | None = None, workers: int | None = None) -> None:
        """Decode every image once (unless that was done already), dropping those that fail
        (:meth:`drop_undecodable`). Training calls it first, so that a damaged file cannot stop a run half-way."""
        self.refresh()
        if self.verified:
            return
        loader = self._source.load
        rows = list(range(len(self)))
        failures: dict[int, str] = {}

        def check(row: int) -> str | None:
            try:
                loader(int(self.index[row]))
            except UndecodableImage as exc:
                return exc.reason
            return None

        with ThreadPoolExecutor(max_workers=workers or max(2, _config.cpu_count())) as pool:
            for k, reason in enumerate(pool.map(check, rows, chunksize=64)):
                if reason is not None:
                    failures[k] = reason
                if progress and (k + 1) % 256 == 0:
                    progress(k + 1, len(rows), "checking that every image decodes")
        self.drop_undecodable(failures)
        self.mark_verified()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Image.Image:
        raw = int(self.index[i])
        img = self._source.load(raw)
        if self.shift:
            img = apply_shift(img, self.shift, self.severity, seed=self.seed, index=raw)
        return img

    def get(self, i: int) -> Image.Image | None:
        """``self[i]``, or None when that image does not decode (for galleries drawn before a full pass)."""
        try:
            return self[i]
        except UndecodableImage:
            return None

    @property
    def is_labelled(self) -> bool:
        return bool(self.classes)

    def class_counts(self) -> dict[str, int]:
        """Images per class name (``{'(unlabelled)': n}`` for unlabelled data)."""
        if not self.is_labelled:
            return {"(unlabelled)": len(self)}
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def gallery_indices(self, per_class: int = 2, *, max_classes: int = 10,
                        random_state: int = 0) -> tuple[list[int | None], list[str]]:
        """Indices for a grid with one column per class (row r holds the r-th sample of each class).

        Returns the indices in row-major order, ``None`` where a class has fewer images than
        ``per_class``, and the column titles. Unlabelled data gives ``per_class * max_classes``
        random images and no titles.
        """
        if not self.is_labelled:
            rng = np.random.default_rng(random_state)
            n = min(len(self), per_class * max_classes)
            return sorted(rng.choice(len(self), size=n, replace=False).tolist()), []
        rng = np.random.default_rng(random_state)
        present = [c for c in range(len(self.classes)) if np.any(self.labels == c)][:max_classes]
        columns = [rng.permutation(np.flatnonzero(self.labels == c))[:per_class] for c in present]
        rows = [[int(col[r]) if r < len(col) else None for col in columns] for r in range(per_class)]
        return [i for row in rows for i in row], [self.classes[c] for c in present]

    def subset(self, rows: Sequence[int] | np.ndarray, *, description: str | None = None) -> "ImageDataset":
        """The images at ``rows`` of this dataset as a dataset of their own (same spec, classes and shift; its own
        fingerprint, so its embeddings are cached apart): what an analysis opens when it needs a few images of a
        larger dataset, e.g. the spare labelled images a test set takes."""
        import copy

        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or len(rows) == 0 or rows.min() < 0 or rows.max() >= len(self):
            raise DatasetError(f"subset rows must be a non-empty list of rows of '{self.spec}' (0..{len(self) - 1}), "
                               f"got {len(rows)} rows" + (f" from {rows.min()} to {rows.max()}" if rows.size else "")
                               + ".")
        view = copy.copy(self)
        view._drawn, view._limited = self.index[np.unique(rows)], True
        view._set_rows(self._undecodable)
        view.description = description or f"{len(view)} images of {self.spec}"
        return view

    def sample_indices(self, per_class: int, *, random_state: int = 0) -> list[int]:
        """A few indices per class (for galleries), deterministic for a seed."""
        return sorted(_per_class_subsample(self.labels, per_class, random_state).tolist())

    def __repr__(self) -> str:
        return f"ImageDataset('{self.spec}', n={len(self)}, classes={len(self.classes)})"


def _per_class_subsample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        take = rng.permutation(members)[:per_class]
        chosen.append(np.sort(take))
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


# ----------------------------------------------------------------------------- the registry of dataset kinds
@dataclass(frozen=True)
class DatasetKind:
    """One kind of dataset spec (``kind:name?options``): how it opens, and what the help strings say of it.

    Attributes:
        name: The spec's ``kind`` (``folder``, ``csv``...).
        source: ``source(spec) -> _Source``: the images' loader, labels, class names and fingerprint.
        options: The options it takes besides the common ones (``shift``, ``severity``, ``limit``, ``seed``).
        path: Whether its name is a path (checked against the data roots) rather than a dataset's name.
        example: A spec of it, for help strings (the Setup page, ``tldiag datasets``) and errors.
        help: What it is, in a phrase.
    """

    name: str
    source: Callable[[DatasetSpec], "_Source"]
    options: tuple[str, ...] = ()
    path: bool = True
    example: str = ""
    help: str = ""


DATASET_KINDS: dict[str, DatasetKind] = {}
"""Every kind of dataset spec, by name (:func:`register_dataset_kind` adds one)."""
DEMO_DATASETS: dict[str, Callable[[DatasetSpec], "_Source"]] = {
    "digits": _digits_source,
    "printed-digits": _printed_digits_source,
    "tiles": _tiles_source,
}
"""The built-in demo datasets (``demo:<name>``), offline."""


def register_dataset_kind(kind: DatasetKind) -> DatasetKind:
    """Make ``<kind.name>:...`` a dataset spec that every page, command and job opens (a new kind is one source
    function and this call; see CONTRIBUTING.md)."""
    if not kind.name.isidentifier() or kind.name in DATASET_KINDS:
        raise SpecError(f"Dataset kind {kind.name!r} must be a new identifier (registered: "
                        f"{', '.join(DATASET_KINDS)}).")
    DATASET_KINDS[kind.name] = kind
    return kind


def dataset_kinds_help() -> str:
    """The registered kinds with an example each, for help strings."""
    return ", ".join(f"{k.example} ({k.help})" if k.help else k.example for k in DATASET_KINDS.values())


for _kind in (
        DatasetKind("folder", _folder_source, (), True, "folder:/path", "one sub-folder per class"),
        DatasetKind("torchvision", _torchvision_source, ("split", "root"), False, "torchvision:MNIST?split=test",
                    "a torchvision dataset already downloaded"),
        DatasetKind("demo", lambda spec: DEMO_DATASETS[spec.name](spec), ("n", "set"), False, "demo:digits",
                    "the offline demos: digits, printed-digits, tiles; add ?shift=blur&severity=3 for a graded shift"),
        DatasetKind("csv", _manifest_source, _MANIFEST_KEYS, True, "csv:/path/labels.csv?path=COLUMN&label=COLUMN",
                    "a table of image paths and labels"),
        DatasetKind("parquet", _manifest_source, _MANIFEST_KEYS, True, "parquet:/path/labels.parquet?path=COLUMN",
                    "the same as a Parquet file"),
        DatasetKind("hf", _hf_source, ("split", "config", "image", "label"), False, "hf:user/name?split=test",
                    "a Hugging Face dataset from the local cache")):
    register_dataset_kind(_kind)


def load_dataset(spec: str | DatasetSpec) -> ImageDataset:
    """Open the dataset that ``spec`` names (see the module docstring for the spec format)."""
    return ImageDataset(spec)


@dataclass(frozen=True)
class ClassComparison:
    """How the class sets of a source and a target dataset relate."""

    shared: tuple[str, ...]
    source_only: tuple[str, ...]
    target_only: tuple[str, ...]
    unlabelled: tuple[str, ...] = ()  # "source" and/or "target"

    @property
    def identical(self) -> bool:
        return not self.source_only and not self.target_only and not self.unlabelled

    def message(self) -> str:
        if self.unlabelled:
            which = " and ".join(self.unlabelled)
            return (f"The {which} {'is' if len(self.unlabelled) == 1 else 'are'} unlabelled: shift and "
                    "embedding diagnostics work, label-based ones (probes, data efficiency) need labels.")
        if self.identical:
            return f"Source and target share all {len(self.shared)} classes."
        parts = [f"{len(self.shared)} shared classes"]
        if self.source_only:
            parts.append(f"source only: {', '.join(self.source_only[:10])}")
        if self.target_only:
            parts.append(f"target only: {', '.join(self.target_only[:10])}")
        return "Source and target have different class sets (" + "; ".join(parts) + \
            "). Label-based metrics use the shared classes only."


def compare_classes(source: ImageDataset, target: ImageDataset) -> ClassComparison:
    s, t = list(source.classes), list(target.classes)
    unlabelled = tuple(role for role, ds in (("source", source), ("target", target)) if not ds.is_labelled)
    return ClassComparison(shared=tuple(c for c in s if c in t),
                           source_only=tuple(c for c in s if c not in t),
                           target_only=tuple(c for c in t if c not in s), unlabelled=unlabelled)


__all__ = ["DatasetKind", "register_dataset_kind", "dataset_kinds_help", "TILE_SETS", "IMAGE_EXTENSIONS",
           "DATASET_KINDS", "DEMO_DATASETS", "TORCHVISION_DATASETS", "UNLABELLED", "DatasetSpec",
           "parse_dataset_spec", "with_options", "to_rgb", "SkippedFile", "record_undecodable", "find_fonts", "ImageDataset", "load_dataset",
           "ClassComparison", "compare_classes"]
