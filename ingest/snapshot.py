"""The note a kept mailbox's poll leaves, so the next poll of an unchanged one does nothing.

In keep mode (``delete: never``) a mailbox can hold 100,000 messages the ledger knows.
A poll that committed with every listed message accounted for writes a note in the
ledger: the mailbox's fingerprint (STAT and UIDL listing), the ledger's size, the settings
that decide what is left on the server, and its counts. The next poll that finds the same
fingerprint, ledger size and settings reports those counts and skips the per-UIDL lookup.
"""

from __future__ import annotations

import json
from typing import Any

from ingest.errors import LockLost, TransientError
from ingest.interfaces import Ledger
from ingest.model import PollPlan, PollReport

NOTED = ("listed", "already_stored", "quarantined", "oversize")  # counts the note keeps


def _settings(plan: PollPlan) -> str:
    """The settings that decide what a poll leaves on the server (besides the ledger)."""
    return f"{plan.max_message_size}:{plan.oversize}"


def unchanged(ledger: Ledger, plan: PollPlan, fingerprint: str, report: PollReport) -> bool:
    """The mailbox is as the last completed poll left it (same STAT and UIDL listing,
    ledger not written since, same settings): then ``report`` gets that poll's counts."""
    note, size = ledger.snapshot()
    try:
        known = json.loads(note) if note else {}
    except ValueError:
        return False
    if not isinstance(known, dict):
        return False
    if (known.get("fingerprint"), known.get("records")) != (fingerprint, size):
        return False
    if known.get("settings") != _settings(plan):
        return False  # e.g. a larger max_message_size: what was left may be fetched now
    for name in NOTED:
        setattr(report, name, int(known.get(name, 0)))
    return True


def remember(
    ledger: Ledger, plan: PollPlan, fingerprint: str, report: PollReport, *,
    records: int | None, log: Any,
) -> None:  # fmt: skip
    """After a committed keep-mode poll: what the next poll of the same mailbox would find,
    where what this poll stored counts as already stored. ``records`` is the ledger's size,
    or None when this poll wrote to the ledger (it is then read back)."""
    note: dict[str, object] = {name: getattr(report, name) for name in NOTED}
    note["already_stored"] = report.already_stored + report.stored
    note.update(fingerprint=fingerprint, settings=_settings(plan))
    try:
        note["records"] = ledger.snapshot()[1] if records is None else records
        ledger.remember(json.dumps(note))
    except (LockLost, TransientError) as err:  # committed already; only the shortcut is lost
        log.info("mailbox.snapshot_not_kept", error=str(err))
