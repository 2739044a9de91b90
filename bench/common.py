"""Helpers shared by the benchmarks: the machine, the NEU data set and its
product split, waiting for a quiet machine, and writing results.

Imports no TensorFlow, so importing it costs nothing and ``--help`` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Where results are written (INSPECTOR_BENCH_RESULTS moves them: the tests do).
RESULTS = Path(os.environ.get("INSPECTOR_BENCH_RESULTS", ROOT / "bench" / "results"))
NEU_DEFAULT = (ROOT / ".." / "shared" / "datasets" / "neu").resolve()
# Other benchmarks that must not share the cores with a timed run.
BENCHMARKS = (
    "bench/ingest.py",
    "bench/train_neu.py",
    "bench/pipeline.py",
    "bench/serving.py",
    "bench/needle.py",
)
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "opencv-python-headless")


def machine(packages: Iterable[str] = PACKAGES) -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, the versions of ``packages`` (TF/Keras unless a
    benchmark names its own) and the load average now."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    simd = sorted(
        {f for f in (flags.group(1).split() if flags else []) if f.startswith(("avx", "fma"))}
    )
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "simd": simd,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def describe(info: dict[str, Any]) -> str:
    """One line for the report."""
    pkgs = info["packages"]
    tf_version = pkgs.get("tensorflow-cpu") or pkgs.get("tensorflow")
    return (
        f"{info['cpu']}, {info['cores_usable']}/{info['cores']} cores, {info['ram_gib']} GiB, "
        f"Python {info['python']}, TF {tf_version}, Keras {pkgs.get('keras')}, "
        f"load average {' '.join(f'{x:.2f}' for x in info['loadavg'])}"
    )


def process_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds of it and its reaped children) for every process.
    Reaped children count, so short-lived helpers (Redis's background save, say) count
    towards the process that started them."""
    table = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), sum(map(int, fields[11:15])) / ticks)
    return table


def _other_benchmarks() -> dict[int, str]:
    """pid → command line of the other benchmarks running now (not this process or its
    parents)."""
    mine = {os.getpid(), os.getppid()}
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        # A Python interpreter running a benchmark script, not a shell mentioning one.
        if len(args) >= 2 and "python" in Path(args[0]).name and args[1].endswith(BENCHMARKS):
            found[int(entry.name)] = " ".join(args)
    return found


def _busy_benchmarks(window: float = 3.0, limit: float = 0.2) -> list[str]:
    """The other benchmarks whose process trees use more than ``limit`` cores now.

    One that is itself waiting (for an idle machine, or for this one) uses none, and is
    not waited for: two benchmarks never wait for each other.
    """
    others = _other_benchmarks()
    if not others:
        return []
    before = process_table()
    time.sleep(window)
    after = process_table()
    busy = []
    for pid, command in others.items():
        tree, grew = {pid}, True
        while grew:
            children = {p for p, (parent, _) in after.items() if parent in tree} - tree
            tree |= children
            grew = bool(children)
        used = sum(after[p][1] - before.get(p, (0, after[p][1]))[1] for p in tree if p in after)
        if used / window > limit:
            busy.append(command)
    return busy


def wait_for_quiet_machine(poll: float = 30.0, log: Any = print) -> float:
    """Block while another benchmark is measuring (polling every ``poll`` s); seconds waited.

    Called before a run and again between epochs or measurements: a benchmark that starts
    while this one runs (bench/ingest.py waits for an idle machine, then measures anyway)
    gets the machine to itself, and the time paused is left out of this one's timings.
    A benchmark that is waiting itself is not waited for, so two never deadlock.
    """
    started = time.monotonic()
    while others := _busy_benchmarks():
        log(
            f"waiting: another benchmark is running ({others[0][:100]}); next check in {poll:.0f} s"
        )
        time.sleep(poll)
    return time.monotonic() - started


def add_wait_options(parser: Any) -> None:
    """``--idle-timeout`` and ``--no-wait``, read by :func:`wait_for_idle` and
    :func:`wait_for_quiet_machine` callers."""
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600,
        help="first wait up to this many seconds for an idle machine (0: do not)",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for (or pause during) other benchmarks"
    )


