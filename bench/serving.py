"""Serving benchmark: the verdict path against its ceiling and against the naive way, the
micro-batcher's settings, hot-swaps under load, and memory across swaps, in one run.

A model version is trained first, in this process, with the product's own code
(``inspector.training``: ``compact_cnn`` at ``--input-size`` px, a few epochs on simulated
parts) and put in production; ``--store`` reuses a store that has one. Requests carry
simulated parts encoded as JPEG at ``--image-sizes`` (the first size gets every
measurement; the others only the throughput rows). Then, each at a closed-loop load of
``--concurrency`` clients for ``--duration`` s after ``--warmup`` s:

(a)  ceiling    the same SavedModel in this process: ``ServingModel.predict_bytes`` on
                batches of ``--batch`` encoded images, from N threads (images/s). Beside it,
                one image per call (what a server without batching can at best do);
(b)  service    ``inspector api`` + ``inspector worker inference`` as real processes, a real
                Redis (tests.servers.RedisServer) and a local store:
                ``POST /v1/models/inspector:predict`` (TF Serving API, one image a request)
                and ``POST /v1/images`` (upload: stored, then judged within the deadline);
                requests/s, p50/p99, and the worker's mean batch (its served/batches);
(c)  naive      a tiny FastAPI app on uvicorn in a subprocess that calls the model on each
                request, one at a time (no batching, no queue).

Then the micro-batcher is tuned (``--batcher`` settings of ``INSPECTOR_INFERENCE_MAX_BATCH``
and ``_MAX_WAIT_MS``, one fresh worker each, :predict at the highest concurrency); p99 is
measured with an open-loop client paced at half the service's best throughput; and, under
that paced load, ``--swaps`` new versions (clones of the first) are approved through
``POST /v1/models/inspector/versions/N:approve``: p99 around each swap against steady
state, seconds from the approval to the first answer by the new version, failed
requests, and the worker's resident memory after each swap.

CPU time per process (client, API, worker, Redis, naive server, everything else) is
sampled from /proc around each window. Before anything is timed, the benchmark waits
until no other benchmark or ``explore.py`` runs (``pgrep -f "bench/|explore.py"``, every
``--poll`` s) and the machine is idle. Every process it starts is stopped on every exit
path. Results: bench/results/serving-<timestamp>.json; BENCHMARKS.md explains them.

This file is the command line and the order of the phases. Beside it in bench/:
serving_model.py (the model version and the request images), serving_load.py (the
requests and the closed- and open-loop clients), serving_processes.py (the processes
started and stopped, and the other benchmarks waited for), serving_measure.py (timed
windows, step costs), serving_phases.py ((a), (c), (b), the micro-batcher, paced load),
serving_swaps.py (hot-swaps and memory) and serving_report.py (the tables).

    .venv/bin/python bench/serving.py
    .venv/bin/python bench/serving.py --concurrency 1,4,16 --image-sizes 1152x864,128x128
    .venv/bin/python bench/serving.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import signal
import subprocess
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from bench import common
from bench.serving_measure import Bench, component_costs
from bench.serving_model import prepare_model, request_pools
from bench.serving_phases import (
    DEFAULT_BATCHER,
    phase_baselines,
    phase_paced,
    phase_service,
    phase_tuning,
)
from bench.serving_processes import (
    Service,
    naive_server,
    say,
    stop_everything,
    track,
    wait_for_others,
)
from bench.serving_report import report_tables
from bench.serving_swaps import phase_swaps

ROOT = common.ROOT
PACKAGES = ("fastapi", "starlette", "uvicorn", "h11", "httptools", "uvloop", "redis", "hiredis")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def code_state() -> dict[str, Any]:
    """The commit measured, and files changed since (other people keep working here)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "modified": git("status", "--short").splitlines()}


def versions() -> dict[str, str | None]:
    """Versions of the packages on the serving path."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; with ``--naive-server`` as given, otherwise checked and parsed further
    (``levels``, ``sizes``, ``batchers``, ``current_size``)."""
    parser = _parser()
    _add_phase_options(parser)
    args = parser.parse_args(argv)
    if args.naive_server:
        return args
    _parse_lists(parser, args)
    return args


