"""Replay a real production line through the public API, as a plant would, and measure
what reaches the plant: escapes, false rejects, recall per class, forgetting, wall time,
the gate's sentence, and where the defect maps point.

    .venv/bin/python bench/real_lines.py kolektor
    .venv/bin/python bench/real_lines.py neu-cl
    .venv/bin/python bench/real_lines.py sim-small   # the simulator, small defects, mixed sizes
    .venv/bin/python bench/real_lines.py --data DIR [--day2 a,b]
    .venv/bin/python bench/real_lines.py kolektor --mode in-process --set image_size=448

The service is started as `make run` starts it (`inspector run`, the shipped gate policy,
every default) on a fresh data directory. Each day: the day's parts are uploaded with
their labels through ``POST /v1/images``, a run is started with ``POST /v1/training-runs``,
its assessment awaited, and the version approved (an admin's override, recorded as
such, when the gate fails); then the held-back parts are uploaded unlabelled and their
verdicts kept. Beside it, the same steps run in this process through the domain
functions on the same images (so on the same split): the baseline the service's numbers
are compared with (the ratio of wall times says what the service costs). Scenarios and
held-back parts: bench/lines.py. Scoring: bench/line_scoring.py. Results are written to
bench/results/real_lines-<scenario>-<time>.json; BENCHMARKS.md has the numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import itertools
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict
from typing import Any

from bench import common, lines
from bench.line_runs import InProcessLine, ServiceLine
from bench.line_scoring import forgetting, score

POLICY = common.ROOT / "deploy" / "gate-policy.toml"
MODES: dict[str, type[ServiceLine] | type[InProcessLine]] = {
    "service": ServiceLine,
    "in-process": InProcessLine,
}


def _overrides(pairs: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r} is not key=value")
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


def play(
    mode: str,
    scenario: lines.Scenario,
    workdir: Path,
    config: dict[str, Any],
    *,
    retrain: bool = True,
) -> dict:
    """Every day of ``scenario`` in one mode; per day: the run and the held-back score;
    then (``retrain``) a run from scratch on every day's parts, for comparison."""
    from inspector.model_input import InputSpec

    days: list[dict[str, Any]] = []
    known: set[str] = {scenario.good}
    started = time.monotonic()
    with MODES[mode](workdir, POLICY, config) as line:
        for n, items in enumerate(scenario.days):
            new = sorted({i.label for i in items} - known)
            known |= set(new)
            print(f"[{mode}] day {n + 1}: uploading {len(items)} labelled parts", flush=True)
            line.upload_day(items, new)
            print(f"[{mode}] day {n + 1}: training", flush=True)
            result = line.train(f"bench day {n + 1}")
            print(
                f"[{mode}] day {n + 1}: {result.state} v{result.version} in "
                f"{result.run_seconds} s: {result.sentence or result.message}",
                flush=True,
            )
            day: dict[str, Any] = {"day": n + 1, "new_classes": new, "run": asdict(result)}
            if result.state == "succeeded":
                held = tuple(i for i in scenario.held_back if i.label in known)
                spec = InputSpec.from_doc(result.spec) if result.spec else None
                day["held_back"] = score(line.judge(held), scenario.good, spec)
            days.append(day)
        retrained, retrain_held = None, None
        if retrain and len(scenario.days) > 1 and days[-1]["run"]["state"] == "succeeded":
            print(f"[{mode}] retraining from scratch on every day's parts, for comparison")
            retrained, retrain_held = _retrain(line, scenario, spec)
    for before, after in itertools.pairwise(days):
        if "held_back" in before and "held_back" in after:
            after["forgetting"] = forgetting(
                before["held_back"]["recall"], after["held_back"]["recall"]
            )
    return {
        "mode": mode,
        "days": days,
        "retrain_seconds": retrained,
        "retrain_held_back": retrain_held,
        "seconds": round(time.monotonic() - started, 1),
    }


def _retrain(
    line: InProcessLine | ServiceLine, scenario: lines.Scenario, spec: Any
) -> tuple[float | None, dict[str, Any] | None]:
    """The retrain's wall time and, where the mode can judge a version that is not in
    production (in-process), its score on every held-back part."""
    retrained = line.retrain("bench: from scratch, for comparison")
    if retrained is None:
        return None, None
    if not isinstance(line, InProcessLine):  # the service gives only production's verdicts
        return retrained.seconds, None
    judged = line.judge(scenario.held_back, retrained.version)
    return retrained.seconds, score(judged, scenario.good, spec)


