"""Index rows, their keys and partitions, search filters and verify's pacing (no sockets)."""

from __future__ import annotations

import hashlib
import json

import pytest

from ingest import index, keys
from ingest.parse import parse_message
from ingest.search import Query
from ingest.verify_state import Pacer, Stop

RAW = (
    b"From: Alice Example <alice@example.com>\r\nTo: bob@example.com\r\n"
    b"Cc: carol@example.org\r\nSubject: Quarterly report\r\nMessage-ID: <q1@example.com>\r\n"
    b"Date: Tue, 31 Dec 2024 23:30:00 -0200\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
    b"hi\r\n--b\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="r.pdf"\r\n\r\n%PDF-1.4\r\n--b--\r\n'
)
SHA = hashlib.sha256(RAW).hexdigest()


def _doc(raw: bytes = RAW) -> dict:
    sha = hashlib.sha256(raw).hexdigest()
    return parse_message(raw, account="support", uidl="U1", sha256=sha,
                         raw_key=keys.raw_key("p", "support", sha), prefix="p")  # fmt: skip


def test_row_holds_the_searchable_fields_of_the_document() -> None:
    """A row carries identity, keys, addresses, subject, size, attachments and flags."""
    row = index.build_row(_doc(), "p")
    assert row["account"] == "support" and row["uidl"] == "U1" and row["sha256"] == SHA
    assert row["raw_key"] == f"p/support/raw/{SHA[:2]}/{SHA}.eml"
    assert row["json_key"] == f"p/support/json/{SHA[:2]}/{SHA}.json"
    assert row["message_id"] == "q1@example.com" and row["date"] == "2025-01-01T01:30:00Z"
    assert (row["from"], row["from_name"]) == (["alice@example.com"], "Alice Example")
    assert (row["to"], row["cc"]) == (["bob@example.com"], ["carol@example.org"])
    assert row["subject"] == "Quarterly report" and row["size"] == len(RAW)
    assert [a["filename"] for a in row["attachments"]] == ["r.pdf"]
    assert row["flags"]["parse_error"] is False


def test_row_key_is_partitioned_by_the_utc_day_of_the_date() -> None:
    """The day is the Date header's UTC day (here the next day), in hive-style partitions."""
    assert index.row_key(_doc(), "p") == f"p/index/account=support/day=2025-01-01/{SHA}.ndjson"
    assert keys.day_of_index_key(index.row_key(_doc(), "")) == "2025-01-01"


@pytest.mark.parametrize("date", [None, "1969-12-31T23:59:59Z", "garbage"])
def test_undated_and_pre_1970_mail_goes_to_1970_01_01(date: str | None) -> None:
    """Messages without a usable Date share one partition instead of failing."""
    assert index.day_of({"date": date}) == keys.UNDATED_DAY


def test_row_bytes_are_one_deterministic_ndjson_line() -> None:
    """The same document always gives the same single line, so rebuilds are identical."""
    body = index.row_bytes(index.build_row(_doc(), "p"))
    assert body == index.row_bytes(index.build_row(_doc(), "p"))
    assert body.endswith(b"\n") and body.count(b"\n") == 1
    assert json.loads(body)["sha256"] == SHA


def test_query_matches_every_given_criterion() -> None:
    """Search criteria combine with AND; text matches ignore case; Message-ID takes <>."""
    row = index.build_row(_doc(), "p")
    assert Query(("support",), sender="ALICE", words=("report",)).matches(row)
    assert Query(("support",), recipient="carol@", has_attachment=True).matches(row)
    assert Query(("support",), message_id="<q1@example.com>").matches(row)
    assert not Query(("support",), sender="alice", words=("missing",)).matches(row)
    assert not Query(("support",), has_attachment=False).matches(row)
    assert Query(("x",), since="2025-01-01", until="2025-01-01").day_wanted("2025-01-01")
    assert not Query(("x",), since="2025-01-02").day_wanted("2025-01-01")


def test_pacer_spaces_reads_and_stops_at_the_limit() -> None:
    """At rate 4/s reads are 0.25 s apart; the read after the limit raises Stop."""
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(4, 3, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    assert slept == [0.25, 0.25]
    with pytest.raises(Stop):
        pacer.wait()
