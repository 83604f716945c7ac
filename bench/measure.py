"""Run one client under ``/usr/bin/time -v`` and read what it cost: wall, CPU, peak RSS.

Wall time is client process start to exit (interpreter start-up, login and QUIT included),
as in the peers' harness. Peak RSS is GNU time's "Maximum resident set size": the largest
of the client and the children it waited for. Dovecot's own log line for the session
(``retr=N/bytes, del=N/M``) and the CPU its pop3 processes used are read beside it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

TIME = "/usr/bin/time"
_SESSION = re.compile(
    r"pop3\((?P<user>[^)]+)\).*?: Disconnected: (?P<reason>.*?) top=\d+/\d+, "
    r"retr=(?P<retr>\d+)/(?P<retr_bytes>\d+), del=(?P<dele>\d+)/(?P<msgs>\d+), size=\d+"
)


@dataclass(frozen=True)
class Timed:
    """What one client run cost, and what it printed."""

    wall_s: float
    rc: int
    user_s: float
    sys_s: float
    maxrss_kb: int
    stdout: str
    stderr_tail: str


@dataclass(frozen=True)
class Session:
    """Dovecot's account of one POP3 session."""

    reason: str
    retr: int
    retr_bytes: int
    dele: int
    msgs: int


def run_timed(
    argv: list[str],
    scratch: Path,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 900.0,
) -> Timed:
    """Run ``argv`` to completion under GNU time; stderr goes to ``log`` (kept) if given.

    After ``timeout`` seconds the whole process group is killed (SIGKILL) and the run
    reports the signal as its exit status: nothing a client does can hang the benchmark.
    """
    tfile = scratch / "time-v.txt"
    tfile.unlink(missing_ok=True)
    errfile = log or scratch / "stderr.txt"
    with errfile.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "-v", "-o", str(tfile), *argv],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            start_new_session=True,  # its own process group, killed as one on timeout
        )
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
        wall = time.perf_counter() - t0
    fields = _parse_time_v(tfile.read_text()) if tfile.exists() else {}
    return Timed(
        wall_s=wall,
        rc=proc.returncode,
        user_s=float(fields.get("User time (seconds)", "nan")),
        sys_s=float(fields.get("System time (seconds)", "nan")),
        maxrss_kb=int(fields.get("Maximum resident set size (kbytes)", "0")),
        stdout=stdout.decode(errors="replace"),
        stderr_tail=errfile.read_text(errors="replace")[-1500:],
    )


def _parse_time_v(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.strip().rpartition(": ")
        out[key] = value
    return out


def dovecot_session(log: Path, offset: int, user: str, timeout: float = 10.0) -> Session | None:
    """The first session of ``user`` logged after byte ``offset``, waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open(errors="replace") as fh:
            fh.seek(offset)
            for line in fh:
                m = _SESSION.search(line)
                if m and m["user"] == user:
                    return Session(
                        m["reason"], int(m["retr"]), int(m["retr_bytes"]), int(m["dele"]),
                        int(m["msgs"]),
                    )  # fmt: skip
        time.sleep(0.05)
    return None


def children_cpu(pid: int) -> float:
    """CPU seconds of the reaped children of ``pid`` (Dovecot's pop3 and login processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
