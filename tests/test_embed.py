from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
import torch

from tldiag.cache import EmbeddingStore
from tldiag.data import load_dataset
from tldiag.embed import embed_dataset, embed_pair, entry_key, is_cached
from tldiag.forward import ResizeCrop, normalise
from tldiag.models import LOGITS, PRE_LOGITS, load_model


@pytest.fixture
def tiny(tiny_model_id):
    return load_model(tiny_model_id, resolution=48)


def test_embeddings_match_a_plain_forward_pass(tiny, make_folder):
    ds = load_dataset(f"folder:{make_folder({'a': 5, 'b': 4})}")
    emb = embed_dataset(tiny, ds, ["layer2", PRE_LOGITS], batch_size=4, num_workers=0)
    assert emb.taps == ["layer2", PRE_LOGITS, LOGITS]  # logits always come along
    assert emb[PRE_LOGITS].shape == (9, tiny.tap(PRE_LOGITS).channels) and emb[PRE_LOGITS].dtype == np.float32
    x = torch.stack([normalise(ResizeCrop(tiny.preprocessing)(ds[i]).unsqueeze(0), tiny.preprocessing)[0]
                     for i in range(len(ds))])
    with torch.inference_mode():
        logits = tiny.module(x)
    np.testing.assert_allclose(emb[LOGITS], logits.numpy(), rtol=1e-4, atol=1e-5)
    assert list(emb.labels) == list(ds.labels) and emb.sample_ids == tuple(ds.sample_ids)


def test_preprocessing_matches_timm_transforms():
    """Our uint8 resize/crop + on-device normalise equals timm's eval transform."""
    from timm.data import create_transform, resolve_data_config

    from tldiag.data import load_dataset as ld

    model = load_model("random:efficientnet-lite0")
    cfg = resolve_data_config({}, model=model.module)
    reference = create_transform(**cfg)
    img = ld("demo:printed-digits?n=10")[3].resize((50, 37))
    ours = normalise(ResizeCrop(model.preprocessing)(img).unsqueeze(0), model.preprocessing)[0]
    theirs = reference(img)
    assert ours.shape == theirs.shape
    assert float((ours - theirs).abs().max()) < 0.02  # uint8 rounding only


