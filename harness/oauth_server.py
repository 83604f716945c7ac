"""A tiny OAuth2 server for tests: a refresh-token grant endpoint and Dovecot's introspection.

``POST /token`` (grant_type=refresh_token, client_id, client_secret, refresh_token) issues
an access token valid ``lifetime`` seconds; a revoked or unknown refresh token gets
``400 invalid_grant`` as real providers answer. ``POST /introspect`` (token=...) answers
``{"active": "true", "username": ...}`` for a live token, ``{"active": "false"}`` otherwise.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from harness.http_thread import ThreadedHttpServer


@dataclass
class Grant:
    username: str
    client_id: str
    client_secret: str
    revoked: bool = False


@dataclass
class OAuthState:
    lifetime: float = 3600.0
    grants: dict[str, Grant] = field(default_factory=dict)  # refresh token -> grant
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # access -> (user, exp)
    token_requests: int = 0


class _Handler(BaseHTTPRequestHandler):
    state: OAuthState

    def log_message(self, format: str, *args: object) -> None:
        return

    def _form(self) -> dict[str, str]:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        return {k: v[0] for k, v in parse_qs(body).items()}

    def _reply(self, status: int, data: dict[str, object]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        form = self._form()
        if self.path == "/token":
            self._token(form)
        elif self.path == "/introspect":
            user, expires = self.state.tokens.get(form.get("token", ""), ("", 0.0))
            live = bool(user) and expires > time.time()
            self._reply(200, {"active": "true", "username": user} if live else {"active": "false"})
        else:
            self._reply(404, {"error": "not_found"})

    def _token(self, form: dict[str, str]) -> None:
        self.state.token_requests += 1
        grant = self.state.grants.get(form.get("refresh_token", ""))
        if form.get("grant_type") != "refresh_token" or grant is None or grant.revoked:
            self._reply(400, {"error": "invalid_grant", "error_description": "token revoked"})
            return
        if (form.get("client_id"), form.get("client_secret")) != (
            grant.client_id,
            grant.client_secret,
        ):
            self._reply(401, {"error": "invalid_client"})
            return
        token = secrets.token_urlsafe(24)
        self.state.tokens[token] = (grant.username, time.time() + self.state.lifetime)
        self._reply(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": int(self.state.lifetime)},
        )


class OAuthServer(ThreadedHttpServer):
    """Runs in a thread on 127.0.0.1:free port; ``grant()`` makes a refresh token."""

    state: OAuthState

    def __init__(self, lifetime: float = 3600.0) -> None:
        super().__init__(_Handler, OAuthState(lifetime=lifetime))

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/introspect"

    def grant(self, username: str, client_id: str = "ingest", client_secret: str = "s3cr3t") -> str:
        refresh = secrets.token_urlsafe(24)
        self.state.grants[refresh] = Grant(username, client_id, client_secret)
        return refresh

    def revoke(self, refresh_token: str) -> None:
        self.state.grants[refresh_token].revoked = True
