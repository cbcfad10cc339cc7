"""Roles from the access file, what each may do, and when the dashboard may be shared."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tldiag.access import (OPEN, OPEN_SERVER_ENV, SIGNED_IN, SINGLE_USER, AccessDenied, AccessPolicy, auth_configured,
                           can, is_loopback, require, serving_mode)
from tldiag.errors import TldiagError

AUTH = {"auth": {"redirect_uri": "http://tldiag.internal:8501/oauth2callback", "cookie_secret": "x" * 32,
                 "client_id": "tldiag", "client_secret": "s",
                 "server_metadata_url": "https://login.example.com/.well-known/openid-configuration"}}


def test_an_address_wins_over_its_domain_and_the_default(tmp_path):
    path = tmp_path / "access.toml"
    path.write_text('default_role = "viewer"\n[roles]\n"Lead@Example.com" = "admin"\n"@example.com" = "runner"\n')
    policy = AccessPolicy.load(path)
    assert policy.role_of("lead@example.com") == "admin"  # case-insensitive
    assert policy.role_of("dev@example.com") == "runner"
    assert policy.role_of("guest@other.org") == "viewer"
    assert policy.role_of(None) == "viewer"
    assert policy.origin == str(path)


def test_without_an_access_file_everyone_signed_in_is_a_viewer(tmp_path, monkeypatch):
    monkeypatch.setenv("TLDIAG_HOME", str(tmp_path))
    monkeypatch.delenv("TLDIAG_ACCESS", raising=False)
    assert AccessPolicy.load().role_of("anyone@example.com") == "viewer"


@pytest.mark.parametrize("text, match", [
    ('default_role = "owner"', "role 'owner' is not a role; use one of viewer, runner, admin"),
    ('[roles]\n"bob" = "runner"', "'bob' is neither an e-mail address nor an @domain"),
    ('[roles]\n"@example.com" = "superuser"', "role 'superuser' is not a role"),
    ('admins = ["a@b.c"]', r"unknown keys \['admins'\]"),
    ("[roles", "cannot be read"),
])
def test_a_bad_access_file_names_the_value_and_the_fix(tmp_path, text, match):
    path = tmp_path / "access.toml"
    path.write_text(text)
    with pytest.raises(TldiagError, match=match):
        AccessPolicy.load(path)


def test_a_named_access_file_that_is_missing_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TLDIAG_ACCESS", str(tmp_path / "nope.toml"))
    with pytest.raises(TldiagError, match="does not exist"):
        AccessPolicy.load()


def test_each_role_does_what_the_one_below_does_and_more():
    assert [can(r, "view") for r in ("viewer", "runner", "admin")] == [True, True, True]
    assert [can(r, "launch") for r in ("viewer", "runner", "admin")] == [False, True, True]
    assert [can(r, "cancel_any") for r in ("viewer", "runner", "admin")] == [False, False, True]
    assert [can(r, "change_rules") for r in ("viewer", "runner", "admin")] == [False, False, True]
    with pytest.raises(AccessDenied, match="ann@example.com is a viewer; launch needs the runner role"):
        require("ann@example.com", "viewer", "launch")
    require("ann@example.com", "runner", "launch")
    with pytest.raises(TldiagError, match="Unknown action 'fly'"):
        can("admin", "fly")


@pytest.mark.parametrize("address, loopback", [("127.0.0.1", True), ("127.0.1.1", True), ("localhost", True),
                                               ("::1", True), ("0.0.0.0", False), ("10.1.2.3", False),
                                               ("tldiag.internal", False)])
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


def test_serving_on_the_network_needs_sign_in_or_an_explicit_opt_in():
    assert serving_mode("127.0.0.1", auth_configured=False, environ={}).mode == SINGLE_USER
    assert serving_mode("0.0.0.0", auth_configured=True, environ={}).mode == SIGNED_IN
    with pytest.raises(TldiagError, match=f"Refusing to serve on '0.0.0.0' without sign-in.*{OPEN_SERVER_ENV}=1"):
        serving_mode("0.0.0.0", auth_configured=False, environ={})
    opened = serving_mode("0.0.0.0", auth_configured=False, environ={OPEN_SERVER_ENV: "1"})
    assert opened.mode == OPEN and "without sign-in" in opened.banner


def test_auth_configured_reads_the_secrets_and_names_what_is_missing(tmp_path):
    assert auth_configured(tmp_path / "missing.toml") is False
    assert auth_configured({}) is False
    assert auth_configured(AUTH) is True
    nested = {"auth": {"redirect_uri": "u", "cookie_secret": "c",
                       "okta": {"client_id": "i", "client_secret": "s", "server_metadata_url": "m"}}}
    assert auth_configured(nested) is True
    with pytest.raises(TldiagError, match="missing cookie_secret, client_id and server_metadata_url"):
        auth_configured({"auth": {"redirect_uri": "u"}})
    path = tmp_path / "secrets.toml"
    path.write_text('[auth]\nredirect_uri = "u"\ncookie_secret = "c"\nclient_id = "i"\nserver_metadata_url = "m"\n')
    assert auth_configured(path) is True


def test_the_launcher_check_refuses_a_public_address_without_auth(tmp_path):
    """What `make run` calls before it starts Streamlit."""
    env = {"PATH": "/usr/bin:/bin", "TLDIAG_HOME": str(tmp_path)}
    run = [sys.executable, "-m", "tldiag.access"]
    refused = subprocess.run([*run, "0.0.0.0", str(tmp_path / "secrets.toml")], env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 2 and "Refusing to serve on '0.0.0.0'" in refused.stderr
    assert subprocess.run([*run, "127.0.0.1"], env=env, capture_output=True).returncode == 0
    opened = subprocess.run([*run, "0.0.0.0", str(tmp_path / "secrets.toml")], capture_output=True, text=True,
                            env={**env, OPEN_SERVER_ENV: "1"})
    assert opened.returncode == 0 and "warning" in opened.stderr
