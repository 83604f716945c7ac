"""Golden documents: the exact JSON of representative corpus messages is pinned.

A change in any of them is a change of the stored output: bump PARSER_VERSION (and
SCHEMA_VERSION if the shape changed), then regenerate with
``INGEST_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mail_samples import corpus, crlf, parse

from ingest.parse import dump_document

GOLDEN = Path(__file__).parent / "golden"
MESSAGES = {
    "dingus-fish": "msg_07.txt.eml",  # a GIF attachment, folded headers
    "bounce-mailbox-full": "bounce_mailbox-full.eml",  # a DSN bounce, auto-submitted
    "phishing": "mail_test_15.eml",  # display name with another address, look-alike Reply-To
    "mailing-list-bounce": "msg_16.txt.eml",  # report without report-type, List-Id
    "html-only": "mail_test_4.eml",  # text_from_html, reply split of the rendering
    "signature": "relative.eml",  # text and HTML alternatives, a "-- " signature
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_golden_document(name: str) -> None:
    """The stored document (CRLF input, as POP3 delivers it) equals the golden one.

    Goldens are indented for review; the stored bytes are the canonical dump of the same value.
    """
    stored = json.loads(
        dump_document(parse(crlf(corpus(MESSAGES[name])), ticket_pattern=r"#(\d+)"))
    )
    path = GOLDEN / f"{name}.json"
    if os.environ.get("INGEST_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        text = json.dumps(stored, ensure_ascii=False, sort_keys=True, indent=1)
        path.write_text(text + "\n", encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == stored
