"""The configuration's schema: immutable pydantic models, validated once at start-up.

Reading the file and locating problems by key is :mod:`ingest.config_load`. Secrets are
referenced (``*_env``, ``*_file``), never inlined, and only read by
:func:`ingest.secret_refs.read_secret` when a session is about to log in.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ingest.errors import ConfigError
from ingest.events_config import SinkList
from ingest.keys import RESERVED_ACCOUNT_NAMES
from ingest.storage_options import StorageOptions, delete_mode, merge_options, option_problems

_INLINE_SECRETS = ("password", "secret", "token")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StorageConfig(StorageOptions):
    """Where objects go: ``s3://BUCKET/prefix`` or ``file:///abs/dir``."""

    url: str = Field(description="s3://BUCKET[/prefix] or file:///absolute/dir")
    endpoint_url: str | None = Field(
        default=None, description="any S3-compatible endpoint (MinIO, Ceph, R2); omit for AWS"
    )
    kms_endpoint_url: str | None = Field(
        default=None, description="KMS endpoint for the start-up key check (default: endpoint_url)"
    )
    region: str | None = Field(default=None, description="region name (default: boto3's)")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="bucket in the path or the host name; path suits most MinIO"
    )
    timeout: float = Field(default=60.0, gt=0, description="connect and read timeout, seconds")
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="botocore standard retries per request, with jitter"
    )
    index: bool = Field(default=False, description="write one index row per message (archive)")

    @model_validator(mode="after")
    def _check_url(self) -> StorageConfig:
        parsed = urlparse(self.url)
        if parsed.scheme == "s3" and parsed.netloc:
            return self
        if parsed.scheme == "file" and parsed.path.startswith("/") and not parsed.netloc:
            return self
        raise ValueError("expected s3://BUCKET[/prefix] or file:///absolute/dir")

    @property
    def scheme(self) -> str:
        return urlparse(self.url).scheme

    @property
    def bucket(self) -> str:
        return urlparse(self.url).netloc

    @property
    def prefix(self) -> str:
        """Key prefix inside the bucket (s3) or directory (file), without slashes around it."""
        return urlparse(self.url).path.strip("/") if self.scheme == "s3" else ""

    @property
    def directory(self) -> Path:
        return Path(urlparse(self.url).path)


class OAuth2Config(_Frozen):
    """Where an XOAUTH2 account gets its access tokens (refresh-token grant)."""

    token_url: str = Field(pattern=r"^https?://", description="the provider's token endpoint")
    client_id: str = Field(min_length=1, description="the OAuth2 client (application) id")
    client_secret_env: str | None = Field(
        default=None, description="environment variable holding the client secret (optional)"
    )
    client_secret_file: Path | None = Field(
        default=None, description="file holding the client secret (optional)"
    )
    refresh_token_env: str | None = Field(
        default=None, description="environment variable holding the refresh token"
    )
    refresh_token_file: Path | None = Field(
        default=None, description="file holding the refresh token (one of the two is required)"
    )
    scope: str | None = Field(default=None, description="scope requested with the token")
    timeout: float = Field(default=20.0, gt=0, description="token request timeout, seconds")

    @model_validator(mode="after")
    def _check(self) -> OAuth2Config:
        if (self.refresh_token_env is None) == (self.refresh_token_file is None):
            raise ValueError("exactly one of refresh_token_env or refresh_token_file is required")
        if self.client_secret_env is not None and self.client_secret_file is not None:
            raise ValueError("give client_secret_env or client_secret_file, not both")
        return self


