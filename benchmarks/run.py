"""`make bench`: every figure as a ratio to its baseline, all measured in this one run.

    python -m benchmarks.run                 # the full suite (several minutes)
    python -m benchmarks.run --smoke         # every scenario for a second or two
    python -m benchmarks.run --only settlement   # one group: payments, settlement or risk
    python -m benchmarks.run --out FILE      # where the JSON result goes

Absolute numbers are printed beside the ratios and labelled as this machine's: they are not
comparable between runs or machines; the ratios are what the targets are stated in.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from benchmarks import risk, scenarios, settlement
from benchmarks.load import wrk_available

TARGETS = {
    "create_stream": 0.50,
    "callbacks": 0.60,
    "end_to_end": 0.07,
    "ledger": 20.0,
}


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def payments(smoke: bool) -> dict[str, Any]:
    """Taking payments: the gateway, the whole node, routing and the ledger pool."""
    seconds = 1.5 if smoke else 10.0
    connections = 16 if smoke else 64
    pool = 3_000 if smoke else 80_000
    rounds = 1 if smoke else 3
    figures: dict[str, Any] = {}
    baselines: list[float] = []
    for mode in ("stream", "replicated", "database"):
        result = await scenarios.create(
            mode, seconds, connections, pool, rounds if mode == "stream" else 1
        )
        figures[f"create_{mode}"] = result.as_dict()
        baselines += [b.rps for b in result.baselines]
    result = await scenarios.callbacks(seconds, connections, pool, rounds)
    figures["callbacks"] = result.as_dict()
    baselines += [b.rps for b in result.baselines]
    figures["baseline"] = {
        "tool": result.baselines[0].tool,
        "rps": statistics.median(baselines),
        "p99_ms": result.baselines[0].p99_ms,
        "runs": baselines,
    }
    half = figures["create_stream"]["rps"] / 2
    latency = await scenarios.create_latency(half, seconds)
    same_load = await scenarios.baseline_latency(half, seconds)
    figures["create_latency_at_half_peak"] = {
        **latency.as_dict(),
        "rate": half,
        "baseline_same_load": same_load.as_dict(),
    }
    rates = [10.0] if smoke else [25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0]
    e2e = await scenarios.end_to_end(rates, 2.0 if smoke else 10.0)
    base_rps = figures["baseline"]["rps"]
    figures["end_to_end"] = {**e2e, "ratio": e2e["sustained_per_s"] / base_rps}
    figures["burst_drain"] = await scenarios.burst_drain(
        2.0 if smoke else 30.0,
        connections,
        pool if smoke else 120_000,
        2.0 if smoke else 15.0,
        1.0 if smoke else 15.0,
    )
    figures["routing"] = scenarios.routing(1_000 if smoke else 50_000)
    ledger = await scenarios.ledger(200 if smoke else 4_000, 200)
    figures["ledger"] = {
        **ledger,
        "ratio": ledger["batched_entries_per_s"] / ledger["single_entries_per_s"],
    }
    return figures


async def settlements(smoke: bool) -> dict[str, Any]:
    """Issue 13's figures: reconciling a channel's statement, closing settlement periods."""
    return {
        "reconciliation": await settlement.reconcile(500 if smoke else 100_000),
        "settlement_close": await settlement.close_growth(
            *((100, 1_000, 1) if smoke else (10_000, 100_000, 3))
        ),
    }


async def risk_figures(smoke: bool) -> dict[str, Any]:
    """Issue 14's figures: the CPU cost of a decision with 50 rules and 10 velocity counters,
    `POST /risk/evaluate`'s latency and the end-to-end cost of that rule set against none (a
    smoke run: one alternating pair and one CPU step, on a node each, not the five nodes)."""
    figures = {
        "risk_decision": await risk.decision_cost(500 if smoke else 20_000),
        "risk_evaluate": await risk.evaluate_latency(
            20.0 if smoke else 200.0, 1.0 if smoke else 10.0
        ),
    }
    if smoke:
        figures["risk_saturated"] = await risk.saturated_pairs(40.0, 1.0, 1)
        figures["risk_lifecycle_cpu"] = await scenarios.lifecycle_cpu(
            [20.0], 1.0, risk.customer_creates, risk.publish_fifty
        )
    else:
        rates = [25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0]
        figures["risk_end_to_end"] = await risk.end_to_end_cost(rates, 10.0, [100.0, 200.0])
    return figures


GROUPS = {"payments": payments, "settlement": settlements, "risk": risk_figures}


async def run(smoke: bool, groups: list[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in groups:
        figures |= await GROUPS[name](smoke)
    return figures


def report(figures: dict[str, Any]) -> str:
    parts = []
    if "baseline" in figures:
        parts.append(payments_report(figures))
    if "reconciliation" in figures:
        parts.append(settlement_report(figures))
    if "risk_decision" in figures:
        r = figures["risk_decision"]
        parts.append(
            f"risk decision, {r['rules']} rules and {r['counters']} velocity counters: "
            f"{r['cpu_us_per_payment']:.0f} µs CPU per payment in the risk pool's judging step "
            f"against {r['cpu_us_per_payment_no_rules']:.0f} µs with no rules (the rules: "
            f"{r['rules_cpu_us']:.0f} µs; this machine; {r['payments']} payments in "
            "envelopes of 100)"
        )
    if "risk_evaluate" in figures:
        r = figures["risk_evaluate"]
        parts.append(
            f"POST /risk/evaluate at {r['rate']:.0f}/s with {r['rules']} rules: p50 "
            f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['errors']} errors of "
            f"{r['requests']} (this machine)"
        )
    if "risk_end_to_end" in figures:
        r = figures["risk_end_to_end"]
        share = f"{r['cost_share']:.0%}" if r["cost_share"] is not None else "n/a"
        parts.append(
            f"end to end with 50 rules and 10 counters: {r['rules_per_s']:.0f} lifecycles/s "
            f"sustained against {r['no_rules_per_s']:.0f}/s with no rules (cost {share}; rate "
            f"ladder of {r['seconds']:.0f} s steps, this machine; target at most 10 %)"
        )
        s = r["saturated"]
        share = f"{s['cost_share']:.1%}" if s["cost_share"] is not None else "n/a"
        parts.append(
            f"  above saturation ({s['rate']:.0f}/s offered, {len(s['rules_per_s'])} alternating "
            f"pairs of {s['seconds']:.0f} s on one node): "
            f"{statistics.median(s['rules_per_s']):.0f} lifecycles/s with the rules against "
            f"{statistics.median(s['no_rules_per_s']):.0f}/s without (cost {share}; target at "
            "most 10 %)"
        )
        for step in r["cpu"]:
            ruled, bare = step["rules_by_process"], step["no_rules_by_process"]
            parts.append(
                f"  CPU per lifecycle at {step['rate']:.0f}/s: {step['rules_ms']:.2f} ms with the "
                f"rules against {step['no_rules_ms']:.2f} ms without (capacity cost "
                f"{step['capacity_cost_share']:.0%}; risk pool {ruled.get('risk', 0):.2f} "
                f"against {bare.get('risk', 0):.2f} ms, Redis {ruled.get('redis', 0):.2f} "
                f"against {bare.get('redis', 0):.2f} ms)"
            )
    return "\n".join(parts)


def payments_report(figures: dict[str, Any]) -> str:
    base = figures["baseline"]
    runs = ", ".join(f"{r:.0f}" for r in base["runs"])
    lines = [
        f"load generator: {base['tool']}; baseline (bare aiohttp+uvloop): median "
        f"{base['rps']:.0f} req/s of {len(base['runs'])} runs ({runs}; this machine)",
        "create and callbacks: the median of per-round ratios, each round against the baseline "
        "runs just before and after it",
        f"{'figure':34} {'ratio':>8} {'target':>8}   absolute (this machine)",
    ]

    def row(name: str, ratio: float, target: float | None, absolute: str) -> None:
        goal = f"≥{target:g}" if target is not None else ""
        lines.append(f"{name:34} {ratio:8.3f} {goal:>8}   {absolute}")

    for mode in ("stream", "replicated", "database"):
        f = figures[f"create_{mode}"]
        row(
            f"create ({mode})",
            f["ratio"],
            TARGETS["create_stream"] if mode == "stream" else None,
            f"{f['rps']:.0f} req/s, p99 {f['p99_ms']:.2f} ms, errors {f['errors']}",
        )
    f = figures["callbacks"]
    row(
        "callbacks", f["ratio"], TARGETS["callbacks"], f"{f['rps']:.0f} req/s, errors {f['errors']}"
    )
    f = figures["end_to_end"]
    row(
        "end to end (sustained lifecycles)",
        f["ratio"],
        TARGETS["end_to_end"],
        f"{f['sustained_per_s']:.0f}/s, create→webhook p50 {f['lag_p50_ms']} ms "
        f"p99 {f['lag_p99_ms']} ms",
    )
    f = figures["ledger"]
    row(
        "ledger batched vs single tx",
        f["ratio"],
        TARGETS["ledger"],
        f"{f['batched_entries_per_s']:.0f} vs {f['single_entries_per_s']:.0f} entries/s",
    )
    f = figures["burst_drain"]
    row(
        "whole node: create under a burst",
        f["burst"]["rps"] / base["rps"],
        None,
        f"{f['burst']['rps']:.0f} req/s, p99 {f['burst']['p99_ms']:.1f} ms, "
        f"errors {f['burst']['errors']}",
    )
    lines.append(
        f"drain after the burst ({f['created']} payments; node restarted "
        f"{f['restart_after_s']:g} s in, down {f['down_s']:g} s): "
        f"{f['final']} final in {f['drain_s']:.0f} s = "
        f"{f['drained_per_s']:.0f}/s against {figures['end_to_end']['sustained_per_s']:.0f}/s "
        f"sustained; re-driven {f['redriven']}, payments with repeated attempts "
        f"{f['payments_with_repeated_attempts']}, error lines {f['error_lines']}"
    )
    f = figures["create_latency_at_half_peak"]
    b = f["baseline_same_load"]
    lines.append(
        f"create latency at {f['rate']:.0f} req/s (open loop, half of peak): "
        f"p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms (target p99 ≤ 10 ms), "
        f"errors {f['errors']}; the baseline under the same load: "
        f"p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms"
    )
    lines.append(
        "routing decision (20 channels, 3 rules), µs: "
        + ", ".join(f"{k[:-3]} {v:.1f}" for k, v in figures["routing"].items())
    )
    generator_ok = all(figures[k]["ratio"] < 1 for k in ("create_stream", "callbacks"))
    lines.append(
        "the generator drives the baseline faster than every gateway figure: "
        + ("yes" if generator_ok else "NO — figures are generator-bound")
    )
    return "\n".join(lines)


def settlement_report(figures: dict[str, Any]) -> str:
    """Reconciliation as a ratio to a COPY of the same file; the close as time per line at two
    sizes and how that grows (1: linear)."""
    r = figures["reconciliation"]
    load_match_store = r["seconds"] - r["parse_s"]
    lines = [
        f"reconciliation, {r['lines']}-line statement: {r['ratio']:.3f} of a COPY of the same "
        f"file; {r['lines_per_s']:.0f} lines/s (parse {r['parse_s']:.2f} s, load, match and "
        f"store {load_match_store:.2f} s) against COPY {r['copy_lines_per_s']:.0f} lines/s "
        f"(this machine); {r['matched']} matched, {r['discrepancies']} discrepancies, "
        "exactly those injected",
    ]
    c = figures["settlement_close"]
    for size in ("small", "large"):
        f = c[size]
        lines.append(
            f"settlement close, {f['lines']} lines into {f['statements']} statements: "
            f"{f['seconds']:.2f} s ({f['us_per_line']:.0f} µs/line; releasing them before: "
            f"{f['release_s']:.2f} s; the next day's run with nothing new: "
            f"{f['idle_next_day_s']:.2f} s)"
        )
    small = ", ".join(f"{us:.0f}" for us in c["small_us_per_line"])
    lines.append(
        f"settlement close, cost per line large / small: {c['per_line_growth']:.2f} "
        f"(small: the median of {len(c['small_us_per_line'])} runs, {small} µs/line)"
    )
    return "\n".join(lines)


def soak_report(soak: dict[str, Any]) -> str:
    """Resident memory per process: after warm-up (the first minute) against the end."""
    samples = soak["rss_mb"]
    warm = next((s for s in samples if s["t"] >= 60), samples[0])
    last = samples[-1]
    lines = [
        f"soak: {soak['created']} creates at {soak['rate']:.0f}/s over {soak['seconds']:.0f} s, "
        f"errors {soak['errors']}, backlog at end {soak['backlog_at_end']}",
        f"{'process':12} {'RSS after warm-up':>18} {'RSS at end':>11} {'change':>8}",
    ]
    for name in sorted(k for k in last if k != "t"):
        if name in warm:
            change = last[name] / warm[name] - 1
            lines.append(f"{name:12} {warm[name]:15.1f} MB {last[name]:8.1f} MB {change:+8.1%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="instead of the suite: a whole node at --soak-rate for SECONDS, memory sampled",
    )
    parser.add_argument("--soak-rate", type=float, default=90.0, metavar="PER_S")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(GROUPS),
        help="run only this group of scenarios (repeatable); default: all",
    )
    args = parser.parse_args()
    started = time.time()
    groups = ["soak"] if args.soak else args.only or list(GROUPS)
    if args.soak:
        figures = {"soak": uvloop.run(scenarios.soak(args.soak_rate, args.soak))}
    else:
        figures = uvloop.run(run(args.smoke, groups))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "commit": _commit(),
        "machine": f"{platform.node()} · {os.cpu_count()} cores · {platform.machine()}",
        "wrk": wrk_available(),
        "smoke": args.smoke,
        "groups": groups,
        "figures": figures,
    }
    out = args.out or Path("benchmarks/out") / f"bench-{int(started)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(soak_report(figures["soak"]) if args.soak else report(figures))
    print(f"\nresult file: {out}")


if __name__ == "__main__":
    main()
