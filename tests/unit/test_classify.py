"""Classification for automation: auto-replies, bounces, mailing lists, authentication."""

from __future__ import annotations

from typing import Any

import pytest
from mail_samples import assert_sound, corpus, crlf, parse


def classification(raw: bytes) -> dict[str, Any]:
    doc = parse(raw)
    assert_sound(doc)
    result: dict[str, Any] = doc["classification"]
    return result


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"Auto-Submitted: auto-replied", "auto-submitted: auto-replied"),
        (b"Auto-Submitted: Auto-Generated; owner=x@example.com", "auto-submitted: auto-generated"),
        (b"X-Autoreply: yes", "x-autoreply"),
        (b"X-Autorespond: Out of office", "x-autorespond"),
        (b"X-Auto-Response-Suppress: All", "x-auto-response-suppress"),
        (b"Precedence: bulk", "precedence: bulk"),
        (b"Precedence: junk", "precedence: junk"),
        (b"Precedence: auto_reply", "precedence: auto_reply"),
        (b"Subject: Out of Office: your ticket", "subject"),
        (b"Subject: Automatic reply: Invoice 42", "subject"),
        (b"Subject: Abwesenheitsnotiz: Rechnung", "subject"),
        (b"Subject: =?utf-8?q?R=C3=A9ponse_automatique_=3A_facture?=", "subject"),
    ],
)  # fmt: skip
def test_auto_replies_are_recognised(header: bytes, reason: str) -> None:
    """Each RFC 3834 header, vendor header, Precedence value or OOF subject marks an auto-reply."""
    found = classification(b"From: a@example.com\n" + header + b"\n\nI am away.\n")
    assert (found["auto_reply"], found["auto_reply_reason"]) == (True, reason)


@pytest.mark.parametrize(
    "header",
    [
        b"Auto-Submitted: no",
        b"Precedence: list",
        b"Subject: Re: question about your out of office policy",
        b"X-Auto-Response-Suppress: None",
    ],
)
def test_ordinary_mail_is_not_an_auto_reply(header: bytes) -> None:
    """Auto-Submitted: no, list mail and subjects merely mentioning absence are not auto-replies."""
    found = classification(b"From: a@example.com\n" + header + b"\n\nhi\n")
    assert (found["auto_reply"], found["auto_reply_reason"]) == (False, None)


def test_dsn_bounce_from_the_corpus() -> None:
    """AOL's mailbox-full DSN: action, status, diagnostic and failed recipient."""
    found = classification(crlf(corpus("bounce_mailbox-full.eml")))
    assert found["bounce"] == {
        "source": "dsn",
        "action": "failed",
        "status": "5.2.2",
        "diagnostic": "smtp; 552 5.2.2 E4.12 user MAILBOX FULL",
        "failed_recipients": ["user@aol.com"],
    }
    assert found["auto_reply_reason"] == "auto-submitted: auto-replied"


def test_office365_bounce() -> None:
    """Office 365's DSN names the unknown recipient and its 5.1.10 status."""
    bounce = classification(corpus("bounce_office365.eml"))["bounce"]
    assert (bounce["source"], bounce["action"], bounce["status"]) == ("dsn", "failed", "5.1.10")
    assert bounce["failed_recipients"] == ["noname@example.com"]
    assert "RecipientNotFound" in bounce["diagnostic"]


def test_delayed_dsn_has_no_failed_recipients() -> None:
    """A delay report is a bounce object whose action is "delayed"."""
    bounce = classification(corpus("bounce_no-mx.eml"))["bounce"]
    assert (bounce["action"], bounce["status"], bounce["failed_recipients"]) == (
        "delayed",
        "4.4.4",
        [],
    )


def test_report_without_report_type_is_still_read() -> None:
    """A multipart/report that omits report-type but carries a delivery-status part."""
    found = classification(corpus("msg_16.txt.eml"))
    assert found["bounce"]["source"] == "dsn"
    assert (found["bounce"]["action"], found["bounce"]["status"]) == ("failed", "5.0.0")


def test_heuristic_bounces() -> None:
    """Gmail's X-Failed-Recipients bounce, and MAILER-DAEMON with a non-delivery subject."""
    gmail = classification(corpus("bounce_gmail-invalid-address.eml"))["bounce"]
    assert gmail["source"] == "heuristic"
    assert gmail["failed_recipients"] == ["awfawfawfawfawfaw@someserverhere.com"]
    daemon = classification(
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\n"
        b"Subject: Undelivered Mail Returned to Sender\n\nsorry\n"
    )
    assert daemon["bounce"] == {
        "source": "heuristic",
        "action": None,
        "status": None,
        "diagnostic": None,
        "failed_recipients": [],
    }
    human = classification(b"From: postmaster@example.com\nSubject: Hello\n\nhi\n")
    assert human["bounce"] is None


def test_mailing_list() -> None:
    """List-Id gives the list's id; List-Unsubscribe its URIs."""
    found = classification(corpus("msg_16.txt.eml"))
    assert found["mailing_list"] == {
        "id": "scr.socal-raves.org",
        "unsubscribe": [
            "http://socal-raves.org/mailman/listinfo/scr",
            "mailto:scr-request@socal-raves.org?subject=unsubscribe",
        ],
    }
    assert classification(b"From: a@example.com\n\nx")["mailing_list"] is None


def test_authentication_results_from_the_corpus() -> None:
    """Gmail's Authentication-Results: its authserv-id, spf and dkim verdicts."""
    found = classification(corpus("iphone.eml"))
    assert found["authentication"] == {
        "authserv_id": "mx.google.com",
        "spf": "pass",
        "dkim": "pass",
        "dmarc": None,
    }


def test_topmost_authentication_results_wins() -> None:
    """Only the topmost header counts (a sender can add forged ones below it); any dkim pass."""
    raw = (
        b"Authentication-Results: mx.example.net; spf=fail (not permitted) smtp.mailfrom=x;\n"
        b" dkim=fail header.d=a; dkim=pass (ok) header.d=b; dmarc=fail (p=reject) header.from=b\n"
        b"Authentication-Results: evil.example; spf=pass; dkim=pass; dmarc=pass\n"
        b"From: a@example.com\n\nx"
    )
    assert classification(raw)["authentication"] == {
        "authserv_id": "mx.example.net",
        "spf": "fail",
        "dkim": "pass",
        "dmarc": "fail",
    }


def test_authentication_results_without_authserv_id() -> None:
    """Office 365 writes the results first; the id is then null, the verdicts still read."""
    raw = (
        b"Authentication-Results: spf=softfail (sender IP is 192.0.2.1) smtp.mailfrom=a.example;"
        b" dkim=none (message not signed); dmarc=none action=none\n\nx"
    )
    assert classification(raw)["authentication"] == {
        "authserv_id": None,
        "spf": "softfail",
        "dkim": "none",
        "dmarc": "none",
    }


def test_suspicious_display_name() -> None:
    """A display name that shows another address is flagged for automation."""
    assert classification(corpus("mail_test_19.eml"))["suspicious_display_name"] is True
    assert classification(corpus("msg_07.txt.eml"))["suspicious_display_name"] is False
