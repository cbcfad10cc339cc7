from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tldiag.data import (DatasetSpec, compare_classes, find_fonts, load_dataset, parse_dataset_spec,
                         to_rgb)
from tldiag.errors import DatasetError, SpecError
from tldiag.shifts import CORRUPTIONS


# ------------------------------------------------------------------ spec strings
def test_spec_roundtrip_sorts_options():
    spec = parse_dataset_spec("demo:digits?severity=2&shift=blur&limit=5")
    assert spec == DatasetSpec("demo", "digits", (("limit", "5"), ("severity", "2"), ("shift", "blur")))
    assert str(spec) == "demo:digits?limit=5&severity=2&shift=blur"
    assert parse_dataset_spec(str(spec)) == spec


def test_with_options_adds_only_what_the_spec_lacks():
    from tldiag.data import with_options

    assert with_options("demo:digits", limit=5) == "demo:digits?limit=5"
    assert with_options("demo:digits?limit=3", limit=5, seed=2) == "demo:digits?limit=3&seed=2"
    assert with_options("demo:digits?shift=blur", limit=None) == "demo:digits?shift=blur"
    with pytest.raises(SpecError, match="limit='0'"):
        with_options("demo:digits", limit=0)  # the result is validated like any spec


@pytest.mark.parametrize("bad, fragment", [
    ("digits", "must start with one of"),
    ("s3:bucket", "must start with one of"),
    ("demo:", "names no dataset"),
    ("demo:mnist", "Unknown demo dataset 'mnist'"),
    ("demo:digits?shift=fog", "Unknown shift 'fog'"),
    ("demo:digits?severity=3", "without a shift"),
    ("demo:digits?shift=blur&severity=9", "severity='9'"),
    ("demo:digits?limit=0", "limit='0'"),
    ("demo:digits?limit=ten", "limit='ten'"),
    ("demo:digits?colour=red", "Unknown option 'colour'"),
    ("demo:digits?limit", "malformed options"),
    ("torchvision:mnist", "Did you mean 'MNIST'"),
    ("torchvision:ImageNet21k", "Unknown torchvision dataset"),
])
def test_bad_specs_name_the_value_and_the_fix(bad, fragment):
    with pytest.raises(SpecError, match=None) as info:
        parse_dataset_spec(bad)
    assert fragment in str(info.value)


# ------------------------------------------------------------------ folders
def test_labelled_folder(make_folder):
    root = make_folder({"cat": 4, "dog": 3})
    ds = load_dataset(f"folder:{root}")
    assert len(ds) == 7 and ds.classes == ("cat", "dog")
    assert ds.class_counts() == {"cat": 4, "dog": 3}
    assert list(ds.labels) == [0] * 4 + [1] * 3
    img = ds[0]
    assert img.mode == "RGB" and img.size == (24, 24)
    assert ds.sample_ids[0].endswith("cat/000.png")


def test_flat_folder_is_unlabelled(make_folder):
    ds = load_dataset(f"folder:{make_folder(flat=5)}")
    assert not ds.is_labelled and set(ds.labels) == {-1}
    assert ds.class_counts() == {"(unlabelled)": 5}


def test_nested_class_subfolders_are_collected(make_folder):
    root = make_folder({"a": 2, "b": 2})
    (root / "a" / "more").mkdir()
    Image.new("RGB", (10, 10)).save(root / "a" / "more" / "x.png")
    assert load_dataset(f"folder:{root}").class_counts() == {"a": 3, "b": 2}


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"])
def test_image_formats(make_folder, ext):
    ds = load_dataset(f"folder:{make_folder({'a': 2, 'b': 2}, ext=ext)}")
    assert len(ds) == 4 and ds[3].mode == "RGB"


def test_modes_are_converted_to_rgb(tmp_path):
    root = tmp_path / "modes"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("L", (8, 8), 100).save(root / "a" / "gray.png")
    Image.new("P", (8, 8), 3).save(root / "a" / "palette.png")
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red -> white
    rgba.save(root / "b" / "rgba.png")
    arr16 = np.full((8, 8), 65535, dtype=np.uint16)
    Image.fromarray(arr16).save(root / "b" / "sixteen.png")
    ds = load_dataset(f"folder:{root}")
    images = {sid.split("/")[-1]: ds[i] for i, sid in enumerate(ds.sample_ids)}
    assert all(im.mode == "RGB" for im in images.values())
    assert images["gray.png"].getpixel((0, 0)) == (100, 100, 100)
    assert images["rgba.png"].getpixel((0, 0)) == (255, 255, 255)
    assert images["sixteen.png"].getpixel((0, 0)) == (255, 255, 255)


