"""Risk control's state in PostgreSQL, and the book every risk process judges with.

Lists and rule versions are written here, each change bumping `risk_state` in the same
transaction; the writer announces it (infra.invalidation) and every process's `RiskBook`
reloads within moments, or at its next version check if it missed the message. A book holds
one compiled rule set at a time (and the shadow's) and swaps it whole, so whatever judges a
payment reads one version from start to end. `Judge` is that judging step, shared by the risk
pool and the gateway's `POST /risk/evaluate`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from domain.ids import new_id
from domain.risk import (
    EMPTY,
    CompiledRuleSet,
    Lookups,
    MerchantLimits,
    Rule,
    Thresholds,
    Transaction,
    Verdict,
    compile_rules,
    facts_of,
    judge,
    list_values,
)
from domain.risk.anomaly import score, volume_score
from domain.risk.backtest import facts_doc
from domain.risk.geo import BinTable, CountryTable, Geo
from domain.risk.lists import EMPTY_LISTS, Entry, Kind, ListIndex, ListName
from infra import metrics
from infra.fx import RateProvider, usd_equivalent
from infra.velocity import Velocity

log = logging.getLogger("juhe.risk")
Conn = asyncpg.Connection | asyncpg.Pool


SAMPLES = Path(__file__).resolve().parent.parent / "config"


def _rows(path: str | Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return [r for r in csv.reader(handle) if r and not r[0].startswith("#")]


def load_geo(ip_table: str | Path = "", bin_table: str | Path = "") -> Geo:
    """The IP ranges (`start,end,country` rows) and BIN prefixes (`prefix,country`); lines
    starting with # are comments, and "" is the sample bundled in config/."""
    ips = _rows(ip_table or SAMPLES / "ip_country.csv")
    bins = _rows(bin_table or SAMPLES / "bin_country.csv")
    return Geo(CountryTable((r[0], r[1], r[2]) for r in ips), BinTable((r[0], r[1]) for r in bins))


# --- lists -----------------------------------------------------------------------------------


def entry_of(row: asyncpg.Record) -> Entry:
    expires = row["expires_at"]
    return Entry(
        row["id"],
        ListName(row["list"]),
        Kind(row["kind"]),
        row["value"],
        row["reason"],
        expires.timestamp() if expires else None,
    )


