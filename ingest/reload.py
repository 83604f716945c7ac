"""Settings that follow their files: reloaded when the config or an account file changes.

A running worker asks :meth:`ConfigWatcher.current` before each dispatch and poll. At most
once per ``dispatch_interval`` it compares a stat fingerprint of the config file and every
file in ``accounts_dir`` (no file is read unless one changed). A changed set is loaded and
validated whole: when it is good it replaces the settings (``config.reloaded``), when it
is not, the problems are logged (``config.reload_failed``, each naming file and key) and
the last good settings stay in force until the files change again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog

from ingest.accounts_dir import signature
from ingest.config import Settings
from ingest.config_load import load_settings
from ingest.errors import ConfigError

log = structlog.get_logger("ingest.reload")

RESTART_KEYS = ("redis_url", "storage", "dispatch_interval", "max_poll_seconds")
"""Keys read once when a worker or beat starts (connections, Celery's own settings): a
reload keeps the values in force and logs ``config.restart_needed``."""


class ConfigWatcher:
    """The current settings of one config file (and its accounts directory)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._file = Path(settings.source)
        self._watching = self._file.is_file()
        self._seen = self._signature() if self._watching else ()
        self._checked = clock()

    def _signature(self) -> tuple[object, ...]:
        return signature(self._file, self._settings.accounts_dir)

    def current(self, *, force: bool = False) -> Settings:
        """The settings in force; re-checked when ``dispatch_interval`` passed (or ``force``)."""
        if not self._watching:
            return self._settings
        now = self._clock()
        if not force and now - self._checked < self._settings.dispatch_interval:
            return self._settings
        self._checked = now
        seen = self._signature()
        if seen != self._seen:
            self._seen = seen
            self._reload()
        return self._settings

    def _reload(self) -> None:
        try:
            new = load_settings(self._file)
        except ConfigError as err:
            log.error("config.reload_failed", source=str(self._file), problems=err.problems)
            return
        old = self._settings
        names, new_names = {a.name for a in old.accounts}, {a.name for a in new.accounts}
        log.info(
            "config.reloaded",
            source=str(self._file),
            accounts=len(new.accounts),
            added=sorted(new_names - names),
            removed=sorted(names - new_names),
        )
        stale = [k for k in RESTART_KEYS if getattr(old, k) != getattr(new, k)]
        if stale:
            log.warning("config.restart_needed", keys=stale, kept="the values in force")
        self._settings = new.model_copy(update={k: getattr(old, k) for k in stale})
        self._seen = self._signature()  # the accounts directory itself may have moved
