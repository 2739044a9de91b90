"""The report of bench/ingest.py: one result row per timed window (rate, latency
percentiles, errors, and CPU cores and milliseconds per operation for each process group),
the windows in which something outside the benchmark competed for the cores, and the
Markdown tables and summary printed at the end.
"""

from __future__ import annotations

import os
from typing import Any

from bench.ingest_ops import LoadResult

OTHER_CPU_NOTE = 0.2  # cores; above this, something outside the benchmark competed


def result_row(
    backend: str,
    path: str,
    threads: int,
    res: LoadResult,
    cpu: dict[str, float],
    per_op: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result row; CPU per operation divides by ``res.ok`` unless ``per_op`` gives a
    group its own count (the ingest worker's is the images it ingested in the window)."""
    ops = {name: (per_op or {}).get(name, res.ok) for name in cpu}
    return {
        "backend": backend,
        "path": path,
        "clients": threads,
        **res.summary(),
        "cpu_cores": cpu,
        "cpu_ms_per_op": {
            name: round(cores * res.elapsed / ops[name] * 1000, 2) if ops[name] else None
            for name, cores in cpu.items()
        },
        "loadavg": os.getloadavg(),
        **extra,
    }


def interference(rows: list[dict[str, Any]]) -> list[str]:
    """Windows in which processes outside the benchmark used noticeable CPU."""
    return [
        f"{r['backend']} {r['path']} x{r['clients']}: other processes used "
        f"{r['cpu_cores']['other']:.2f} cores (load average {r['loadavg'][0]:.1f})"
        for r in rows
        if r["cpu_cores"].get("other", 0.0) > OTHER_CPU_NOTE
    ]


def fmt_ms(value: float | None) -> str:
    """Milliseconds to one decimal, or "-"."""
    return "-" if value is None else f"{value:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, each path's rate shown against the raw store's."""
    raw = {(r["backend"], r["clients"]): r["per_s"] for r in rows if r["path"].startswith("raw")}
    lines = [
        "| backend | path | clients | ops/s | p50 ms | p99 ms | errors | ÷ raw store | "
        "CPU cores (where) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        base = raw.get((r["backend"], r["clients"]))
        ratio = f"{r['per_s'] / base:.2f}" if base else "-"
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_cores"].items() if v >= 0.01)
        lines.append(
            f"| {r['backend']} | {r['path']} | {r['clients']} | {r['per_s']:.1f} | "
            f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | {r['errors']} | {ratio} | {cpu} |"
        )
    return "\n".join(lines)


def cpu_table(rows: list[dict[str, Any]]) -> str:
    """CPU milliseconds per successful operation, by process group (0.0 and "other", which
    is not ours, left out); the ingest worker's per image it ingested during the window."""
    lines = ["| backend | path | clients | CPU ms per op (where) |", "|---|---|---:|---|"]
    for r in rows:
        where = ", ".join(
            f"{k} {v:.1f}"
            for k, v in r["cpu_ms_per_op"].items()
            if k != "other" and v is not None and v >= 0.05
        )
        lines.append(f"| {r['backend']} | {r['path']} | {r['clients']} | {where} |")
    return "\n".join(lines)


def ingest_table(rows: list[dict[str, Any]]) -> str:
    """How the ingest worker kept up with each service window."""
    lines = [
        "| backend | clients | accepted/s | ingested/s during window | backlog at end | "
        "drained in s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "drain_s" in r:
            lines.append(
                f"| {r['backend']} | {r['clients']} | {r['per_s']:.1f} | "
                f"{r['ingested_per_s_during_window']:.1f} | {r['backlog_at_window_end']} | "
                f"{'-' if r['drain_s'] is None else r['drain_s']} |"
            )
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]], info: dict[str, Any], noisy: list[str]) -> str:
    """What the run prints at its end: the three tables, the machine and the packages, and
    the windows that shared the machine."""
    parts = [
        "\n" + table(rows),
        "\n" + cpu_table(rows),
        "\n" + ingest_table(rows),
        f"\nmachine: {info['cpu']}; {info['cores']} cores; {info['ram_gib']} GiB; "
        f"Python {info['python']}; load average {info['loadavg_at_start']} → "
        f"{info['loadavg_at_end']}",
        "packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()),
    ]
    if noisy:
        parts.append(
            "\nnote: these windows shared the machine; rerun when it is quiet:\n  "
            + "\n  ".join(noisy)
        )
    return "\n".join(parts)
