"""The HTTP side of the simulator: :class:`LoftySimulator` and its request handler."""

from __future__ import annotations

import base64
import bisect
import contextlib
import dataclasses
import hashlib
import json
import math
import random
import re
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from lofty_sim.config import DATA_FIELDS, Fault, SimConfig
from lofty_sim.data import CALLER_AGENT_ID, DAY_MS, Dataset, LeadState, dumps, feed_item
from lofty_sim.oauth import OAuthProvider
from lofty_sim.team import build_members, build_ponds, build_stages, build_transactions

LEADS_PATH = "/v1.0/leads"
CALLS_PATH = "/v1.0/communication/call"
TEXTS_PATH = "/v1.0/communication/text"
EMAILS_PATH = "/v1.0/communication/email"
FEED_PATH = "/v2.0/communication/agent"
MEMBERS_PATH = "/v1.0/members"
STAGES_PATH = "/v1.0/teamFeatures/lead-pipelines"
PONDS_PATH = "/v1.0/team-features/lead-ponds"
TRANSACTIONS_PATH = "/v2.0/transactions"
#: The team-level endpoints, by their ``SimConfig.missing_scopes`` name.
TEAM_PATHS = {
    MEMBERS_PATH: "members",
    STAGES_PATH: "lead_stages",
    PONDS_PATH: "ponds",
    TRANSACTIONS_PATH: "transactions",
}
TRANSACTION_TYPES = ("purchase", "listing", "lease", "other", "all")
#: The per-lead history endpoints, by the key of their list (and the channel's name).
HISTORY_PATHS = {CALLS_PATH: "calls", TEXTS_PATH: "texts", EMAILS_PATH: "emails"}
#: The scope (``SimConfig.missing_scopes`` name) of each API path.
SCOPE_OF = {LEADS_PATH: "leads", **HISTORY_PATHS, FEED_PATH: "feed", **TEAM_PATHS}
FEED_KINDS = ("CALL", "TEXT", "EMAIL", "ALL")
FEED_MAX_WINDOW_MS = 90 * 86_400_000
JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html"
INT64_MAX = 2**63 - 1
#: X-RateLimit-Limit sent when the rate limit is off (rate_limit=None).
UNLIMITED = 1_000_000
# Bounds of the lazily filled caches (least recently used entries are dropped and, being
# deterministic, regenerated on the next access).
CALL_CACHE_MAX_CALLS = 2_000_000
LEAD_CACHE_MAX = 200_000
SCROLL_STORE_MAX = 200_000

_INT_RE = re.compile(r"-?[0-9]+")

