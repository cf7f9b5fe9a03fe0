"""The HTTP client every Lofty request goes through: auth, pacing, retries and errors.

One ``LoftyClient`` serves the whole run and is safe to share between threads. For
each request it takes a slot from the shared :class:`~tap_lofty.ratelimit.RequestBudget`,
sends it with the credential in the ``Authorization`` header, and then:

- 2xx with valid JSON: returns the parsed body (integers stay exact Python ints);
- 429: waits for the rate-limit window to reset and tries again, up to
  ``max_rate_limit_wait`` seconds in total;
- 5xx, timeouts, refused or dropped connections, a 2xx whose body is not valid JSON:
  retries with exponential backoff and jitter, up to ``max_retries`` times (a TLS
  failure is not retried: it does not fix itself);
- 401, 403, 400 and other 4xx: raises :class:`LoftyAPIError` at once, with one
  paragraph naming the endpoint, Lofty's code and message, and what to do.

No message or log line carries the credential: requests are logged by path only.

When the run fails, :meth:`LoftyClient.abort` stops every other thread at once: waits
and backoffs end, and ``get()`` raises :class:`~tap_lofty.ratelimit.RunAborted`
without logging, so the run's error is the last line the user sees.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from tap_lofty.auth import Credential, StaticCredential
from tap_lofty.errors import LoftyError, safe_url
from tap_lofty.ratelimit import RequestBudget, RunAborted

LOGGER = logging.getLogger("tap_lofty")

#: Lofty's business code for "the lead does not exist" (or is outside your team).
LEAD_NOT_EXIST = 20006
#: Lofty's business code for "your app lacks the scope for this endpoint" (HTTP 403).
NO_PERMISSION = 200100
#: Lofty answers an API key sent as a Bearer token with HTTP 400 and this code.
USER_IN_TOKEN_NOT_EXIST = 200058

#: Failures without a complete response, retried like a 5xx.
TRANSIENT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


class LoftyAPIError(LoftyError):
    """Lofty answered with an error that retrying will not fix."""

    def __init__(
        self, message: str, *, status: int, endpoint: str, code: Any = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.endpoint = endpoint
        self.code = code
        self.detail = detail


class LeadNotFoundError(LoftyAPIError):
    """404 with code 20006: the lead was deleted (or left the team) after it was listed."""


@dataclass
class ClientStats:
    """Counters for progress lines and the end-of-run summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    #: Answered requests per path (the ETA tells listing pages from call pages).
    by_path: dict[str, int] = field(default_factory=dict)


class LoftyConnectionError(LoftyError):
    """No response from Lofty at all: refused, unresolvable, TLS, timeout or a bad api_url."""


@dataclass(frozen=True)
class _Refused:
    """A 401 to an OAuth token: renew it and try once more, or raise ``error``."""

    error: LoftyAPIError


@dataclass(frozen=True)
class _Body:
    """A 2xx answer's parsed JSON body, of the shape the caller expects."""

    value: Any


@dataclass(frozen=True)
class _NoResponse:
    """Why a request got no complete response, and whether a retry can help."""

    reason: str  # a clause naming the host, e.g. "127.0.0.1:8765 refused the connection"
    kind: str  # refused, dns, tls, connect_timeout, read_timeout, dropped
    retry: bool  # False when retrying cannot help (a TLS failure)