def test_to_rgb_float_image_uses_its_range():
    img = Image.fromarray(np.array([[0.0, 2.0]], dtype=np.float32), mode="F")
    assert to_rgb(img).getpixel((1, 0)) == (255, 255, 255)


def test_corrupt_and_truncated_files_are_skipped_and_listed(make_folder):
    root = make_folder({"a": 3, "b": 3})
    (root / "a" / "corrupt.png").write_bytes(b"not an image at all")
    good = (root / "b" / "000.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(good[: len(good) // 2])
    Image.new("RGB", (5, 5)).save(root / "stray.png")
    ds = load_dataset(f"folder:{root}")
    # opening reads headers only: the truncated PNG's header is whole, so it is found when it is first decoded
    assert len(ds) == 7 and not ds.verified
    reasons = {s.path.split("/")[-1]: s.reason for s in ds.skipped}
    assert set(reasons) == {"corrupt.png", "stray.png"}
    assert "outside the class subfolders" in reasons["stray.png"]
    before = ds.fingerprint
    ds.verify()
    reasons = {s.path.split("/")[-1]: s.reason for s in ds.skipped}
    assert len(ds) == 6 and set(reasons) == {"corrupt.png", "truncated.png", "stray.png"}
    assert reasons["truncated.png"].startswith("does not decode") and ds.verified
    assert ds.fingerprint != before and "truncated.png" not in " ".join(ds.sample_ids)
    # recorded under the listing's fingerprint: a second open leaves it out from the start, same fingerprint
    again = load_dataset(f"folder:{root}")
    assert len(again) == 6 and len(again.skipped) == 3 and again.fingerprint == ds.fingerprint and again.verified


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        load_dataset(f"folder:{tmp_path / 'x.png'}")


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match="holds no images"):
        load_dataset(f"folder:{tmp_path / 'docs'}")


def test_all_files_corrupt(tmp_path):
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="could be decoded"):
        load_dataset(f"folder:{tmp_path / 'bad'}")


def test_one_class_only_is_refused(make_folder):
    with pytest.raises(DatasetError, match="only one class"):
        load_dataset(f"folder:{make_folder({'only': 3})}")


def test_path_outside_data_roots_is_refused(tmp_path, monkeypatch, make_folder):
    root = make_folder({"a": 2, "b": 2})
    monkeypatch.setenv("TLDIAG_DATA_ROOTS", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetError, match="outside the allowed data roots") as info:
        load_dataset(f"folder:{root}")
    assert "TLDIAG_DATA_ROOTS=" in str(info.value)


def test_symlink_out_of_the_roots_is_refused(tmp_path, monkeypatch, make_folder):
    outside = make_folder({"a": 2, "b": 2}, name="outside")
    inside = tmp_path / "roots"
    inside.mkdir()
    (inside / "link").symlink_to(outside)
    monkeypatch.setenv("TLDIAG_DATA_ROOTS", str(inside))
    with pytest.raises(DatasetError, match="outside the allowed data roots"):
        load_dataset(f"folder:{inside / 'link'}")


def test_links_inside_a_folder_never_lead_out_of_the_roots(tmp_path, monkeypatch, make_folder):
    """A class folder or an image that is a symlink to somewhere outside the data roots is skipped and listed,
    never read; links that stay inside the roots are followed."""
    secret = make_folder({"s": 2, "t": 1}, name="secret")
    inside = tmp_path / "roots"
    data = make_folder({"a": 2, "b": 2}, name="roots/data")
    (data / "stolen").symlink_to(secret / "s")  # a class folder leading out
    (data / "a" / "passwd.png").symlink_to(secret / "t" / "000.png")  # an image leading out
    (data / "b" / "alias.png").symlink_to(data / "a" / "000.png")  # a link inside the roots: fine
    monkeypatch.setenv("TLDIAG_DATA_ROOTS", str(inside))
    ds = load_dataset(f"folder:{data}")
    assert ds.classes == ("a", "b") and len(ds) == 5
    assert not any(str(secret) in str(sid) for sid in ds.sample_ids)
    assert {(os.path.basename(s.path), s.reason) for s in ds.skipped} == {
        ("stolen", "a link to a place outside the data roots"), ("passwd.png", "a link to a place outside the data roots")}


