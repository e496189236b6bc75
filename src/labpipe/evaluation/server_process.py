"""One model server process for the evaluation engines (evaluation/engines.py starts them).

A server is started in a session of its own (one process group: vLLM's workers go with it), is asked for
`/health` and then `/v1/models` until it answers or its startup timeout passes, and is stopped (SIGTERM to
the group, SIGKILL after a grace period) when asked, on SIGTERM/SIGINT and at interpreter exit (atexit,
signal handlers); the server also gets SIGKILL if this process dies without cleaning up
(PR_SET_PDEATHSIG on Linux). A server that exits before it is ready, or never gets ready, is a UserError
with its last log lines.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from labpipe.errors import Problem, UserError

log = logging.getLogger(__name__)
LOG_TAIL_LINES = 25

_LIVE: set[ServerProcess] = set()
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        server.stop()


def _on_signal(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _stop_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL if previous in (None, signal.SIG_DFL) else previous)
    if previous != signal.SIG_IGN:
        os.kill(os.getpid(), signum)  # what would have happened without us


_PREVIOUS: dict[int, object] = {}


def _install_handlers() -> None:
    """Stop every server on SIGTERM/SIGINT (then do what the previous handler did) and at exit."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if previous is _on_signal:
                continue
            _PREVIOUS[signum] = previous
            signal.signal(signum, _on_signal)
    _HANDLERS_INSTALLED = True


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One server process on 127.0.0.1:`port`, its output in `log_path`."""

    def __init__(
        self,
        what: str,
        cmd: list[str],
        *,
        port: int,
        log_path: Path,
        served_name: str,
        env: dict[str, str] | None = None,
    ):
        self.what, self.cmd, self.port, self.log_path = what, cmd, port, Path(log_path)
        self.served_name, self.env = served_name, env
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float) -> ServerProcess:
        _install_handlers()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting %s: %s", self.what, " ".join(self.cmd))
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.starts += 1
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        healthy = False
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self.failure(f"exited with code {code} before it was ready")
            try:
                if not healthy:
                    healthy = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200
                if healthy:
                    reply = httpx.get(f"{self.base_url}/models", timeout=10)
                    ids = (
                        [m.get("id") for m in reply.json().get("data", [])]
                        if reply.status_code == 200
                        else []
                    )
                    if ids:
                        return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise self.failure(
                    f"was not ready after {timeout_s:.0f}s",
                    fix="raise engine_startup_timeout_s "
                    "if the model is large and loads slowly, or see the log lines above",
                )
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace_s: float = 30.0) -> None:
        proc = self.proc
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:  # the group may outlive its leader (vLLM's workers): make sure
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not exit after SIGKILL", self.what, proc.pid)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def failure(self, what: str, fix: str = "") -> UserError:
        tail = self.tail()
        return UserError(
            Problem(
                self.what,
                "engine",
                f"the server {what}; its last log lines ({self.log_path}):\n{tail or '(no output)'}",
                fix
                or "fix the cause in the log lines above (memory, GPUs, model files) and rerun: answers "
                "already given are kept in the answer cache and not asked again",
                field="engine",
            )
        )