async def _bump_lists(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE risk_state SET lists_version = lists_version + 1")


async def add_entry(
    conn: asyncpg.Connection,
    list_: ListName,
    kind: Kind,
    value: str,
    actor: str,
    reason: str | None = None,
    expires_at: datetime | None = None,
) -> asyncpg.Record | None:
    """None when the list holds this value already. `value` is normalised by the caller."""
    row = await conn.fetchrow(
        "INSERT INTO risk_list_entries (id, list, kind, value, reason, expires_at, actor) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (list, kind, value) DO NOTHING "
        "RETURNING *",
        new_id("rle"),
        list_.value,
        kind.value,
        value,
        reason,
        expires_at,
        actor,
    )
    if row is not None:
        await _bump_lists(conn)
    return row


async def remove_entry(conn: asyncpg.Connection, entry_id: str) -> asyncpg.Record | None:
    row = await conn.fetchrow("DELETE FROM risk_list_entries WHERE id = $1 RETURNING *", entry_id)
    if row is not None:
        await _bump_lists(conn)
    return row


async def entries(
    conn: Conn,
    list_: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[asyncpg.Record]:
    """Newest first, `limit + 1` rows so the caller can tell whether there are more."""
    return await conn.fetch(
        "SELECT * FROM risk_list_entries WHERE ($1::text IS NULL OR list = $1) "
        "AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR id < $3) "
        "ORDER BY id DESC LIMIT $4",
        list_,
        kind,
        after,
        limit + 1,
    )


# --- rule versions ---------------------------------------------------------------------------


def rule_doc(rule: Rule) -> dict[str, str]:
    return {
        "id": rule.id,
        "description": rule.description,
        "expression": rule.expression,
        "action": rule.action,
        "scope": rule.scope,
    }


def rules_of(doc: str | list[dict[str, Any]]) -> list[Rule]:
    items = orjson.loads(doc) if isinstance(doc, str) else doc
    return [
        Rule(
            r["id"],
            r["expression"],
            r["action"],
            r.get("description", ""),
            r.get("scope", "platform"),
        )
        for r in items
    ]


def compiled_of(row: asyncpg.Record) -> CompiledRuleSet:
    return compile_rules(
        row["version"], rules_of(row["rules"]), Thresholds(row["review_at"], row["reject_at"])
    )


async def save_version(
    conn: asyncpg.Connection,
    rules: Sequence[Rule],
    thresholds: Thresholds,
    actor: str,
    note: str | None = None,
) -> asyncpg.Record:
    """A new version after the highest, numbered under the state row's lock. The caller has
    compiled the rules: only valid versions are ever written."""
    await conn.execute("SELECT 1 FROM risk_state FOR UPDATE")
    return await conn.fetchrow(
        "INSERT INTO risk_rule_versions (version, rules, review_at, reject_at, note, actor) "
        "SELECT coalesce(max(version), 0) + 1, $1::jsonb, $2, $3, $4, $5 FROM risk_rule_versions "
        "RETURNING *",
        orjson.dumps([rule_doc(r) for r in rules]).decode(),
        thresholds.review,
        thresholds.reject,
        note,
        actor,
    )


async def publish(conn: asyncpg.Connection, version: int) -> asyncpg.Record | None:
    """Make `version` the live one (publishing a draft, or rolling back to an earlier one)."""
    row = await conn.fetchrow(
        "UPDATE risk_rule_versions SET published_at = coalesce(published_at, now()) "
        "WHERE version = $1 RETURNING *",
        version,
    )
    if row is not None:
        await conn.execute("UPDATE risk_state SET live_version = $1", version)
    return row


async def live_version(conn: Conn) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT v.* FROM risk_state s JOIN risk_rule_versions v ON v.version = s.live_version"
    )


async def version(conn: Conn, number: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM risk_rule_versions WHERE version = $1", number)


async def versions(conn: Conn, limit: int = 100, before: int | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT v.*, v.version = s.live_version AS live FROM risk_rule_versions v, risk_state s "
        "WHERE ($1::int IS NULL OR v.version < $1) ORDER BY v.version DESC LIMIT $2",
        before,
        limit + 1,
    )


async def set_shadow(conn: asyncpg.Connection, number: int | None) -> asyncpg.Record | None:
    """Judge `number` beside the live version from now on (None: stop); None if unknown."""
    row = await version(conn, number) if number is not None else None
    if number is not None and row is None:
        return None
    await conn.execute("UPDATE risk_state SET shadow_version = $1", number)
    return row


async def shadow_version(conn: Conn) -> int | None:
    return await conn.fetchval("SELECT shadow_version FROM risk_state")


async def decisions(
    conn: Conn,
    since: datetime,
    until: datetime,
    limit: int,
    shadow_of: int | None = None,
    merchant_id: str | None = None,
) -> list[asyncpg.Record]:
    """Stored decisions of payments created in [since, until), oldest first; with
    `shadow_of`, only those a shadow of that version judged too."""
    return await conn.fetch(
        "SELECT id, risk FROM payments WHERE created_at >= $1 AND created_at < $2 "
        "AND risk IS NOT NULL AND ($4::int IS NULL OR (risk -> 'shadow' ->> 'version')::int = $4) "
        "AND ($5::text IS NULL OR merchant_id = $5) ORDER BY created_at, id LIMIT $3",
        since,
        until,
        limit,
        shadow_of,
        merchant_id,
    )


class RiskBook:
    """The live rule set and lists of one process, each replaced whole when it changes."""

    def __init__(self, pg: asyncpg.Pool, geo: Geo) -> None:
        self._pg = pg
        self.geo = geo
        self.rules: CompiledRuleSet = EMPTY
        self.shadow: CompiledRuleSet | None = None  # judged beside the live one, never applied
        self.lists: ListIndex = EMPTY_LISTS
        self._lists_version = -1

    async def refresh(self) -> None:
        state = await self._pg.fetchrow(
            "SELECT live_version, shadow_version, lists_version FROM risk_state"
        )
        if state["live_version"] != self.rules.version:
            row = await live_version(self._pg)
            self.rules = compiled_of(row) if row else EMPTY
            metrics.risk_rules_version.set(self.rules.version or 0)
            log.info("risk rules at version %s", self.rules.version)
        shadow = state["shadow_version"]
        if shadow != (self.shadow.version if self.shadow else None):
            row = await version(self._pg, shadow) if shadow is not None else None
            self.shadow = compiled_of(row) if row else None
        if state["lists_version"] != self._lists_version:
            rows = await self._pg.fetch(
                "SELECT * FROM risk_list_entries WHERE expires_at IS NULL OR expires_at > now()"
            )
            self.lists = ListIndex(entry_of(r) for r in rows)
            self._lists_version = state["lists_version"]


@dataclass(frozen=True, slots=True)
class Judged:
    verdict: Verdict
    shadow: Verdict | None  # the shadow version's, recorded beside it and never applied
    facts: dict[str, Any]

    def to_doc(self) -> dict[str, Any]:
        """The decision as the payment keeps it, with the facts a backtest judges again."""
        doc = self.verdict.to_doc()
        doc["facts"] = facts_doc(self.facts)
        if self.shadow is not None:
            doc["shadow"] = self.shadow.to_doc()
        return doc


class Judge:
    """Decisions as the risk pool makes them, for payments and for `POST /risk/evaluate`
    alike: one rule version for the whole batch, every velocity counter in one round trip,
    the IP's and the card's country from the local tables, the USD equivalent at the mid
    rate."""

    def __init__(self, book: RiskBook, velocity: Velocity, rates: RateProvider) -> None:
        self.book = book
        self.velocity = velocity
        self.rates = rates

    async def usd(self, amount: int, currency: str) -> int | None:
        return await usd_equivalent(self.rates, amount, currency)

    async def decide(
        self,
        txs: Sequence[Transaction],
        limits: Sequence[MerchantLimits | None],
        now: float,
        keep: bool = True,
    ) -> list[Judged]:
        """`keep` false: an evaluation, counted as if it were a payment but not recorded."""
        rules, shadow, lists = self.book.rules, self.book.shadow, self.book.lists
        features = rules.features | (shadow.features if shadow else frozenset())
        usd = [await self.usd(tx.amount, tx.currency) for tx in txs]
        ip_countries = [self.book.geo.ips.country(tx.ip) for tx in txs]
        observed = await self.velocity.observe_many(
            zip(txs, usd, strict=True),
            features,
            int(now * 1000),
            keep,
            [c or tx.country for c, tx in zip(ip_countries, txs, strict=True)],
        )
        alphas = self.velocity.alphas
        judged = []
        for n, tx in enumerate(txs):
            seen = observed[n]
            found = Lookups(
                usd[n],
                ip_countries[n],
                seen.counters,
                seen.usual,
                score(seen.decline, alphas),
                score(seen.new_country, alphas),
                volume_score(seen.volume),
                self.book.geo.bins.country(tx.card_bin),
            )
            facts = facts_of(tx, found)
            hits = lists.hits(list_values(facts), now)
            judged.append(
                Judged(
                    judge(rules, facts, hits, limits[n]),
                    judge(shadow, facts, hits, limits[n]) if shadow else None,
                    facts,
                )
            )
        if keep:
            count([j.verdict for j in judged])
        return judged


def count(verdicts: Sequence[Verdict]) -> None:
    for verdict in verdicts:
        metrics.risk_decisions.labels(verdict.outcome.value).inc()
        for fired in verdict.fired:
            metrics.risk_rules.labels(fired.rule, "fired").inc()
        for failed in verdict.errors:
            metrics.risk_rules.labels(failed, "error").inc()


def expiry(unix: int | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix is not None else None
