"""A fatal signal in any long-running `veille` command leaves Python tracebacks in its log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


# What the log shows once the command runs its own code (Kafka clients made; the sink's store
# opened, after which it re-enables the tracebacks): a fixed sleep was not enough on a loaded
# machine, where imports alone can take longer and a SIGSEGV before main() leaves no trace.
@pytest.mark.parametrize(("command", "ready"), [(["router", "run"], "rdkafka"),
                                                (["sink", "run", "--port", "0"], "sink: "),
                                                (["intake", "serve", "--port", "0"], "rdkafka")])
def test_segfault_leaves_a_traceback_in_the_log(command: list[str], ready: str, tmp_path: Path) -> None:
    env = {**os.environ, "VEILLE_STATE_DIR": str(tmp_path), "VEILLE_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    log = tmp_path / "process.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "veille.cli", *command], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(4)  # past imports and the store's opening, in the command's own code
        proc.send_signal(signal.SIGSEGV)
        deadline = time.monotonic() + 30
        while "Fatal Python error" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
        # faulthandler writes its header, then each thread's stack: give it time to finish (the
        # process then dies of the signal), else the kill below can cut the stacks off.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    finally:
        # faulthandler then hands the signal to the previous handler (chDB's in the sink,
        # which does not always end the process): kill -9 whatever is left.
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = log.read_text(errors="replace")
    assert "Fatal Python error: Segmentation fault" in text, text[-2000:]
    assert "veille" in text and "File " in text  # the stack of the process's own code