def test_fingerprint_follows_content(make_folder):
    root = make_folder({"a": 2, "b": 2})
    first = load_dataset(f"folder:{root}").fingerprint
    assert load_dataset(f"folder:{root}").fingerprint == first
    Image.new("RGB", (30, 30), "red").save(root / "a" / "new.png")
    assert load_dataset(f"folder:{root}").fingerprint != first


# ------------------------------------------------------------------ limit, shifts, demos
def test_limit_is_per_class_and_seeded():
    a = load_dataset("demo:digits?limit=7")
    assert a.class_counts() == {str(c): 7 for c in range(10)}
    assert a.sample_ids == load_dataset("demo:digits?limit=7").sample_ids
    b = load_dataset("demo:digits?limit=7&seed=1")
    assert a.sample_ids != b.sample_ids and a.fingerprint != b.fingerprint


@pytest.mark.parametrize("shift", sorted(CORRUPTIONS))
def test_shifts_are_deterministic_and_change_the_images(shift):
    plain = load_dataset("demo:printed-digits?limit=2")
    shifted = load_dataset(f"demo:printed-digits?limit=2&shift={shift}&severity=5")
    again = load_dataset(f"demo:printed-digits?limit=2&shift={shift}&severity=5")
    other_seed = load_dataset(f"demo:printed-digits?limit=2&shift={shift}&severity=5&seed=3")
    a = [np.asarray(shifted[i]) for i in range(len(shifted))]
    assert all(np.array_equal(x, np.asarray(again[i])) for i, x in enumerate(a))
    assert any(not np.array_equal(x, np.asarray(plain[i])) for i, x in enumerate(a))
    assert shifted.fingerprint != plain.fingerprint
    assert other_seed.fingerprint != shifted.fingerprint


def test_severity_grades_the_shift():
    plain = load_dataset("demo:printed-digits?limit=3")
    dist = []
    for severity in (1, 5):
        ds = load_dataset(f"demo:printed-digits?limit=3&shift=contrast&severity={severity}")
        dist.append(np.mean([np.abs(np.asarray(ds[i], float) - np.asarray(plain[i], float)).mean()
                             for i in range(len(ds))]))
    assert dist[1] > dist[0] > 0


def test_digits_demo_is_the_real_sklearn_data():
    from sklearn.datasets import load_digits

    ds = load_dataset("demo:digits")
    assert len(ds) == 1797 and ds.classes == tuple("0123456789")
    raw = load_digits().images[5]
    img = np.asarray(ds[5])[:, :, 0].astype(float)
    assert np.corrcoef(img.ravel(), -raw.ravel())[0, 1] > 0.99  # dark ink on white


def test_printed_digits_demo():
    ds = load_dataset("demo:printed-digits?n=40")
    assert len(ds) == 40 and ds.class_counts() == {str(c): 4 for c in range(10)}
    img = np.asarray(ds[3])
    assert img.shape == (32, 32, 3) and img.min() < 100 < 200 < img.max()  # ink on paper
    assert np.array_equal(img, np.asarray(load_dataset("demo:printed-digits?n=40")[3]))
    assert find_fonts(), "the printed-digits demo expects installed TrueType fonts (fonts-dejavu-core)"


def test_compare_classes(make_folder):
    a = load_dataset(f"folder:{make_folder({'cat': 2, 'dog': 2, 'fox': 2}, name='a')}")
    b = load_dataset(f"folder:{make_folder({'cat': 2, 'dog': 2, 'owl': 2}, name='b')}")
    cmp = compare_classes(a, b)
    assert cmp.shared == ("cat", "dog") and cmp.source_only == ("fox",) and cmp.target_only == ("owl",)
    assert "shared classes only" in cmp.message()
    assert compare_classes(a, a).identical
    flat = load_dataset(f"folder:{make_folder(flat=3, name='c')}")
    cmp = compare_classes(a, flat)
    assert cmp.unlabelled == ("target",) and not cmp.identical and "target is unlabelled" in cmp.message()


# ------------------------------------------------------------------ torchvision datasets
def _write_idx(path, arr: np.ndarray) -> None:
    import struct

    code = {1: 0x0801, 3: 0x0803}[arr.ndim]
    with open(path, "wb") as f:
        f.write(struct.pack(">I", code))
        f.write(struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(arr.astype(np.uint8).tobytes())


def test_torchvision_dataset_from_local_files(tmp_path):
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 6)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 3)
    ds = load_dataset(f"torchvision:MNIST?split=test&root={tmp_path / 'tv'}")
    assert len(ds) == 6 and list(ds.labels) == [0, 1, 2, 0, 1, 2]
    assert ds.classes[0].startswith("0") and ds[0].mode == "RGB" and ds[0].size == (28, 28)
    assert load_dataset(f"torchvision:MNIST?root={tmp_path / 'tv'}").fingerprint != ds.fingerprint
    with pytest.raises(SpecError, match="splits train and test"):
        load_dataset(f"torchvision:MNIST?split=val&root={tmp_path / 'tv'}")