class AccountConfig(_Frozen):
    """One POP3 mailbox to poll."""

    name: str = Field(
        pattern=r"^[a-z0-9_-]+$",
        max_length=64,
        description="unique; part of every key (`schedule` is reserved)",
    )
    host: str = Field(min_length=1, description="the POP3 server")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="default: 995 for tls, 110 otherwise"
    )
    security: Literal["tls", "starttls", "plain"] = Field(
        default="tls",
        description="tls: implicit TLS; starttls: STLS required; plain: no encryption",
    )
    ca_file: Path | None = Field(
        default=None, description="extra CA certificate(s), trusted besides the system CAs"
    )
    username: str = Field(min_length=1, description="login name")
    password_env: str | None = Field(
        default=None, description="environment variable holding the password"
    )
    password_file: Path | None = Field(
        default=None, description="file holding the password (trailing newline ignored)"
    )
    auth: Literal["password", "apop", "sasl_plain", "xoauth2"] = Field(
        default="password", description="USER/PASS, APOP, AUTH PLAIN or AUTH XOAUTH2"
    )
    xoauth2_style: Literal["two_step", "one_line"] = Field(
        default="two_step", description="token after the server's + (Microsoft) or on AUTH line"
    )
    oauth2: OAuth2Config | None = Field(
        default=None, description="where XOAUTH2 tokens come from (required for auth: xoauth2)"
    )
    allow_plaintext: bool = Field(default=False, description="must be true for security: plain")
    allow_private_network: bool = Field(
        default=False, description="let a host name resolve to a private or loopback address"
    )
    tls_fingerprint: str | None = Field(
        default=None, pattern=r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$",
        description="SHA-256 of the server certificate, hex (colons allowed)",
    )  # fmt: skip
    delete: str = Field(
        default="after_store",
        description="after_store (DELE once stored and verified) | never | after_days:N",
    )
    storage_options: StorageOptions | None = Field(
        default=None, description="per-account overrides of the storage write options"
    )
    interval: int = Field(default=60, ge=1, description="seconds between polls")
    ticket_pattern: str | None = Field(
        default=None, description="regex; its first group from the subject becomes ticket_ref"
    )
    max_message_size: int | None = Field(
        default=None, ge=1, description="bytes (LIST size); larger messages stay on the server"
    )
    oversize: Literal["leave", "store_raw"] = Field(
        default="leave",
        description="above max_message_size: leave it on the server, or store it raw with a "
        "headers-only JSON and delete it as usual",
    )
    timeout: float = Field(default=60.0, gt=0, description="seconds per socket read")
    events: SinkList | None = Field(default=None, description="event sinks; None: the default")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _INLINE_SECRETS:
                if key in data:
                    raise ValueError(
                        f"inline '{key}' is not accepted: use password_env (an environment "
                        "variable name) or password_file (a path)"
                    )
        return data

    @field_validator("delete", mode="before")
    @classmethod
    def _delete_mode(cls, value: Any) -> str:
        return delete_mode(value)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_ACCOUNT_NAMES:
            raise ValueError(f"{value!r} is reserved (the scheduler's Redis keys); pick another")
        return value

    @property
    def delete_after_days(self) -> int | None:
        """N of ``delete: after_days:N`` (keep on the server N days after storing), else None."""
        _, _, days = self.delete.partition(":")
        return int(days) if days else None

    @model_validator(mode="after")
    def _check(self) -> AccountConfig:
        if self.auth == "xoauth2":
            if self.oauth2 is None:
                raise ValueError(
                    "auth: xoauth2 needs an oauth2 section (token_url, client_id, ...)"
                )
        elif (self.password_env is None) == (self.password_file is None):
            raise ValueError("exactly one of password_env or password_file is required")
        if self.security == "plain" and not self.allow_plaintext:
            raise ValueError(
                "security: plain would send the password unencrypted; use tls or starttls, "
                "or set allow_plaintext: true to accept that risk"
            )
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {self.ca_file} is not a readable file")
        if any(c in self.username for c in "\r\n\0"):
            raise ValueError("username must not contain CR, LF or NUL")
        if self.ticket_pattern is not None:
            try:
                re.compile(self.ticket_pattern)
            except re.error as err:
                raise ValueError(
                    f"ticket_pattern is not a valid regular expression: {err}"
                ) from None
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (995 if self.security == "tls" else 110)


class MetricsConfig(_Frozen):
    """The worker's HTTP endpoint: /metrics, /healthz, /readyz."""

    address: str = Field(default="127.0.0.1", min_length=1, description="listen address")
    port: int = Field(default=9808, ge=0, le=65535, description="0 turns the endpoint off")
    stale_ticks: float = Field(
        default=3, ge=1, description="not ready once the last dispatcher tick is older than "
        "this many dispatch_intervals",
    )  # fmt: skip


class Settings(_Frozen):
    """The whole configuration."""

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="ledger, locks, schedule and Celery broker (maxmemory-policy noeviction)",
    )
    storage: StorageConfig = Field(description="where messages are stored")
    accounts: tuple[AccountConfig, ...] = Field(default=(), description="the POP3 mailboxes")
    ledger_grace_days: float = Field(
        default=7.0, ge=0, description="days to keep ledger entries of vanished UIDLs"
    )
    lock_ttl: float = Field(default=60.0, ge=2, description="seconds; renewed while polling")
    dispatch_interval: float = Field(default=5.0, gt=0, description="beat tick, seconds")
    max_poll_seconds: float = Field(
        default=3600.0, gt=0, description="deadline of one POP3 session; sets task time limits"
    )
    quarantine_after: int = Field(default=3, ge=1, description="failed polls before quarantine")
    store_concurrency: int = Field(
        default=4, ge=1, le=64, description="messages stored at once while RETR goes on"
    )
    parse_max_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="larger messages get a headers-only JSON"
    )
    events: SinkList = Field(default=(), description="event sinks of accounts without their own")
    events_interval: float = Field(default=5.0, gt=0, description="seconds between deliveries")
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig,
        description="the worker's /metrics, /healthz, /readyz endpoint",
    )
    accounts_dir: Path | None = Field(
        default=None,
        description="directory of account files (*.yaml/*.yml, one account or a list each), "
        "merged with accounts; relative to the config file; reloaded by running workers",
    )
    source: str = Field(default="<memory>", exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = [a.name for a in self.accounts]
        dupes = sorted(n for n, seen in Counter(names).items() if seen > 1)  # not O(n^2)
        if dupes:
            raise ValueError(f"account names must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _storage_options(self) -> Settings:
        named = [
            (f"accounts({a.name}).storage_options", self.options_for(a)) for a in self.accounts
        ]
        problems = option_problems(self.storage, named, s3=self.storage.scheme == "s3")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def options_for(self, account: AccountConfig) -> StorageOptions:
        """The account's storage options: ``storage``'s, overridden by the keys it sets."""
        return merge_options(self.storage, account.storage_options)

    def account(self, name: str) -> AccountConfig:
        """The account ``name`` (a scan: ~5 ms among 100,000, once per poll); a miss names
        ten accounts, not all of them."""
        for acc in self.accounts:
            if acc.name == name:
                return acc
        names = [a.name for a in self.accounts[:10]]
        more = len(self.accounts) - len(names)
        known = ", ".join(names) + (f" and {more} more" if more else "") or "none"
        raise ConfigError(f"{self.source}: no account named {name!r} (known: {known})")