def _parser() -> argparse.ArgumentParser:
    """The parser with the load, image and model options."""
    parser = argparse.ArgumentParser(
        prog="bench/serving.py",
        description="Serving benchmark: verdicts/s and latency through the inference worker "
        "(TF Serving :predict and uploads) against the SavedModel called in-process on "
        "batches (the ceiling) and a naive one-request-at-a-time server; micro-batcher "
        "settings; hot-swaps under load; worker memory across swaps.",
    )
    parser.add_argument("--concurrency", default="1,4,16", help="closed-loop clients (1,4,16)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed window")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed seconds before each")
    parser.add_argument(
        "--open-duration", type=float, default=15.0, help="seconds of each paced window"
    )
    parser.add_argument(
        "--image-sizes",
        default="1152x864,128x128",
        help="request images WxH, comma-separated; the first gets every measurement",
    )
    parser.add_argument("--pool", type=int, default=64, help="distinct images per size")
    parser.add_argument("--batch", type=int, default=16, help="batch of the in-process ceiling")
    parser.add_argument("--input-size", type=int, default=64, help="model input (px, square)")
    parser.add_argument("--train-images", type=int, default=360, help="simulated training parts")
    parser.add_argument("--train-epochs", type=int, default=6, help="epochs of the quick model")
    parser.add_argument("--store", type=Path, help="reuse this store's production version")
    parser.add_argument("--save-store", type=Path, help="keep the prepared store here")
    return parser


