"""The JSON Schema (draft 2020-12) of the document: well formed, complete, and strict."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mail_samples import (
    ATTACHMENT_KEYS,
    CORPUS_FILES,
    KEYS,
    SCHEMA,
    corpus,
    crlf,
    parse,
    schema_errors,
)

from ingest.parse import SCHEMA_VERSION


def test_schema_is_valid_draft_2020_12() -> None:
    """The schema itself passes the draft 2020-12 meta-schema."""
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_schema_matches_the_parser() -> None:
    """Versions agree, and the schema requires exactly the keys the parser writes."""
    assert SCHEMA["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert set(SCHEMA["required"]) == set(SCHEMA["properties"]) == KEYS
    attachment = SCHEMA["$defs"]["attachment"]
    assert set(attachment["required"]) == set(attachment["properties"]) == ATTACHMENT_KEYS


def test_every_field_is_documented() -> None:
    """Each property at the top level and in each object definition has a description."""
    for name, spec in SCHEMA["properties"].items():
        assert "description" in spec or "$ref" in spec, name
    for definition, spec in SCHEMA["$defs"].items():
        for name, field in spec.get("properties", {}).items():
            assert "description" in field or "$ref" in field, f"{definition}.{name}"


def test_every_corpus_document_is_valid_in_both_line_ends() -> None:
    """All corpus messages, LF and CRLF, with a ticket pattern, validate against the schema."""
    for path in CORPUS_FILES:
        for raw in (path.read_bytes(), crlf(path.read_bytes())):
            assert schema_errors(parse(raw, ticket_pattern=r"(\d+)")) == [], path.name


def _broken(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(parse(corpus("msg_07.txt.eml")))
    change(doc)
    return doc


@pytest.mark.parametrize(
    "change",
    [
        lambda doc: doc.pop("classification"),
        lambda doc: doc.update(extra=1),
        lambda doc: doc.update(schema_version=1),
        lambda doc: doc.update(subject="a\r\nBcc: x@y"),
        lambda doc: doc.update(date="2024-01-01 10:00"),
        lambda doc: doc["from"].append({"name": "x", "address": "not an address"}),
        lambda doc: doc["attachments"][0].update(sha256="ABC"),
        lambda doc: doc["attachments"][0].update(filename_safe="../x"),
        lambda doc: doc["attachments"][0].pop("key"),
        lambda doc: doc["headers"][0].update(raw=1),
        lambda doc: doc["classification"].update(auto_reply="yes"),
    ],
)
def test_schema_rejects_broken_documents(change: Any) -> None:
    """Missing or extra keys, wrong types and unsafe text are caught."""
    assert schema_errors(_broken(change))