def test_torchvision_dataset_absent_offline_gives_instructions(tmp_path, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")
    for module in (torchvision.datasets.utils, torchvision.datasets.mnist):
        for name in ("download_and_extract_archive", "download_url"):
            monkeypatch.setattr(module, name, no_network, raising=False)
    with pytest.raises(DatasetError) as info:
        load_dataset(f"torchvision:KMNIST?root={tmp_path}")
    msg = str(info.value)
    assert "could not be downloaded" in msg and "download=True" in msg and str(tmp_path) in msg


def test_torchvision_root_outside_data_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("TLDIAG_DATA_ROOTS", str(tmp_path / "x"))
    with pytest.raises(DatasetError, match="outside the allowed data roots"):
        load_dataset("torchvision:MNIST?root=/etc")


def test_gallery_has_one_column_per_class(make_folder):
    ds = load_dataset(f"folder:{make_folder({'cat': 3, 'dog': 1, 'owl': 2})}")
    idx, columns = ds.gallery_indices(2)
    assert columns == ["cat", "dog", "owl"]
    names = [ds.classes[ds.labels[i]] if i is not None else None for i in idx]
    assert names == ["cat", "dog", "owl", "cat", None, "owl"]  # dog has one image: a blank cell
    flat = load_dataset(f"folder:{make_folder(flat=5, name='flat')}")
    idx, columns = flat.gallery_indices(2, max_classes=2)
    assert columns == [] and len(idx) == 4


# ------------------------------------------------------------------ CSV and Parquet manifests
def _manifest_folder(make_folder, tmp_path):
    """Images in class folders, and a table of them with relative paths, labels and a split column."""
    import pandas as pd

    root = make_folder({"cat": 4, "dog": 4}, name="imgs")
    rows = [{"filepath": f"imgs/{c}/{i:03d}.png", "diagnosis": c, "split": "train" if i < 3 else "test"}
            for c in ("cat", "dog") for i in range(4)]
    rows.append({"filepath": "imgs/cat/missing.png", "diagnosis": "cat", "split": "train"})  # listed, not there
    rows.append({"filepath": "", "diagnosis": "dog", "split": "train"})  # no path at all
    table = pd.DataFrame(rows)
    table.to_csv(tmp_path / "labels.csv", index=False)
    table.to_parquet(tmp_path / "labels.parquet", index=False)
    return root


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_manifest_lists_images_with_labels_and_splits(make_folder, tmp_path, kind):
    root = _manifest_folder(make_folder, tmp_path)
    ds = load_dataset(f"{kind}:{tmp_path / f'labels.{kind}'}?path=filepath&label=diagnosis")
    assert ds.classes == ("cat", "dog") and len(ds) == 8 and ds.class_counts() == {"cat": 4, "dog": 4}
    assert ds.sample_ids[0] == str(root / "cat" / "000.png")  # relative paths resolve against the table's folder
    reasons = {s.reason for s in ds.skipped}
    assert reasons == {"missing file", "no path in column 'filepath'"}
    assert any(s.path.endswith("missing.png") for s in ds.skipped)
    folder = load_dataset(f"folder:{root}")
    assert np.array_equal(np.asarray(ds[5]), np.asarray(folder[5])) and list(ds.labels) == list(folder.labels)
    train = load_dataset(f"{kind}:{tmp_path / f'labels.{kind}'}?path=filepath&label=diagnosis&split=train")
    assert len(train) == 6 and train.fingerprint != ds.fingerprint
    assert len(load_dataset(f"{kind}:{tmp_path / f'labels.{kind}'}?path=filepath&limit=2")) == 2  # unlabelled


def test_csv_and_parquet_of_one_table_are_one_dataset(make_folder, tmp_path):
    _manifest_folder(make_folder, tmp_path)
    a = load_dataset(f"csv:{tmp_path / 'labels.csv'}?path=filepath&label=diagnosis")
    b = load_dataset(f"parquet:{tmp_path / 'labels.parquet'}?path=filepath&label=diagnosis")
    assert a.fingerprint == b.fingerprint and a.sample_ids == b.sample_ids  # the same embeddings serve both


def test_manifest_errors_name_the_columns_and_values_that_exist(make_folder, tmp_path):
    _manifest_folder(make_folder, tmp_path)
    csv = tmp_path / "labels.csv"
    with pytest.raises(DatasetError, match=r"no column 'path' \(path=path\); its columns are filepath, diagnosis, "
                                           r"split\. Name the right one with \?path=COLUMN"):
        load_dataset(f"csv:{csv}")
    with pytest.raises(DatasetError, match=r"no column 'label' \(label=label\)"):
        load_dataset(f"csv:{csv}?path=filepath&label=label")
    with pytest.raises(DatasetError, match=r"has split = 'val'; its split values are test, train"):
        load_dataset(f"csv:{csv}?path=filepath&split=val")
    with pytest.raises(SpecError, match="names a split column but no split"):
        load_dataset(f"csv:{csv}?path=filepath&split_column=fold")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"csv:{tmp_path / 'nope.csv'}")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DatasetError, match="Could not read the parquet manifest .* Check that it is a Parquet file"):
        load_dataset(f"parquet:{tmp_path / 'bad.parquet'}")


