"""Every message in tests/corpus-extra (other projects' test mail) gives a sound document."""

from __future__ import annotations

from pathlib import Path

import pytest
from mail_samples import assert_sound, crlf, parse

EXTRA = Path(__file__).resolve().parents[1] / "corpus-extra"
EXTRA_FILES = sorted(EXTRA.rglob("*.eml"))


def test_the_extra_corpus_is_there() -> None:
    """The extra corpus ships with the repository (so this test can never pass vacuously)."""
    assert len(EXTRA_FILES) >= 15


@pytest.mark.parametrize("line_ends", ["lf", "crlf"])
@pytest.mark.parametrize("path", EXTRA_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_extra_message_parses_to_sound_json(path: Path, line_ends: str) -> None:
    """Each extra message, LF or CRLF, yields a schema-valid document without parse_error."""
    raw = path.read_bytes() if line_ends == "lf" else crlf(path.read_bytes())
    doc = parse(raw)
    assert_sound(doc)
    assert doc["parse_error"] is None


def test_eight_bit_boundary_still_splits_the_body() -> None:
    """A boundary with raw UTF-8 bytes matches the body's lines (the stdlib's reading too)."""
    doc = parse((EXTRA / "mikel-mail" / "error_emails_utf8_multipart_boundary.eml").read_bytes())
    assert doc["html"] == "Hello, world!"
    assert doc["attachments"] == []
    assert "StartBoundaryNotFoundDefect" not in doc["defects"]
