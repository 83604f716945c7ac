"""Start server processes that die with us, wait for them to be ready, stop them by PID."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

_PR_SET_PDEATHSIG = 1


class ServerStartError(RuntimeError):
    """A test server exited or did not become ready; the message carries its log tail."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child when the process that started it dies (even by SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def spawn(
    argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``; it dies with this process.

    Linux delivers the death signal when the *thread* that spawned the child ends, so start
    long-lived servers from the main thread (or one that outlives them).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if _in_main_thread() else None,  # noqa: PLW1509 - prctl only
        )


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    log_path: Path,
    timeout: float = 15.0,
) -> None:
    """Poll ``ready()`` until it is true; raise if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"{what} exited with status {proc.returncode}:\n{log_tail(log_path)}"
            )
        if ready():
            return
        time.sleep(0.05)
    stop_process(proc)
    raise ServerStartError(f"{what} not ready after {timeout:.0f}s:\n{log_tail(log_path)}")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Stop ``proc`` by its PID: SIGTERM, wait, then SIGKILL. Idempotent; reaps the child."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """PIDs of every live process below ``pid`` in the process tree (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def processes_titled(prefix: str) -> set[int]:
    """PIDs of live processes whose command line (process title) starts with ``prefix``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (
            entry.name.isdigit()
            and title.startswith(prefix.encode())
            and pid_alive(int(entry.name))
        ):
            found.add(int(entry.name))
    return found


def terminate_all(pids: set[int], timeout: float = 3.0) -> None:
    """SIGTERM every live PID in ``pids``, wait up to ``timeout``, then SIGKILL the rest."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = {pid for pid in pids if pid_alive(pid)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            time.sleep(0.02)
            pids = {pid for pid in pids if pid_alive(pid)}
        if not pids:
            return


class Managed:
    """A test server used as ``with Server(...) as server``: :meth:`start` on entry (unless
    :meth:`running` says it already runs), :meth:`stop` on exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def running(self) -> bool:
        return False

    def __enter__(self) -> Self:
        return self if self.running() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalServer(Managed):
    """One server process on 127.0.0.1 in ``workdir``, on a free (or given) port.

    Subclasses give ``name`` and ``log_name`` and implement :meth:`_start_once` (spawn and
    wait until ready). Starting retries on another port when a race took the chosen one.
    """

    host = "127.0.0.1"
    name = "server"
    log_name = "server.log"
    start_attempts = 3

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        from harness.ports import free_port  # noqa: PLC0415 - ports imports nothing of ours

        self.workdir = Path(workdir)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(self.host)
        self.log_path = self.workdir / self.log_name
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """PID of the running server."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._proc.pid

    def start(self) -> Self:
        """Start and wait until ready; retry on a fresh port when the chosen one was taken."""
        from harness.ports import free_port  # noqa: PLC0415

        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(self.start_attempts):
            try:
                self._start_once()
                return self
            except ServerStartError:
                if self._fixed_port or attempt == self.start_attempts - 1:
                    raise
                self.port = free_port(self.host)
        return self  # pragma: no cover - the loop returns or raises

    def _start_once(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL). Idempotent."""
        stop_process(self._proc)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


def retry_on_port_race(
    start_once: Callable[[], None],
    pick_ports: Callable[[], None],
    stop: Callable[[], None],
    *,
    fixed: bool,
    attempts: int = 3,
) -> None:
    """Start a server on freshly picked ports; when they were taken meanwhile (a race with
    another process), stop what started and try fresh ones. Fixed ports get one try."""
    for attempt in range(attempts):
        if not fixed:
            pick_ports()
        try:
            start_once()
            return
        except ServerStartError:
            stop()
            if fixed or attempt == attempts - 1:
                raise