def test_a_manifest_never_reads_outside_the_data_roots(make_folder, tmp_path, monkeypatch):
    secret = make_folder({"s": 2, "t": 2}, name="secret")
    inside = tmp_path / "roots"
    inside.mkdir()
    (inside / "m.csv").write_text(f"path,label\n{secret / 's' / '000.png'}\n../secret/t/000.png,t\n",
                                  encoding="utf-8")
    make_folder({"a": 2, "b": 2}, name="roots/ok")
    with open(inside / "m.csv", "a", encoding="utf-8") as f:
        f.write("ok/a/000.png,a\nok/b/000.png,b\n")
    monkeypatch.setenv("TLDIAG_DATA_ROOTS", str(inside))
    ds = load_dataset(f"csv:{inside / 'm.csv'}?label=label")
    assert len(ds) == 2 and [s.reason for s in ds.skipped] == ["outside the data roots"] * 2


# ------------------------------------------------------------------ Hugging Face datasets
def _saved_hf(tmp_path, *, damaged: bool = False):
    datasets = pytest.importorskip("datasets")
    import io

    def png(value: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(buf, "PNG")
        return buf.getvalue()
    images = [{"bytes": png(20 * i), "path": None} for i in range(6)]
    if damaged:
        images[3] = {"bytes": png(60)[:40], "path": None}
    features = datasets.Features({"photo": datasets.Image(), "kind": datasets.ClassLabel(names=["cat", "dog"]),
                                  "note": datasets.Value("string")})
    table = datasets.Dataset.from_dict({"photo": images, "kind": [0, 1] * 3, "note": list("abcabc")},
                                       features=features)
    datasets.DatasetDict({"train": table, "test": table.select(range(4))}).save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def test_a_saved_hugging_face_dataset_opens_with_its_class_names(tmp_path):
    folder = _saved_hf(tmp_path)
    ds = load_dataset(f"hf:{folder}")
    assert len(ds) == 6 and ds.classes == ("cat", "dog") and list(ds.labels) == [0, 1] * 3
    assert ds[2].size == (12, 12) and ds[2].getpixel((0, 0)) == (40, 40, 40)
    assert len(load_dataset(f"hf:{folder}?split=test")) == 4
    by_text = load_dataset(f"hf:{folder}?label=note")  # a plain column: its values are the classes
    assert by_text.classes == ("a", "b", "c") and list(by_text.labels) == [0, 1, 2, 0, 1, 2]
    assert load_dataset(f"hf:{folder}?limit=2").class_counts() == {"cat": 2, "dog": 2}
    assert load_dataset(f"hf:{folder}").fingerprint == ds.fingerprint != by_text.fingerprint


def test_hugging_face_errors_name_the_value_and_the_fix(tmp_path, monkeypatch):
    folder = _saved_hf(tmp_path)
    with pytest.raises(DatasetError, match="no split 'validation'; its splits are train, test"):
        load_dataset(f"hf:{folder}?split=validation")
    with pytest.raises(DatasetError, match="no column 'diagnosis'.*photo, kind, note.*label=COLUMN"):
        load_dataset(f"hf:{folder}?label=diagnosis")
    with pytest.raises(DatasetError, match="no image column named 'kind' \\(image columns: photo"):
        load_dataset(f"hf:{folder}?image=kind")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError, match="'someone/no-such-set' .* is not available here.*load_dataset"):
        load_dataset("hf:someone/no-such-set?split=test")
    with pytest.raises(DatasetError, match="outside the allowed data roots"):
        load_dataset("hf:/etc/saved")


