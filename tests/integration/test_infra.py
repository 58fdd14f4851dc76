"""Infrastructure pieces against the real services: migrations, the shared circuit breaker,
the hot store's forward-only copy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from benchmarks.node import free_port
from cli.admin import reseal_secrets
from cli.main import migrate
from config import load_settings
from config.settings import Breaker
from domain.access import Realm
from domain.ids import new_id
from domain.tokens import new_signing_key
from gateway.intake import Scripts
from infra import audit, channels, db, identity, redisclient, sealing, store
from infra.channels import ChannelRegistry
from infra.hotstore import HotStore
from infra.invalidation import announce, follow
from infra.keys import Keys
from infra.merchants import MerchantDirectory, create_merchant
from infra.redispipe import RedisPipe
from infra.secretbox import SecretBox, SecretBoxError
from routing.breaker import CircuitBreakers, State
from routing.health import HealthBook

pytestmark = pytest.mark.asyncio(loop_scope="session")
BASE = "postgresql://postgres@127.0.0.1:5432/"


@pytest_asyncio.fixture(loop_scope="session")
async def scratch_db():
    dsn = BASE + "juhe_mig_" + secrets.token_hex(3)
    await db.ensure_database(dsn)
    yield dsn
    admin = await asyncpg.connect(BASE + "postgres")
    await admin.execute(f'DROP DATABASE "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def redis():
    client = Redis.from_url(load_settings({}).redis.url)
    prefix = "tinfra" + secrets.token_hex(3)
    yield client, Keys(prefix)
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_migrations_apply_once_and_refuse_edits(scratch_db: str, tmp_path: Path) -> None:
    assert await db.migrate(scratch_db) == [v for v, _, _ in db.migration_files()]
    assert await db.migrate(scratch_db) == []
    edited = tmp_path / "001_spine.sql"
    edited.write_text((db.MIGRATIONS / "001_spine.sql").read_text() + "\n-- edited\n")
    with pytest.raises(db.MigrationError):
        await db.migrate(scratch_db, tmp_path)


async def test_concurrent_migrations_are_serialised(scratch_db: str) -> None:
    results = await asyncio.gather(*(db.migrate(scratch_db) for _ in range(3)))
    assert sorted(len(r) for r in results) == [0, 0, len(db.migration_files())]


async def test_breaker_opens_half_opens_and_closes(redis) -> None:
    client, keys = redis
    changes: list[tuple[str, State]] = []

    async def heard(channel: str, state: State) -> None:
        changes.append((channel, state))

    settings = Breaker(failure_threshold=3, window_s=10, open_s=0.3)
    breakers = CircuitBreakers(client, keys, settings, heard)
    assert await breakers.allow("c1")
    for _ in range(2):
        assert await breakers.record("c1", ok=False) is State.CLOSED
    assert await breakers.record("c1", ok=False) is State.OPEN
    assert not await breakers.allow("c1")
    assert not await breakers.routable("c1"), "routing leaves an open breaker's channel out"
    assert changes == [("c1", State.OPEN)]
    other = CircuitBreakers(client, keys, Breaker(failure_threshold=3, window_s=10, open_s=0.3))
    assert not await other.allow("c1"), "the state is shared between processes"
    await asyncio.sleep(0.35)
    assert await other.routable("c1"), "cooled down: routing may send the probe"
    assert await breakers.allow("c1"), "one probe after open_s (routing did not take it)"
    assert not await other.allow("c1"), "only one probe at a time"
    assert await breakers.record("c1", ok=False) is State.OPEN, "a failed probe reopens"
    await asyncio.sleep(0.35)
    assert await breakers.allow("c1")
    assert await breakers.record("c1", ok=True) is State.CLOSED
    assert await other.allow("c1")
    assert changes == [("c1", State.OPEN), ("c1", State.OPEN), ("c1", State.CLOSED)]
    assert await breakers.allow("c2"), "breakers are per channel"


async def test_hot_copy_only_moves_forward(redis) -> None:
    client, keys = redis
    hot = HotStore(client, keys, "http://x", 60)
    row = {
        "id": "pay_1",
        "merchant_id": "m",
        "merchant_order_id": "o",
        "status": "succeeded",
        "amount": 100,
        "currency": "USD",
        "created_at": 0,
        "expires_at": 0,
        "version": 3,
    }
    await hot.put_payment(row)
    await hot.put_payment({**row, "status": "processing", "version": 2})
    assert await client.hget(keys.payment("pay_1"), "status") == b"succeeded"
    await hot.put_payment({**row, "status": "refunded", "version": 4})
    assert await client.hget(keys.payment("pay_1"), "status") == b"refunded"


async def test_scripts_answer_each_caller_and_survive_a_script_flush(redis) -> None:
    client, keys = redis
    pipe = RedisPipe(load_settings({}).redis.url)
    scripts = Scripts(
        pipe, {"echo": "return ARGV[1] .. KEYS[1]", "boom": "return redis.error_reply('no')"}
    )
    answers = await asyncio.gather(
        *(scripts.call("echo", [f"{keys.prefix}:k{n}"], [n]) for n in range(50))
    )
    assert answers == [f"{n}{keys.prefix}:k{n}".encode() for n in range(50)]
    await client.script_flush()  # as after a Redis restart: the next call loads them again
    assert await scripts.call("echo", ["x"], ["y"]) == b"yx"
    failing = asyncio.ensure_future(scripts.call("boom", [], []))
    fine = asyncio.ensure_future(scripts.call("echo", ["b"], ["a"]))
    with pytest.raises(ResponseError, match="no"):
        await failing
    assert await fine == b"ab", "one caller's error does not fail the others"
    await pipe.close()


async def test_scripts_rerun_only_calls_that_did_not_run(redis) -> None:
    """A script flushed between two calls: the call that ran is not repeated."""
    client, keys = redis
    pipe = RedisPipe(load_settings({}).redis.url)
    counter = f"{keys.prefix}:runs"
    scripts = Scripts(pipe, {"incr": "return redis.call('INCR', KEYS[1])"})
    assert await scripts.call("incr", [counter], []) == 1
    await client.script_flush()
    assert await scripts.call("incr", [counter], []) == 2, "loaded again and run exactly once"
    assert int(await client.get(counter)) == 2
    await pipe.close()


async def test_pipe_answers_in_order_reconnects_and_fails_cleanly(redis) -> None:
    client, keys = redis
    pipe = RedisPipe(load_settings({}).redis.url)
    name = f"{keys.prefix}:pipe"
    replies = await asyncio.gather(*(pipe.call("INCR", name) for _ in range(200)))
    assert replies == list(range(1, 201)), "answered in order, each to its caller"
    with pytest.raises(ResponseError, match="unknown command"):
        await pipe.call("NOSUCHCOMMAND")
    pipe_id = await pipe.call("CLIENT", "ID")
    await client.client_kill_filter(_id=pipe_id)
    with contextlib.suppress(RedisConnectionError):
        await pipe.call("PING")  # may be the one that finds the connection gone
    assert await pipe.call("INCR", name) == 201, "the next command connected again"
    await pipe.close()
    with pytest.raises(RedisConnectionError):
        await pipe.call("PING")
    unreachable = RedisPipe(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await unreachable.call("PING")


async def test_pipe_selects_the_database_in_its_url(redis) -> None:
    client, keys = redis
    pipe = RedisPipe("redis://127.0.0.1:6379/3")
    name = f"{keys.prefix}:db3"
    await pipe.call("SET", name, "here", "EX", 30)
    other = redisclient.connect("redis://127.0.0.1:6379/3")
    assert await other.get(name) == b"here"
    assert await client.exists(name) == 0
    await other.delete(name)
    await other.aclose()
    await pipe.close()


async def test_audit_log_is_append_only_and_an_edit_is_detected(scratch_db: str) -> None:
    await db.migrate(scratch_db)
    pool = await db.create_pool(scratch_db, 1, 2)
    try:
        actor = audit.Actor("user:usr_1", "platform", "10.0.0.1", "req_1")
        for n in range(5):
            await audit.append(
                pool, actor, "user.roles", f"user:usr_{n}", {"roles": []}, {"roles": ["finance"]}
            )
        assert await audit.verify(pool) is None
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute("UPDATE audit_log SET after = '{}' WHERE seq = 3")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute("DELETE FROM audit_log WHERE seq = 5")
        # Someone with the power to drop the guard edits a row: the chain shows where.
        await pool.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
        await pool.execute(
            """UPDATE audit_log SET after = '{"roles": ["platform_admin"]}' WHERE seq = 3"""
        )
        assert await audit.verify(pool) == 3
        await pool.execute("DELETE FROM audit_log WHERE seq >= 3")
        await pool.execute("DELETE FROM audit_log WHERE seq = 1")
        assert await audit.verify(pool) == 1, "a record missing from the start"
    finally:
        await pool.close()


async def test_health_book_shares_windows_through_redis(redis) -> None:
    client, keys = redis
    book = HealthBook(client, keys, 60)
    for latency in (3, 8, 40, 40):
        await book.record("alpha", None, latency)
    await book.record("alpha", "transient", 900)
    other_process = HealthBook(client, keys, 60)
    windows = await other_process.windows(["alpha", "beta"])
    alpha = windows["alpha"]
    assert (alpha.attempts, alpha.successes, alpha.errors) == (5, 4, {"transient": 1})
    assert alpha.p50_ms == 50.0 and alpha.p95_ms == 1000.0
    assert windows["beta"].attempts == 0 and windows["beta"].success_rate is None


async def test_a_revoked_key_reaches_every_process_at_once(scratch_db: str, redis) -> None:
    client, keys = redis
    await db.migrate(scratch_db)
    pool = await db.create_pool(scratch_db, 1, 2)
    box = _box("k1", active="k1")
    try:
        shop = await create_merchant(
            pool, box, name="inv", notify_url="http://127.0.0.1:9/", currencies=["USD"], fee_bps=100
        )
        here, elsewhere = MerchantDirectory(pool, box, 300), MerchantDirectory(pool, box, 300)
        listening = asyncio.create_task(follow(client, keys, elsewhere))
        await asyncio.sleep(0.2)  # subscribed
        assert await elsewhere.key(shop.key_id) is not None
        await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", shop.key_id)
        assert await elsewhere.key(shop.key_id) is not None, "cached for the TTL on its own"
        await announce(client, keys, here, key_id=shop.key_id)
        for _ in range(50):
            if await elsewhere.key(shop.key_id) is None:
                break
            await asyncio.sleep(0.02)
        assert await elsewhere.key(shop.key_id) is None, "the other process dropped it"
        listening.cancel()
    finally:
        await pool.close()


async def test_a_redelivered_attempt_is_recorded_once(scratch_db: str) -> None:
    await db.migrate(scratch_db)
    pool = await db.create_pool(scratch_db, 1, 2)
    try:
        shop = await create_merchant(
            pool,
            _box("k1", active="k1"),
            name="att",
            notify_url="http://127.0.0.1:9/",
            currencies=["USD"],
            fee_bps=100,
        )
        await pool.execute(
            """INSERT INTO payments (id, merchant_id, merchant_order_id, amount, currency, status,
                                     created_at, expires_at)
               VALUES ('pay_att', $1, 'o', 100, 'USD', 'processing', now(), now())""",
            shop.id,
        )
        for attempt in [
            ("pay_att", "a", "unavailable", "x"),
            ("pay_att", "b", "opened", None),
            ("pay_att", "b", "opened", None),  # the same message again after a crash
        ]:
            await store.record_attempts(pool, [attempt])
        rows = await store.attempts(pool, "pay_att")
        assert [(r["attempt"], r["channel"], r["outcome"]) for r in rows] == [
            (1, "a", "unavailable"),
            (2, "b", "opened"),
        ]
    finally:
        await pool.close()


def _box(*kids: str, active: str) -> SecretBox:
    keys = {kid: base64.b64encode(hashlib.sha256(kid.encode()).digest()).decode() for kid in kids}
    return SecretBox(keys, active)


async def test_secrets_survive_a_key_rotation(scratch_db: str) -> None:
    """Stored under the old key; every process learns the new key, which becomes active;
    `juhe admin reseal-secrets` moves every sealed value to it; the old key can be retired."""
    settings = load_settings({})
    await db.migrate(scratch_db)
    old, both, new_only = (
        _box("k1", active="k1"),
        _box("k1", "k2", active="k2"),
        _box("k2", active="k2"),
    )
    assert await channels.seed_from_config(scratch_db, settings.channels, old) == 1
    assert await channels.seed_from_config(scratch_db, settings.channels, old) == 0, "once"
    pool = await db.create_pool(scratch_db, 1, 2)
    try:
        shop = await create_merchant(
            pool, old, name="rot", notify_url="http://127.0.0.1:9/", currencies=["USD"], fee_bps=1
        )
        sealed = await pool.fetchval("SELECT credentials FROM channels WHERE code = 'sim'")
        assert sealed.startswith("v1:k1:")
        counts = await reseal_secrets(pool, both)
        assert counts["channels.credentials"] == 1
        assert counts["api_keys.secret"] == 1 and counts["merchants.webhook_secret"] == 1
        assert set((await reseal_secrets(pool, both)).values()) == {0}, "idempotent"
        for column in sealing.EVERY_COLUMN:
            values = await pool.fetch(
                f"SELECT {column.column} AS v FROM {column.table} WHERE {column.column} IS NOT NULL"
            )
            assert all(r["v"].startswith("v1:k2:") for r in values), column
        registry = ChannelRegistry(pool, new_only)
        assert await registry.refresh() is True
        assert registry.specs["sim"].credentials["secret"] == settings.channels["sim"].secret
        assert await registry.refresh() is False, "nothing changed since"
        directory = MerchantDirectory(pool, new_only, 300)
        key = await directory.key(shop.key_id)
        assert key is not None, "the API key opens with the new key alone"
        stale = ChannelRegistry(pool, old)
        await stale.refresh()
        assert "sim" not in stale.specs, "a row this process cannot open is left out, not fatal"
        assert (
            await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'secrets.reseal'")
            == 2
        )
    finally:
        await pool.close()


async def test_a_channel_change_is_heard_by_other_processes(scratch_db: str, redis) -> None:
    client, keys = redis
    settings = load_settings({})
    box = _box("k1", active="k1")
    await db.migrate(scratch_db)
    await channels.seed_from_config(scratch_db, settings.channels, box)
    pool = await db.create_pool(scratch_db, 1, 2)
    try:
        elsewhere = ChannelRegistry(pool, box)
        listening = asyncio.create_task(follow(client, keys, registry=elsewhere))
        for _ in range(50):
            if elsewhere.specs:
                break
            await asyncio.sleep(0.02)
        assert elsewhere.specs["sim"].enabled
        async with pool.acquire() as conn, conn.transaction():
            await channels.update(conn, box, "sim", {"enabled": False})
        assert elsewhere.specs["sim"].enabled, "nothing heard yet"
        await announce(client, keys, channels=True)
        for _ in range(50):
            if not elsewhere.specs["sim"].enabled:
                break
            await asyncio.sleep(0.02)
        assert not elsewhere.specs["sim"].enabled
        assert elsewhere.enabled == []
        listening.cancel()
    finally:
        await pool.close()


async def test_migrate_seals_legacy_plaintext_secrets_once(scratch_db: str) -> None:
    """A database from before secrets were sealed: its plaintext values keep working, and
    `juhe migrate` seals each one in place, once."""
    settings = load_settings({"JUHE_POSTGRES__DSN": scratch_db})
    box = SecretBox(settings.secrets.keys, settings.secrets.active)
    await db.migrate(scratch_db)
    pool = await db.create_pool(scratch_db, 1, 2)
    try:
        shop = await create_merchant(
            pool, box, name="old", notify_url="http://127.0.0.1:9/", currencies=["USD"], fee_bps=1
        )
        user_id, legacy_key = new_id("usr"), new_signing_key()
        assert await identity.insert_user(
            pool,
            user_id=user_id,
            email="old@example.com",
            realm=Realm.PLATFORM,
            org_id=None,
            password_hash="x",
        )
        plain = {
            (sealing.API_KEY, shop.key_id): "sk_legacy",
            (sealing.WEBHOOK, shop.id): "whsec_legacy",
            (sealing.TOTP, user_id): "JBSWY3DPEHPK3PXP",
            (sealing.TOTP_PENDING, user_id): "KRSXG5CTMVRXEZLU",
        }
        for (column, row_id), value in plain.items():
            await pool.execute(
                f"UPDATE {column.table} SET {column.column} = $2 WHERE {column.id_column} = $1",
                row_id,
                value,
            )
        await pool.execute(
            "INSERT INTO signing_keys (kid, private_pem, public_pem) VALUES ($1, $2, $3)",
            legacy_key.kid,
            legacy_key.private_pem,
            legacy_key.public_pem,
        )
        plain[sealing.SIGNING_KEY, legacy_key.kid] = legacy_key.private_pem

        async def stored() -> dict[tuple[sealing.SealedColumn, str], str]:
            return {
                (c, row_id): await pool.fetchval(
                    f"SELECT {c.column} FROM {c.table} WHERE {c.id_column} = $1", row_id
                )
                for c, row_id in plain
            }

        async def still_work() -> None:
            key = await MerchantDirectory(pool, box, 300).key(shop.key_id)
            assert key is not None
            mac = key.signer.copy()
            mac.update(b"payload")
            assert mac.digest() == hmac.new(b"sk_legacy", b"payload", hashlib.sha256).digest()
            (signing,) = await identity.signing_keys(pool, box, 3600)
            assert signing.private_pem == legacy_key.private_pem

        await still_work()
        assert (await migrate(settings))["secrets_sealed"] == len(plain) == 5
        sealed = await stored()
        for (column, row_id), value in sealed.items():
            assert value.startswith("v1:") and plain[column, row_id] not in value
            assert column.open(box, row_id, value) == plain[column, row_id]
        await still_work()
        assert (await migrate(settings))["secrets_sealed"] == 0
        assert await stored() == sealed, "sealed values are left alone"
    finally:
        await pool.close()


async def test_a_sealed_secret_copied_to_another_row_does_not_open(scratch_db: str) -> None:
    box = _box("k1", active="k1")
    await db.migrate(scratch_db)
    pool = await db.create_pool(scratch_db, 1, 2)
    try:
        one, two = [
            await create_merchant(
                pool, box, name=n, notify_url="http://127.0.0.1:9/", currencies=["USD"], fee_bps=1
            )
            for n in ("one", "two")
        ]
        await pool.execute(
            "UPDATE api_keys SET secret = (SELECT secret FROM api_keys WHERE key_id = $1) "
            "WHERE key_id = $2",
            one.key_id,
            two.key_id,
        )
        with pytest.raises(SecretBoxError):
            await MerchantDirectory(pool, box, 300).key(two.key_id)
        hook = await pool.fetchval("SELECT webhook_secret FROM merchants WHERE id = $1", one.id)
        assert sealing.WEBHOOK.open(box, one.id, hook) == one.webhook_secret
        with pytest.raises(SecretBoxError):
            sealing.WEBHOOK.open(box, two.id, hook)
    finally:
        await pool.close()
