"""The simulator's OAuth 2.0 side: a consent page, a token endpoint and the tokens it issued.

Lofty documents two token URLs (api-notes §14) and says nothing about lifetimes, rotation
or error bodies; the simulator serves both paths and makes the unknowns switchable:

- ``GET /page/vendor-auth.html?clientId=&response_type=code&redirect_uri=&state=``: the
  user "consents" at once and is redirected (302) to ``redirect_uri?code=..&state=..``, or
  ``?error=access_denied`` when ``OAuthConfig.consent == "deny"``.
- ``POST /oauth/token`` and ``POST /api/user-web/oauth/token`` (form-encoded): grants
  ``authorization_code``, ``refresh_token`` and ``client_credentials`` (with
  ``customer_key`` = the target user's API key). The client authenticates with HTTP Basic
  or with ``client_id``/``client_secret`` in the body. Errors are RFC 6749 bodies
  (``{"error": "invalid_grant", ...}``): Lofty's own are undocumented (GUESS).
- Refresh tokens rotate and are single-use (``rotate_refresh_tokens``): the one a refresh
  used stops working at once, as DCauldy's client suggests (api-notes §14, GUESS).
- Access tokens live ``access_ttl_s`` seconds; the API answers 401 to an expired one.

The token endpoint is *not* under the API's rate limit (Lofty documents limits for API
calls only) and not in the API request counters or ``faults_at`` numbering: it has its own
:attr:`OAuthProvider.counters`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

TOKEN_PATHS = ("/oauth/token", "/api/user-web/oauth/token")
AUTHORIZE_PATH = "/page/vendor-auth.html"
GRANTS = ("authorization_code", "refresh_token", "client_credentials")
CONSENTS = ("approve", "deny")


@dataclass
class OAuthConfig:
    """Switches of the OAuth side; change them with ``sim.oauth.configure(**changes)``."""

    client_id: str = "sim-client-id-51d0c2"
    client_secret: str = "sim-client-secret-9e4a7b21c03f"
    #: Seconds an access token is accepted (``expires_in`` of every token answer).
    access_ttl_s: int = 3600
    #: Seconds an unused refresh token stays valid.
    refresh_ttl_s: int = 30 * 86_400
    #: Seconds an authorization code can be exchanged (once).
    code_ttl_s: int = 60
    #: A refresh answers a new refresh token and retires the one it used.
    rotate_refresh_tokens: bool = True
    #: What the consent page does: ``approve`` (redirect with a code) or ``deny``.
    consent: str = "approve"

    def __post_init__(self) -> None:
        """Validate."""
        if min(self.access_ttl_s, self.refresh_ttl_s, self.code_ttl_s) < 1:
            raise ValueError("access_ttl_s, refresh_ttl_s and code_ttl_s must be >= 1")
        if self.consent not in CONSENTS:
            raise ValueError(f"consent must be one of {CONSENTS}")


@dataclass
class _Code:
    redirect_uri: str
    expires_at: float


@dataclass(frozen=True)
class OAuthAnswer:
    """What the HTTP handler sends back."""

    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str = "application/json;charset=UTF-8"


class _GrantError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class OAuthProvider:
    """Issues and checks tokens. Thread-safe."""

    def __init__(self, customer_key: str, config: OAuthConfig | None = None) -> None:
        """``customer_key``: the API key the client-credentials grant must name."""
        self._customer_key = customer_key
        self._config = config or OAuthConfig()
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}  # token -> expiry (time.time())
        self._refresh: dict[str, float] = {}  # live refresh tokens -> expiry
        self._codes: dict[str, _Code] = {}
        self._issued: list[str] = []  # every token and code ever issued (for leak tests)
        self._counters: dict[str, int] = {}

    @property
    def config(self) -> OAuthConfig:
        """The current switches."""
        return self._config

    def configure(self, **changes: Any) -> OAuthConfig:
        """Change switches (validated); tokens already issued keep their expiry."""
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            return self._config

    @property
    def counters(self) -> dict[str, int]:
        """Token answers by grant and outcome, e.g. ``refresh_token 200``, ``invalid_grant``."""
        with self._lock:
            return dict(self._counters)

    def issued(self) -> list[str]:
        """Every access token, refresh token and code issued so far."""
        with self._lock:
            return list(self._issued)

    def issue_refresh_token(self) -> str:
        """Issue a refresh token, as if the user had signed in elsewhere."""
        with self._lock:
            return self._new_refresh()

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired now (the API answers 401 to them)."""
        with self._lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Make every refresh token unusable (the user revoked the app)."""
        with self._lock:
            self._refresh.clear()

    def accepts(self, access_token: str) -> bool:
        """Whether the API takes ``access_token`` now."""
        with self._lock:
            expiry = self._access.get(access_token)
            return expiry is not None and time.time() < expiry

    # ------------------------------------------------------------------ HTTP

    def handle(
        self, method: str, path: str, query: str, headers: Any, body: bytes
    ) -> OAuthAnswer | None:
        """Answer an OAuth path, or None when ``path`` is not one."""
        if path == AUTHORIZE_PATH and method == "GET":
            return self._authorize(parse_qs(query))
        if path not in TOKEN_PATHS:
            return None
        if method != "POST":
            return self._error(_GrantError(405, "invalid_request", "use POST"))
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        try:
            return self._token(form, headers.get("Authorization"))
        except _GrantError as err:
            return self._error(err)

    def _authorize(self, query: dict[str, list[str]]) -> OAuthAnswer:
        cfg = self._config
        client_id = (query.get("clientId") or query.get("client_id") or [""])[0]
        redirect_uri = (query.get("redirect_uri") or [""])[0]
        state = (query.get("state") or [""])[0]
        if client_id != cfg.client_id or not urlsplit(redirect_uri).scheme:
            page = b"<html><body>Unknown application or redirect_uri.</body></html>"
            return OAuthAnswer(400, page, {}, "text/html")
        if cfg.consent == "deny":
            params = {"error": "access_denied"}
        else:
            code = "sim-code-" + secrets.token_urlsafe(12)
            with self._lock:
                self._codes[code] = _Code(redirect_uri, time.time() + cfg.code_ttl_s)
                self._issued.append(code)
                self._bump("authorize")
            params = {"code": code}
        if state:
            params["state"] = state
        joiner = "&" if "?" in redirect_uri else "?"
        return OAuthAnswer(302, b"", {"Location": redirect_uri + joiner + urlencode(params)})

    def _client(self, form: dict[str, str], authorization: str | None) -> None:
        """Check the client's credentials (Basic or body), or raise invalid_client."""
        cfg = self._config
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ":"
            basic_id, _, basic_secret = decoded.partition(":")
            if client_id not in (None, basic_id):
                raise _GrantError(400, "invalid_request", "client_id differs from Basic auth")
            client_id, client_secret = basic_id, basic_secret
        if client_id != cfg.client_id or client_secret != cfg.client_secret:
            raise _GrantError(401, "invalid_client", "Client authentication failed.")

    def _token(self, form: dict[str, str], authorization: str | None) -> OAuthAnswer:
        grant = form.get("grant_type", "")
        if grant not in GRANTS:
            raise _GrantError(400, "unsupported_grant_type", f"grant_type {grant!r}")
        self._client(form, authorization)
        cfg = self._config
        now = time.time()
        with self._lock:
            refresh: str | None = None
            if grant == "authorization_code":
                code = self._codes.pop(form.get("code", ""), None)  # single use
                if code is None or now >= code.expires_at:
                    raise self._invalid_grant("The authorization code is invalid or expired.")
                if form.get("redirect_uri") != code.redirect_uri:
                    raise self._invalid_grant("redirect_uri does not match the authorization.")
                refresh = self._new_refresh()
            elif grant == "refresh_token":
                old = form.get("refresh_token", "")
                expiry = self._refresh.get(old)
                if expiry is None or now >= expiry:
                    raise self._invalid_grant("The refresh token is invalid or expired.")
                refresh = old
                if cfg.rotate_refresh_tokens:
                    del self._refresh[old]
                    refresh = self._new_refresh()
            elif form.get("customer_key") != self._customer_key:
                raise self._invalid_grant("customer_key is not a valid API key.")
            access = "sim-at-" + secrets.token_urlsafe(18)
            self._access[access] = now + cfg.access_ttl_s
            self._issued.append(access)
            self._bump(f"{grant} 200")
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": cfg.access_ttl_s,
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        return OAuthAnswer(200, json.dumps(body).encode(), headers)

    def _new_refresh(self) -> str:
        token = "sim-rt-" + secrets.token_urlsafe(18)
        self._refresh[token] = time.time() + self._config.refresh_ttl_s
        self._issued.append(token)
        return token

    def _invalid_grant(self, description: str) -> _GrantError:
        self._bump("invalid_grant")
        return _GrantError(400, "invalid_grant", description)

    def _error(self, err: _GrantError) -> OAuthAnswer:
        if err.error != "invalid_grant":
            with self._lock:
                self._bump(err.error)
        body = json.dumps({"error": err.error, "error_description": err.description}).encode()
        headers = {"Cache-Control": "no-store"}
        if err.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="lofty"'
        return OAuthAnswer(err.status, body, headers)

    def _bump(self, key: str) -> None:  # under the lock
        self._counters[key] = self._counters.get(key, 0) + 1
