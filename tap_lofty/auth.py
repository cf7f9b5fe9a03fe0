"""Everything about credentials: the Authorization header, OAuth 2.0 tokens and their cache.

Four ways to authenticate (exactly one per config, see :func:`auth_method`):

- ``api_key``: sent as ``Authorization: token <key>``;
- ``access_token``: a ready OAuth token, sent as ``Bearer`` and never renewed;
- refresh-token OAuth: ``client_id`` + ``client_secret`` and a refresh token, from the
  config or from the token cache that ``tap-lofty --login`` fills;
- client credentials: ``client_id`` + ``client_secret`` + ``customer_key`` (the target
  user's API key).

:class:`OAuthSession` gets a token before the first request, renews it shortly before it
expires and, once per failing token, after a 401; threads asking meanwhile wait for the one
renewal. Lofty may rotate refresh tokens (a used one can stop working at once, api-notes
§14), so every refresh token Lofty returns goes to the cache file *before* its access token
is used: a run killed right after a refresh still leaves the newest token behind.

No token, secret or key is ever logged, put in an error or in STATE: messages name settings
and the cache *path* only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from tap_lofty.errors import LoftyError, safe_url

LOGGER = logging.getLogger("tap_lofty")

#: The token URL of Lofty's OAuth help article, the one documented to return a refresh
#: token and the one working third-party clients refresh at (api-notes §5, §14). The
#: developer page's ``https://api.lofty.com/oauth/token`` documents only the code exchange.
DEFAULT_TOKEN_URL = "https://crm.lofty.com/api/user-web/oauth/token"
#: Lofty's consent page (help article); it takes ``clientId`` and redirects with ``?code=``.
DEFAULT_AUTHORIZE_URL = "https://lofty.com/page/vendor-auth.html"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8976/callback"
CLIENT_AUTH_METHODS = ("basic", "body")
#: When Lofty's answer gives no ``expires_in``: renew after this long (and on a 401).
DEFAULT_LIFETIME_S = 3600.0
#: Renew this long before expiry (half the lifetime for tokens shorter than two minutes),
#: so a request that got its token just before still arrives, after any wait, in time.
RENEW_MARGIN_S = 60.0
#: Tries of one token request when Lofty or the network fails (not for a refusal).
TOKEN_TRIES = 3
CACHE_VERSION = 1

#: Settings holding OAuth parts (one of them set = the OAuth way).
OAUTH_SETTINGS = ("client_id", "client_secret", "refresh_token", "customer_key")
#: Settings that are secrets (never shown, not even in a validation error).
SECRET_SETTINGS = ("api_key", "access_token", "client_secret", "refresh_token", "customer_key")

LOGIN_HINT = (
    "sign in again with `tap-lofty --config <your config> --login` (it stores new tokens in "
    "the token cache), or put a new refresh_token in the config"
)


class AuthError(LoftyError):
    """A credential problem the user has to fix; ``str()`` is one paragraph (no secret)."""


class Credential(Protocol):
    """What :class:`~tap_lofty.client.LoftyClient` needs to authorize its requests."""

    def header(self) -> str:
        """Return the ``Authorization`` value for the next request."""
        ...

    def after_401(self, used: str) -> str | None:
        """Return a renewed header to retry a request refused with ``used`` (None: cannot)."""
        ...

    @property
    def renewable(self) -> bool:
        """Whether a 401 can be answered by renewing (OAuth grants, not static tokens)."""
        ...


@dataclass(frozen=True)
class StaticCredential:
    """An ``api_key`` or a configured ``access_token``: one fixed header."""

    value: str

    def header(self) -> str:
        """Return the fixed header."""
        return self.value

    def after_401(self, used: str) -> str | None:
        """Return None: a fixed credential cannot be renewed."""
        return None

    @property
    def renewable(self) -> bool:
        """Never."""
        return False


def auth_header(*, api_key: str | None, access_token: str | None) -> str:
    """Return the ``Authorization`` value for Lofty's two static credential kinds.

    API keys go as ``token <key>`` (lower-case, per Lofty's docs) and OAuth access
    tokens as ``Bearer <token>``; sending a key as Bearer gets a 400 from Lofty.
    """
    if api_key:
        return f"token {api_key}"
    if access_token:
        return f"Bearer {access_token}"
    raise AuthError("Set either api_key or access_token.")


# ---------------------------------------------------------------------- token cache


def default_cache_path(client_id: str) -> Path:
    """``$XDG_CACHE_HOME/tap-lofty/`` (or ``~/.cache/tap-lofty/``), one file per client_id.

    The file name carries a digest of the client_id, not the id itself: two configs for
    two apps never share a file, and the name says nothing.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(client_id.encode()).hexdigest()[:16]
    return Path(base) / "tap-lofty" / f"oauth-{digest}.json"


def cache_path(config: Mapping[str, Any]) -> Path:
    """Return the token cache file of ``config`` (``token_cache_path`` or the default)."""
    configured = config.get("token_cache_path")
    if configured:
        return Path(configured).expanduser()
    return default_cache_path(str(config.get("client_id") or ""))


def _digest(secret: str | None) -> str | None:
    return None if not secret else hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Tokens:
    """One set of tokens, as kept in memory and in the cache file."""

    access_token: str
    expires_at: float  # time.time() of expiry
    refresh_token: str | None
    lifetime_s: float

    def due(self, now: float) -> bool:
        """Whether to renew before the next request."""
        margin = min(RENEW_MARGIN_S, self.lifetime_s / 2)
        return now >= self.expires_at - margin


class TokenCache:
    """The newest tokens for one client_id, in a file only the user can read (mode 0600).

    Written atomically (a temporary file in the same directory, then ``os.replace``): a
    run killed mid-write leaves the previous tokens, never half a file.
    ``config_refresh_token`` (stored as a SHA-256 digest) records which configured
    refresh_token the cache descends from: when the config later holds a *different*
    one, the user put in a new sign-in and the config wins.
    """

    def __init__(self, path: Path, client_id: str) -> None:
        """Cache at ``path`` for ``client_id``."""
        self.path = path
        self.client_id = client_id

    def load(self, config_refresh_token: str | None) -> Tokens | None:  # noqa: PLR0911
        """Return the cached tokens if they are for this client_id and the config has no newer."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            LOGGER.warning(
                "The OAuth token cache %s cannot be read (%s); ignoring it.",
                self.path,
                type(exc).__name__,
            )
            return None
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return None
        if data.get("client_id") != self.client_id:
            return None
        if config_refresh_token and data.get("config_refresh_token") != _digest(
            config_refresh_token
        ):
            return None  # the config holds a newer sign-in than the cache
        try:
            return Tokens(
                access_token=str(data["access_token"]),
                expires_at=float(data["expires_at"]),
                refresh_token=data.get("refresh_token") or None,
                lifetime_s=float(data.get("lifetime_s") or DEFAULT_LIFETIME_S),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def usable(self, config_refresh_token: str | None) -> bool:
        """Whether :meth:`load` gives a refresh token."""
        tokens = self.load(config_refresh_token)
        return tokens is not None and tokens.refresh_token is not None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the cache (``<file>.lock``) across processes.

        Without ``fcntl`` (Windows) or when the lock file cannot be made, runs unlocked:
        the lock only matters for runs that overlap.
        """
        lock_path = self.path.parent / (self.path.name + ".lock")
        fd: int | None = None
        try:
            import fcntl  # noqa: PLC0415 (POSIX only)

            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock

    def save(self, tokens: Tokens, config_refresh_token: str | None) -> None:
        """Replace the cache with ``tokens`` (mode 0600, atomically)."""
        data = {
            "version": CACHE_VERSION,
            "client_id": self.client_id,
            "access_token": tokens.access_token,
            "expires_at": tokens.expires_at,
            "lifetime_s": tokens.lifetime_s,
            "refresh_token": tokens.refresh_token,
            "config_refresh_token": _digest(config_refresh_token),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600 before anything is written to it.
        fd, tmp = tempfile.mkstemp(prefix=".oauth-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# ---------------------------------------------------------------------- token endpoint


@dataclass(frozen=True)
class OAuthApp:
    """The app's side of every token request."""

    client_id: str
    client_secret: str
    token_url: str
    client_auth: str = "basic"  # or "body" (client_id/client_secret in the form)
    timeout_s: float = 30.0
    user_agent: str = "tap-lofty"

    def request_tokens(
        self,
        form: dict[str, str],
        previous: Tokens | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> Tokens:
        """POST ``form`` to the token URL and return the tokens, or raise AuthError.

        A 5xx or a failed connection is tried again (``TOKEN_TRIES`` in all); a refusal
        (4xx) is not: it will not change.
        """
        form = dict(form)
        auth: tuple[str, str] | None = None
        if self.client_auth == "body":
            form |= {"client_id": self.client_id, "client_secret": self.client_secret}
        else:
            auth = (self.client_id, self.client_secret)
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        grant = form["grant_type"]
        last = ""
        for attempt in range(1, TOKEN_TRIES + 1):
            sent = clock()
            try:
                response = requests.post(
                    self.token_url, data=form, auth=auth, headers=headers, timeout=self.timeout_s
                )
            except requests.RequestException as exc:
                last = f"no answer ({type(exc).__name__})"
            else:
                if response.status_code < 500:
                    return self._tokens(grant, response, sent, previous)
                last = f"HTTP {response.status_code}"
            if attempt < TOKEN_TRIES:
                LOGGER.warning(
                    "OAuth token request (%s) failed: %s; trying again in %d s.",
                    grant,
                    last,
                    attempt,
                )
                sleep(attempt)
        raise AuthError(
            f"The OAuth token request ({grant}) to {safe_url(self.token_url)} failed "
            f"{TOKEN_TRIES} times (last: {last}). Check oauth_token_url and that this machine "
            "can reach it; otherwise run again later."
        )

    def _tokens(
        self, grant: str, response: requests.Response, sent: float, previous: Tokens | None
    ) -> Tokens:
        try:
            body = response.json()
        except ValueError:
            body = None
        status = response.status_code
        if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            raise AuthError(self._refusal(grant, status, body))
        try:
            lifetime = float(body.get("expires_in") or DEFAULT_LIFETIME_S)
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_S
        refresh = body.get("refresh_token") or (previous.refresh_token if previous else None)
        return Tokens(
            access_token=str(body["access_token"]),
            # From when the request was sent: the token cannot live longer than that.
            expires_at=sent + lifetime,
            refresh_token=str(refresh) if refresh else None,
            lifetime_s=lifetime,
        )

    def _refusal(self, grant: str, status: int, body: Any) -> str:
        """One paragraph for a refused token request (Lofty's text kept, no secret)."""
        error, description = "", ""
        if isinstance(body, dict):
            error = str(body.get("error") or body.get("code") or "")
            description = str(body.get("error_description") or body.get("message") or "")
        description = _scrub(description[:200], self.client_id, self.client_secret)
        said = f"HTTP {status}" + (f", {error}" if error else "")
        said += f": {description!r}" if description else ""
        where = f"The OAuth token request ({grant}) to {safe_url(self.token_url)}"
        if error == "invalid_client" or status == 401:
            return (
                f"{where} was refused ({said}). Lofty did not accept the app's credentials: "
                "check client_id and client_secret (Lofty Developer Portal > your app), and "
                "oauth_client_auth ('basic' or 'body') if they are right."
            )
        if error == "invalid_grant" and grant == "refresh_token":
            return (
                f"{where} was refused ({said}): the refresh token was used already, expired "
                f"or was revoked, so this run cannot continue. To fix it, {LOGIN_HINT}."
            )
        if error == "invalid_grant" and grant == "client_credentials":
            return (
                f"{where} was refused ({said}). Check customer_key: it must be the API key of "
                "the Lofty user whose data the tap reads (Settings > Integrations > API)."
            )
        if error == "invalid_grant":
            return (
                f"{where} was refused ({said}): the sign-in code expired or was used already. "
                "Run `tap-lofty --login` again and finish within a minute."
            )
        if status == 200:
            return (
                f"{where} answered HTTP 200 without an access_token. Check oauth_token_url: "
                f"Lofty documents {DEFAULT_TOKEN_URL}."
            )
        return (
            f"{where} was refused ({said}). Check oauth_token_url, client_id and "
            "client_secret; if they are right, sign in again with `tap-lofty --login`."
        )


def _scrub(text: str, *values: str) -> str:
    for secret in values:
        if secret:
            text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------------- the session


class OAuthSession:
    """Access tokens for one run, renewed on time, shared by all threads."""

    def __init__(
        self,
        app: OAuthApp,
        *,
        refresh_token: str | None = None,
        customer_key: str | None = None,
        cache: TokenCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Either ``customer_key`` (client credentials) or a refresh token / the cache."""
        self.app = app
        self._customer_key = customer_key
        self._config_refresh_token = refresh_token
        self._cache = cache if customer_key is None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: Tokens | None = None
        self._refresh_token = refresh_token
        # A refused renewal ends the run: the threads still waiting get the same error
        # instead of each asking Lofty again with the same dead token.
        self._failed: AuthError | None = None
        #: Token requests this run (each is also logged at INFO, without the token).
        self.renewals = 0
        if self._cache is not None:
            cached = self._cache.load(refresh_token)
            if cached is not None and cached.refresh_token:
                # The cache holds the newest (rotated) refresh token: prefer it.
                self._tokens = cached
                self._refresh_token = cached.refresh_token

    @property
    def renewable(self) -> bool:
        """Always: the session can get a new token."""
        return True

    def header(self) -> str:
        """``Bearer <token>`` with a token that is not due; renews first if needed."""
        with self._lock:  # a thread arriving during a renewal waits for it
            if self._tokens is None or self._tokens.due(self._clock()):
                self._renew("expiring" if self._tokens else "first")
            assert self._tokens is not None
            return f"Bearer {self._tokens.access_token}"

    def after_401(self, used: str) -> str | None:
        """Renew after Lofty refused ``used``, unless another thread did already."""
        with self._lock:
            if self._tokens is None or f"Bearer {self._tokens.access_token}" == used:
                self._renew("refused")
            assert self._tokens is not None
            return f"Bearer {self._tokens.access_token}"

    def _renew(self, why: str) -> None:
        """Get new tokens (under the lock) and store a rotated refresh token first thing."""
        if self._failed is not None:
            raise self._failed
        if self._cache is None:
            self._request(why)
            return
        # Another run sharing the cache (an overlapping schedule, a --test) may have renewed
        # meanwhile, retiring the refresh token this one holds: renew under a lock on the
        # cache, starting from what the cache holds then.
        with self._cache.locked():
            newer = self._cache.load(self._config_refresh_token)
            if newer is not None and newer.refresh_token not in (None, self._refresh_token):
                self._refresh_token = newer.refresh_token
                current = self._tokens.access_token if self._tokens else None
                if newer.access_token != current and not newer.due(self._clock()):
                    LOGGER.info("Using the OAuth access token another run just got (%s).", why)
                    self._tokens = newer
                    return
            self._request(why)

    def _request(self, why: str) -> None:
        if self._customer_key is not None:
            form = {"grant_type": "client_credentials", "customer_key": self._customer_key}
        elif self._refresh_token:
            form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        else:
            raise AuthError(
                "No OAuth refresh token: the config has no refresh_token and the token cache "
                f"({self._cache.path if self._cache else 'none'}) holds none for this "
                f"client_id. To fix it, {LOGIN_HINT}."
            )
        LOGGER.info("Getting an OAuth access token (%s, %s).", form["grant_type"], why)
        try:
            tokens = self.app.request_tokens(form, self._tokens, clock=self._clock)
        except AuthError as exc:
            self._failed = exc
            raise
        self.renewals += 1
        if self._cache is not None and tokens.refresh_token:
            self._store(tokens)
        self._tokens = tokens
        self._refresh_token = tokens.refresh_token

    def _store(self, tokens: Tokens) -> None:
        assert self._cache is not None
        try:
            self._cache.save(tokens, self._config_refresh_token)
        except OSError as exc:
            # Keep going: this run has its token. The next run may find the rotated
            # refresh token gone and need a new sign-in, so say it now.
            LOGGER.warning(
                "The OAuth token cache %s cannot be written (%s: %s); this run goes on, "
                "but if Lofty rotated the refresh token the next run needs a new sign-in "
                "(`tap-lofty --login`). Fix token_cache_path or the directory's permissions.",
                self._cache.path,
                type(exc).__name__,
                exc.strerror or exc,
            )


# ---------------------------------------------------------------------- from the config


def auth_method(config: Mapping[str, Any]) -> list[str]:
    """List the ways to authenticate ``config`` sets: api_key, access_token, oauth."""
    methods = [name for name in ("api_key", "access_token") if config.get(name)]
    if any(config.get(name) for name in OAUTH_SETTINGS):
        methods.append("oauth")
    return methods


def config_problems(config: Mapping[str, Any]) -> list[str]:  # noqa: PLR0911
    """List what is wrong with the credential settings of ``config`` (empty: fine)."""
    methods = auth_method(config)
    if len(methods) != 1:
        found = (
            "none is set"
            if not methods
            else "several are set (" + ", ".join(_describe(m, config) for m in methods) + ")"
        )
        return [
            "Give exactly one way to authenticate: api_key (a Lofty API key, sent as 'token "
            "<key>'), access_token (an OAuth token, sent as 'Bearer <token>'), OAuth with a "
            "refresh token (client_id, client_secret and refresh_token, or a token cache "
            "from `tap-lofty --login`) or OAuth client credentials (client_id, client_secret "
            f"and customer_key); {found}"
        ]
    if methods != ["oauth"]:
        return []
    missing = [name for name in ("client_id", "client_secret") if not config.get(name)]
    if missing:
        return [
            f"OAuth needs client_id and client_secret (your Lofty app's, from the Developer "
            f"Portal); {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"
        ]
    if config.get("refresh_token") and config.get("customer_key"):
        return [
            "Give refresh_token (a user's sign-in) or customer_key (client credentials for "
            "the user with that API key), not both"
        ]
    if config.get("refresh_token") or config.get("customer_key"):
        return []
    path = cache_path(config)
    if TokenCache(path, str(config["client_id"])).usable(None):
        return []
    return [
        "OAuth with client_id and client_secret needs a refresh token: run `tap-lofty "
        "--config <your config> --login` once (it stores tokens in the token cache, "
        f"{path}), or set refresh_token, or set customer_key for client credentials"
    ]


def _describe(method: str, config: Mapping[str, Any]) -> str:
    if method != "oauth":
        return method
    return "OAuth: " + ", ".join(name for name in OAUTH_SETTINGS if config.get(name))


def credential_from_config(config: Mapping[str, Any], *, timeout_s: float) -> Credential:
    """Return the credential a validated ``config`` describes."""
    if config.get("api_key") or config.get("access_token"):
        return StaticCredential(
            auth_header(api_key=config.get("api_key"), access_token=config.get("access_token"))
        )
    return OAuthSession(
        oauth_app(config, timeout_s=timeout_s),
        refresh_token=config.get("refresh_token"),
        customer_key=config.get("customer_key"),
        cache=TokenCache(cache_path(config), str(config["client_id"])),
    )


def oauth_app(config: Mapping[str, Any], *, timeout_s: float) -> OAuthApp:
    """Return the app settings of ``config``."""
    return OAuthApp(
        client_id=str(config["client_id"]),
        client_secret=str(config["client_secret"]),
        token_url=str(config.get("oauth_token_url") or DEFAULT_TOKEN_URL),
        client_auth=str(config.get("oauth_client_auth") or "basic"),
        timeout_s=timeout_s,
        user_agent=str(config.get("user_agent") or "tap-lofty"),
    )


# ---------------------------------------------------------------------- --login

#: How long ``--login`` waits for Lofty's redirect.
LOGIN_WAIT_S = 300.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Redirect(BaseHTTPRequestHandler):
    """Receives the one redirect from Lofty's consent page."""

    server: _RedirectServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != self.server.expected_path:
            self.send_error(404)
            return
        self.server.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        ok = "code" in self.server.query
        page = (
            "<html><body><h1>tap-lofty: signed in</h1><p>You can close this tab.</p></body></html>"
            if ok
            else "<html><body><h1>tap-lofty: sign-in failed</h1><p>See the terminal.</p>"
            "</body></html>"
        ).encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request line holds the code."""


class _RedirectServer(HTTPServer):
    expected_path: str
    query: dict[str, str] | None = None


def consent_url(config: Mapping[str, Any], redirect_uri: str, state: str) -> str:
    """Lofty's consent page for the app, redirecting to ``redirect_uri`` with ``state``."""
    base = str(config.get("oauth_authorize_url") or DEFAULT_AUTHORIZE_URL)
    query = urlencode(
        {
            "clientId": config["client_id"],
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return base + ("&" if "?" in base else "?") + query


def login(
    config: Mapping[str, Any],
    *,
    say: Callable[[str], None],
    read_line: Callable[[], str],
    wait_s: float = LOGIN_WAIT_S,
    timeout_s: float = 30.0,
) -> Path:
    """Sign in with an authorization code: consent URL, redirect or pasted code, exchange.

    With a loopback ``oauth_redirect_uri`` (the default) the redirect is received on that
    port; with any other (an https page registered for the app) the user pastes the
    address the browser ended on, or just the code. Returns the cache path.
    """
    missing = [name for name in ("client_id", "client_secret") if not config.get(name)]
    if missing:
        raise AuthError(
            f"--login needs client_id and client_secret (your Lofty app's, from the Developer "
            f"Portal) in the config; {' and '.join(missing)} not set."
        )
    if any(config.get(name) for name in ("api_key", "access_token", "customer_key")):
        raise AuthError(
            "--login signs a user in for OAuth with a refresh token; remove api_key, "
            "access_token and customer_key from the config first."
        )
    redirect_uri = str(config.get("oauth_redirect_uri") or DEFAULT_REDIRECT_URI)
    state = secrets.token_urlsafe(16)
    url = consent_url(config, redirect_uri, state)
    target = urlsplit(redirect_uri)
    listen = target.scheme == "http" and target.hostname in _LOOPBACK
    server: _RedirectServer | None = None
    if listen:
        try:
            server = _RedirectServer((target.hostname or "127.0.0.1", target.port or 80), _Redirect)
        except OSError as exc:
            raise AuthError(
                f"--login cannot listen on {target.hostname}:{target.port or 80} for Lofty's "
                f"redirect ({exc.strerror or exc}). Stop what uses that port, or set "
                "oauth_redirect_uri to another http://127.0.0.1:<port>/callback (registered "
                "for your app in the Lofty Developer Portal)."
            ) from None
        server.expected_path = target.path or "/"
    say(
        "Open this address in a browser, sign in to Lofty and allow access for the app:\n"
        f"  {url}\n"
        + (
            f"Waiting up to {wait_s:.0f} s for Lofty to redirect to {redirect_uri} ..."
            if listen
            else f"Lofty then redirects to {redirect_uri}; paste the address the browser "
            "shows then (or just its code= value) here and press Enter:"
        )
    )
    query = _wait_for_redirect(server, wait_s) if server is not None else _pasted(read_line())
    if query.get("error"):
        raise AuthError(
            f"The sign-in did not finish: Lofty redirected with error={query['error']!r} "
            "(access_denied: the user did not allow access). Run --login again and allow it."
        )
    if "state" in query and query["state"] != state:
        raise AuthError(
            "The sign-in redirect carries a different state than this --login sent (an old "
            "or foreign redirect); run --login again and use the address it prints."
        )
    code = query.get("code")
    if not code:
        raise AuthError(
            "No sign-in code: the redirect (or what was pasted) has no code= value. Run "
            "--login again and paste the whole address the browser shows after allowing access."
        )
    app = oauth_app(config, timeout_s=timeout_s)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": app.client_id,  # the developer page lists it in the form
    }
    if app.client_auth == "body":
        form.pop("client_id")
    tokens = app.request_tokens(form)
    if not tokens.refresh_token:
        raise AuthError(
            "Lofty answered the sign-in with an access token but no refresh token, so runs "
            "could not renew it. Check oauth_token_url (Lofty documents refresh tokens at "
            f"{DEFAULT_TOKEN_URL})."
        )
    path = cache_path(config)
    TokenCache(path, app.client_id).save(tokens, config.get("refresh_token"))
    return path


def _wait_for_redirect(server: _RedirectServer, wait_s: float) -> dict[str, str]:
    deadline = time.monotonic() + wait_s
    try:
        while server.query is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AuthError(
                    f"No redirect from Lofty within {wait_s:.0f} s. Run --login again, open "
                    "the address it prints and allow access; check that oauth_redirect_uri is "
                    "registered for your app in the Lofty Developer Portal."
                )
            server.timeout = min(left, 1.0)
            server.handle_request()
        return server.query
    finally:
        server.server_close()


def _pasted(line: str) -> dict[str, str]:
    text = line.strip()
    if "=" not in text:
        return {"code": text} if text else {}
    query = urlsplit(text).query if "?" in text else text
    return {k: v[0] for k, v in parse_qs(query).items()}