def _add_phase_options(parser: argparse.ArgumentParser) -> None:
    """The micro-batcher, hot-swap and waiting options, and the naive server's own."""
    parser.add_argument(
        "--batcher",
        default="1:0,4:1,8:1,16:0,16:2,16:5,32:2",
        help="MAX_BATCH:MAX_WAIT_MS settings to try (16:0 is the product default)",
    )
    parser.add_argument("--swaps", type=int, default=20, help="versions approved under load")
    parser.add_argument("--swap-interval", type=float, default=8.0, help="seconds between swaps")
    parser.add_argument("--steady", type=float, default=20.0, help="paced seconds before swaps")
    parser.add_argument(
        "--load-fraction",
        type=float,
        default=0.5,
        help="paced load as a fraction of the service's best throughput",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=30.0,
        help="seconds between checks for other benchmarks (pgrep -f 'bench/|explore.py')",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="max seconds to wait for an idle machine after the others end (0: don't)",
    )
    parser.add_argument(
        "--swaps-only",
        type=float,
        metavar="RATE",
        help="only the hot-swap and memory phase, under RATE paced :predict requests/s "
        "(default batcher), e.g. to check a change to the swap path",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for other benchmarks or an idle machine (for trying the script out; "
        "the numbers are then not worth keeping)",
    )
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--saved-model", type=Path, help=argparse.SUPPRESS)


def _parse_lists(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The comma-separated options as lists, checked; the default batcher always tried."""
    try:
        args.levels = [int(c) for c in args.concurrency.split(",")]
        args.sizes = [
            tuple(int(v) for v in s.lower().split("x")) for s in args.image_sizes.split(",")
        ]
        args.batchers = [
            (int(b), float(w)) for b, w in (s.split(":") for s in args.batcher.split(","))
        ]
    except ValueError:
        parser.error(
            "--concurrency is like 1,4,16, --image-sizes like 1152x864,128x128, "
            "--batcher like 16:2,32:5"
        )
    if min(args.levels) < 1 or args.duration <= 0 or args.pool < 1 or args.swaps < 1:
        parser.error("--concurrency, --duration, --pool and --swaps must be positive")
    if args.no_wait:
        args.poll, args.idle_timeout = 0.0, 0.0
    if DEFAULT_BATCHER not in args.batchers:
        args.batchers.insert(0, DEFAULT_BATCHER)
    args.current_size = ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.naive_server:
        naive_server(args.port, args.saved_model)
        return 0
    os.chdir(ROOT)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on `kill` as on Ctrl-C
    started = datetime.now(UTC)
    waited = wait_for_others(args.poll)
    idle = common.wait_for_idle(args.idle_timeout, log=say) if args.idle_timeout > 0 else 0.0
    info = common.machine()
    info["packages"].update(versions())
    info["waited_for_others_s"] = round(waited, 1)
    info["waited_for_idle_s"] = round(idle, 1)
    say(f"machine: {common.describe(info)}")
    bench = Bench(args)
    result: dict[str, Any] = {
        "benchmark": "bench/serving.py",
        "command": " ".join([".venv/bin/python", "bench/serving.py", *(argv or sys.argv[1:])]),
        "started_at": started.isoformat(timespec="seconds"),
        "machine": info,
        "code": code_state(),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("naive_server", "port", "saved_model")
        },
        "rows": bench.rows,
    }
    result["settings"]["image_sizes"] = [f"{w}x{h}" for w, h in args.sizes]
    result["settings"]["batch"] = args.batch
    with tempfile.TemporaryDirectory(prefix="inspector-bench-serving-") as tmp:
        workdir = Path(tmp)
        try:
            run(bench, args, workdir, result)
        except Exception as exc:  # keep what was measured, say what broke
            import traceback

            traceback.print_exc()
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            stop_everything()
    result["notes"] = bench.notes
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = common.save_results("serving", result)
    say(report_tables(result))
    say(f"\nmachine: {common.describe(info)}; load average at end {os.getloadavg()}")
    if bench.notes:
        say("\nnote: these windows shared the machine:\n  " + "\n  ".join(bench.notes))
    say(f"results: {common.shown(out)}")
    if "error" in result:
        say(f"\nFAILED: {result['error']}")
        return 1
    return 0


def run(bench: Bench, args: argparse.Namespace, workdir: Path, result: dict[str, Any]) -> None:
    """Every phase, in order; fills ``result``."""
    store, version, saved_model = prepare_model(args, workdir, result)

    from inspector.export import ServingModel

    model = ServingModel(saved_model)
    pools = request_pools(args, model, result)

    service = track(Service(store.url, workdir / "service", {}))
    result["components"] = {}
    for w, h in args.sizes:
        result["components"][f"{w}x{h}"] = component_costs(
            model, pools[(w, h)], service.redis.url, workdir
        )
    say("\nstep costs, one thread, median ms:")
    for size, steps in result["components"].items():
        say(f"  {size}: " + "; ".join(f"{k} {v}" for k, v in steps.items()))

    primary = args.sizes[0]
    if args.swaps_only:
        args.current_size = f"{primary[0]}x{primary[1]}"
        service.start_api()
        service.start_worker(*DEFAULT_BATCHER)
        say(
            f"\n[{args.current_size}] hot-swaps only: {args.swaps} approvals under "
            f"{args.swaps_only:g} req/s paced load (batcher 16:0)"
        )
        result["swaps"] = phase_swaps(
            bench, service, store, version, pools[primary], args.swaps_only
        )
        service.stop()
        return

    phase_baselines(bench, model, saved_model, pools, workdir, result)
    say("\n(b) the service: Redis, inspector api, inspector worker inference")
    service.start_api()
    service.start_worker(*DEFAULT_BATCHER)
    phase_service(bench, service, pools)

    args.current_size = f"{primary[0]}x{primary[1]}"
    pool = pools[primary]
    best = phase_tuning(bench, service, pool, result)
    rate, key = phase_paced(bench, service, saved_model, pool, workdir, best, result)

    say(
        f"\n[{args.current_size}] hot-swaps: {args.swaps} approvals under {rate} req/s paced "
        f"load (batcher {key})"
    )
    service.start_worker(best["max_batch"], best["max_wait_ms"])  # a fresh worker for memory
    result["swaps"] = phase_swaps(bench, service, store, version, pool, rate)
    service.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_everything()
        print(
            "\ninterrupted; every process the benchmark started has been stopped", file=sys.stderr
        )
        sys.exit(130)
