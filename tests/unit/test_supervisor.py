"""`inspector run`'s supervisor: a child asking to be recycled is started again; any other
exit stops everything."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time

from inspector.supervisor import RECYCLE_EXIT_CODE, Child, Supervisor

CHILD = """
import pathlib, sys, time
marker = pathlib.Path(sys.argv[1])
if not marker.exists():
    marker.write_text("recycled once")
    sys.exit({code})
print("second life", flush=True)
time.sleep(60)
"""


def _stop_later(seconds: float) -> None:
    def fire() -> None:
        time.sleep(seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=fire, daemon=True).start()


def test_a_child_that_asks_to_be_recycled_is_started_again(tmp_path):
    out = io.StringIO()
    child = Child(
        "worker", [sys.executable, "-c", CHILD.format(code=RECYCLE_EXIT_CODE), str(tmp_path / "m")]
    )
    _stop_later(3.0)
    code = Supervisor([child], dict(os.environ), out=out).run()
    assert code == 0
    assert "second life" in out.getvalue()


def test_any_other_exit_stops_everything(tmp_path):
    out = io.StringIO()
    dying = Child("dying", [sys.executable, "-c", CHILD.format(code=3), str(tmp_path / "m")])
    waiting = Child("waiting", [sys.executable, "-c", "import time; time.sleep(60)"])
    code = Supervisor([waiting, dying], dict(os.environ), out=out).run()
    assert code == 1
    assert waiting.proc is not None and waiting.proc.poll() is not None
