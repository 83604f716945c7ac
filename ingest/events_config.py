"""Validated configuration of event sinks (Redis Stream, HTTPS webhook, Celery task).

A sink list sits at the top level (``events:``, the default for every account) and may be
given per account (``accounts[].events:``, which replaces the default; ``[]`` turns events
off for that account). Secrets are referenced (``secret_env``/``secret_file``), never inline.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


class _SinkBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        default="", pattern=r"^$|^[a-z0-9_-]{1,32}$", description="default: the sink's type"
    )
    max_attempts: int = Field(default=10, ge=1, le=1000, description="then dead-lettered")
    retry_delay: float = Field(default=5.0, gt=0, description="seconds before the 1st retry")
    retry_delay_max: float = Field(default=900.0, gt=0, description="cap of the backoff")

    @property
    def sink_name(self) -> str:
        """The sink's identity in Redis keys, logs and status: ``name`` or its type."""
        return self.name or str(getattr(self, "type", "sink"))


class RedisStreamSinkConfig(_SinkBase):
    """XADD each event to a Redis Stream (consumer groups read it)."""

    type: Literal["redis_stream"]
    stream: str = Field(default="ingest:events", min_length=1, max_length=512)
    url: str | None = Field(default=None, pattern=r"^(redis|rediss|unix)://")
    maxlen: int | None = Field(default=None, ge=1, description="approximate trim (MAXLEN ~)")


class WebhookSinkConfig(_SinkBase):
    """POST each event (signed with HMAC-SHA256) to an HTTPS endpoint."""

    type: Literal["webhook"]
    url: str
    secret_env: str | None = None
    secret_file: Path | None = None
    ca_file: Path | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)
    allow_plaintext: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict) and "secret" in data:
            raise ValueError(
                "inline 'secret' is not accepted: use secret_env (an environment variable "
                "name) or secret_file (a path)"
            )
        return data

    @model_validator(mode="after")
    def _check(self) -> WebhookSinkConfig:
        parsed = urlparse(self.url)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise ValueError(f"url: expected https://HOST/..., got {self.url!r}")
        if parsed.scheme == "http" and not self.allow_plaintext:
            raise ValueError(
                "url: http:// would send events unencrypted; use https, or set "
                "allow_plaintext: true to accept that risk"
            )
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("exactly one of secret_env or secret_file is required")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {self.ca_file} is not a readable file")
        return self


class CelerySinkConfig(_SinkBase):
    """Send a Celery task by name (through the workers' broker) with the event as argument."""

    type: Literal["celery"]
    task: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    queue: str = Field(default="celery", min_length=1, max_length=200)

    @model_validator(mode="after")
    def _not_our_queue(self) -> CelerySinkConfig:
        if self.queue == "ingest":
            raise ValueError(
                "queue: 'ingest' is the queue of ingest's own workers, which do not know "
                "downstream tasks; name the queue your consumers read (default: celery)"
            )
        return self


SinkConfig = Annotated[
    RedisStreamSinkConfig | WebhookSinkConfig | CelerySinkConfig, Field(discriminator="type")
]


def _unique_names(sinks: tuple[SinkConfig, ...]) -> tuple[SinkConfig, ...]:
    """Two sinks of one list must differ in name (their pending events are kept apart)."""
    names = [s.sink_name for s in sinks]
    dupes = sorted(n for n, seen in Counter(names).items() if seen > 1)  # not O(n^2)
    if dupes:
        raise ValueError(
            f"sink names must be unique; repeated: {', '.join(dupes)} (set name: on each)"
        )
    return sinks


SinkList = Annotated[tuple[SinkConfig, ...], AfterValidator(_unique_names)]
"""A list of sinks, as ``events:`` takes it (top level, or per account)."""
