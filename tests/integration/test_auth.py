"""Authentication methods against a real Dovecot: APOP, SASL PLAIN and XOAUTH2 with OAuth2."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support import account_entry, run_cli, write_config

from harness import Dovecot, MailUser
from harness.oauth_server import OAuthServer
from ingest.config_load import parse_settings
from ingest.errors import AuthError, SecurityError
from ingest.oauth import TokenSource
from ingest.pop3 import Endpoint, open_session
from ingest.pop3_auth import Credentials


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    with OAuthServer() as server:
        yield server


@pytest.fixture(scope="module")
def oauth_dovecot(oauth: OAuthServer) -> Iterator[Dovecot]:
    """A second private Dovecot whose oauth2 passdb asks our token server about each token."""
    workdir = Path(tempfile.mkdtemp(prefix="ingest-dovecot-oauth-"))
    try:
        with Dovecot(workdir, oauth2_introspection_url=oauth.introspection_url) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ep(dovecot: Dovecot) -> Endpoint:
    return Endpoint(
        "localhost",
        dovecot.pop3s_port,
        "tls",
        timeout=10,
        ca_file=dovecot.ca_file,
        allow_private=True,
    )


@pytest.mark.parametrize("method", ["password", "apop", "sasl_plain"])
def test_password_methods_log_in(dovecot: Dovecot, mail_user: MailUser, method: str) -> None:
    """USER/PASS, APOP and AUTH PLAIN all authenticate against Dovecot, and fail when wrong."""
    dovecot.deliver(mail_user.name, b"Subject: a\n\nb\n")
    with open_session(_ep(dovecot), Credentials(method, mail_user.name, mail_user.password)) as s:
        assert len(s.listing()) == 1
    with pytest.raises(AuthError):  # noqa: SIM117 - the session must open inside raises
        with open_session(_ep(dovecot), Credentials(method, mail_user.name, "wrong")):
            pass


@pytest.mark.parametrize("secret", ["pw\r\nDELE 1", "pw\nQUIT", "pw\0x"])
def test_line_breaks_in_secrets_are_refused_before_sending(
    dovecot: Dovecot, mail_user: MailUser, secret: str
) -> None:
    """CR, LF or NUL in a secret could inject commands: refused before anything is sent."""
    with pytest.raises(SecurityError, match="CR, LF or NUL"):  # noqa: SIM117
        with open_session(_ep(dovecot), Credentials("password", mail_user.name, secret)):
            pass


@pytest.mark.parametrize("style", ["two_step", "one_line"])
def test_xoauth2_with_a_live_token_logs_in(
    oauth_dovecot: Dovecot, oauth: OAuthServer, style: str
) -> None:
    """A bearer token Dovecot's introspection accepts logs in, in both XOAUTH2 forms."""
    user = oauth_dovecot.add_user(f"ox{style[:3]}", "unused-password")
    oauth_dovecot.deliver(user.name, b"Subject: oauth\n\nb\n")
    token = _token(oauth, user.name)
    with open_session(_ep(oauth_dovecot), Credentials("xoauth2", user.name, token, style)) as s:
        assert len(s.listing()) == 1


def test_xoauth2_bad_token_is_a_failure_not_a_success(
    oauth_dovecot: Dovecot, oauth: OAuthServer
) -> None:
    """Dovecot answers a refused token with a `+` error challenge: read as failure, both forms."""
    user = oauth_dovecot.add_user("oxbad", "unused-password")
    for style in ("two_step", "one_line"):
        with pytest.raises(AuthError, match=r'refused: .*"status":"401"'):  # noqa: SIM117
            with open_session(
                _ep(oauth_dovecot), Credentials("xoauth2", user.name, "bogus", style)
            ):
                pass


def _token(oauth: OAuthServer, username: str) -> str:
    import json  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    refresh = oauth.grant(username)
    form = urllib.parse.urlencode(
        {
            "grant_type": "refresh_token",
            "client_id": "ingest",
            "client_secret": "s3cr3t",
            "refresh_token": refresh,
        }
    )
    with urllib.request.urlopen(oauth.token_url, data=form.encode()) as resp:  # noqa: S310
        return str(json.loads(resp.read())["access_token"])


