"""Compare our documents with the stdlib's email parser (policy.default) on .eml files.

    .venv/bin/python scripts/compare-stdlib.py DIR [DIR ...]

For each message: our subject, first From address and attachment count against what
``email.message_from_bytes(raw, policy=policy.default)`` gives (subject header, first
address of From, ``len(list(iter_attachments()))``; ours counts the attachments whose
``parent`` is null: those of the message itself). Prints one line per disagreement.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import sys
from pathlib import Path

from ingest.parse import parse_message


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def stdlib_view(raw: bytes) -> tuple[str | None, str | None, int | str]:
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        subject = msg.get("subject")
        subject = None if subject is None else " ".join(str(subject).split())
        try:
            sender = (
                msg["from"].addresses[0].addr_spec
                if msg["from"] and msg["from"].addresses
                else None
            )
        except Exception as exc:  # noqa: BLE001
            sender = f"!{type(exc).__name__}"
        count = len(list(msg.iter_attachments()))
        return subject, sender, count
    except Exception as exc:  # noqa: BLE001
        return None, None, f"!{type(exc).__name__}"


def ours_view(raw: bytes) -> tuple[str | None, str | None, int, dict]:
    doc = parse_message(
        raw, account="a", uidl="u", sha256=hashlib.sha256(raw).hexdigest(), raw_key="r"
    )
    subject = None if doc["subject"] is None else " ".join(doc["subject"].split())
    sender = doc["from"][0]["address"] if doc["from"] else None
    count = sum(1 for a in doc["attachments"] if a["parent"] is None)
    return subject, sender, count, doc


def main(dirs: list[str]) -> int:
    files = sorted(
        p
        for d in dirs
        for p in Path(d).rglob("*")
        if p.is_file() and p.suffix in (".eml", ".txt", ".msg", "") and p.name != "README.md"
    )
    differ = errors = 0
    for path in files:
        raw = path.read_bytes()
        s_subj, s_from, s_count = stdlib_view(raw)
        o_subj, o_from, o_count, doc = ours_view(raw)
        if doc["parse_error"]:
            errors += 1
            say(f"{path}: parse_error {doc['parse_error']}")
        notes = []
        if s_subj != o_subj:
            notes.append(f"subject ours={o_subj!r:.80} stdlib={s_subj!r:.80}")
        if s_from != o_from:
            notes.append(f"from ours={o_from!r} stdlib={s_from!r}")
        if s_count != o_count:
            notes.append(f"attachments ours={o_count} stdlib={s_count}")
        if notes:
            differ += 1
            say(f"{path.name}: " + "; ".join(notes))
    say(f"{len(files)} messages, {differ} differ, {errors} parse errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
