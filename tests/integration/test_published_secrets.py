"""Outside development the node refuses to start with secrets published in the repository:
in its settings (before it touches anything), or in a channel's stored credentials (a database
first seeded from the defaults)."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from benchmarks.node import ROOT
from config.settings import load_settings
from infra import channels, db
from infra.secretbox import SecretBox

BASE = "postgresql://postgres@127.0.0.1:5432/"
OWN_KEY = base64.b64encode(os.urandom(32)).decode()
OWN = {
    "JUHE_SECRETS__KEYS__LOCAL1": OWN_KEY,
    "JUHE_CHANNELS__SIM__API_KEY": "sim_live_" + secrets.token_hex(8),
    "JUHE_CHANNELS__SIM__SECRET": "sim_live_" + secrets.token_hex(16),
}


def juhe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`juhe …` with only the given settings (none of this shell's JUHE_* variables)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JUHE_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**clean, "JUHE_LOGGING__LEVEL": "WARNING", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def scratch_db() -> AsyncIterator[str]:
    dsn = BASE + "juhe_pub_" + secrets.token_hex(3)
    await db.ensure_database(dsn)
    yield dsn
    admin = await asyncpg.connect(BASE + "postgres")
    await admin.execute(f'DROP DATABASE "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    await admin.close()


@pytest.mark.parametrize(
    "command", [("up",), ("migrate",), ("gateway",), ("worker", "ledger"), ("simulator",)]
)
def test_production_with_the_published_defaults_does_not_start(command: tuple[str, ...]) -> None:
    # A database that does not exist: the refusal comes before anything is touched.
    done = juhe(*command, JUHE_POSTGRES__DSN=BASE + "juhe_never_" + secrets.token_hex(3))
    assert done.returncode == 2, done.stderr
    for name in ("channels.sim.api_key", "channels.sim.secret", "secrets.keys.local1"):
        assert name in done.stderr
    defaults = load_settings({})
    for value in (defaults.channels["sim"].secret, defaults.secrets.keys["local1"]):
        assert value not in done.stderr + done.stdout


@pytest.mark.asyncio(loop_scope="session")
async def test_a_database_seeded_with_published_credentials_is_refused(scratch_db: str) -> None:
    """Seeded from the defaults (as `make run` would), then run in production with the node's
    own keys and channel secrets: the stored sim credentials are still the published ones,
    until they are changed."""
    box = SecretBox({"local1": OWN_KEY}, "local1")
    await db.migrate(scratch_db)
    await channels.seed_from_config(scratch_db, load_settings({}).channels, box)

    refused = juhe("migrate", JUHE_POSTGRES__DSN=scratch_db, **OWN)
    assert refused.returncode == 2, refused.stderr
    assert "channel sim credential api_key" in refused.stderr
    assert "channel sim credential secret" in refused.stderr
    assert "sim_secret_demo" not in refused.stderr
    assert juhe("gateway", JUHE_POSTGRES__DSN=scratch_db, **OWN).returncode == 2

    # Development starts with them, as every test node does.
    allowed = juhe("migrate", JUHE_POSTGRES__DSN=scratch_db, JUHE_NODE__PROFILE="development")
    assert allowed.returncode == 0, allowed.stderr

    conn = await db.connect(scratch_db)
    try:
        own = {
            "api_key": OWN["JUHE_CHANNELS__SIM__API_KEY"],
            "secret": OWN["JUHE_CHANNELS__SIM__SECRET"],
        }
        await channels.update(conn, box, "sim", {"credentials": own})
    finally:
        await conn.close()
    passed = juhe("migrate", JUHE_POSTGRES__DSN=scratch_db, **OWN)
    assert passed.returncode == 0, passed.stderr


@pytest.mark.asyncio(loop_scope="session")
async def test_production_with_own_secrets_seeds_and_starts_clean(scratch_db: str) -> None:
    done = juhe("migrate", JUHE_POSTGRES__DSN=scratch_db, **OWN)
    assert done.returncode == 0, done.stderr
    assert '"channels_seeded":1' in done.stdout