class LoftyClient:
    """Sends GET requests to Lofty under the shared request budget, with retries."""

    def __init__(
        self,
        *,
        api_url: str,
        authorization: str | Credential,
        budget: RequestBudget,
        timeout_s: float = 60.0,
        user_agent: str = "tap-lofty",
        max_retries: int = 8,
        max_rate_limit_wait_s: float = 600.0,
        sleep: Callable[[float], None] | None = None,
        retry_no_response: bool = True,
        backoff_base_s: float | None = None,
        timeout_label: str = "request_timeout",
    ) -> None:
        """Create a client for ``api_url``.

        ``authorization`` is the full header value, or a :class:`~tap_lofty.auth.Credential`
        (OAuth) asked for the header before each request.

        ``retry_no_response=False`` (``--test``) fails at once when no response came
        (refused, DNS, TLS, timeout): the user is waiting for a yes or no.
        ``timeout_label`` says in messages where ``timeout_s`` comes from.
        """
        self.api_url = api_url.rstrip("/")
        self.credential: Credential = (
            StaticCredential(authorization) if isinstance(authorization, str) else authorization
        )
        self._headers = {
            "Accept": "application/json",
            # Lofty answers some GETs with 415 when this is missing.
            "Content-Type": "application/json",
            "User-Agent": user_agent,
        }
        self.budget = budget
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_rate_limit_wait_s = max_rate_limit_wait_s
        self.retry_no_response = retry_no_response
        self.timeout_label = timeout_label
        self._backoff_base_s = backoff_base_s
        self._sleep = sleep
        self._local = threading.local()
        self._stats_lock = threading.Lock()
        self.stats = ClientStats()
        # abort() takes this lock to set the event, and every retry or wait line is
        # logged under it after checking the event: once abort() returns, no thread
        # prints another line (the run's error is meant to be the last one).
        self._abort_lock = threading.Lock()
        self._aborted = threading.Event()

    def abort(self) -> None:
        """Stop every thread's requests: waits end at once and ``get()`` raises RunAborted.

        Called when the run has failed, before its error is shown: worker threads still
        retrying other leads then stop within moments, silently.
        """
        with self._abort_lock:
            self._aborted.set()
        self.budget.abort()

    @property
    def aborted(self) -> bool:
        """Whether :meth:`abort` was called."""
        return self._aborted.is_set()

    def _log_unless_aborted(self, level: int, message: str, *args: Any) -> None:
        with self._abort_lock:
            if self._aborted.is_set():
                raise RunAborted
            LOGGER.log(level, message, *args)

    def get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """GET ``path`` and return its JSON object, retrying what can be retried."""
        body: dict[str, Any] = self._get(path, params, dict)
        return body

    def get_list(self, path: str, params: Mapping[str, Any]) -> list[Any]:
        """GET an endpoint that answers a bare JSON array (``/v1.0/team-features/lead-ponds``)."""
        body: list[Any] = self._get(path, params, list)
        return body

    def _get(self, path: str, params: Mapping[str, Any], expect: type) -> Any:
        endpoint = f"GET {path}"
        attempt = 0
        rate_limit_waited = 0.0
        renewed_after_401 = False
        while True:
            if self._aborted.is_set():
                raise RunAborted
            self.budget.acquire()
            try:
                # After the slot, not before: acquire() can wait out a whole rate-limit
                # window, and a token taken before that wait may expire during it.
                authorization = self.credential.header()
                outcome = self._attempt(endpoint, path, params, authorization, expect)
            finally:
                self.budget.release()
            if isinstance(outcome, _Body):
                return outcome.value
            if isinstance(outcome, _Refused):
                # An OAuth token refused before its expiry (revoked, or clocks apart): one
                # renewal, then the request once more; a second 401 is the error.
                if renewed_after_401 or self.credential.after_401(authorization) is None:
                    raise outcome.error
                renewed_after_401 = True
                self._log_unless_aborted(
                    logging.INFO, "%s: 401; renewed the OAuth access token, trying again.", endpoint
                )
                continue
            if isinstance(outcome, float):  # 429: wait for the window, not a retry
                if rate_limit_waited + outcome > self.max_rate_limit_wait_s:
                    raise LoftyError(self._rate_limit_message(endpoint, rate_limit_waited, outcome))
                rate_limit_waited += outcome
                self._log_unless_aborted(
                    logging.INFO,
                    "%s: 429 Too Many Requests; waiting %.1f s for Lofty's rate-limit "
                    "window to reset.",
                    endpoint,
                    outcome,
                )
                continue  # the wait happens in budget.acquire()
            attempt += 1
            self._back_off(endpoint, attempt, outcome)

    def _attempt(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, Any],
        authorization: str,
        expect: type,
    ) -> _Body | str | float | _Refused:
        """Send one request: the body, a retryable reason, the wait a 429 asks for, or a 401."""
        headers = {**self._headers, "Authorization": authorization}
        try:
            response = self._session().get(
                self.api_url + path, params=params, headers=headers, timeout=self.timeout_s
            )
            body_bytes = response.content  # a dropped connection raises here
            self.budget.observe(response.headers)
        except TRANSIENT_ERRORS as exc:
            if self._aborted.is_set():
                raise RunAborted from None
            failure = self._no_response(exc)
            # --test retries only a connection that broke mid-answer (once): the other
            # failures will not have gone away a second later.
            fail_now = not self.retry_no_response and failure.kind != "dropped"
            if fail_now or not failure.retry:
                raise LoftyConnectionError(self._no_response_message(endpoint, failure)) from None
            return failure.reason
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ):
            raise LoftyConnectionError(
                f"api_url {safe_url(self.api_url)!r} is not a usable URL; it must look like "
                "https://api.lofty.com (http:// only for a local test server)."
            ) from None
        if self._aborted.is_set():
            raise RunAborted
        status = response.status_code
        self._count(path, status)
        if status == 429:
            with self._stats_lock:
                self.stats.rate_limited += 1
            return float(self.budget.wait_for_reset(response.headers))
        if status >= 500:
            return f"HTTP {status}"
        if status == 401 and self.credential.renewable:
            return _Refused(_client_error(endpoint, response, params, oauth=True))
        if not 200 <= status < 300:
            raise _client_error(endpoint, response, params)
        try:
            body = json.loads(body_bytes)
        except ValueError:
            return f"HTTP {status} with a body that is not valid JSON"
        if not isinstance(body, expect):
            documented = "an object" if expect is dict else "an array"
            raise LoftyError(
                f"{endpoint} returned HTTP {status} with a JSON {type(body).__name__} where "
                f"Lofty documents {documented}. The API has changed or api_url points at "
                "something else; check api_url."
            )
        return _Body(body)

    def _back_off(self, endpoint: str, attempt: int, reason: str) -> None:
        """Wait before retry number ``attempt``, or raise if retries are used up."""
        if attempt > self.max_retries:
            raise LoftyError(
                f"{endpoint} failed {attempt} times in a row (last: {reason}). Lofty or the "
                "network is having trouble; the run stopped rather than skip data. Check "
                f"api_url ({safe_url(self.api_url)}) if this persists; otherwise run again "
                "later (the last STATE lets the next run resume), or raise max_retries."
            )
        base = BACKOFF_BASE_S if self._backoff_base_s is None else self._backoff_base_s
        wait = min(BACKOFF_CAP_S, base * 2 ** (attempt - 1))
        wait = random.uniform(wait / 2, wait)
        with self._stats_lock:
            self.stats.retries += 1
        self._log_unless_aborted(
            logging.WARNING,
            "%s: %s; retry %d of %d in %.1f s.",
            endpoint,
            reason,
            attempt,
            self.max_retries,
            wait,
        )
        if self._sleep is None:
            self._aborted.wait(wait)  # abort() ends the backoff at once
        else:
            self._sleep(wait)

    def _rate_limit_message(self, endpoint: str, waited: float, next_wait: float) -> str:
        limit = f"max_rate_limit_wait={self.max_rate_limit_wait_s:g} s"
        if not self.retry_no_response:
            limit = f"the {self.max_rate_limit_wait_s:g} s that --test waits at most"
        return (
            f"{endpoint}: Lofty kept answering 429 Too Many Requests; the tap waited "
            f"{waited:.0f} s in total for its rate-limit window, and the next reset is "
            f"{next_wait:.0f} s away, beyond {limit}. Another client probably shares this "
            "app's request budget: lower requests_per_minute so the tap paces itself below "
            "Lofty's limit, or raise max_rate_limit_wait."
        )

    def _no_response(self, exc: Exception) -> _NoResponse:
        """Say which host failed how, from requests' and urllib3's exception chain."""
        parts = urlsplit(self.api_url)
        host = parts.hostname or parts.netloc
        where = f"{host}:{parts.port}" if parts.port else host
        timeout = f"{self.timeout_s:g} s ({self.timeout_label})"
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(exc, requests.exceptions.SSLError):
            # e.g. "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"
            found = re.search(r"\]\s*([^()\[\]]+?)\s*(?:\(_ssl|$)", str(reason or exc))
            detail = found.group(1) if found else "SSL error"
            return _NoResponse(f"the TLS handshake with {host} failed ({detail})", "tls", False)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _NoResponse(
                f"{where} did not accept a connection within {timeout}", "connect_timeout", True
            )
        if isinstance(exc, requests.Timeout):
            return _NoResponse(f"{where} did not answer within {timeout}", "read_timeout", True)
        if isinstance(reason, urllib3.exceptions.NameResolutionError):
            return _NoResponse(f"the host name {host} could not be resolved (DNS)", "dns", True)
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            refused = "refused" in str(reason).lower()
            said = f"{where} refused the connection" if refused else f"could not connect to {where}"
            return _NoResponse(said, "refused", True)
        return _NoResponse(
            f"the connection to {where} broke before a complete response ({type(exc).__name__})",
            "dropped",
            True,
        )

    def _no_response_message(self, endpoint: str, failure: _NoResponse) -> str:
        url = safe_url(self.api_url)
        if failure.kind == "tls":
            advice = (
                "Check api_url: Lofty is https://api.lofty.com (http:// only for a local test "
                "server), and any proxy that intercepts TLS."
            )
        elif failure.kind in ("connect_timeout", "read_timeout"):
            advice = (
                "Lofty or the network is slow or a firewall drops the traffic; try again, or "
                "raise request_timeout."
            )
        elif failure.kind == "dns":
            advice = "Check api_url for a typo, and this machine's DNS and proxy settings."
        else:
            advice = (
                "Check api_url and that this machine can reach that host (firewall, proxy, VPN)."
            )
        return f"{endpoint}: {failure.reason}; api_url is {url!r}. {advice}"

    def _session(self) -> requests.Session:
        # requests.Session is not documented as thread-safe: one per worker thread.
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _count(self, path: str, status: int) -> None:
        with self._stats_lock:
            self.stats.requests += 1
            self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
            self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1


