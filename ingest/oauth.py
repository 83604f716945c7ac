"""OAuth2 access tokens for XOAUTH2 accounts: refreshed before expiry, shared through Redis.

One worker refreshes (a short single-flight flag in Redis); the others read the cached
token. A refresh token the provider rejects (``invalid_grant``: expired or revoked) is an
:class:`AuthError` that names the account, so an operator knows whom to re-authorise.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

import redis
import structlog

from ingest import keys
from ingest.config import AccountConfig, OAuth2Config
from ingest.errors import AuthError, TransientError
from ingest.secret_refs import read_secret

log = structlog.get_logger("ingest.oauth")
REFRESH_MARGIN = 120.0  # seconds before expiry at which a token is replaced
_WAIT_FOR_PEER = 5.0


class TokenSource:
    """Access tokens of one account."""

    def __init__(
        self, client: redis.Redis, account: AccountConfig, source: str = "config",
        *, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        assert account.oauth2 is not None
        self.client = client
        self.account = account.name
        self.cfg: OAuth2Config = account.oauth2
        self.where = f"{source}: accounts({account.name}).oauth2"
        self.clock = clock

    def access_token(self) -> str:
        """A token valid for at least REFRESH_MARGIN seconds."""
        cached = self._cached()
        if cached:
            return cached
        flag = keys.oauth_refresh_key(self.account)
        if not self._redis(lambda: self.client.set(flag, "1", nx=True, ex=30)):
            deadline = time.monotonic() + _WAIT_FOR_PEER
            while time.monotonic() < deadline:  # another worker is refreshing right now
                time.sleep(0.1)
                if cached := self._cached():
                    return cached
        try:
            return self._refresh()
        finally:
            self._redis(lambda: self.client.delete(flag))

    def invalidate(self) -> None:
        """Forget the cached token (the server refused it)."""
        self._redis(lambda: self.client.delete(keys.oauth_token_key(self.account)))

    def _cached(self) -> str | None:
        raw = self._redis(lambda: self.client.get(keys.oauth_token_key(self.account)))
        if not isinstance(raw, bytes | str) or not raw:
            return None
        data = json.loads(raw)
        if data["expires_at"] - self.clock() < REFRESH_MARGIN:
            return None
        return str(data["token"])

    def _refresh(self) -> str:
        reply = self._post()
        token = reply.get("access_token")
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n\0"):
            raise AuthError(f"account {self.account}: token endpoint sent no usable access_token")
        lifetime = float(str(reply.get("expires_in", 3600)))
        data = json.dumps({"token": token, "expires_at": self.clock() + lifetime})
        ttl = max(1, int(lifetime - REFRESH_MARGIN))
        self._redis(lambda: self.client.set(keys.oauth_token_key(self.account), data, ex=ttl))
        log.info("oauth.refreshed", account=self.account, expires_in=lifetime)
        return token

    def _post(self) -> dict[str, object]:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.cfg.client_id,
            "refresh_token": read_secret(
                self.where, "refresh_token", self.cfg.refresh_token_env, self.cfg.refresh_token_file
            ),
        }
        if self.cfg.client_secret_env or self.cfg.client_secret_file:
            form["client_secret"] = read_secret(
                self.where, "client_secret", self.cfg.client_secret_env, self.cfg.client_secret_file
            )
        if self.cfg.scope:
            form["scope"] = self.cfg.scope
        request = urllib.request.Request(  # noqa: S310 - the URL scheme is checked by config
            self.cfg.token_url, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout) as resp:  # noqa: S310
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as err:
            raise self._http_error(err) from None
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as err:
            raise TransientError(
                f"account {self.account}: token endpoint unreachable: {err}"
            ) from err

    def _http_error(self, err: urllib.error.HTTPError) -> Exception:
        try:
            code = str(json.loads(err.read()).get("error", ""))
        except ValueError:
            code = ""
        if err.code >= 500 or err.code == 429:
            return TransientError(f"account {self.account}: token endpoint said {err.code}")
        if code == "invalid_grant":
            return AuthError(
                f"account {self.account}: the OAuth2 refresh token was rejected (invalid_grant: "
                f"expired or revoked); re-authorise the mailbox and update {self.where}"
            )
        return AuthError(f"account {self.account}: token endpoint refused: {err.code} {code}")

    def _redis(self, op: Callable[[], object]) -> object:
        try:
            return op()
        except redis.RedisError as err:
            raise TransientError(f"redis unavailable for OAuth2 tokens: {err}") from err
