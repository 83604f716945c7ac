"""Key builders and POP3 reply classification."""

from __future__ import annotations

import pytest

from ingest import keys
from ingest.errors import AuthError, PermanentError, ProtocolError, TransientError
from ingest.pop3_wire import error_for

SHA = "ab" + "0" * 62


def test_object_keys_are_deterministic_and_documented() -> None:
    """Raw and JSON keys follow {prefix}/{account}/{raw|json}/{sha[:2]}/{sha}.{eml|json}."""
    assert keys.raw_key("mail/v1", "support", SHA) == f"mail/v1/support/raw/ab/{SHA}.eml"
    assert keys.json_key("", "support", SHA) == f"support/json/ab/{SHA}.json"


@pytest.mark.parametrize("account", ["../x", "Upper", "a/b", ""])
def test_keys_refuse_names_that_could_escape(account: str) -> None:
    """An account name outside [a-z0-9_-]+ can never shape a key."""
    with pytest.raises(ValueError, match="account name"):
        keys.raw_key("", account, SHA)


def test_keys_refuse_non_hashes() -> None:
    """Only a lowercase hex sha256 is accepted as the content part of a key."""
    with pytest.raises(ValueError, match="sha256"):
        keys.raw_key("", "a", "../../etc/passwd")


@pytest.mark.parametrize(
    ("reply", "what", "kind"),
    [
        (b"-ERR [IN-USE] Mailbox is locked", "PASS", TransientError),
        (b"-ERR [LOGIN-DELAY] wait", "PASS", TransientError),
        (b"-ERR [SYS/TEMP] try later", "RETR", TransientError),
        (b"-ERR [SYS/PERM] broken", "RETR", PermanentError),
        (b"-ERR [AUTH] Authentication failed.", "PASS", AuthError),
        (b"-ERR bad password", "PASS", AuthError),
        (b"-ERR no such message", "RETR", ProtocolError),
    ],
)
def test_response_codes_decide_retry_or_alert(reply: bytes, what: str, kind: type) -> None:
    """RFC 2449/3206 codes map to transient (retry later) or permanent (alert) errors."""
    err = error_for(reply, what)
    assert type(err) is kind