def _error_body(response: requests.Response) -> tuple[Any, str]:
    """Lofty's ``{code, message}`` error body; also copes with a bare string or nothing."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return None, text[:200]
    if isinstance(body, dict):
        return body.get("code"), str(body.get("message", "") or "")
    return None, str(body)[:200]


def _client_error(
    endpoint: str, response: requests.Response, params: Mapping[str, Any], *, oauth: bool = False
) -> LoftyAPIError:
    status = response.status_code
    code, message = _error_body(response)
    said = f"HTTP {status}" + (f", Lofty code {code}" if code is not None else "")
    said += f": {message!r}" if message else " with no message"
    if status == 401 and oauth:
        advice = (
            "Lofty refused the OAuth access token even right after renewing it: the app's "
            "access may have been revoked or lack this user. Sign in again with `tap-lofty "
            "--config <your config> --login`, or check client_id and customer_key."
        )
    elif status == 401:
        advice = (
            "The credential was refused. Check api_key (sent as 'Authorization: token "
            "<key>') or access_token (sent as 'Authorization: Bearer <token>'): it may be "
            "mistyped, expired or revoked."
        )
    elif status == 403 and str(code) == str(NO_PERMISSION):
        advice = (
            "The credential is valid but the Lofty app lacks the scope for this endpoint. "
            "Grant it in the Lofty Developer Portal, or deselect the stream that needs it."
        )
    elif status == 403:
        advice = "The credential is valid but has no permission for this data."
    elif status == 400 and str(code) == str(USER_IN_TOKEN_NOT_EXIST):
        advice = (
            "Lofty could not match the credential to a user. An API key must be given as "
            "api_key, not as access_token."
        )
    elif status == 400 and "scrollId" in params:
        advice = (
            "Lofty refused the leads scroll token; scroll tokens expire after a while "
            "(about an hour has been seen). Run again: the last STATE lets the next run "
            "skip the leads already done."
        )
    elif status == 400:
        sent = ", ".join(f"{k}={v}" for k, v in params.items() if k != "scrollId")
        advice = (
            f"Lofty rejected a request parameter (sent: {sent or 'none'}). Check "
            "leads_page_size (1..100) and calls_page_size (1..1000)."
        )
    elif status == 404 and str(code) == str(LEAD_NOT_EXIST):
        return LeadNotFoundError(
            f"{endpoint}: {said}.", status=status, endpoint=endpoint, code=code, detail=message
        )
    elif status == 404:
        advice = "Check api_url: it should be Lofty's API root, e.g. https://api.lofty.com."
    else:
        advice = "This is unexpected; please report it with this message."
    return LoftyAPIError(
        f"{endpoint} failed with {said}. {advice}",
        status=status,
        endpoint=endpoint,
        code=code,
        detail=message,
    )
