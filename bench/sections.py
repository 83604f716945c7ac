"""The sections of a benchmark run (loopback, empty, memory, latency) and the targets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from bench import peers
from bench.corpus import PEERS_DIR, probe_argv
from bench.ours import TO_DIRECTORY as OURS_DIR
from bench.ours import TO_S3 as OURS_S3
from bench.ours import Ours
from bench.peers import GETMAIL, PIPELINED
from bench.report import MB, MIB, Row, Target, ratio_target
from bench.runner import Bench
from harness import MotoS3, free_port
from harness.ports import accepts_connections
from harness.process import spawn, stop_process

BUCKET = "ingest-bench"
MEMORY_LIMIT_MB = 200.0


def main_section(bench: Bench, ours: Ours, moto: MotoS3, user: str, password: str) -> None:
    contenders = [
        peers.probe("poplib", user, password),
        peers.probe("pipelined", user, password),
        peers.getmail(bench.scratch, user, password),
    ]
    if shutil.which("fetchmail"):
        contenders.append(peers.fetchmail(bench.scratch, user, password))
    contenders += [ours.directory(), ours.s3(moto, BUCKET)]
    corpus = bench.corpora["main"]
    bench.section("loopback", corpus, contenders, bench.dovecot.pop3_port, bench.args.reps)


def fixed_cost_section(bench: Bench, ours: Ours, user: str, password: str) -> None:
    contenders = [peers.getmail(bench.scratch, user, password), ours.directory()]
    corpus = bench.corpora["empty"]
    bench.section("empty", corpus, contenders, bench.dovecot.pop3_port, bench.args.reps)


def memory_section(bench: Bench, ours: Ours) -> Target:
    corpus = bench.corpora["memory"]
    rows = bench.section("memory", corpus, [ours.directory()], bench.dovecot.pop3_port, 1)
    row = rows[0]
    big = corpus.largest / MB
    peak = row.rss_max_mib * MIB / MB if row.valid else None
    detail = f"peak RSS of ingest poll, MB; one {big:.0f} MB message among {corpus.count - 1}"
    return Target("memory", peak, MEMORY_LIMIT_MB, " MB", detail)


def latency_section(bench: Bench, ours: Ours, user: str, password: str) -> list[Row]:
    port = free_port()
    log = bench.scratch / "logs" / "delay-proxy.log"
    argv = [
        sys.executable, str(PEERS_DIR / "delay_proxy.py"), "--listen", str(port),
        "--target", str(bench.dovecot.pop3_port), "--delay-ms", "10",
    ]  # fmt: skip
    proxy = spawn(argv, log)
    try:
        deadline = time.monotonic() + 10
        while not accepts_connections("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        out = subprocess.run(
            probe_argv("pipelined", port, user, password, "--noop", "20"),
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        bench.meta["proxy RTT ms (NOOP, median of 20)"] = json.loads(out)["rtt_ms_median"]
        contenders = [
            peers.probe("pipelined", user, password),
            peers.getmail(bench.scratch, user, password),
            ours.directory(),
        ]
        return bench.section("latency", bench.corpora["latency"], contenders, port, bench.args.reps)
    finally:
        stop_process(proxy)


def targets(bench: Bench, memory: Target | None) -> list[Target]:
    rows = bench.rows
    loop = [r for r in rows if r.section == "loopback"]
    lat = [r for r in rows if r.section == "latency"]
    found = [
        ratio_target(
            "loopback, directory", loop, OURS_DIR, GETMAIL, limit=0.5, detail="wall vs getmail6"
        ),
        ratio_target(
            "loopback, directory (stretch)",
            loop,
            OURS_DIR,
            PIPELINED,
            limit=3.0,
            detail="wall vs pipelined probe",
        ),
        ratio_target("loopback, S3", loop, OURS_S3, GETMAIL, limit=1.0, detail="wall vs getmail6"),
        ratio_target(
            "~20 ms RTT, directory", lat, OURS_DIR, GETMAIL, limit=0.1, detail="wall vs getmail6"
        ),
        memory,
    ]
    return [t for t in found if t is not None]
