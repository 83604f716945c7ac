"""The error hierarchy, grouped by what the caller must do rather than by origin.

- ``ConfigError``: the configuration is wrong; fail fast, never retry.
- ``TransientError``: the only kind a task retries (connection, timeout, S3 5xx or
  throttling, Redis unavailable, POP3 ``-ERR [IN-USE]``/``[SYS/TEMP]``/``[LOGIN-DELAY]``).
- ``PermanentError``: retrying will not help (auth refused, protocol violations,
  S3 access denied, a stored object that does not match its hash); alert and stop.

Adapters translate library exceptions at their edge and chain them with ``from``.
A bad *message* is never an exception: it becomes a recorded defect.
"""

from __future__ import annotations


class IngestError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(IngestError):
    """The configuration is invalid; the message names file, key and expectation."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class TransientError(IngestError):
    """Worth retrying later: the next poll (or a task retry) may succeed."""


class PermanentError(IngestError):
    """Retrying will not help until someone changes something."""


class AuthError(PermanentError):
    """The server refused our credentials."""


class ProtocolError(PermanentError):
    """The server broke the protocol (bad reply, duplicate UIDLs, ...)."""


class SecurityError(PermanentError):
    """A security requirement could not be met (no STLS, plaintext password, ...)."""


class StorageError(PermanentError):
    """The store refused us for good (access denied, no such bucket, hash mismatch)."""


class LockLost(TransientError):
    """Our per-account lock expired or was taken over: stop before marking or deleting."""
