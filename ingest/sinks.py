"""Where events go: a Redis Stream, an HTTPS webhook (HMAC-signed) or a Celery task.

Each sink sends one event or raises :class:`DeliveryError`; the outbox decides about
retries. The Celery sink gets its sender from ``workers/`` (this package never imports
Celery): without one, celery sinks are left to the workers.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import redis

from ingest.errors import TransientError
from ingest.events import EVENT_TYPE, Event
from ingest.events_config import (
    CelerySinkConfig,
    RedisStreamSinkConfig,
    SinkConfig,
    WebhookSinkConfig,
)
from ingest.secret_refs import read_secret

if TYPE_CHECKING:
    import httpx

SIGNATURE_HEADER = "X-Ingest-Signature"
TIMESTAMP_HEADER = "X-Ingest-Timestamp"
EVENT_ID_HEADER = "X-Ingest-Event-Id"
USER_AGENT = "ingest-events/1"

TaskSender = Callable[[str, str, dict[str, Any]], None]
"""``(task name, queue, event envelope)``: sends one Celery task (``workers/`` provides it)."""


class DeliveryError(TransientError):
    """A sink did not take an event; it stays in the outbox and is sent again later."""


class Sink(Protocol):
    """One destination of events."""

    @property
    def name(self) -> str: ...

    @property
    def timeout(self) -> float:
        """The longest one ``send`` can take, seconds (sizes the claim lease)."""
        ...

    def send(self, event: Event) -> None: ...

    def probe(self) -> str:
        """Reach the destination without sending an event: what it answered, or
        :class:`DeliveryError` (``ingest check``)."""
        ...

    def close(self) -> None: ...


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 over ``TIMESTAMP.BODY`` (what consumers recompute)."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class RedisStreamSink:
    """XADD each event (fields ``id``, ``type``, ``account``, ``event``) to one stream."""

    def __init__(self, name: str, client: redis.Redis, cfg: RedisStreamSinkConfig) -> None:
        self.name = name
        self.timeout = 10.0
        self.client = client
        self.cfg = cfg

    def send(self, event: Event) -> None:
        fields = {"id": event.id, "type": EVENT_TYPE, "account": event.account, "event": event.body}
        try:
            self.client.xadd(self.cfg.stream, fields, maxlen=self.cfg.maxlen, approximate=True)  # type: ignore[arg-type]
        except redis.RedisError as err:
            raise DeliveryError(f"redis stream {self.cfg.stream}: {err}") from err

    def probe(self) -> str:
        """The key must be a stream or absent: XADD to a key of another type always fails."""
        stream = self.cfg.stream
        try:
            kind = self.client.type(stream)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind == "none":
                return f"stream {stream}: Redis reachable, the stream is made by the first event"
            if kind != "stream":
                raise DeliveryError(
                    f"redis stream {stream}: the key holds a {kind}, not a stream; "
                    "every XADD would fail (name another stream)"
                )
            return f"stream {stream}: Redis reachable, {self.client.xlen(stream)} entries"
        except redis.RedisError as err:
            raise DeliveryError(f"redis stream {stream}: {err}") from err

    def close(self) -> None:
        if self.cfg.url is not None:
            self.client.close()


class WebhookSink:
    """POST the CloudEvent (structured mode) with a timestamped HMAC-SHA256 signature."""

    def __init__(self, name: str, cfg: WebhookSinkConfig, secret: str) -> None:
        import httpx  # noqa: PLC0415 - ~0.2 s to import; only webhook sinks need it

        self.name = name
        self.timeout = cfg.timeout
        self.url = cfg.url
        self._secret = secret.encode()
        tls = ssl.create_default_context()
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.ca_file is not None:
            tls.load_verify_locations(cafile=str(cfg.ca_file))
        self.http: httpx.Client = httpx.Client(
            verify=tls, timeout=cfg.timeout, follow_redirects=False
        )

    def headers(self, event: Event, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        return {
            "Content-Type": "application/cloudevents+json; charset=utf-8",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: event.id,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(self._secret, stamp, body),
        }

    def send(self, event: Event) -> None:
        import httpx  # noqa: PLC0415 - already loaded by __init__

        body = event.body.encode()
        try:
            reply = self.http.post(self.url, content=body, headers=self.headers(event, body))
        except httpx.HTTPError as err:
            raise self._unreachable(err) from err
        if not reply.is_success:
            raise DeliveryError(f"HTTP {reply.status_code} {reply.reason_phrase}")

    def probe(self) -> str:
        """A HEAD request: name resolution, connection and TLS (with the configured CA) are
        what a POST needs too; any HTTP answer shows the endpoint is there. No event sent."""
        import httpx  # noqa: PLC0415 - already loaded by __init__

        try:
            reply = self.http.head(self.url)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from err
        scheme = "HTTPS" if self.url.startswith("https:") else "plain HTTP"
        return f"reachable over {scheme}; HEAD answered HTTP {reply.status_code} (no event sent)"

    def _unreachable(self, err: Exception) -> DeliveryError:
        """The error without the URL: it may carry a token."""
        detail = str(err).replace(self.url, "<url>") or "no detail"
        return DeliveryError(f"{type(err).__name__}: {detail}")

    def close(self) -> None:
        self.http.close()


class CelerySink:
    """Send task ``cfg.task`` to ``cfg.queue`` with the CloudEvent (a dict) as its argument."""

    def __init__(self, name: str, cfg: CelerySinkConfig, sender: TaskSender) -> None:
        self.name = name
        self.timeout = 10.0
        self.cfg = cfg
        self.sender = sender

    def send(self, event: Event) -> None:
        try:
            self.sender(self.cfg.task, self.cfg.queue, event.envelope())
        except Exception as err:
            raise DeliveryError(f"celery task {self.cfg.task}: {err}") from err

    def probe(self) -> str:
        return f"task {self.cfg.task} on queue {self.cfg.queue}, through the workers' broker"

    def close(self) -> None:
        return


def open_sink(
    cfg: SinkConfig,
    client: redis.Redis,
    where: str,
    sender: TaskSender | None,
) -> Sink | None:
    """The sink for ``cfg``; None for a celery sink when no sender was given.

    Raises ConfigError (naming ``where``, the sink's place in the config, never the value)
    when a secret is missing.
    """
    name = cfg.sink_name
    if isinstance(cfg, RedisStreamSinkConfig):
        if cfg.url is not None:
            client = redis.Redis.from_url(cfg.url, socket_timeout=10, socket_connect_timeout=5)
        return RedisStreamSink(name, client, cfg)
    if isinstance(cfg, WebhookSinkConfig):
        secret = read_secret(where, "secret", cfg.secret_env, cfg.secret_file)
        return WebhookSink(name, cfg, secret)
    return None if sender is None else CelerySink(name, cfg, sender)
