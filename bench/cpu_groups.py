"""CPU use per process group over a timed window, for bench/ingest.py and bench/serving.py:
a snapshot of the machine's busy time and of every process's CPU seconds (from /proc)
taken before and after the window, and the cores each group of processes (a root pid and
everything it forked, the kernel threads, everything else) used in between.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import common


@dataclass
class CpuSample:
    """A snapshot from which CPU use per process group over a window is computed."""

    busy: float
    procs: dict[int, tuple[int, float]]
    wall: float

    @classmethod
    def take(cls) -> CpuSample:
        return cls(common.machine_busy(), common.process_table(), time.perf_counter())


KTHREADD = 2  # the parent of every kernel thread (journal commits, writeback, …)


def cpu_by_group(start: CpuSample, end: CpuSample, roots: dict[str, int]) -> dict[str, float]:
    """Cores used over the window by each group of processes (a root pid and everything it
    forked), by kernel threads, and by everything else ("other": interrupts, processes that
    are not ours, or ours that exited during the window)."""
    roots = {**roots, "kernel threads": KTHREADD}
    group_of = {pid: name for name, pid in roots.items()}

    def group(pid: int) -> str | None:
        seen = 0
        while pid > 0 and seen < 64:
            if pid in group_of:
                return group_of[pid]
            pid = end.procs.get(pid, start.procs.get(pid, (0, 0.0)))[0]
            seen += 1
        return None

    wall = end.wall - start.wall
    used: dict[str, float] = dict.fromkeys(roots, 0.0)
    for pid, (_, cpu) in end.procs.items():
        name = group(pid)
        if name is not None:
            used[name] += cpu - start.procs.get(pid, (0, 0.0))[1]
    ours = sum(used.values())
    used["other"] = max(0.0, (end.busy - start.busy) - ours)
    return {name: round(seconds / wall, 3) for name, seconds in used.items()}