def _oauth_account(
    oauth: OAuthServer, dovecot: Dovecot, user: MailUser, refresh: str, tmp_path: Path
) -> dict[str, object]:
    (tmp_path / "refresh").write_text(refresh + "\n")
    entry = account_entry(
        dovecot,
        user,
        name="o365",
        security="tls",
        auth="xoauth2",
        oauth2={
            "token_url": oauth.token_url,
            "client_id": "ingest",
            "client_secret_env": "INGEST_TEST_CLIENT_SECRET",
            "refresh_token_file": str(tmp_path / "refresh"),
        },
    )
    entry.pop("password_env")
    return entry


def test_poll_with_oauth2_refreshes_once_and_shares_the_token(
    tmp_path: Path,
    oauth_dovecot: Dovecot,
    oauth: OAuthServer,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two polls use one refreshed access token from Redis; the mailbox is ingested."""
    user = oauth_dovecot.add_user("oxpoll", "unused-password")
    oauth_dovecot.deliver(user.name, b"Subject: via oauth\n\nhello\n")
    entry = _oauth_account(oauth, oauth_dovecot, user, oauth.grant(user.name), tmp_path)
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, directory=tmp_path / "s", accounts=[entry]
    )
    env = {"INGEST_TEST_CLIENT_SECRET": "s3cr3t"}
    before = oauth.state.token_requests
    first = run_cli(cfg, "poll", "o365", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "stored 1" in first.stdout and oauth_dovecot.message_count(user.name) == 0
    second = run_cli(cfg, "poll", "o365", env=env)
    assert second.returncode == 0 and oauth.state.token_requests == before + 1
    token = _cached_token(redis_url)
    assert token not in first.stderr + second.stderr


def _cached_token(redis_url: str) -> str:
    import json  # noqa: PLC0415

    raw = redis.Redis.from_url(redis_url).get("ingest:{o365}:oauth")
    assert raw is not None
    return str(json.loads(raw)["token"])


def test_revoked_refresh_token_is_an_auth_error_naming_the_account(
    tmp_path: Path, oauth_dovecot: Dovecot, oauth: OAuthServer, redis_url: str
) -> None:
    """invalid_grant from the token endpoint says which account must be re-authorised."""
    user = oauth_dovecot.add_user("oxrevoked", "unused-password")
    refresh = oauth.grant(user.name)
    oauth.revoke(refresh)
    entry = _oauth_account(oauth, oauth_dovecot, user, refresh, tmp_path)
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, directory=tmp_path / "s", accounts=[entry]
    )
    result = run_cli(cfg, "poll", "o365", env={"INGEST_TEST_CLIENT_SECRET": "s3cr3t"})
    assert result.returncode == 1
    assert "o365" in result.stderr and "invalid_grant" in result.stderr
    assert refresh not in result.stderr


def test_token_source_refreshes_before_expiry(
    oauth: OAuthServer, redis_url: str, tmp_path: Path
) -> None:
    """A cached token within the refresh margin of its expiry is replaced."""
    now = [1000.0]
    (tmp_path / "rt").write_text(oauth.grant("someone"))
    settings = parse_settings(
        {
            "storage": {"url": "file:///tmp/x"},
            "accounts": [
                {
                    "name": "t",
                    "host": "h",
                    "username": "someone",
                    "auth": "xoauth2",
                    "oauth2": {
                        "token_url": oauth.token_url,
                        "client_id": "ingest",
                        "client_secret_file": str(_secret(tmp_path)),
                        "refresh_token_file": str(tmp_path / "rt"),
                    },
                }
            ],
        },
        "t.yaml",
    )
    source = TokenSource(
        redis.Redis.from_url(redis_url), settings.accounts[0], clock=lambda: now[0]
    )
    first = source.access_token()
    assert source.access_token() == first
    now[0] += 3600 - 60  # inside the margin
    assert source.access_token() != first


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "cs"
    path.write_text("s3cr3t")
    return path
