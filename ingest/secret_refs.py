"""Secrets the configuration refers to (an environment variable or a file), read when used.

Errors name the config key and the variable or file, never the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from ingest.config import AccountConfig
from ingest.errors import ConfigError


def read_secret(where: str, name: str, env: str | None, file: Path | None) -> str:
    """One secret from ``{name}_env`` or ``{name}_file``; errors name the key, never the value."""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{where}.{name}_env: environment variable {env} is not set")
    elif file is not None:
        try:
            value = file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as err:
            raise ConfigError(f"{where}.{name}_file: cannot read {file}: {err.strerror}") from None
    else:
        raise ConfigError(f"{where}: {name}_env or {name}_file is required")
    if not value or any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{where}: the {name} is empty or contains CR, LF or NUL")
    return value


def resolve_password(account: AccountConfig, source: str = "config") -> str:
    """Read the account's password from its env var or file; never logged, never stored."""
    where = f"{source}: accounts({account.name})"
    return read_secret(where, "password", account.password_env, account.password_file)
