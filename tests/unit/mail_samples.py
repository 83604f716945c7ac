"""Helpers for the parser tests: corpus access, message builders, the document invariants."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from ingest.addresses import is_valid_address
from ingest.parse import dump_document, parse_message

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
CORPUS_FILES = sorted(CORPUS.rglob("*.eml"))
SMALL_CORPUS = [path for path in CORPUS_FILES if path.stat().st_size <= 16_384]
SCHEMA_PATH = ROOT / "ingest" / "schema" / "message.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
ADDRESS_FIELDS = (
    "from", "sender", "reply_to", "to", "cc", "bcc", "delivered_to", "return_path",
)  # fmt: skip
KEYS = {
    "schema_version", "parser_version", "account", "uidl", "sha256", "raw_key", "size",
    "message_id", "in_reply_to", "references", "date", "date_raw", "subject", "thread_subject",
    "ticket_ref", *ADDRESS_FIELDS, "headers", "text", "html", "text_from_html", "reply",
    "attachments", "classification", "defects", "parse_error",
}  # fmt: skip
ATTACHMENT_KEYS = {
    "filename", "filename_safe", "content_type", "sniffed_type", "size", "sha256", "content_id",
    "disposition", "key", "parent", "calendar", "tnef_body",
}  # fmt: skip
UNSAFE_HEADER_CHARS = ("\r", "\n", "\x00", "\u2028")


def parse(raw: bytes, **options: Any) -> dict[str, Any]:
    """Parse with fixed envelope values and the real hash of raw."""
    sha = hashlib.sha256(raw).hexdigest()
    return parse_message(
        raw, account="acct", uidl="UID-1", sha256=sha, raw_key="raw/key.eml", **options
    )


def crlf(raw: bytes) -> bytes:
    """The same message with CRLF line ends, as POP3 delivers it."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def corpus(name: str) -> bytes:
    """The corpus message whose file name ends with name."""
    (path,) = [path for path in CORPUS_FILES if path.name.endswith(name)]
    return path.read_bytes()


def multipart(*parts: bytes, boundary: bytes = b"B", head: bytes = b"") -> bytes:
    """A multipart/mixed message around the given parts (each: headers, blank line, body)."""
    body = b"".join(b"--" + boundary + b"\n" + part + b"\n" for part in parts)
    top = head + b'From: a@example.com\nContent-Type: multipart/mixed; boundary="' + boundary
    return top + b'"\n\n' + body + b"--" + boundary + b"--\n"


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """What the JSON Schema finds wrong with a document (as it is stored: dumped and loaded)."""
    stored = json.loads(dump_document(doc).decode("utf-8"))
    return [f"{list(error.path)}: {error.message[:200]}" for error in VALIDATOR.iter_errors(stored)]


def assert_sound(doc: dict[str, Any]) -> None:
    """The invariants every document keeps, whatever the input."""
    assert set(doc) == KEYS
    data = dump_document(doc)
    assert json.loads(data.decode("utf-8")) == doc
    assert schema_errors(doc) == []
    assert all(set(item) == ATTACHMENT_KEYS for item in doc["attachments"])
    mailboxes = [item for field in ADDRESS_FIELDS for item in doc[field]]
    assert all(is_valid_address(item["address"]) for item in mailboxes)
    header_texts = [doc["subject"] or ""] + [item["value"] for item in doc["headers"]]
    header_texts += [item["name"] for item in mailboxes]
    header_texts += [item["filename"] or "" for item in doc["attachments"]]
    assert not any(char in text for text in header_texts for char in UNSAFE_HEADER_CHARS)