def wait_before_measuring(args: Any) -> tuple[float, float]:
    """Seconds waited for other benchmarks, then for an idle machine, as ``--no-wait``
    and ``--idle-timeout`` say (``--no-wait``: neither)."""
    if args.no_wait:
        return 0.0, 0.0
    waited = wait_for_quiet_machine()
    idle = wait_for_idle(args.idle_timeout) if args.idle_timeout > 0 else 0.0
    return waited, idle


def wait_for_idle(
    timeout: float, limit: float = 0.3, log: Any = print, poll: float = 30.0
) -> float:
    """Wait (up to ``timeout`` s, checking every ``poll`` s) until the machine uses under
    ``limit`` cores over 3 s, so other sessions' tests or training do not share the timed
    run; seconds waited."""
    started = time.monotonic()
    while True:
        before = machine_busy()
        time.sleep(3)
        used = (machine_busy() - before) / 3
        waited = time.monotonic() - started
        if used < limit:
            return waited
        if waited >= timeout:
            log(f"the machine is still busy ({used:.1f} cores in use); measuring anyway")
            return waited
        log(f"waiting for an idle machine: {used:.1f} cores in use ({waited:.0f} s so far)")
        time.sleep(max(0.0, poll - 3))


class CpuWindow:
    """Cores used over a window by this process and by everything else on the machine
    (the tests or builds of other sessions share these cores too)."""

    def __init__(self) -> None:
        self._start = (time.perf_counter(), machine_busy(), _own_cpu())

    def cores(self) -> dict[str, float]:
        """{"own": cores this process used, "others": cores the rest of the machine used}."""
        wall, busy, own = self._start
        wall = time.perf_counter() - wall
        used_own = _own_cpu() - own
        used_all = machine_busy() - busy
        return {
            "own": round(used_own / wall, 2),
            "others": round(max(0.0, used_all - used_own) / wall, 2),
        }


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting on I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


# --- NEU --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One NEU file with its class index, content id and product split."""

    path: Path
    label: int
    image_id: str
    split: str


def load_neu(
    root: Path, heldout: float = 0.2, validation: float = 0.1
) -> tuple[list[str], list[Image]]:
    """Classes (the folder names, sorted) and every image with the split the product gives
    it: ``split_of(sha256(file bytes), SplitPolicy(heldout, validation))``."""
    from inspector.datasets import SplitPolicy, split_of

    if not root.is_dir():
        sys.exit(f"NEU data set not found at {root}: pass --data")
    policy = SplitPolicy(heldout=heldout, validation=validation)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images = []
    for label, name in enumerate(classes):
        for path in sorted((root / name).glob("*.jpg")):
            image_id = hashlib.sha256(path.read_bytes()).hexdigest()
            images.append(Image(path, label, image_id, split_of(image_id, policy)))
    return classes, images


def split_counts(classes: list[str], images: list[Image]) -> dict[str, dict[str, int]]:
    """split → class → number of images."""
    counts = Counter((i.split, classes[i.label]) for i in images)
    return {
        split: {name: counts[(split, name)] for name in classes}
        for split in ("train", "validation", "heldout")
    }


def counts_table(counts: dict[str, dict[str, int]]) -> str:
    """Counts per class and split as a text table."""
    splits = list(counts)
    classes = list(next(iter(counts.values())))
    lines = [f"{'class':<17}" + "".join(f"{s:>11}" for s in splits)]
    lines += [f"{c:<17}" + "".join(f"{counts[s][c]:>11}" for s in splits) for c in classes]
    lines.append(f"{'total':<17}" + "".join(f"{sum(counts[s].values()):>11}" for s in splits))
    return "\n".join(lines)


# --- output -----------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain text table: ``columns`` are (key, header) pairs."""
    cells = [[h for _, h in columns]] + [
        ["" if r.get(k) is None else str(r[k]) for k, _ in columns] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_results(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` to <RESULTS>/<name>-<UTC time>.json; the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{name}-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return out


def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it, else as it is."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def utc_now() -> str:
    """The time now, ISO 8601 UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()