def _row(mode: str, day: dict[str, Any]) -> dict[str, Any]:
    run, held = day["run"], day.get("held_back", {})
    worst = max(day.get("forgetting", {}).values(), default=None)
    return {
        "mode": mode,
        "day": day["day"],
        "version": run["version"],
        "run_s": run["run_seconds"],
        "input": "×".join(str(run["spec"][k]) for k in ("height", "width", "channels"))
        if run.get("spec")
        else None,
        "threshold": run.get("threshold"),
        "escape": held.get("escape_rate"),
        "false_reject": held.get("false_reject_rate"),
        "accuracy": held.get("accuracy"),
        "auroc": held.get("auroc"),
        "fr_at_no_escape": held.get("false_reject_at_no_escape"),
        "map_peak": held.get("map_peak_in_mask"),
        "forgetting_max": worst,
        "gate": "blessed" if run["blessed"] else ("failed" if run["state"] == "succeeded" else "-"),
    }


def report(scenario: lines.Scenario, results: list[dict[str, Any]]) -> None:
    """The table, the gate's sentences, recall per class and the wall-time ratios."""
    rows = [_row(r["mode"], day) for r in results for day in r["days"]]
    print()
    print(common.table(rows, [(k, k) for k in rows[0]]) if rows else "no runs")
    for r in results:
        for day in r["days"]:
            run = day["run"]
            print(f"\n[{r['mode']}] day {day['day']}: {run['sentence'] or run['message']}")
            if "held_back" in day:
                held = day["held_back"]
                print(f"  recall per class: {held['recall']}")
                print(
                    f"  escaped: {held['escaped'] or 'none'}; "
                    f"false rejects: {held['false_rejects'] or 'none'}"
                )
                errors = held["escaped"] + held["false_rejects"]
                if errors:
                    print(f"  their P(defect): { {n: held['p_defect'][n] for n in errors} }")
                if held["confusions"]:
                    print(f"  confusions (true→judged): {held['confusions']}")
            if "forgetting" in day:
                print(f"  forgetting (recall before − after, day-1 classes): {day['forgetting']}")
    for r in results:
        if held := r.get("retrain_held_back"):
            print(
                f"\n[{r['mode']}] retrained from scratch: accuracy {held['accuracy']}, escape "
                f"{held['escape_rate']}, false reject {held['false_reject_rate']}, recall "
                f"{held['recall']}"
            )
    for r in results:
        last = r["days"][-1]["run"]["run_seconds"] if r["days"] else None
        if r.get("retrain_seconds") and last:
            print(
                f"[{r['mode']}] day {len(r['days'])} warm start {last} s ÷ retraining from "
                f"scratch {r['retrain_seconds']} s = {last / r['retrain_seconds']:.2f}"
            )
    by_mode = {r["mode"]: r for r in results}
    if {"service", "in-process"} <= set(by_mode):
        for a, b in zip(by_mode["service"]["days"], by_mode["in-process"]["days"], strict=False):
            service, alone = a["run"]["run_seconds"], b["run"]["run_seconds"]
            if service and alone:
                print(
                    f"day {a['day']}: service run {service} s ÷ in-process {alone} s "
                    f"= {service / alone:.2f}"
                )


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, lines.Scenario]:
    """The command line, and the scenario it names."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", choices=("kolektor", "neu-cl", "sim-small"))
    parser.add_argument("--data", type=Path, help="a folder of class folders (ok = good parts)")
    parser.add_argument("--day2", default="", help="classes of --data uploaded on a second day")
    parser.add_argument("--mode", choices=("both", *MODES), default="both")
    parser.add_argument(
        "--set",
        dest="set_",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting for every run (default: the product's own)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directories")
    parser.add_argument(
        "--no-retrain",
        action="store_true",
        help="skip the run from scratch on every day's parts after the last day",
    )
    common.add_wait_options(parser)
    args = parser.parse_args(argv)
    if (args.scenario is None) == (args.data is None):
        parser.error("give a scenario (kolektor, neu-cl, sim-small) or --data DIR")
    if args.data:
        day2 = tuple(c for c in args.day2.split(",") if c)
        scenario = lines.folder_scenario(args.data.resolve(), args.data.name, day2)
    else:
        scenario = {
            "kolektor": lines.kolektor,
            "neu-cl": lines.neu_cl,
            "sim-small": lines.simulated_small,
        }[args.scenario]()
    return args, scenario


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, play the scenario in each mode, print and save the results."""
    args, scenario = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    common.wait_before_measuring(args)
    modes = list(MODES) if args.mode == "both" else [args.mode]
    config = _overrides(args.set_)
    print(
        f"{scenario.name}: {[len(d) for d in scenario.days]} labelled parts per day, "
        f"{len(scenario.held_back)} held back; classes {scenario.classes}"
    )
    results = []
    for mode in modes:
        workdir = Path(tempfile.mkdtemp(prefix=f"real-lines-{mode}-"))
        try:
            results.append(play(mode, scenario, workdir, config, retrain=not args.no_retrain))
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    report(scenario, results)
    out = common.save_results(
        f"real_lines-{scenario.name}",
        {
            "machine": common.machine(),
            "scenario": scenario.name,
            "config": config,
            "started": common.utc_now(),
            "results": results,
        },
    )
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
