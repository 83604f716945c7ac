"""Our POP3 client against the real Dovecot: TLS modes, auth, byte-exact RETR, commit rules."""

from __future__ import annotations

import pytest
import trustme

from harness import Dovecot, MailUser, as_pop3
from ingest.errors import AuthError, SecurityError
from ingest.pop3 import Endpoint, open_session
from ingest.pop3_auth import Credentials

TRICKY = (
    b"Subject: tricky\n\n"
    b".a line starting with a dot\n"
    b"..two dots\n"
    b".\n"
    b"x" * 100_000 + b"\n"
    b"no final newline"
)


def _creds(user: str, secret: str, method: str = "password") -> Credentials:
    return Credentials(method, user, secret)


def _ep(dovecot: Dovecot, security: str = "starttls", **kw: object) -> Endpoint:
    port = dovecot.pop3s_port if security == "tls" else dovecot.pop3_port
    kw.setdefault("allow_private", True)
    return Endpoint("localhost", port, security, timeout=10, ca_file=dovecot.ca_file, **kw)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_modes_verify_the_certificate_and_log_in(
    dovecot: Dovecot, mail_user: MailUser, security: str
) -> None:
    """Implicit TLS and STLS both verify chain and hostname, then authenticate."""
    with open_session(_ep(dovecot, security), _creds(mail_user.name, mail_user.password)) as s:
        assert s.encrypted
        assert {"UIDL", "PIPELINING"} <= set(s.capabilities)
        assert "STLS" not in s.capabilities or security == "tls"


def test_untrusted_certificate_is_refused(dovecot: Dovecot, mail_user: MailUser) -> None:
    """A certificate from a CA we were not told to trust stops the session before login."""
    ca_file = dovecot.workdir / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    ep = Endpoint(
        "localhost", dovecot.pop3_port, "starttls", timeout=10, ca_file=ca_file, allow_private=True
    )
    with (
        pytest.raises(SecurityError, match="certificate"),
        open_session(ep, _creds(mail_user.name, mail_user.password)),
    ):
        pass


def test_password_is_not_sent_in_plaintext_unless_allowed(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """security: plain refuses to send PASS unless allow_plaintext is set."""
    with (
        pytest.raises(SecurityError, match="unencrypted"),
        open_session(_ep(dovecot, "plain"), _creds(mail_user.name, mail_user.password)),
    ):
        pass
    with open_session(
        _ep(dovecot, "plain", allow_plaintext=True), _creds(mail_user.name, mail_user.password)
    ) as s:
        assert not s.encrypted


def test_wrong_password_is_an_auth_error(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Dovecot's -ERR [AUTH] becomes AuthError (permanent: alert, do not retry)."""
    with pytest.raises(AuthError), open_session(_ep(dovecot), _creds(mail_user.name, "wrong")):
        pass


def test_retr_is_byte_exact_for_dots_long_lines_and_no_final_newline(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Dot-stuffing is undone, 100 kB lines survive, and nothing else changes."""
    dovecot.deliver(mail_user.name, TRICKY)
    with open_session(_ep(dovecot), _creds(mail_user.name, mail_user.password)) as s:
        (entry,) = s.listing()
        raw = s.retrieve(entry).read()
        s.reset_and_quit()
    assert raw == as_pop3(TRICKY)


def test_deletions_happen_only_at_quit(dovecot: Dovecot, mail_user: MailUser) -> None:
    """DELE then a dropped connection deletes nothing; DELE then QUIT deletes."""
    dovecot.deliver(mail_user.name, b"Subject: a\n\nx\n")
    with open_session(_ep(dovecot), _creds(mail_user.name, mail_user.password)) as s:
        for entry in s.listing():
            s.delete(entry)
        s.abandon()
    assert dovecot.message_count(mail_user.name) == 1
    with open_session(_ep(dovecot), _creds(mail_user.name, mail_user.password)) as s:
        for entry in s.listing():
            s.delete(entry)
        s.commit()
    assert dovecot.message_count(mail_user.name) == 0
