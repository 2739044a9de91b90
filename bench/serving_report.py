"""The summary tables bench/serving.py prints at the end, as Markdown: throughput and
latency per path and image size, the micro-batcher settings, and the hot-swaps.
"""

from __future__ import annotations

from typing import Any


def _times_1000(value: float | None) -> float | None:
    return None if value is None else value * 1000


def fmt_ms(value: float | None) -> str:
    """Milliseconds to one decimal, or "-"."""
    return "-" if value is None else f"{value:.1f}"


def report_tables(result: dict[str, Any]) -> str:
    """The summary tables, as Markdown."""
    lines = _throughput_tables(result)
    tuning = result.get("tuning") or []
    if tuning:
        lines += _tuning_table(tuning)
    swaps = result.get("swaps")
    if swaps:
        lines += _swaps_table(swaps)
    return "\n".join(lines)


def _throughput_tables(result: dict[str, Any]) -> list[str]:
    """One table per image size: every path and load against the in-process ceiling."""
    rows = result["rows"]
    lines = []
    for size in result["settings"]["image_sizes"]:
        ceiling = max(
            (
                r["images_per_s"]
                for r in rows
                if r["image_size"] == size and r["path"].startswith("(a)")
            ),
            default=None,
        )
        lines += [
            f"\nRequests of one {size} JPEG (the ceiling's images/s in batches of "
            f"{result['settings']['batch']}: best {ceiling}/s)",
            "",
            "| path | load | images/s | ÷ ceiling (best) | p50 ms | p99 ms | errors | mean batch "
            "| CPU ms per request (where) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            if r["image_size"] != size:
                continue
            ratio = f"{r['images_per_s'] / ceiling:.2f}" if ceiling else "-"
            where = ", ".join(
                f"{k} {v:.1f}"
                for k, v in r["cpu_ms_per_request"].items()
                if v is not None and v >= 0.05 and k != "other"
            )
            lines.append(
                f"| {r['path']} | {r['load']} | {r['images_per_s']:.1f} | {ratio} | "
                f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | {r['errors']} | "
                f"{r.get('mean_batch') or '-'} | {where} |"
            )
    return lines


def _tuning_table(tuning: list[dict[str, Any]]) -> list[str]:
    """The micro-batcher's settings, one row each."""
    lines = [
        "\nMicro-batcher (:predict, closed loop at the highest concurrency)",
        "",
        "| max batch | max wait ms | req/s | p50 ms | p99 ms | mean batch |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {t['max_batch']} | {t['max_wait_ms']:g} | {t['per_s']:.1f} | "
        f"{fmt_ms(t['p50_ms'])} | {fmt_ms(t['p99_ms'])} | {t.get('mean_batch') or '-'} |"
        for t in tuning
    ]
    return lines


def _swaps_table(swaps: dict[str, Any]) -> list[str]:
    """The hot-swap phase: a summary, then one row per swap with the worker's memory."""
    steady = swaps["steady"]
    lines = [
        f"\nHot-swap under {swaps['rate_per_s']:.0f} req/s paced :predict: "
        f"{swaps['requests']} requests, {swaps['failed']} failed",
        "",
        f"steady p50/p99 {fmt_ms(steady['p50_ms'])}/{fmt_ms(steady['p99_ms'])} ms; "
        f"around swaps p99 median {fmt_ms(swaps['swap_p99_median_ms'])} ms "
        f"(×{swaps['swap_p99_ratio_median']}), max {fmt_ms(swaps['swap_p99_max_ms'])} ms "
        f"(×{swaps['swap_p99_ratio_max']}); between swaps p99 "
        f"{fmt_ms(swaps['between_swaps']['p99_ms'])} ms",
        f"approval → first answer by the new version: median "
        f"{swaps['first_answer_s']['median']} s, max {swaps['first_answer_s']['max']} s",
        "",
        "| swap | version | approve HTTP ms | first answer s | switch pause ms | p50 ms "
        "| p99 ms | max ms | worker RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rss = {m["after_swap"]: m["rss_bytes"] for m in swaps["memory"]}
    lines.append(f"| 0 | - | - | - | - | - | - | - | {rss[0] / 2**20:.0f} |")
    lines += [
        f"| {w['swap']} | {w['version']} | {w['approve_http_ms']:.0f} | "
        f"{w['first_answer_s']:.2f} | {fmt_ms(_times_1000(w['worker_swap_pause_s']))} | "
        f"{fmt_ms(w['p50_ms'])} | {fmt_ms(w['p99_ms'])} | "
        f"{fmt_ms(w['max_ms'])} | {rss[w['swap']] / 2**20:.0f} |"
        for w in swaps["swaps"]
    ]
    growth = swaps["rss_growth_first_to_last"]
    lines.append(
        "\nworker RSS after swap 1 → after the last: "
        + ("-" if growth is None else f"{growth * 100:+.1f} %")
    )
    return lines
