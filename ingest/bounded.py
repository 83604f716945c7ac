"""A parsed message part that knows its depth, stops the parser at the limits, and memoises
header look-ups.

The feed parser recurses once per nesting level, so a thousand nested parts raise
``RecursionError`` inside it; ``BoundedMessage``, the parsers' message factory, stops it
below ``MAX_DEPTH`` levels and ``MAX_PARTS`` parts (``ingest.mime`` builds through the same
calls). ``source`` is set by ``ingest.mime``: the message text and the span of this part in
it, so an embedded message can be listed with its bytes as written.
"""

from __future__ import annotations

import re
from email.message import Message
from email.policy import Policy, compat32
from typing import Any

_BOUNDARY = re.compile(r'(?i)(?:^|;)\s*boundary\s*=\s*(?:"([^"]*)"|([^;\s]+))')
MAX_DEPTH = 50
MAX_PARTS = 2000


class BoundedMessage(Message):
    """A part that knows its depth, so the feed parser stops descending past the limits.

    The parser attaches each new part to its parent before reading the part's headers, then
    asks ``get_content_maintype()`` whether to parse its body as parts: an over-limit part
    answers "application", so its body stays one opaque string, and ``cut`` says why.
    """

    _headers: list[tuple[str, Any]]
    _default_type: str

    def __init__(self, policy: Policy[Any] = compat32) -> None:
        super().__init__(policy)
        self.depth = 0
        self.budget = [MAX_PARTS]  # shared by every part of one message
        self.cut: str | None = None
        self.source: tuple[str, int, int] | None = None  # (message text, start, end)
        self._memo: dict[Any, Any] = {}
        self._memo_token: tuple[int, int, str] | None = None

    # Header look-ups are memoised: the stdlib scans every header (lower-casing each name)
    # and re-parses Content-Type's parameters at each call, and a part is asked a dozen
    # times. The memo is dropped whenever the header list or the default type changes (a
    # new list, another length, or replace_header, which edits the list in place).

    def _memo_for(self) -> dict[Any, Any]:
        token = (id(self._headers), len(self._headers), self._default_type)
        if token != self._memo_token:
            self._memo_token, self._memo = token, {}
        return self._memo

    def replace_header(self, _name: str, _value: Any) -> None:
        self._memo_token = None
        super().replace_header(_name, _value)

    def _fields(self) -> dict[str, Any]:
        """Lower-case name -> the first (name, value) pair, or its value once fetched."""
        memo = self._memo_for()
        fields: dict[str, Any] | None = memo.get("fields")
        if fields is None:
            fields = memo["fields"] = {}
            for key, value in self._headers:
                fields.setdefault(key.lower(), (key, value))
        return fields

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields()

    def get(self, name: str, failobj: Any = None) -> Any:
        fields = self._fields()
        lower = name.lower()
        found = fields.get(lower)
        if found is None:
            return failobj
        if isinstance(found, tuple):  # fetched (and decoded by the policy) once
            found = fields[lower] = self.policy.header_fetch_parse(*found)
        return found

    def get_boundary(self, failobj: Any = None) -> Any:
        """The boundary as the body spells it: with 8-bit bytes, the raw parameter (the
        policy would decode it, and then it would match no line of the body).
        """
        raw = next((v for k, v in self._headers if k.lower() == "content-type"), None)
        if not isinstance(raw, str) or raw.isascii():
            return super().get_boundary(failobj)
        match = _BOUNDARY.search(raw)
        if match is None:
            return failobj
        return (match.group(1) if match.group(1) is not None else match.group(2)).rstrip()

    def get_content_type(self) -> str:
        memo = self._memo_for()
        found: str | None = memo.get("type")
        if found is None:
            found = memo["type"] = super().get_content_type()
        return found

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        memo = self._memo_for()
        key = ("params", header)
        if key not in memo:
            missing = object()
            params = super()._get_params_preserve(missing, header)  # type: ignore[misc]
            memo[key] = None if params is missing else params
        found = memo[key]
        return failobj if found is None else found

    def attach(self, payload: Message | str) -> None:
        if isinstance(payload, BoundedMessage):
            payload.depth, payload.budget = self.depth + 1, self.budget
            self.budget[0] -= 1
            if payload.depth > MAX_DEPTH:
                payload.cut = "mime-too-deep"
            elif self.budget[0] < 0:
                payload.cut = "too-many-parts"
        super().attach(payload)

    def get_content_maintype(self) -> str:
        return "application" if self.cut else super().get_content_maintype()