@pytest.mark.parametrize("size", [(8, 8), (50, 37), (37, 50), (640, 480)])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_box_resize_equals_resize_then_crop(size, interpolation):
    """ResizeCrop resamples only the cropped box; that must equal resizing everything, then cropping."""
    from PIL import Image

    from tldiag.models import Preprocessing

    w, h = size
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    ours = ResizeCrop(Preprocessing(128, 146, interpolation, (0.5,) * 3, (0.5,) * 3))(img).numpy().astype(int)
    short, long = min(w, h), max(w, h)
    new = (146, int(146 * long / short)) if w <= h else (int(146 * long / short), 146)
    full = img.resize(new, {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[interpolation])
    left, top = int(round((new[0] - 128) / 2)), int(round((new[1] - 128) / 2))
    ref = np.asarray(full.crop((left, top, left + 128, top + 128))).transpose(2, 0, 1).astype(int)
    assert np.abs(ours - ref).max() <= 2 and np.abs(ours - ref).mean() < 0.02


def test_cache_hit_is_identical_and_instant(tiny):
    ds = load_dataset("demo:digits?limit=3")
    first = embed_dataset(tiny, ds, ["layer1"], num_workers=0)
    assert not any(first.cache_hits.values())
    assert is_cached(tiny, ds, ["layer1"]) and not is_cached(tiny, ds, ["layer1", "layer3"])
    second = embed_dataset(tiny, ds, ["layer1"], num_workers=0)
    assert all(second.cache_hits.values())
    assert isinstance(second["layer1"], np.memmap)
    np.testing.assert_array_equal(first["layer1"], second["layer1"])
    # only the missing tap is computed when another one is asked for
    third = embed_dataset(tiny, ds, ["layer1", "layer3"], num_workers=0)
    assert third.cache_hits == {"layer1": True, "layer3": False, LOGITS: True}


def test_cache_key_covers_model_preprocessing_and_data(tiny, tiny_model_id):
    ds = load_dataset("demo:digits?limit=2")
    base = entry_key(tiny, "layer1", ds)
    assert entry_key(load_model(tiny_model_id, resolution=64), "layer1", ds) != base
    assert entry_key(load_model(tiny_model_id + "?seed=1", resolution=48), "layer1", ds) != base
    assert entry_key(tiny, "layer2", ds) != base
    assert entry_key(tiny, "layer1", load_dataset("demo:digits?limit=2&shift=blur")) != base
    assert entry_key(tiny, "layer1", load_dataset("demo:digits?limit=2")) == base


def test_no_cache(tiny):
    ds = load_dataset("demo:digits?limit=2")
    embed_dataset(tiny, ds, ["layer1"], num_workers=0, use_cache=False)
    assert not EmbeddingStore().entries()


def test_worker_processes_give_the_same_result(tiny):
    ds = load_dataset("demo:printed-digits?n=40")
    a = embed_dataset(tiny, ds, ["layer2"], num_workers=0, use_cache=False, batch_size=8)
    b = embed_dataset(tiny, ds, ["layer2"], num_workers=2, use_cache=False, batch_size=8)
    np.testing.assert_allclose(a["layer2"], b["layer2"], rtol=1e-5, atol=1e-6)


def test_progress_reports_over_the_pair(tiny):
    calls = []
    embed_pair(tiny, load_dataset("demo:digits?limit=2"), load_dataset("demo:printed-digits?n=30"),
               ["layer1"], progress=lambda d, t, m: calls.append((d, t)), num_workers=0, batch_size=8)
    assert calls[-1] == (50, 50)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and all(t == 50 for _, t in calls)


def test_cuda_oom_halves_the_batch(tiny, monkeypatch):
    ds = load_dataset("demo:digits?limit=1")
    original = tiny._extract
    sizes = []

    def flaky(module, x, wanted):
        sizes.append(x.shape[0])
        if x.shape[0] > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(module, x, wanted)
    monkeypatch.setattr(tiny, "_extract", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    emb = embed_dataset(tiny, ds, ["layer1"], batch_size=10, num_workers=0, use_cache=False)
    assert emb["layer1"].shape[0] == 10
    assert sizes == [10, 5, 2, 2, 2, 2, 2]  # 10 and 5 fail, then batches of 2 go through
    monkeypatch.setattr(tiny, "_extract", original)
    reference = embed_dataset(tiny, ds, ["layer1"], batch_size=10, num_workers=0, use_cache=False)
    np.testing.assert_allclose(emb["layer1"], reference["layer1"], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ atomicity and concurrency
def _slow_writer(home: str, ready, stage: str) -> None:
    os.environ["TLDIAG_HOME"] = home
    store = EmbeddingStore()
    real_save = np.save

    def slow_save(path, arr, *a, **k):
        real_save(path, arr, *a, **k)
        ready.set()
        time.sleep(60)  # killed here, half-way through the entry
    np.save = slow_save
    store.put("ab" * 32, np.ones((4, 3), np.float32), np.zeros(4), {"x": 1})


def test_killed_writer_leaves_no_entry(tldiag_env):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_slow_writer, args=(str(tldiag_env), ready, "features"))
    proc.start()
    assert ready.wait(60), "writer did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    store = EmbeddingStore()
    key = "ab" * 32
    assert key not in store and store.get(key) is None
    assert list(store.root.glob("*/.tmp-*")), "the killed writer's temporary folder should exist"
    with store.lock("any"):  # the next writer clears temporary folders of dead processes
        pass
    assert not list(store.root.glob("*/.tmp-*"))
    store.put(key, np.ones((4, 3), np.float32), np.zeros(4), {"x": 1})
    assert store.get(key).features.shape == (4, 3)


def _embed_in_process(home: str, model_id: str, spec: str, queue) -> None:
    os.environ["TLDIAG_HOME"] = home
    from tldiag.data import load_dataset as ld
    from tldiag.embed import embed_dataset as ed
    from tldiag.models import load_model as lm

    emb = ed(lm(model_id, resolution=48), ld(spec), ["layer1"], num_workers=0)
    queue.put((np.asarray(emb["layer1"]).tolist(), emb.cache_hits["layer1"]))


def test_two_processes_computing_the_same_key(tldiag_env, tiny_model_id):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_embed_in_process,
                         args=(str(tldiag_env), tiny_model_id, "demo:digits?limit=3", queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert np.array_equal(results[0][0], results[1][0])
    store = EmbeddingStore()
    assert len(store.entries()) == 2  # layer1 + logits, written once
    assert not list(store.root.glob("*/.tmp-*"))


def test_a_second_session_waits_for_the_first_and_follows_its_progress(tldiag_env, tiny):
    """Two sessions of one server asking for the same uncached embeddings: one computes, the other waits on the
    store's lock, its progress bar following the first one's, then reads the entries (computed once)."""
    import threading

    ds = load_dataset("demo:digits?limit=3")
    started, followed, seen, results = threading.Event(), threading.Event(), [], {}

    def first_progress(done, total, message):
        started.set()
        if not followed.is_set():  # a slow computation until the second session has waited and followed it
            time.sleep(1.2)

    def second_progress(done, total, message):
        seen.append((done, total, message))
        if done > 0 and "(ann@example.com)" in message:
            followed.set()

    def run(name, progress, user):
        results[name] = embed_dataset(tiny, ds, ["layer1"], batch_size=1, num_workers=0, progress=progress,
                                      requested_by=user)
    first = threading.Thread(target=run, args=("first", first_progress, "ann@example.com"))
    first.start()
    assert started.wait(60)
    second = threading.Thread(target=run, args=("second", second_progress, "bob@example.com"))
    second.start()
    first.join(120), second.join(120)
    assert not any(results["first"].cache_hits.values()) and all(results["second"].cache_hits.values())
    np.testing.assert_array_equal(results["first"]["layer1"], results["second"]["layer1"])
    waiting = [m for _, _, m in seen if m.startswith("another session is computing these embeddings")]
    assert waiting and any("(ann@example.com)" in m for m in waiting), seen
    assert any(d > 0 for d, _, m in seen if "(ann@example.com)" in m)  # it followed the first one's count
    store = EmbeddingStore()
    assert store.get(entry_key(tiny, "layer1", ds)).manifest["requested_by"] == "ann@example.com"
    assert not list((store.root / "locks").glob("*.progress.json"))  # nothing left behind once released


def test_concurrent_put_of_the_same_key_keeps_one_entry(tldiag_env):
    store = EmbeddingStore()
    key = "cd" * 32
    store.put(key, np.ones((2, 2), np.float32), np.zeros(2), {"writer": 1})
    store.put(key, np.ones((2, 2), np.float32), np.zeros(2), {"writer": 2})  # loses the race: no-op
    assert store.get(key).manifest == {"writer": 1}
    assert not list(store.root.glob("*/.tmp-*"))


@pytest.mark.gpu
def test_gpu_embeddings_match_cpu(tiny):
    ds = load_dataset("demo:digits?limit=2")
    cpu = embed_dataset(tiny, ds, ["layer2"], device="cpu", use_cache=False, num_workers=0)
    gpu = embed_dataset(tiny, ds, ["layer2"], device="cuda", use_cache=False, num_workers=0)
    np.testing.assert_allclose(cpu["layer2"], gpu["layer2"], rtol=0.05, atol=0.05)  # bf16 autocast


# ------------------------------------------------------------------ images that do not decode
def _damage(folder, cls: str, name: str) -> None:
    """A PNG whose header parses but whose pixels stop half-way (what a killed copy leaves)."""
    good = (folder / cls / "000.png").read_bytes()
    (folder / cls / name).write_bytes(good[: len(good) // 2])


@pytest.mark.parametrize("workers", [0, 2])
def test_an_image_that_does_not_decode_is_skipped_listed_and_recorded(tiny, make_folder, workers):
    root = make_folder({"a": 5, "b": 4})
    _damage(root, "a", "broken.png")
    ds = load_dataset(f"folder:{root}")
    assert len(ds) == 10 and not ds.verified  # the open read headers only
    emb = embed_dataset(tiny, ds, [PRE_LOGITS], batch_size=3, num_workers=workers)
    broken = str(root / "a" / "broken.png")
    assert len(emb) == 9 and broken not in emb.sample_ids and list(emb.skipped) == [broken]
    # the dataset itself dropped the row (pages index it by embedding row), and its fingerprint moved with it
    assert len(ds) == 9 and emb.sample_ids == tuple(ds.sample_ids) and emb.fingerprint == ds.fingerprint
    assert ds.verified and any(s.path == broken and s.reason.startswith("does not decode") for s in ds.skipped)
    # the rows are the images they claim to be: equal to embedding the good images alone
    clean = load_dataset(f"folder:{make_folder({'a': 5, 'b': 4}, name='clean')}")
    ref = embed_dataset(tiny, clean, [PRE_LOGITS], num_workers=0, use_cache=False)
    np.testing.assert_allclose(emb[PRE_LOGITS], ref[PRE_LOGITS], rtol=1e-5, atol=1e-6)
    # the cache entry records it, and a fresh open (another process, another day) reads everything back
    entry = EmbeddingStore().get(entry_key(tiny, PRE_LOGITS, ds))
    assert entry is not None and {s["path"] for s in entry.manifest["skipped"]} == {broken}
    again = embed_dataset(tiny, load_dataset(f"folder:{root}"), [PRE_LOGITS], num_workers=0)
    assert all(again.cache_hits.values()) and len(again) == 9 and list(again.skipped) == [broken]
    leftovers = [p for p in EmbeddingStore().root.glob("*/.tmp-*")]
    assert leftovers == []  # nothing half-written stays behind


def test_a_limited_sample_only_loses_its_undecodable_images(tiny, make_folder):
    """With ?limit=N the sample is drawn from every file whose header parses: a damaged one found later leaves the
    sample, the others stay, so a later open draws the very same images."""
    root = make_folder({"a": 6, "b": 6})
    for k in range(4):
        _damage(root, "a", f"broken{k}.png")
    spec = f"folder:{root}?limit=5&seed=3"
    ds = load_dataset(spec)
    drawn = set(ds.sample_ids)
    emb = embed_dataset(tiny, ds, [PRE_LOGITS], num_workers=0)
    lost = {p for p in drawn if "broken" in p}
    assert lost  # the seed draws some damaged files, or the test says nothing
    assert set(emb.sample_ids) == drawn - lost and len(emb) == 10 - len(lost)
    assert load_dataset(spec).sample_ids == ds.sample_ids


def test_every_image_undecodable_is_a_clear_error(tiny, make_folder):
    from tldiag.errors import DatasetError

    root = make_folder({"a": 1, "b": 1})
    for cls in ("a", "b"):
        _damage(root, cls, "x.png")
        (root / cls / "000.png").unlink()
    with pytest.raises(DatasetError, match="could be decoded"):
        embed_dataset(tiny, load_dataset(f"folder:{root}"), [PRE_LOGITS], num_workers=0)
    assert list(EmbeddingStore().root.glob("*/.tmp-*")) == []