NO_SCOPE_MESSAGE = "Sorry, the vendor does not have permission for this API."
BODY_404_LEAD = b'{"code":20006,"message":"LEAD_NOT_EXIST"}'
BODY_429 = b'{"message":"Too Many Requests"}'
BODY_500 = b'{"code":20005,"message":"internal error"}'
BODY_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n"
    b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class ApiError(Exception):
    """An API error answer: HTTP status plus the ``{code, message}`` body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        """Remember the status and build the body."""
        super().__init__(message)
        self.status = status
        self.body = dumps({"code": code, "message": message})


def _invalid(message: str) -> ApiError:
    return ApiError(400, 20012, f"INVALID_PARAMETER: {message}")


def _int_param(query: dict[str, str], name: str) -> int | None:
    """Parse an integer query parameter; empty counts as absent (as Spring binds it).

    Only the syntax is checked here; each endpoint checks the range, so that e.g. ``currentId``
    of -2**63 (a valid int64, but negative) and 2**63 (beyond int64) get messages that say what
    is wrong.
    """
    raw = query.get(name, "")
    if raw == "":
        return None
    # Strict digits: Python's int() would also take "1_000" or " 5 ". The length cap keeps a
    # megabyte of digits from costing a bignum conversion.
    if len(raw) > 40 or not _INT_RE.fullmatch(raw):
        raise _invalid(f"{name} must be an integer")
    return int(raw)


def _id_param(query: dict[str, str], name: str, minimum: int) -> int | None:
    """Parse an int64 id parameter that must be at least ``minimum``."""
    value = _int_param(query, name)
    if value is None:
        return None
    if value < minimum:
        raise _invalid(f"{name} must be >= {minimum}")
    if value > INT64_MAX:
        raise _invalid(f"{name} must be <= {INT64_MAX} (a 64-bit integer)")
    return value


def _bool_param(query: dict[str, str], name: str) -> bool | None:
    raw = query.get(name, "").lower()
    if raw == "":
        return None
    if raw not in ("true", "false"):
        raise _invalid(f"{name} must be true or false")
    return raw == "true"


@dataclass(frozen=True, slots=True)
class _Scroll:
    """What a scrollId stands for: a position in a frozen ordering of lead indexes."""

    order: tuple[int, ...]
    pos: int
    limit: int
    issued: float  # time.monotonic() at issue; the TTL counts from here
    shuffle: bool = False  # leads_order was shuffled_per_page when the scroll started


#: One feed item: (communication time ms, id, kind, agentId, appended at, bytes, lead index).
_FeedEntry = tuple[int, int, str, int, float, bytes, int]


@dataclass(slots=True)
class _FeedIndex:
    """Every feed item, sorted by (communication time ms, id), in parallel lists.

    Built once, on the first feed request (it generates every row of every lead), then kept up
    to date by the mutations (appends insert, deletions drop a lead's items) rather than rebuilt.
    """

    keys: list[tuple[int, int]]
    kinds: list[str]
    agents: list[int]
    appended: list[float]  # time.time() of the append; 0.0 for generated items
    raw: list[bytes]
    leads: list[int]  # lead index

    @classmethod
    def build(cls, entries: list[_FeedEntry]) -> _FeedIndex:
        """Index these entries (in any order)."""
        entries.sort(key=lambda e: (e[0], e[1]))
        return cls(
            keys=[(e[0], e[1]) for e in entries],
            kinds=[e[2] for e in entries],
            agents=[e[3] for e in entries],
            appended=[e[4] for e in entries],
            raw=[e[5] for e in entries],
            leads=[e[6] for e in entries],
        )

    def add(self, entry: _FeedEntry) -> None:
        """Insert one entry at its place."""
        pos = bisect.bisect_right(self.keys, (entry[0], entry[1]))
        self.keys.insert(pos, (entry[0], entry[1]))
        self.kinds.insert(pos, entry[2])
        self.agents.insert(pos, entry[3])
        self.appended.insert(pos, entry[4])
        self.raw.insert(pos, entry[5])
        self.leads.insert(pos, entry[6])

    def drop_lead(self, idx: int) -> None:
        """Remove every item of one lead."""
        keep = [i for i, lead in enumerate(self.leads) if lead != idx]
        if len(keep) == len(self.leads):
            return
        self.keys = [self.keys[i] for i in keep]
        self.kinds = [self.kinds[i] for i in keep]
        self.agents = [self.agents[i] for i in keep]
        self.appended = [self.appended[i] for i in keep]
        self.raw = [self.raw[i] for i in keep]
        self.leads = [self.leads[i] for i in keep]

    def scan(  # noqa: PLR0917 (one call site per argument shape; keywords add nothing)
        self,
        kind: str,
        team_view: bool,
        start: int,
        end: int,
        after: tuple[int, int] | None,
        visible_before: float,
        limit: int | None = None,
    ) -> list[int]:
        """Positions of the matching items in [start, end] (inclusive), after ``after``."""
        lo = bisect.bisect_left(self.keys, (start, -1))
        if after is not None:
            lo = max(lo, bisect.bisect_right(self.keys, after))
        hi = bisect.bisect_right(self.keys, (end, 2**64))
        out = []
        for i in range(lo, hi):
            if kind != "ALL" and self.kinds[i] != kind:
                continue
            if not team_view and self.agents[i] != CALLER_AGENT_ID:
                continue
            if self.appended[i] > visible_before:
                continue  # not indexed yet (feed_delay_s)
            out.append(i)
            if limit is not None and len(out) >= limit:
                break
        return out


@dataclass(frozen=True, slots=True)
class _Ticket:
    """Admission decision for one API request, taken under the lock."""

    number: int
    allowed: bool
    headers: dict[str, str]
    fault: str | None
    delay: float
    slow_s: float


@dataclass(slots=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    fault_applied: bool = False  # only the lead_deleted fault can turn out not to apply


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # ThreadingHTTPServer would join every handler thread on close; keep-alive connections make
    # that wait for the clients, so stop() closes the sockets itself instead.
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: LoftySimulator) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it to start fast.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def close_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients with a Session expect
    server_version = "LoftySim/1.0"
    sys_version = ""

    @property
    def _srv(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle + delayed ACK can stall
        # each response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._srv.connections_lock:
            self._srv.connections.add(self.connection)

    def finish(self) -> None:
        with self._srv.connections_lock:
            self._srv.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def version_string(self) -> str:
        """Return the Server header value (without the Python version)."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and benchmarks make many thousands of requests."""

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Dispatch a POST."""
        self._dispatch("POST")

    def do_PUT(self) -> None:
        """Dispatch a PUT."""
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        """Dispatch a DELETE."""
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        """Dispatch a PATCH."""
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        headers_sent = False
        try:
            length = int(self.headers.get("Content-Length") or 0)
            # Always consume the body so the next request on this keep-alive connection parses.
            body = self.rfile.read(length) if length > 0 else b""
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            if path.startswith("/_sim/"):
                status, payload = self._srv.sim._control(method, path, body)
                headers_sent = True
                self._send(status, dumps(payload), JSON_TYPE, {})
                return
            # OAuth consent page and token endpoint (lofty_sim/oauth.py): no rate limit, not
            # in the API counters.
            oauth = self._srv.sim.oauth.handle(method, path, parts.query, self.headers, body)
            if oauth is not None:
                headers_sent = True
                self._send(oauth.status, oauth.body, oauth.content_type, oauth.headers)
                return
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            headers_sent = self._srv.sim._serve_api(self, method, path, query)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a simulator bug: answer 500 and make it visible
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not headers_sent:
                with contextlib.suppress(OSError):
                    self._send(500, BODY_500, JSON_TYPE, {})

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str],
        *,
        content_length: int | None = None,
        drop_after: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header(
            "Content-Length", str(len(body) if content_length is None else content_length)
        )
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if drop_after is None:
            self.wfile.write(body)
            return
        # Connection dropped mid-body: the client was promised more bytes than it gets.
        self.wfile.write(body[:drop_after])
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class LoftySimulator:
    """A local Lofty Open API server with ground truth, request counters and fault injection.

    Use ``start()``/``stop()`` or a ``with`` block. All public methods are thread-safe.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        """Generate the (lazy) data set; the server is not started yet."""
        self._config = config if config is not None else SimConfig()
        cfg = self._config
        self._lock = threading.RLock()
        self._data = Dataset(
            cfg.seed,
            cfg.leads,
            cfg.calls_per_lead_mean,
            cfg.big_leads,
            live_shape_share=cfg.live_shape_share,
            texts_per_lead_mean=cfg.texts_per_lead_mean,
            emails_per_lead_mean=cfg.emails_per_lead_mean,
            big_text_leads=cfg.big_text_leads,
        )
        self._n_current = len(self._data.leads)
        self._version = 0  # bumped by every data mutation; invalidates cached orderings
        self._lead_cache: OrderedDict[int, bytes] = OrderedDict()
        # Serialized history rows by (channel, lead index); the bound counts rows of all channels.
        self._call_cache: OrderedDict[tuple[str, int], tuple[list[int], list[bytes]]] = (
            OrderedDict()
        )
        self._cached_calls = 0
        self._feed: _FeedIndex | None = None
        self._orders: dict[tuple[str, bool], tuple[int, tuple[int, ...]]] = {}
        self._scrolls: dict[str, _Scroll] = {}
        self._scrolls_issued = 0
        # Separate seeded streams, so e.g. turning jitter on does not change which requests fault.
        self._fault_rng = random.Random(f"faults:{cfg.seed}")
        self._jitter_rng = random.Random(f"jitter:{cfg.seed}")
        self._request_count = 0
        self._window_start: float | None = None
        self._window_used = 0
        self._counters: dict[str, int] = {}
        self._request_log: list[tuple[float, str, int]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._members = build_members(cfg.seed, cfg.team_members)
        self._stages = build_stages()
        self._ponds = build_ponds(cfg.seed)
        self._transactions: list[dict[str, Any]] | None = None  # built on first use
        #: The OAuth side (tokens, consent page); its switches: ``sim.oauth.configure(...)``.
        self.oauth = OAuthProvider(customer_key=cfg.api_key)

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; return the base URL (``port=0``: an ephemeral port)."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((host, port), self)
        self._server = server
        self._url = f"http://{host}:{server.server_port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="lofty-sim",
            daemon=True,
        )
        self._thread.start()
        return self._url

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LoftySimulator:
        """Start on an ephemeral port unless already started."""
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (only after ``start()``)."""
        if self._url is None:
            raise RuntimeError("simulator not started")
        return self._url

    @property
    def config(self) -> SimConfig:
        """The current configuration (replaced as a whole by :meth:`configure`)."""
        return self._config

    def configure(self, **changes: Any) -> SimConfig:
        """Change runtime switches (cursor_mode, rate_limit, fault_rate, latency_s, ...).

        Data-shaping fields cannot change. Changing ``rate_limit`` or ``rate_window_s`` starts a
        fresh rate window. Returns the new configuration.
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(SimConfig)}
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        fixed = DATA_FIELDS & set(changes)
        if fixed:
            raise ValueError(f"cannot change {sorted(fixed)} on a running simulator")
        with self._lock:
            new = dataclasses.replace(self._config, **changes)  # validates in __post_init__
            if {"rate_limit", "rate_window_s"} & set(changes):
                self._window_start = None
                self._window_used = 0
            if "extra_lead_fields" in changes:
                self._lead_cache.clear()  # the cached bytes carry the old extra fields
            self._config = new
            return new

    # ------------------------------------------------------------------ ground truth

    def _live(self) -> list[LeadState]:
        return [s for s in self._data.leads if not s.deleted]

    def leads(self) -> list[dict[str, Any]]:
        """Return the current (non-deleted) leads as served, ascending leadId.

        Leads marked with :meth:`delete_after_listing` are included: they are still listed.
        """
        with self._lock:
            return [self._build_lead(s) for s in self._live()]

    def lead_ids(self) -> list[int]:
        """Ids of the current leads, ascending (includes delete_after_listing leads)."""
        with self._lock:
            return [s.lead_id for s in self._live()]

    def calls(self, lead_id: int) -> list[dict[str, Any]]:
        """Return a lead's calls as served, ascending id.

        ``[]`` for a lead the call endpoint answers 404 for (deleted or delete_after_listing);
        ``KeyError`` for an id that never existed.
        """
        with self._lock:
            st = self._data.by_id[lead_id]
            if st.deleted or st.calls_gone:
                return []
            return self._data.calls(st)

    def all_calls(self) -> list[dict[str, Any]]:
        """Return every call the API serves (delete_after_listing leads excluded), ascending id."""
        with self._lock:
            out = [c for s in self._live() if not s.calls_gone for c in self._data.calls(s)]
        out.sort(key=lambda c: cast(int, c["id"]))
        return out

    def total_calls(self) -> int:
        """``len(all_calls())`` without generating anything."""
        with self._lock:
            return sum(s.n_calls for s in self._live() if not s.calls_gone)

    def _rows(self, channel: str, st: LeadState) -> list[dict[str, Any]]:
        if channel == "calls":
            return self._data.calls(st)
        if channel == "texts":
            return self._data.texts(st)
        return self._data.emails(st)

    def texts(self, lead_id: int) -> list[dict[str, Any]]:
        """Return a lead's texts as served, ascending id (``[]``/``KeyError`` as :meth:`calls`)."""
        with self._lock:
            st = self._data.by_id[lead_id]
            return [] if st.deleted or st.calls_gone else self._data.texts(st)

    def emails(self, lead_id: int) -> list[dict[str, Any]]:
        """Return a lead's email events as served, ascending id (as :meth:`calls`)."""
        with self._lock:
            st = self._data.by_id[lead_id]
            return [] if st.deleted or st.calls_gone else self._data.emails(st)

    def all_texts(self) -> list[dict[str, Any]]:
        """Return every text the API serves, ascending id."""
        return self._all("texts")

    def all_emails(self) -> list[dict[str, Any]]:
        """Return every email event the API serves, ascending id."""
        return self._all("emails")

    def _all(self, channel: str) -> list[dict[str, Any]]:
        with self._lock:
            out = [r for s in self._live() if not s.calls_gone for r in self._rows(channel, s)]
        out.sort(key=lambda r: cast(int, r["id"]))
        return out

    def total_texts(self) -> int:
        """``len(all_texts())`` (draws the counts, builds no text)."""
        with self._lock:
            return sum(self._data.n_texts(s) for s in self._live() if not s.calls_gone)

    def members(self) -> list[dict[str, Any]]:
        """Return the team's members as ``GET /v1.0/members`` serves them, ascending ``id``."""
        return json.loads(dumps(self._members))

    def lead_stages(self) -> list[dict[str, Any]]:
        """Return the lead stages as ``GET /v1.0/teamFeatures/lead-pipelines`` serves them."""
        return json.loads(dumps(self._stages))

    def ponds(self) -> list[dict[str, Any]]:
        """Return the lead ponds as ``GET /v1.0/team-features/lead-ponds`` serves them."""
        return json.loads(dumps(self._ponds))

    def transactions(self) -> list[dict[str, Any]]:
        """Return every transaction (all types), ascending ``transactionId``."""
        with self._lock:
            return json.loads(dumps(self._all_transactions()))

    def _all_transactions(self) -> list[dict[str, Any]]:
        if self._transactions is None:
            self._transactions = build_transactions(self._data)
        return self._transactions

    @property
    def caller_agent_id(self) -> int:
        """The agent (userId) the credentials belong to: the feed's "caller"."""
        return CALLER_AGENT_ID

    def feed_items(
        self,
        kind: str = "ALL",
        *,
        team_view: bool = True,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[dict[str, Any]]:
        """Return what ``/v2.0/communication/agent`` would serve now, all pages, in order.

        ``kind`` CALL, TEXT, EMAIL or ALL; ``team_view=False``: the caller's items only; the
        window bounds are inclusive (None: unbounded, not limited to 90 days); items still
        within ``feed_delay_s`` of being appended are left out, as the endpoint does.
        """
        if kind not in FEED_KINDS:
            raise ValueError(f"kind must be one of {FEED_KINDS}")
        with self._lock:
            index = self._feed_index()
            lo = -(2**63) if start_ms is None else start_ms
            hi = INT64_MAX if end_ms is None else end_ms
            matching = index.scan(
                kind, team_view, lo, hi, None, time.time() - self._config.feed_delay_s
            )
            return [json.loads(index.raw[i]) for i in matching]

    # ------------------------------------------------------------------ mutation

    def append_calls(
        self,
        existing_leads: int = 10,
        new_leads: int = 2,
        calls_per_lead: int = 3,
        backdated_per_lead: int = 0,
        backdate_days: float = 3.0,
    ) -> list[dict[str, Any]]:
        """Add calls, as new activity between two syncs would.

        ``calls_per_lead`` calls go to each of ``existing_leads`` randomly chosen (seeded) current
        leads and to each of ``new_leads`` brand-new leads (higher leadIds, listed from now on).
        New calls get createTime = now (clamped to be after all existing data), so their ids are
        higher than every existing id. Returns the new calls, ascending id.

        ``backdated_per_lead``: that many of each lead's new calls are manually logged calls
        whose startTime (the feed's communicationTime) is ``backdate_days`` before their
        creation, as when an agent logs a call days later: a feed window over the recent past
        misses them, the per-lead endpoint serves them with the newest ids.
        """
        if min(existing_leads, new_leads, calls_per_lead, backdated_per_lead) < 0:
            raise ValueError("arguments must be >= 0")
        if backdate_days < 0:
            raise ValueError("backdate_days must be >= 0")
        with self._lock:
            calls, touched = self._data.append_calls(
                existing_leads,
                new_leads,
                calls_per_lead,
                backdated_per_lead=backdated_per_lead,
                backdate_ms=round(backdate_days * DAY_MS),
            )
            self._feed_added("CALL", calls)
            self._n_current += new_leads
            for idx in touched:
                self._invalidate(idx)
            self._version += 1
            return calls

    def append_messages(
        self, existing_leads: int = 10, texts_per_lead: int = 2, emails_per_lead: int = 1
    ) -> dict[str, list[dict[str, Any]]]:
        """Add texts and emails (one ``Sent`` row each) to randomly chosen (seeded) leads.

        Created now (after all existing data, so with the highest ids). Returns
        ``{"texts": [...], "emails": [...]}``, each ascending id.
        """
        if min(existing_leads, texts_per_lead, emails_per_lead) < 0:
            raise ValueError("arguments must be >= 0")
        with self._lock:
            rows, touched = self._data.append_messages(
                existing_leads, texts_per_lead, emails_per_lead
            )
            self._feed_added("TEXT", rows["texts"])
            self._feed_added("EMAIL", rows["emails"])
            for idx in touched:
                self._invalidate(idx)
            self._version += 1
            return rows

    def delete_lead(self, lead_id: int) -> None:
        """Delete a lead: gone from ``/v1.0/leads`` (and running scrolls); its calls answer 404."""
        with self._lock:
            st = self._data.by_id[lead_id]
            if not st.deleted:
                st.deleted = True
                self._n_current -= 1
                self._invalidate(st.idx)
                self._feed_dropped(st.idx)
                self._version += 1

    def delete_after_listing(self, lead_ids: set[int]) -> None:
        """Keep these leads in the listing, but answer 404 (20006) on their history.

        That is calls, texts and emails; their items leave the feed too.
        """
        with self._lock:
            states = [self._data.by_id[i] for i in lead_ids]  # KeyError before any change
            for st in states:
                st.calls_gone = True
                self._invalidate(st.idx)
                self._feed_dropped(st.idx)

    def _invalidate(self, idx: int) -> None:
        self._lead_cache.pop(idx, None)
        for channel in HISTORY_PATHS.values():
            entry = self._call_cache.pop((channel, idx), None)
            if entry is not None:
                self._cached_calls -= len(entry[0])

    # ------------------------------------------------------------------ counters

    @property
    def counters(self) -> dict[str, int]:
        """Copy of the counters: ``"GET /v1.0/leads 200"`` etc. and ``"faults:<kind>"``."""
        with self._lock:
            return dict(self._counters)

    @property
    def request_log(self) -> list[tuple[float, str, int]]:
        """Copy of ``(arrival time.time(), path, status)`` for every API request."""
        with self._lock:
            return list(self._request_log)

    @property
    def request_count(self) -> int:
        """Count API requests since start (``faults_at`` numbering; reset_counters keeps it)."""
        with self._lock:
            return self._request_count

    def reset_counters(self) -> None:
        """Clear counters and the request log (not the request numbering or the rate window)."""
        with self._lock:
            self._counters.clear()
            self._request_log.clear()

    # ------------------------------------------------------------------ request path

    def _admit(self) -> _Ticket:
        """Assign the request its number, apply the rate window, draw the fault and the latency."""
        with self._lock:
            cfg = self._config
            self._request_count += 1
            number = self._request_count
            now = time.time()
            window = cfg.rate_window_s
            if self._window_start is None:
                self._window_start = now  # the first request opens the first window
                self._window_used = 0
            elif now >= self._window_start + window:
                # Fixed windows aligned on the first request.
                self._window_start += math.floor((now - self._window_start) / window) * window
                self._window_used = 0
            limit = UNLIMITED if cfg.rate_limit is None else cfg.rate_limit
            allowed = cfg.rate_limit is None or self._window_used < cfg.rate_limit
            if allowed:
                # Rejected (429) requests do not consume budget; they are still logged.
                self._window_used += 1
            reset = self._window_start + window
            if cfg.reset_header == "epoch":
                reset_value = math.ceil(reset)
            elif cfg.reset_header == "epoch_ms":
                reset_value = math.ceil(reset * 1000)
            else:
                reset_value = max(0, math.ceil(reset - now))
            headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(0, limit - self._window_used)),
                "X-RateLimit-Reset": str(reset_value),
            }
            # One draw per request whatever the config, so a given request sequence always faults
            # the same requests.
            hit = self._fault_rng.random()
            fault = cfg.faults_at.get(number)
            if fault is None and hit < cfg.fault_rate:
                fault = self._fault_rng.choice(cfg.fault_kinds)
            delay = cfg.latency_s + (
                self._jitter_rng.uniform(0, cfg.jitter_s) if cfg.jitter_s else 0.0
            )
            return _Ticket(number, allowed, headers, fault, delay, cfg.slow_s)

    def _serve_api(self, handler: _Handler, method: str, path: str, query: dict[str, str]) -> bool:
        """Answer one API request on ``handler``. Returns True once headers went out."""
        arrival = time.time()
        ticket = self._admit()
        if ticket.delay > 0:
            time.sleep(ticket.delay)  # never under the lock
        fault = ticket.fault if ticket.allowed else None
        if fault is not None and fault != Fault.LEAD_DELETED:
            # Counted when injected, not when answered: a client that gave up on a slow answer
            # must already see it counted.
            self._count(f"faults:{fault}")
        try:
            answer = self._faulted_answer(
                ticket, fault, handler=handler, method=method, path=path, query=query
            )
        except Exception:
            self._record(arrival, method, path, 500, None)
            raise
        # Record before sending: once a client has its answer, the counters must include it.
        applied = fault == Fault.LEAD_DELETED and answer.fault_applied
        self._record(arrival, method, path, answer.status, fault if applied else None)
        body = answer.body
        if fault == Fault.TRUNCATED_JSON:
            # A proper prefix of a JSON object is never valid JSON, so any cut works.
            body = body[: max(1, len(body) * 2 // 3)]
            handler._send(answer.status, body, answer.content_type, ticket.headers)
        elif fault == Fault.DROP_CONNECTION:
            handler._send(
                answer.status, body, answer.content_type, ticket.headers, drop_after=len(body) // 2
            )
        else:
            handler._send(answer.status, body, answer.content_type, ticket.headers)
        return True

    def _faulted_answer(
        self,
        ticket: _Ticket,
        fault: str | None,
        *,
        handler: _Handler,
        method: str,
        path: str,
        query: dict[str, str],
    ) -> _Answer:
        if not ticket.allowed:
            return _Answer(429, BODY_429)
        if fault in (Fault.HTTP_500_JSON, Fault.HTTP_503_JSON):
            status = 500 if fault == Fault.HTTP_500_JSON else 503
            return _Answer(status, BODY_500)
        if fault == Fault.HTTP_502_HTML:
            return _Answer(502, BODY_502, HTML_TYPE)
        if fault == Fault.SLOW:
            time.sleep(ticket.slow_s)
        return self._answer(
            method,
            path,
            query,
            handler.headers.get("Authorization"),
            fault,
            handler.headers.get("Content-Type", ""),
        )

    def _count(self, key: str) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + 1

    def _record(
        self, arrival: float, method: str, path: str, status: int, fault: str | None
    ) -> None:
        with self._lock:
            self._request_log.append((arrival, path, status))
            self._count(f"{method} {path} {status}")
            if fault is not None:
                self._count(f"faults:{fault}")

    def _answer(  # noqa: PLR0917 (one call site)
        self,
        method: str,
        path: str,
        query: dict[str, str],
        auth: str | None,
        fault: str | None,
        content_type: str = "",
    ) -> _Answer:
        cfg = self._config
        scope = self._authenticate(cfg, auth)
        if scope is None and auth and auth.lower().startswith("bearer "):
            # Tokens from the OAuth token endpoint, while they have not expired.
            scope = "full" if self.oauth.accepts(auth[7:].strip()) else None
        try:
            # Gateway-level checks first (credentials, route, method), then the endpoint's own.
            if scope is None:
                raise ApiError(401, 401, "BAD_CREDENTIALS: invalid or missing token")
            if scope == "key_as_bearer":
                # Recorded live (api-notes §5, §16): a 400, not a 401.
                raise ApiError(400, 200058, "User in token does not exist.")
            if path not in SCOPE_OF or (path == FEED_PATH and cfg.feed_mode == "absent"):
                raise ApiError(404, 20007, "RESOURCE_NOT_EXIST")
            if method != "GET":
                raise ApiError(405, 405, "METHOD_NOT_ALLOWED")
            granted = SCOPE_OF[path] not in cfg.missing_scopes
            if path == CALLS_PATH and scope == "noscope":
                granted = False
            if path == FEED_PATH and cfg.feed_mode == "no_scope":
                granted = False
            if not granted:
                raise ApiError(403, 200100, NO_SCOPE_MESSAGE)
            if path == LEADS_PATH:
                return self._list_leads(cfg, query)
            if path == FEED_PATH:
                return self._list_feed(cfg, query)
            if path in TEAM_PATHS:
                return self._team_answer(cfg, path, query, content_type)
            return self._list_history(cfg, query, fault, HISTORY_PATHS[path])
        except ApiError as err:
            return _Answer(err.status, err.body)

    @staticmethod
    def _authenticate(cfg: SimConfig, auth: str | None) -> str | None:
        """Return "full", "noscope", "key_as_bearer" (an API key sent as Bearer) or None (401)."""
        if not auth:
            return None
        scheme, _, token = auth.strip().partition(" ")
        scheme, token = scheme.lower(), token.strip()
        if scheme == "bearer" and token == cfg.access_token:
            return "full"
        if scheme == "bearer" and token == cfg.no_calls_scope_token:
            return "noscope"
        if scheme == "token" and token == cfg.api_key:
            return "full"
        if scheme == "bearer" and token == cfg.api_key:
            return "key_as_bearer"
        return None

    # ------------------------------------------------------------------ /v1.0/leads

    def _order(self, sort: str, desc: bool) -> tuple[int, ...]:
        """Lead indexes in listing order (cached until the data changes). Call under the lock."""
        mode = self._config.leads_order
        name = sort.lower()
        if mode == "newest_first":
            # Live clients report sort/desc being ignored: leadId descending whatever was asked.
            name, desc = "default", True
        elif mode == "ignore_sort_stable":
            name, desc = "stable", False
        elif name not in ("createtime", "lastactivity", "lastcall"):
            name = "default"  # every other documented sort is accepted and treated as Default
        cached = self._orders.get((name, desc))
        if cached is not None and cached[0] == self._version:
            return cached[1]
        live = self._live()
        if name == "createtime":
            live.sort(key=lambda s: (s.create_ms, s.lead_id), reverse=desc)
        elif name == "lastactivity":
            live.sort(key=lambda s: (s.last_activity_ms, s.lead_id), reverse=desc)
        elif name == "lastcall":
            live.sort(key=lambda s: (s.last_call_ms, s.lead_id), reverse=desc)
        elif name == "stable":
            # A key per lead from (seed, leadId) alone: the order is the same for every request,
            # and a new lead slots in at a place that depends only on its id.
            seed = self._config.seed
            live.sort(key=lambda s: (_stable_rank(seed, s.lead_id), s.lead_id))
        else:
            live.sort(key=lambda s: s.lead_id, reverse=desc)
        order = tuple(s.idx for s in live)
        self._orders[(name, desc)] = (self._version, order)
        return order

    def _build_lead(self, st: LeadState) -> dict[str, Any]:
        """Build the lead object as served: the data set's, plus ``extra_lead_fields``."""
        lead = self._data.build_lead(st)
        extra = self._config.extra_lead_fields
        if extra:
            # Deep copies via JSON, so callers cannot edit the configured values through a lead.
            lead.update(json.loads(dumps(extra)))
        return lead

    def _lead_json(self, st: LeadState) -> bytes:
        cached = self._lead_cache.get(st.idx)
        if cached is not None:
            self._lead_cache.move_to_end(st.idx)
            return cached
        raw = dumps(self._build_lead(st))
        self._lead_cache[st.idx] = raw
        if len(self._lead_cache) > LEAD_CACHE_MAX:
            self._lead_cache.popitem(last=False)
        return raw

    def _issue_scroll(self, scroll: _Scroll) -> str:
        self._scrolls_issued += 1
        # Derived from (seed, issue number), not os.urandom: same requests, same bytes.
        token = _opaque(f"scroll:{self._config.seed}:{self._scrolls_issued}")
        if len(self._scrolls) >= SCROLL_STORE_MAX:
            self._prune_scrolls()
        self._scrolls[token] = scroll
        return token

    def _prune_scrolls(self) -> None:
        ttl = self._config.scroll_ttl_s
        now = time.monotonic()
        for token in [t for t, s in self._scrolls.items() if now - s.issued > ttl]:
            del self._scrolls[token]
        while len(self._scrolls) >= SCROLL_STORE_MAX:  # still full: forget the oldest
            del self._scrolls[next(iter(self._scrolls))]

    def _list_leads(self, cfg: SimConfig, query: dict[str, str]) -> _Answer:
        limit = _int_param(query, "limit")
        if limit is not None and not 1 <= limit <= 100:
            raise ApiError(400, 20042, "LIMIT_NOT_VALID: limit must be between 1 and 100")
        offset = _int_param(query, "offset")
        if offset is not None and offset < 0:
            raise _invalid("offset must be >= 0")
        desc = _bool_param(query, "desc")
        scroll_id = query.get("scrollId", "")
        with self._lock:
            if scroll_id:
                scroll = self._scrolls.get(scroll_id)
                if scroll is None or time.monotonic() - scroll.issued > cfg.scroll_ttl_s:
                    raise _invalid("scrollId expired or unknown")
                # The scroll keeps its ordering (sort/desc are fixed at its start, and the
                # ordering is frozen so leads that existed throughout are never skipped or
                # repeated); a limit sent along with the scrollId is honoured.
                order, pos, page_limit = scroll.order, scroll.pos, limit or scroll.limit
                shuffle = scroll.shuffle
            else:
                order = self._order(query.get("sort") or "Default", True if desc is None else desc)
                pos, page_limit = offset or 0, limit or cfg.leads_default_limit
                shuffle = cfg.leads_order == "shuffled_per_page"
            served: list[int] = []
            i = pos
            while i < len(order) and len(served) < page_limit:
                if not self._data.leads[order[i]].deleted:  # deleted mid-scroll: not served
                    served.append(order[i])
                i += 1
            if shuffle:
                # Seeded by the page's content, so a retried request gets the same bytes.
                random.Random(f"page:{cfg.seed}:{served}").shuffle(served)
            page = [self._lead_json(self._data.leads[idx]) for idx in served]
            meta: dict[str, Any] = {
                "collection": "leads",
                "limit": page_limit,
                "offset": pos,
                "total": self._n_current,
            }
            # Elasticsearch-style end: every non-empty page carries a scrollId; the page after the
            # last lead is empty and has none.
            if page:
                meta["scrollId"] = self._issue_scroll(
                    _Scroll(order, i, page_limit, time.monotonic(), shuffle)
                )
        body = b"".join(
            (
                b'{"',
                cfg.metadata_key.encode(),
                b'":',
                dumps(meta),
                b',"leads":[',
                b",".join(page),
                b"]}",
            )
        )
        return _Answer(200, body)

    # ------------------------------------------------------------------ /v1.0/communication/call

    def _history_entry(self, st: LeadState, channel: str) -> tuple[list[int], list[bytes]]:
        """(ids, serialized rows) of one channel, ascending id; LRU-cached. Call under the lock."""
        key = (channel, st.idx)
        entry = self._call_cache.get(key)
        if entry is not None:
            self._call_cache.move_to_end(key)
            return entry
        rows = self._rows(channel, st)
        entry = ([r["id"] for r in rows], [dumps(r) for r in rows])
        self._call_cache[key] = entry
        self._cached_calls += len(rows)
        while self._cached_calls > CALL_CACHE_MAX_CALLS and len(self._call_cache) > 1:
            _, (old_ids, _) = self._call_cache.popitem(last=False)
            self._cached_calls -= len(old_ids)
        return entry

    def _list_history(
        self, cfg: SimConfig, query: dict[str, str], fault: str | None, channel: str
    ) -> _Answer:
        """``/v1.0/communication/{call,text,email}``: one contract, three channels."""
        if query.get("leadId", "") == "":
            raise _invalid("leadId is required")
        lead_id = _id_param(query, "leadId", 1)
        assert lead_id is not None
        limit = _int_param(query, "limit")
        limit = 10 if limit is None else limit
        if not 1 <= limit <= 1000:
            raise ApiError(400, 20042, "LIMIT_NOT_VALID: limit must be between 1 and 1000")
        offset = _int_param(query, "offset") or 0
        if offset < 0:
            raise _invalid("offset must be >= 0")
        current = _id_param(query, "currentId", 0) or 0
        with self._lock:
            st = self._data.by_id.get(lead_id)
            if st is None or st.deleted or st.calls_gone:
                return _Answer(404, BODY_404_LEAD)
            if fault == Fault.LEAD_DELETED:
                # "Deleted between the listing and the history fetch", and it stays that way.
                st.calls_gone = True
                self._invalidate(st.idx)
                self._feed_dropped(st.idx)
                return _Answer(404, BODY_404_LEAD, fault_applied=True)
            ids, chunks = self._history_entry(st, channel)
        if cfg.calls_page_cap is not None:
            limit = min(limit, cfg.calls_page_cap)
        if current > 0:
            # Cursor mode: ascending ids after (exclusive) or from (inclusive) currentId; offset
            # is ignored, as on Lofty's other currentId endpoints.
            if cfg.cursor_mode == "exclusive":
                start = bisect.bisect_right(ids, current)
            else:
                start = bisect.bisect_left(ids, current)
            selected = chunks[start : start + limit]
        else:
            # Offset mode: newest first.
            end = len(chunks) - offset
            selected = chunks[max(0, end - limit) : end][::-1] if end > 0 else []
        return _Answer(200, b'{"' + channel.encode() + b'":[' + b",".join(selected) + b"]}")

    # ------------------------------------------------------------------ /v2.0/communication/agent

    def _feed_index(self) -> _FeedIndex:
        """Return the feed's items of all leads, by (time, id). Call under the lock."""
        if self._feed is None:
            entries = []
            for st in self._live():
                if st.calls_gone:
                    continue
                for kind, rows in (
                    ("CALL", self._data.calls(st)),
                    ("TEXT", self._data.texts(st)),
                    ("EMAIL", self._data.emails(st)),
                ):
                    entries += [self._feed_entry(kind, row, st.idx) for row in rows]
            self._feed = _FeedIndex.build(entries)
        return self._feed

    def _feed_entry(self, kind: str, row: dict[str, Any], idx: int) -> _FeedEntry:
        when, item = feed_item(kind, row)
        seen = self._data.appended_at.get(row["id"], 0.0)
        return (when, row["id"], kind, row["agentId"], seen, dumps(item), idx)

    def _feed_added(self, kind: str, rows: list[dict[str, Any]]) -> None:
        """Keep a built feed index up to date with appended rows. Call under the lock."""
        if self._feed is not None:
            for row in rows:
                idx = self._data.by_id[row["leadId"]].idx
                self._feed.add(self._feed_entry(kind, row, idx))

    def _feed_dropped(self, idx: int) -> None:
        """Drop the feed items of a lead whose history is gone. Call under the lock."""
        if self._feed is not None:
            self._feed.drop_lead(idx)

    def _list_feed(self, cfg: SimConfig, query: dict[str, str]) -> _Answer:
        # The spec marks `type` optional with an undocumented default, describes ALL as "all
        # three together" and uses ALL as its example: a missing type is read as ALL (a
        # 400 would contradict `required: false`). Clients should always send it.
        kind = query.get("type", "") or "ALL"
        if kind not in FEED_KINDS:
            raise _invalid("type must be one of CALL, TEXT, EMAIL, ALL")
        bounds = []
        for name in ("startTime", "endTime"):
            if query.get(name, "") == "":
                raise _invalid(f"{name} is required (epoch milliseconds)")
            value = _id_param(query, name, 0)
            assert value is not None
            bounds.append(value)
        start, end = bounds
        if end < start:
            raise _invalid("endTime must be >= startTime")
        if end - start > FEED_MAX_WINDOW_MS:
            raise _invalid("the time window (endTime - startTime) must not exceed 90 days")
        limit = _int_param(query, "limit")
        limit = 100 if limit is None else limit
        if not 1 <= limit <= 1000:
            raise ApiError(400, 20042, "LIMIT_NOT_VALID: limit must be between 1 and 1000")
        team_view = _bool_param(query, "teamView") or False
        if team_view and cfg.feed_mode == "no_team_permission":
            # A 400, not a 403, as the spec documents for this endpoint.
            raise ApiError(
                400,
                20017,
                "PERMISSION_DENIED: teamView=true requires the ACCESS_ALL_TEAM_LEADS permission",
            )
        fingerprint = f"{kind}:{start}:{end}:{int(team_view)}"
        after = None
        if query.get("cursor", ""):
            after = self._read_cursor(query["cursor"], fingerprint)
        with self._lock:
            index = self._feed_index()
            visible_before = time.time() - cfg.feed_delay_s
            total = len(index.scan(kind, team_view, start, end, None, visible_before))
            # One more than a page: tells whether more entries exist right now (hasMore).
            matching = index.scan(kind, team_view, start, end, after, visible_before, limit + 1)
            page = matching[:limit]
            chunks = [index.raw[i] for i in page]
            # A full page always carries a cursor, even if nothing follows (the spec: a
            # non-null cursor does not promise more; the next page is then empty, cursor null).
            cursor = (
                self._make_cursor(index.keys[page[-1]], fingerprint) if len(page) == limit else None
            )
        meta = dumps(
            {
                "nextCursor": cursor,
                "hasMore": len(matching) > limit,
                "limit": limit,
                "totalCount": total,
            }
        )
        return _Answer(200, b'{"data":[' + b",".join(chunks) + b"]," + meta[1:])

    def _make_cursor(self, key: tuple[int, int], fingerprint: str) -> str:
        payload = f"{key[0]}:{key[1]}:{fingerprint}"
        sig = hashlib.sha256(f"feed:{self._config.seed}:{payload}".encode()).hexdigest()[:16]
        return base64.urlsafe_b64encode(f"{payload}:{sig}".encode()).decode().rstrip("=")

    def _read_cursor(self, token: str, fingerprint: str) -> tuple[int, int]:
        """Decode a cursor; 400 if it is not one of ours or belongs to another query."""
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            ms, an_id, rest = text.split(":", 2)
            key = (int(ms), int(an_id))
        except (ValueError, UnicodeDecodeError) as err:
            raise _invalid("cursor is invalid") from err
        # Re-signing must give the very token back: this checks the signature and that the
        # cursor belongs to this query (type, window, teamView), in one comparison.
        if not rest.startswith(fingerprint + ":") or self._make_cursor(key, fingerprint) != token:
            raise _invalid("cursor is invalid")
        return key

    # ------------------------------------------------------------------ team-level endpoints

    def _team_answer(
        self, cfg: SimConfig, path: str, query: dict[str, str], content_type: str
    ) -> _Answer:
        if path == MEMBERS_PATH:
            return self._list_members(cfg, query)
        if path == STAGES_PATH:
            return self._list_stages(cfg, query)
        if path == PONDS_PATH:
            # Live clients report 415 on this GET without a JSON Content-Type (api-notes §1).
            if content_type.split(";", maxsplit=1)[0].strip().lower() != "application/json":
                raise ApiError(
                    415, 20001, "Content type must be application/json (Unsupported Media Type)"
                )
            return _Answer(200, dumps(self._ponds))
        return self._list_transactions(query)

    def _list_members(self, cfg: SimConfig, query: dict[str, str]) -> _Answer:
        offset = max(0, _int_param(query, "offset") or 0)  # negative: reset to 0 (documented)
        limit = _int_param(query, "limit")
        limit = 25 if limit is None else limit
        if limit < 1:
            raise ApiError(400, 20042, "LIMIT_NOT_VALID: limit must be >= 1")
        if limit > cfg.members_max_limit:
            said = f": limit must not exceed {cfg.members_max_limit}"
            raise ApiError(
                400, 20042, "LIMIT_PARAM_OVERSIZE" + (said if cfg.members_limit_in_message else "")
            )
        members = self._members
        groups_raw = query.get("groupIds", "")
        if groups_raw:
            try:
                groups = {int(g) for g in groups_raw.split(",") if g.strip()}
            except ValueError:
                raise _invalid("groupIds must be integers") from None
            members = [m for m in members if m["groupId"] in groups]
            if not members:
                raise ApiError(404, 20003, "USER_NOT_EXIST")
        meta = {"collection": "members", "limit": limit, "offset": offset, "total": len(members)}
        page = members[offset : offset + limit]
        return _Answer(200, dumps({cfg.metadata_key: meta, "members": page}))

    def _list_stages(self, cfg: SimConfig, query: dict[str, str]) -> _Answer:
        page_no = _int_param(query, "currPage")
        page_no = 0 if page_no is None else page_no
        if page_no < 0:
            raise _invalid("currPage must be >= 0")
        size = _int_param(query, "pageSize")
        size = 10 if size is None else size
        if size < 1:
            raise ApiError(400, 20042, "LIMIT_NOT_VALID: pageSize must be >= 1")
        name = query.get("name", "").lower()
        stages = [s for s in self._stages if name in str(s["name"]).lower()]
        offset = page_no * size
        meta = {"collection": "pipelines", "limit": size, "offset": offset, "total": len(stages)}
        page = stages[offset : offset + size]
        return _Answer(200, dumps({cfg.metadata_key: meta, "pipelines": page}))

    def _list_transactions(self, query: dict[str, str]) -> _Answer:
        size = _int_param(query, "pageSize")
        size = 20 if size is None else size
        if not 1 <= size <= 100:
            raise ApiError(400, 20042, "LIMIT_NOT_VALID: pageSize must be between 1 and 100")
        page_no = _int_param(query, "pageNum")
        page_no = 0 if page_no is None else page_no
        if page_no < 0:
            raise _invalid("pageNum must be >= 0")
        kind = (query.get("transactionType", "") or "Purchase").lower()
        if kind not in TRANSACTION_TYPES:
            raise _invalid("transactionType must be Purchase, Listing, Lease, Other or All")
        lead_id = _id_param(query, "leadId", 1)
        key = query.get("queryKey", "")[:15].lower()
        with self._lock:
            rows = self._all_transactions()
            if kind != "all":  # the default is Purchase only (documented)
                rows = [t for t in rows if str(t["transactionType"]).lower() == kind]
            if lead_id is not None:
                rows = [t for t in rows if t["leadId"] == lead_id]
            if key:
                rows = [
                    t
                    for t in rows
                    if key in str(t["transactionName"]).lower() or key in str(t["leadName"]).lower()
                ]
            page = rows[page_no * size : (page_no + 1) * size]
            body = dumps(
                {"pageNum": page_no, "pageSize": size, "totalCount": len(rows), "pageData": page}
            )
        return _Answer(200, body)

    # ------------------------------------------------------------------ /_sim/ control

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Handle ``/_sim/...`` (no auth, no rate limit, not counted)."""
        routes: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "/_sim/stats"): lambda _: self.counters,
            ("GET", "/_sim/truth"): lambda _: {
                "leads": self.leads(),
                "calls": self.all_calls(),
                "texts": self.all_texts(),
                "emails": self.all_emails(),
                "members": self.members(),
                "lead_stages": self.lead_stages(),
                "ponds": self.ponds(),
                "transactions": self.transactions(),
            },
            ("GET", "/_sim/config"): lambda _: self._config.to_json(),
            ("POST", "/_sim/append"): lambda a: self.append_calls(**a),
            ("POST", "/_sim/append_messages"): lambda a: self.append_messages(**a),
            ("POST", "/_sim/configure"): lambda a: self.configure(**a).to_json(),
            ("POST", "/_sim/delete_lead"): lambda a: self.delete_lead(int(a["lead_id"])),
            ("POST", "/_sim/delete_after_listing"): lambda a: self.delete_after_listing(
                {int(i) for i in a["lead_ids"]}
            ),
            ("POST", "/_sim/reset_counters"): lambda _: self.reset_counters(),
        }
        route = routes.get((method, path))
        if route is None:
            return 404, {"error": f"no such control endpoint: {method} {path}"}
        try:
            args = json.loads(body) if body.strip() else {}
            if not isinstance(args, dict):
                raise ValueError("body must be a JSON object")
            result = route(args)
        except (ValueError, TypeError, KeyError) as err:
            return 400, {"error": f"{type(err).__name__}: {err}"}
        return 200, {"ok": True} if result is None else result


def _stable_rank(seed: int, lead_id: int) -> int:
    """Return a pseudo-random but fixed rank of a lead (``leads_order="ignore_sort_stable"``)."""
    digest = hashlib.blake2b(f"rank:{seed}:{lead_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _opaque(seed_text: str) -> str:
    """Turn a deterministic string into an opaque, URL-safe, Elasticsearch-looking token."""
    digest = hashlib.sha256(seed_text.encode()).digest()
    return "DXF1ZXJ5" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