def test_a_damaged_image_in_a_hugging_face_dataset_is_found_and_dropped(tmp_path):
    folder = _saved_hf(tmp_path, damaged=True)
    ds = load_dataset(f"hf:{folder}")
    assert len(ds) == 6 and ds.get(3) is None
    ds.verify()
    assert len(ds) == 5 and list(ds.undecodable) == [f"{folder}/train[3]"] and ds.verified
    assert len(load_dataset(f"hf:{folder}")) == 5


def test_a_folder_lists_what_it_always_listed(make_folder):
    """The listing that opens large folders quickly keeps the old order and rules: a folder's own files by name,
    then its subfolders; files whose names start with a dot are images too, hidden folders are not read."""
    root = make_folder({"a": 2, "b": 1})
    Image.new("RGB", (4, 4)).save(root / "a" / "..%2F..%2Fpasswd.png")
    (root / "a" / "zsub").mkdir()
    Image.new("RGB", (4, 4)).save(root / "a" / "zsub" / "000.png")
    (root / "a" / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(root / "a" / ".hidden" / "x.png")
    ds = load_dataset(f"folder:{root}")
    assert [os.path.relpath(p, root) for p in ds.sample_ids] == [
        "a/..%2F..%2Fpasswd.png", "a/000.png", "a/001.png", "a/zsub/000.png", "b/000.png"]


def test_photo_tiles_never_overlap_and_name_their_photo():
    ds = load_dataset("demo:tiles?set=gray&limit=30")
    assert ds.classes[:3] == ("brick", "grass", "gravel") and len(ds) == 300 and ds[0].size == (32, 32)
    cells = [sid.split("[")[1].rstrip("]").split(",") for sid in ds.sample_ids]
    for name in ds.classes:
        mine = {tuple(int(v) for v in c) for c, sid in zip(cells, ds.sample_ids) if f"/{name}[" in sid}
        # top-left corners on a 32-px grid: two tiles of a photo never share a pixel
        assert mine and all(r % 32 == 0 and c % 32 == 0 for r, c in mine) and len(mine) == 30
    assert len(load_dataset("demo:tiles?set=all").classes) == 18
    with pytest.raises(SpecError, match="Unknown tile set 'colour'.*valid: photos, gray, all"):
        load_dataset("demo:tiles?set=colour")
    with pytest.raises(SpecError, match="belongs to demo:tiles only"):
        load_dataset("demo:digits?set=gray")


def test_a_subset_is_a_dataset_of_its_own():
    ds = load_dataset("demo:digits?limit=20")
    sub = ds.subset([5, 1, 7])
    assert len(sub) == 3 and sub.sample_ids == [ds.sample_ids[i] for i in (1, 5, 7)]
    assert sub.fingerprint != ds.fingerprint and sub.classes == ds.classes
    assert np.array_equal(np.asarray(sub[0]), np.asarray(ds[1])) and sub.labels.tolist() == ds.labels[[1, 5, 7]].tolist()
    with pytest.raises(DatasetError, match="subset rows must be a non-empty list of rows"):
        ds.subset([200])


def test_a_dataset_kind_registered_through_the_table_opens_like_the_others(monkeypatch):
    """The seam: one DatasetKind registered and its specs parse, open, take the common options and show in the help
    strings (see CONTRIBUTING.md, "a new dataset kind")."""
    from tldiag import data

    monkeypatch.setattr(data, "DATASET_KINDS", dict(data.DATASET_KINDS))
    data.register_dataset_kind(data.DatasetKind("mirrored", lambda spec: data.DEMO_DATASETS[spec.name](spec), (),
                                                False, "mirrored:digits", "a test kind"))
    ds = data.load_dataset("mirrored:digits?limit=3&shift=blur&severity=2")
    assert len(ds) == 30 and ds.classes == data.load_dataset("demo:digits").classes
    assert "mirrored:digits (a test kind)" in data.dataset_kinds_help()
    with pytest.raises(SpecError, match="Unknown option 'split' in dataset spec 'mirrored:digits\\?split=x'"):
        data.parse_dataset_spec("mirrored:digits?split=x")
    with pytest.raises(SpecError, match="'mirrored' must be a new identifier"):
        data.register_dataset_kind(data.DatasetKind("mirrored", lambda spec: None))
