"""``ingest health`` (probes for systemd and Kubernetes) and ``ingest metrics serve``."""

from __future__ import annotations

import json
import sys
import threading
from typing import TYPE_CHECKING

import click

from ingest.cli import CliContext, main
from ingest.config import Settings

if TYPE_CHECKING:
    from ingest.health import Check

# ``ingest.health`` (and so ``metrics``) is imported by the commands themselves: it pulls in
# redis, botocore and prometheus_client, which every other command would pay for at start-up
# (urllib.request, with http.client, likewise).


def _live(settings: Settings) -> Check:
    """Ask the local worker's ``/healthz`` (its event loop must be turning)."""
    import urllib.error  # noqa: PLC0415 - see above
    import urllib.request  # noqa: PLC0415

    from ingest.health import Check  # noqa: PLC0415

    cfg = settings.metrics
    if not cfg.port:
        return Check("loop", False, "metrics.port is 0: the worker serves no /healthz to ask")
    host = "127.0.0.1" if cfg.address in ("0.0.0.0", "::", "") else cfg.address  # noqa: S104
    url = f"http://{host}:{cfg.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return Check("loop", False, f"{url} answered {err.code}")
    except (OSError, ValueError) as err:
        return Check("loop", False, f"{url} unreachable: {err}")
    return Check("loop", body.get("status") == "ok", f"{url}: {body.get('status')}")


@main.command(name="health")
@click.option("--live", "only_live", is_flag=True, help="Only liveness (the worker's /healthz).")
@click.option("--ready", "only_ready", is_flag=True, help="Only readiness (Redis, storage, beat).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
@click.pass_obj
def health_cmd(obj: CliContext, only_live: bool, only_ready: bool, as_json: bool) -> None:
    """Liveness and readiness, for systemd and Kubernetes exec probes.

    Liveness asks the local worker's endpoint (metrics.address:metrics.port) whether its
    event loop turns; readiness checks Redis, the store and the dispatcher's heartbeat
    directly. Without a flag, both. Exit status: 0 all passed, 1 otherwise, 78 config error.
    """
    from ingest.health import Probe  # noqa: PLC0415 - see above

    settings = obj.settings()
    checks: list[Check] = []
    if not only_ready:
        checks.append(_live(settings))
    if not only_live:
        checks.extend(Probe(settings).ready())
    ok = all(c.ok for c in checks)
    if as_json:
        status = "ok" if ok else "fail"
        click.echo(json.dumps({"status": status, "checks": [c.as_dict() for c in checks]}))
    else:
        for c in checks:
            click.echo(f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    if not ok:
        sys.exit(1)


@main.group(name="metrics")
def metrics_group() -> None:
    """The Prometheus endpoint outside a worker (e.g. for `ingest poll` run from cron)."""


@metrics_group.command(name="serve")
@click.option("--address", default=None, help="Listen address (default: metrics.address).")
@click.option("--port", type=int, default=None, help="Port (default: metrics.port).")
@click.pass_obj
def metrics_serve(obj: CliContext, address: str | None, port: int | None) -> None:
    """Serve /metrics, /healthz and /readyz in the foreground until interrupted.

    With PROMETHEUS_MULTIPROC_DIR set, it shows what every process writing into that
    directory counted (`ingest poll` runs included). The directory is not cleared.
    """
    from ingest import health, metrics  # noqa: PLC0415 - see above
    from ingest.metrics_http import start_server  # noqa: PLC0415 - keeps --help fast

    settings = obj.settings()
    if metrics.multiprocess_dir() is None:
        click.echo(f"note: {metrics.MULTIPROC_ENV} is not set: only this process counts", err=True)
    port = settings.metrics.port if port is None else port
    server = start_server(settings, address or settings.metrics.address, port)
    host, bound = server.server_address[:2]
    click.echo(f"serving http://{host!s}:{bound}/metrics", err=True)
    stop = threading.Event()
    try:
        while not stop.wait(health.LIVENESS_TICK):
            health.touch()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
