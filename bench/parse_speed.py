"""Parse throughput (issue 5): our parser against the stdlib ``policy.default`` idiom, in-process.

    .venv/bin/python -m bench.parse_speed            # ../shared/corpus, 5 rounds
    .venv/bin/python -m bench.parse_speed --rounds 9 --corpus DIR [--corpus DIR ...]

Every ``.eml`` file under the corpus directories (default ``../shared/corpus``), with CRLF
line ends as a POP3 client receives them, is handed in turn to two contenders, round-robin,
in one process:

- ours: ``parse_message`` (headers, addresses, bodies, attachments with hashes, TNEF,
  calendars, HTML rendering, reply split, classification) plus ``dump_document``, the bytes
  the pipeline stores;
- the idiom: ``email.message_from_bytes(raw, policy=email.policy.default)``, then
  ``get_body(("plain", "html")).get_content()`` and ``get_content()`` of every part from
  ``iter_attachments()``, an exception counted (and the message's time kept) when it raises.

Each round times every message once per contender; the report gives the median round, the
throughput ratio (the idiom's time / ours) against the issue's target of 5x, and how many
messages raised in each. Exit status 1 if ours raised or left a ``parse_error``; a missed
target is reported, not an error. Nothing here asserts timing in a test.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.corpus import as_pop3
from ingest.parse import dump_document, parse_message

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
TARGET = 5.0


def ours(raw: bytes) -> bool:
    """Our document for one message; True if it is clean (no parse_error)."""
    sha = hashlib.sha256(raw).hexdigest()
    doc = parse_message(raw, account="bench", uidl="1", sha256=sha, raw_key="raw/x.eml")
    dump_document(doc)
    return doc["parse_error"] is None


def idiom(raw: bytes) -> bool:
    """The stdlib idiom: parse with policy.default, read the body and every attachment."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
    if body is not None:
        body.get_content()
    for part in message.iter_attachments():  # type: ignore[attr-defined]
        part.get_content()
    return True


def load(dirs: list[Path]) -> list[bytes]:
    """Every ``.eml`` message under the directories, as a POP3 client receives it."""
    files = sorted(path for folder in dirs for path in folder.rglob("*.eml"))
    return [as_pop3(path.read_bytes()) for path in files]


def one_round(step: Callable[[bytes], bool], messages: list[bytes]) -> tuple[float, int]:
    """(seconds for every message, how many raised or were not clean)."""
    bad, spent = 0, 0.0
    for raw in messages:
        start = time.perf_counter()
        try:
            clean = step(raw)
        except Exception:  # noqa: BLE001 - counted: the idiom raises on some real mail
            clean = False
        spent += time.perf_counter() - start
        bad += not clean
    return spent, bad


def measure(messages: list[bytes], rounds: int) -> dict[str, tuple[float, int]]:
    """Median seconds per round and the failures, per contender, rounds interleaved."""
    times: dict[str, list[float]] = {"ours": [], "idiom": []}
    failures = {"ours": 0, "idiom": 0}
    for _ in range(rounds):
        for name, step in (("ours", ours), ("idiom", idiom)):
            spent, bad = one_round(step, messages)
            times[name].append(spent)
            failures[name] = bad
    return {name: (statistics.median(times[name]), failures[name]) for name in times}


def report(messages: list[bytes], results: dict[str, tuple[float, int]]) -> str:
    size = sum(len(raw) for raw in messages)
    lines = [
        f"parse throughput: {len(messages)} messages, {size / 1e6:.1f} MB (CRLF)",
        "",
        "| contender | median round | msg/s | MB/s | failed |",
        "|---|---|---|---|---|",
    ]
    for name, (spent, bad) in results.items():
        lines.append(
            f"| {name} | {spent:.3f} s | {len(messages) / spent:.0f} | "
            f"{size / 1e6 / spent:.1f} | {bad} |"
        )
    ratio = results["idiom"][0] / results["ours"][0]
    verdict = "met" if ratio >= TARGET else "missed"
    lines += ["", f"ours vs idiom: {ratio:.2f}x throughput (target >= {TARGET:.0f}x, {verdict})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", type=Path, action="append", help="directory of .eml files")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    messages = load(args.corpus or [DEFAULT_CORPUS])
    results = measure(messages, max(1, args.rounds))
    print(report(messages, results))
    return 1 if results["ours"][1] else 0


if __name__ == "__main__":
    sys.exit(main())
