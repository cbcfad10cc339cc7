"""Sign-in through a real OpenID Connect provider on 127.0.0.1, with users of different roles, in Chromium.

The provider is oauth2-mock-server (npm, installed into the test's own folder), the dashboard reads it through
Streamlit's st.login with an [auth] section in a secrets file of the test, and the roles come from an access file.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import ROOT, _free_port, _serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HERE = Path(__file__).resolve().parent
TINY = "model=random:timm:test_resnet&resolution=32&limit=3&target=demo:digits"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """(issuer URL, the file that names who signs in next)."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        pytest.fail("The sign-in tests need Node.js 20+ with npm (Debian/Ubuntu: sudo apt-get install nodejs npm).")
    folder = tmp_path_factory.mktemp("oidc")
    subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "oauth2-mock-server@9"], cwd=folder,
                   check=True, capture_output=True, timeout=300)
    shutil.copy(HERE / "oidc_provider.mjs", folder / "provider.mjs")
    user = folder / "user.txt"
    user.write_text("nobody@example.com")
    proc = subprocess.Popen(["node", "provider.mjs", str(user)], cwd=folder, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    issuer = proc.stdout.readline().strip()
    assert issuer.startswith("http://127.0.0.1:"), issuer
    yield issuer, user
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


@contextlib.contextmanager
def _signed_in_server(provider, tmp_path: Path, access: str, env: dict | None = None):
    """A dashboard that signs in through ``provider``, with the access file ``access``; yields (url, TLDIAG_HOME)."""
    issuer, _ = provider
    port = _free_port()
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[auth]\nredirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
                       f'cookie_secret = "{"s3cret" * 6}"\nclient_id = "tldiag-test"\n'
                       f'client_secret = "tldiag-test-secret"\n'
                       f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n')
    (tmp_path / "access.toml").write_text(access)
    with _serve(tmp_path, port=port, args=(f"--secrets.files={secrets}",),
                env={"TLDIAG_ACCESS": str(tmp_path / "access.toml"), "TLDIAG_UMAP_WARMUP": "0", **(env or {})}) as url:
        yield url, tmp_path / "home"


@pytest.fixture
def signed_in_server(provider, tmp_path):
    with _signed_in_server(provider, tmp_path, 'default_role = "viewer"\n[roles]\n"run@example.com" = "runner"\n'
                           ) as served:
        yield served


def _sign_in(page: Page, provider, url: str, email: str) -> None:
    provider[1].write_text(email)
    page.goto(url)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Current setup")).to_be_visible(timeout=90_000)


def _long_job(page: Page) -> None:
    """Fill the fine-tuning form for a job that runs until it is cancelled: 300 epochs, no early stopping."""
    for label, value in (("Epochs (at most)", "300"), ("Early-stopping patience", "0")):
        box = page.get_by_role("spinbutton", name=label)
        box.fill(value)
        box.press("Enter")
        expect(box).to_have_value(value, timeout=30_000)
    page.wait_for_timeout(1000)  # the rerun with the new values


def _click_launch(page: Page, artifacts: Path) -> None:
    """Click Launch fine-tuning; a page that went blank meanwhile (seen now and then with five sessions and a
    training job on two cores, not yet understood) is reloaded once, as its user would, and its screenshot kept."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    button = page.get_by_role("button", name="Launch fine-tuning")
    try:
        button.click(timeout=30_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(artifacts / "five_users_blank_page.png"), full_page=True)
        page.reload()
        button.click(timeout=90_000)


def test_roles_owners_sign_out_and_the_audit_trail(page: Page, provider, signed_in_server, artifacts):
    url, home = signed_in_server
    # before sign-in: nothing of the app, whichever page the link names
    for path in ("/", f"/verdict?{TINY}", f"/finetune?{TINY}"):
        page.goto(url + path)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=90_000)
        text = page.locator("body").inner_text()
        assert "Current setup" not in text and "Verdict" not in text and "Fine-tune" not in text, path
    # a viewer reads, but has no launch button
    _sign_in(page, provider, url, "ann@example.com")
    # the Setup page's gallery: images travel inside the page, none has a /media URL a copied link could reach
    gallery = page.get_by_test_id("stImage").locator("img")
    expect(gallery.first).to_be_visible(timeout=90_000)
    srcs = gallery.evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    assert srcs and all(s.startswith("data:image/") for s in srcs), srcs
    media = page.evaluate("[...document.querySelectorAll('[src], [href]')].map(e => e.src || e.href)"
                          ".filter(u => new URL(u, location.href).pathname.startsWith('/media/'))")
    assert media == [], media  # Streamlit's media URLs (its own fonts live under /static/media/)
    page.goto(f"{url}/finetune?{TINY}")
    expect(page.get_by_text("Your role (viewer)")).to_be_visible(timeout=90_000)
    assert page.get_by_role("button", name=re.compile("^Launch")).count() == 0
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
    page.goto(f"{url}/finetune?{TINY}")  # signed out: the permalink shows the sign-in page again
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
    # a runner launches a job, which shows its owner
    _sign_in(page, provider, url, "run@example.com")
    page.goto(f"{url}/finetune?{TINY}")
    launch = page.get_by_role("button", name=re.compile("^Launch"))
    expect(launch.first).to_be_visible(timeout=90_000)
    _long_job(page)  # still running while the viewer looks at it
    launch.first.click()
    expect(page.get_by_text(re.compile(r"run@example\.com · (queued|running|done)")).first).to_be_visible(
        timeout=120_000)
    page.screenshot(path=str(artifacts / "sign_in_runner.png"), full_page=True)
    job_id = re.search(r"finetune-\d{8}-\d{6}-[0-9a-f]{4}", page.locator("body").inner_text()).group(0)
    # the viewer sees the runner's job, its owner, and no Cancel button
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=60_000)
    _sign_in(page, provider, url, "ann@example.com")
    page.goto(f"{url}/finetune?{TINY}")
    expect(page.get_by_text(re.compile(r"run@example\.com · ")).first).to_be_visible(timeout=90_000)
    assert page.get_by_role("button", name="Cancel", exact=True).count() == 0
    from tldiag.training.jobs import JobStore

    store = JobStore(home / "jobs")
    assert store.get(job_id).active  # there was something to cancel
    store.cancel(job_id)
    # the audit trail, as `tldiag audit` prints it
    out = subprocess.run([sys.executable, "-m", "tldiag.cli", "audit", "--json", "-"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "TLDIAG_HOME": str(home)}, check=True).stdout
    rows = [(r["user"], r["action"]) for r in json.loads(out[out.index("["):])]
    assert ("ann@example.com", "sign-in") in rows and ("ann@example.com", "sign-out") in rows
    assert ("run@example.com", "sign-in") in rows and ("run@example.com", "launch") in rows
    assert rows.count(("ann@example.com", "sign-in")) == 2  # one row per sign-in, however many pages each opened


FRESH = "model=efficientnet-lite0&resolution=64&limit=20"  # uncached on this server: 200 + 200 images to embed


def test_five_users_at_once_share_one_computation_and_the_queue(browser, provider, tmp_path, artifacts):
    """Five signed-in runners on one server: the same uncached embeddings are computed once (the others wait and
    follow its progress), the cache stays whole, and each user's queue limit holds, first come first served."""
    from tldiag.audit import AuditLog
    from tldiag.cache import EmbeddingStore
    from tldiag.training.jobs import JobStore

    users = [f"user{i}@example.com" for i in range(5)]
    env = {"TLDIAG_MAX_QUEUED_PER_USER": "1", "TLDIAG_CPU_JOBS": "1"}
    with _signed_in_server(provider, tmp_path, 'default_role = "runner"\n', env) as (url, home):
        contexts = [browser.new_context(viewport={"width": 1300, "height": 1600}) for _ in users]
        pages = [c.new_page() for c in contexts]
        store = JobStore(home / "jobs")
        try:
            for page, user in zip(pages, users):  # the provider signs in whoever its file names: one at a time
                _sign_in(page, provider, url, user)
            for page in pages:
                page.goto(f"{url}/?{FRESH}")
                expect(page.get_by_role("button", name="Compute embeddings")).to_be_visible(timeout=90_000)
            for page in pages:  # five clicks within a second or two
                page.get_by_role("button", name="Compute embeddings").click()
            ready = re.compile(r"Embeddings ready: 200 source and 200 target images")
            followed, deadline = set(), time.time() + 300
            while not all(p.get_by_text(ready).count() for p in pages):
                for k, page in enumerate(pages):
                    if page.get_by_text("another session is computing these embeddings", exact=False).count():
                        followed.add(k)
                assert time.time() < deadline, "the embeddings did not finish in 5 minutes"
                time.sleep(0.2)
            pages[0].screenshot(path=str(artifacts / "five_users_setup.png"), full_page=True)
            computed = AuditLog(home / "jobs").entries(action="compute")
            assert len(computed) == 2 and {e.subject for e in computed} == {"demo:digits?limit=20",
                                                                             "demo:printed-digits?limit=20"}, computed
            assert followed, "no waiting session showed the computing session's progress"
            cache = EmbeddingStore(home / "embeddings")
            entries = [cache.get(p.name) for p in cache.entries()]
            assert entries and all(e.features.shape[0] == 200 and e.manifest["requested_by"] in users
                                   for e in entries)
            assert not list(cache.root.glob("*/.tmp-*")) and not list(cache.root.glob("locks/*.progress.json"))

            # each user asks for three fine-tuning jobs; one runs at a time, and each user may have one waiting
            for page in pages:
                page.goto(f"{url}/finetune?{TINY}")
                expect(page.get_by_role("button", name="Launch fine-tuning")).to_be_visible(timeout=90_000)
                _long_job(page)
            outcome = re.compile(r"Launched finetune-|already has 1 queued jobs")
            for attempt in range(3):  # round by round, each click answered before the next page's
                for page, user in zip(pages, users):
                    _click_launch(page, artifacts)
                    answer = page.get_by_text(f"{user} already has 1 queued jobs", exact=False) if attempt == 2 \
                        else page.get_by_text(outcome)
                    expect(answer.first).to_be_visible(timeout=60_000)  # the third is refused for everyone
            jobs = store.list()
            for user in users:  # one running or none, and one waiting at most, whatever each user asked for
                assert sum(j.owner == user and j.status == "queued" for j in jobs) <= 1, user
                assert sum(j.owner == user for j in jobs) <= 2, user
            queued = sorted((j for j in jobs if j.status == "queued"), key=lambda j: j.seq)
            assert [store.queue_position(j) for j in queued] == list(range(1, len(queued) + 1))  # one line, FCFS
            assert sum(j.status == "running" for j in jobs) <= 1 and len(queued) >= 4
            pages[-1].reload()
            expect(pages[-1].get_by_text(re.compile(r"queued, \d in line")).first).to_be_visible(timeout=60_000)
            pages[-1].screenshot(path=str(artifacts / "five_users_queue.png"), full_page=True)
        except Exception:
            for k, page in enumerate(pages):  # what each user saw, for the artefacts
                page.screenshot(path=str(artifacts / f"five_users_failed_{k}.png"), full_page=True)
            raise
        finally:
            for job in store.list():
                if job.active:
                    store.cancel(job.id)
            for c in contexts:
                c.close()
