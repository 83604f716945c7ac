"""The baselines, run as the peers' harness runs them: poplib, pipelined probe, getmail6, fetchmail.

None of them deletes anything. getmail6 runs as ``nobody`` (it refuses to deliver as root)
into a Maildir, ``read_all``, no delete; fetchmail keeps the mail and hands each message to
``cat > file`` (its MDA), as in ``../shared/bench-peers/bench_peers.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.contenders import Contender, Job
from bench.corpus import Corpus, probe_argv
from bench.measure import Timed

POPLIB = "stdlib poplib, lock-step RETR"
PIPELINED = "pipelined RETR probe"
GETMAIL = "getmail6 -> Maildir"
FETCHMAIL = "fetchmail -> MDA file"


def _files_written(directory: Path, expect: int) -> list[str]:
    found = sum(1 for _ in directory.iterdir()) if directory.is_dir() else 0
    return [] if found == expect else [f"{found} files written, expected {expect}"]


def _probe_count(expect: int) -> Callable[[Timed], list[str]]:
    def check(timed: Timed) -> list[str]:
        try:
            count = json.loads(timed.stdout.strip().splitlines()[-1])["count"]
        except (IndexError, ValueError, KeyError):
            return [f"no result line from pop3probe: {timed.stdout[-200:]!r}"]
        return [] if count == expect else [f"probe retrieved {count}, expected {expect}"]

    return check


def probe(mode: str, user: str, password: str) -> Contender:
    """``pop3probe.py --mode poplib`` (lock-step) or ``pipelined`` (all RETRs in flight)."""

    def prepare(port: int, corpus: Corpus) -> Job:
        return Job(probe_argv(mode, port, user, password), check=_probe_count(corpus.count))

    name = POPLIB if mode == "poplib" else PIPELINED
    return Contender(name, "peer", deletes=False, prepare=prepare)


def getmail(scratch: Path, user: str, password: str) -> Contender:
    """getmail6 SimplePOP3Retriever -> Maildir, read_all, delete = false, as ``nobody``."""
    home = scratch / "getmail"

    def prepare(port: int, corpus: Corpus) -> Job:
        shutil.rmtree(home, ignore_errors=True)
        for sub in ("cur", "new", "tmp"):
            (home / "Maildir" / sub).mkdir(parents=True)
        # timeout (default 180 s) is also how long getmail waits for a delivery child's
        # SIGCHLD, which it sometimes misses (a race in getmail 6.18): bound that hang
        (home / "getmailrc").write_text(
            f"[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = {port}\n"
            f"username = {user}\npassword = {password}\ntimeout = 30\n\n"
            f"[destination]\ntype = Maildir\npath = {home}/Maildir/\n\n"
            "[options]\nread_all = true\ndelete = false\nverbose = 0\n"
        )
        subprocess.run(["chown", "-R", "nobody:nogroup", str(home)], check=True)
        argv = [
            "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "getmail", f"--getmaildir={home}", f"--rcfile={home}/getmailrc",
        ]  # fmt: skip
        return Job(argv, check=lambda _: _files_written(home / "Maildir" / "new", corpus.count))

    return Contender(GETMAIL, "peer", deletes=False, prepare=prepare)


def fetchmail(scratch: Path, user: str, password: str) -> Contender:
    """fetchmail ``keep fetchall``, MDA ``cat > file`` per message (one fork each)."""
    home = scratch / "fetchmail"

    def prepare(port: int, corpus: Corpus) -> Job:
        shutil.rmtree(home, ignore_errors=True)
        (home / "out").mkdir(parents=True)
        rc = home / "fetchmailrc"
        rc.write_text(
            f"set no syslog\npoll 127.0.0.1 with protocol pop3 service {port} auth password\n"
            f'  user "{user}" there with password "{password}" is "root" here\n'
            "  options keep fetchall no rewrite sslproto ''\n"
            f'  mda "cat > {home}/out/m.$$"\n'
        )
        rc.chmod(0o600)
        argv = [
            "fetchmail", "-f", str(rc), "--idfile", str(home / "ids"),
            "--pidfile", str(home / "pid"),
        ]  # fmt: skip
        return Job(argv, check=lambda _: _files_written(home / "out", corpus.count))

    return Contender(FETCHMAIL, "peer", deletes=False, prepare=prepare)
