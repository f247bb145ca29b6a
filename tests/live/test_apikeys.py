"""API keys: created once, stored hashed, scoped, revocable, last use recorded; and the CLI."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from data_access.apikeys import (
    ApiKeyVerifier,
    InvalidKey,
    ScopeRefused,
    create_key,
    list_keys,
    parse_token,
    revoke_key,
)
from pipeline.cli import main
from tests.live.conftest import FakeClock


def test_the_store_keeps_only_a_hash_of_the_secret(local_stores, local_settings):
    created = create_key(local_stores.records, "shop", ["ingest"], created_by="ops@example.com")
    key_id, secret = parse_token(created.token)
    assert key_id == created.key.key_id
    assert len(secret) == 43  # 256 random bits

    doc = local_stores.records.get("apikey", key_id)
    assert doc["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    # Neither the token nor the secret appears anywhere in the database file.
    with sqlite3.connect(local_settings.state_db) as conn:
        dump = "\n".join(conn.iterdump())
    assert secret not in dump
    assert created.token not in dump
    assert "secret_hash" not in created.key.public()


def test_verify_accepts_the_token_and_refuses_everything_else(local_stores):
    created = create_key(local_stores.records, "shop", ["ingest", "upload"], created_by="t")
    verifier = ApiKeyVerifier(local_stores.records, local_stores.state)
    assert verifier.verify(created.token, "ingest").key_id == created.key.key_id
    assert verifier.verify(created.token, "upload").key_id == created.key.key_id
    key_id, secret = parse_token(created.token)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for token in (
        None,
        "",
        "Bearer x",
        f"mck_{key_id}_{flipped}",
        f"mck_{'0' * 16}_{secret}",  # unknown id, valid-looking secret
        created.token + "x",
    ):
        with pytest.raises(InvalidKey):
            verifier.verify(token, "ingest")


def test_scopes_limit_what_a_key_may_do(local_stores):
    upload_only = create_key(local_stores.records, "device", ["upload"], created_by="t")
    verifier = ApiKeyVerifier(local_stores.records, local_stores.state)
    with pytest.raises(ScopeRefused):
        verifier.verify(upload_only.token, "ingest")
    with pytest.raises(ValueError):
        create_key(local_stores.records, "x", ["admin"], created_by="t")
    with pytest.raises(ValueError):
        create_key(local_stores.records, "x", [], created_by="t")


def test_revocation_takes_effect_when_the_cache_lapses(local_stores):
    clock = FakeClock()
    created = create_key(local_stores.records, "shop", ["ingest"], created_by="t")
    verifier = ApiKeyVerifier(
        local_stores.records, local_stores.state, cache_seconds=5, clock=clock
    )
    verifier.verify(created.token, "ingest")
    revoked = revoke_key(local_stores.records, created.key.key_id, revoked_by="admin")
    assert revoked.revoked_by == "admin" and not revoked.active
    verifier.verify(created.token, "ingest")  # still trusted inside the cache window
    clock.advance(5.1)
    with pytest.raises(InvalidKey):
        verifier.verify(created.token, "ingest")
    with pytest.raises(KeyError):
        revoke_key(local_stores.records, "0" * 16, revoked_by="admin")


def test_last_use_is_recorded_at_most_once_a_minute(local_stores):
    clock = FakeClock()
    created = create_key(local_stores.records, "shop", ["ingest"], created_by="t")
    verifier = ApiKeyVerifier(local_stores.records, local_stores.state, clock=clock)
    assert list_keys(local_stores.records, local_stores.state)[0].last_used_at is None
    verifier.verify(created.token, "ingest")
    first = list_keys(local_stores.records, local_stores.state)[0].last_used_at
    assert first == pytest.approx(clock.now)
    clock.advance(30)
    verifier.verify(created.token, "ingest")
    assert list_keys(local_stores.records, local_stores.state)[0].last_used_at == first
    clock.advance(31)
    verifier.verify(created.token, "ingest")
    later = list_keys(local_stores.records, local_stores.state)[0].last_used_at
    assert later == pytest.approx(clock.now)


def test_cli_create_list_revoke(local_settings, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LAKE_ROOT", str(local_settings.lake_root))
    monkeypatch.setenv("STATE_DB", str(local_settings.state_db))
    token_file = tmp_path / "token"
    code = main(
        [
            "api-key",
            "create",
            "--name",
            "shop frontend",
            "--scope",
            "ingest",
            "--rate",
            "20",
            "--by",
            "ops@example.com",
            "--token-file",
            str(token_file),
        ]
    )
    assert code == 0
    out, err = capsys.readouterr()
    created = json.loads(out)
    token = err.strip().splitlines()[-1]
    assert parse_token(token)[0] == created["key_id"]
    assert token_file.read_text().strip() == token
    assert token_file.stat().st_mode & 0o077 == 0
    assert created["scopes"] == ["ingest"] and created["rate_per_second"] == 20

    assert main(["api-key", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    assert token not in json.dumps(listed)

    assert main(["api-key", "revoke", created["key_id"], "--by", "ops@example.com"]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_by"] == "ops@example.com"
    assert main(["api-key", "revoke", "ffffffffffffffff"]) == 1
