"""Configuration of the Lofty API simulator: :class:`SimConfig` and the :class:`Fault` kinds."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class Fault(str, enum.Enum):
    """Kinds of injected faults.

    Members are strings, so ``Fault.SLOW == "slow"`` and either form can be used in
    ``SimConfig.fault_kinds`` / ``SimConfig.faults_at``. (``str, Enum`` rather than ``StrEnum``:
    the project supports Python 3.10.)
    """

    def __str__(self) -> str:
        """Return the plain value, e.g. ``"slow"``."""
        return str(self.value)

    #: HTTP 500 with the JSON error body ``{"code": 20005, "message": "internal error"}``.
    HTTP_500_JSON = "500_json"
    #: HTTP 502 with an nginx-style HTML page (what a gateway in front of the API returns).
    HTTP_502_HTML = "502_html"
    #: HTTP 503 with the JSON error body ``{"code": 20005, "message": "internal error"}``.
    HTTP_503_JSON = "503_json"
    #: HTTP 200 whose JSON body is cut off (Content-Length matches the cut body).
    TRUNCATED_JSON = "truncated_json"
    #: Headers announce the full Content-Length, part of the body is sent, then the socket closes.
    DROP_CONNECTION = "drop_connection"
    #: Sleep ``SimConfig.slow_s`` before answering normally (longer than a client's timeout).
    SLOW = "slow"
    #: On the per-lead history endpoints (call, text, email) only: the lead is marked "deleted
    #: after listing" and its history answers 404 (20006) from then on. Other endpoints answer
    #: normally. Not in the default kinds.
    LEAD_DELETED = "lead_deleted"


DEFAULT_FAULT_KINDS: tuple[str, ...] = (
    "500_json",
    "502_html",
    "503_json",
    "truncated_json",
    "drop_connection",
    "slow",
)

CURSOR_MODES = ("exclusive", "inclusive")
METADATA_KEYS = ("_metadata", "get_metadata")
RESET_HEADER_FORMATS = ("epoch", "epoch_ms", "seconds")
#: How ``GET /v1.0/leads`` orders its leads (see ``SimConfig.leads_order``).
LEADS_ORDERS = ("as_asked", "newest_first", "shuffled_per_page", "ignore_sort_stable")
#: How ``GET /v2.0/communication/agent`` answers (see ``SimConfig.feed_mode``).
FEED_MODES = ("available", "no_team_permission", "no_scope", "absent")
#: Endpoints that ``SimConfig.missing_scopes`` can withhold from the app (403 200100).
SCOPES = (
    "leads",
    "calls",
    "texts",
    "emails",
    "members",
    "lead_stages",
    "ponds",
    "transactions",
)

# Fields that shape the generated data set; changing them would need a new simulator.
DATA_FIELDS = frozenset(
    {
        "leads",
        "seed",
        "calls_per_lead_mean",
        "big_leads",
        "live_shape_share",
        "texts_per_lead_mean",
        "emails_per_lead_mean",
        "big_text_leads",
        "team_members",
    }
)


def _check_extra_fields(extra: Any) -> None:
    if extra is not None and not (
        isinstance(extra, dict) and all(isinstance(k, str) and k for k in extra)
    ):
        raise ValueError("extra_lead_fields must be a dict with non-empty string keys, or None")


@dataclass
class SimConfig:
    """All switches of the simulator.

    Data-shaping fields (``leads``, ``seed``, ``calls_per_lead_mean``, ``big_leads``,
    ``live_shape_share``, ``texts_per_lead_mean``, ``emails_per_lead_mean``, ``big_text_leads``)
    are fixed
    once a :class:`~lofty_sim.LoftySimulator` is built; every other field can be changed while it
    runs with ``LoftySimulator.configure(**changes)`` (or ``POST /_sim/configure``).
    """

    leads: int = 500
    seed: int = 7
    calls_per_lead_mean: float = 8
    big_leads: int = 1
    #: Share of leads (drawn per lead from the seed) in the shapes live clients report rather
    #: than the spec's (api-notes §16): ``opportunity`` an object or null, ``leadType``,
    #: ``privateFlag``, extra ``leadPropertyList[]`` fields, the full ``customRoleList``
    #: catalog, ``pondId`` 0, time frames ``0-3``/``N/A``, float/null bathrooms. 0 = spec only.
    live_shape_share: float = 0.3
    #: Mean texts per lead (``/v1.0/communication/text``), and leads with 2,100..2,600 texts.
    texts_per_lead_mean: float = 4.0
    big_text_leads: int = 1
    #: Mean emails sent per lead; each is one ``Sent`` row, often followed by an ``Opened`` or
    #: ``Bounced`` row (``/v1.0/communication/email`` serves one row per email event).
    emails_per_lead_mean: float = 3.0
    #: Members of the team (``GET /v1.0/members``): the 12 agents and the lender first, then
    #: admins, assistants and agents without leads; at least 13.
    team_members: int = 40
    #: The largest ``limit`` ``GET /v1.0/members`` accepts; above it 400 LIMIT_PARAM_OVERSIZE
    #: (Lofty does not state its maximum: a GUESS).
    members_max_limit: int = 50
    #: Whether that 400's message states the maximum (``... must not exceed 50``).
    members_limit_in_message: bool = False
    cursor_mode: str = "exclusive"
    metadata_key: str = "_metadata"
    leads_default_limit: int = 25
    #: Serve at most this many calls per page whatever ``limit`` asks (silently, as another
    #: Lofty endpoint does with limits it does not accept); None = as documented.
    calls_page_cap: int | None = None
    scroll_ttl_s: float = 3600.0
    #: Listing order of ``/v1.0/leads``: ``as_asked`` honours ``sort``/``desc``;
    #: ``newest_first`` ignores them and always serves leadId descending (what live clients
    #: report, api-notes §16); ``shuffled_per_page`` honours them but shuffles the leads within
    #: each served page (seeded); ``ignore_sort_stable`` ignores them and serves one fixed
    #: pseudo-random order (seeded, the same for every request while the data does not change;
    #: a new lead lands at a place derived from its id). A running scroll keeps its order.
    leads_order: str = "as_asked"
    #: Fields added to (or replacing fields of) every lead, served and in the ground truth, e.g.
    #: ``{"brandNewField": {"a": 1}}`` to imitate a field no schema knows yet. None = none.
    extra_lead_fields: dict[str, Any] | None = None
    rate_limit: int | None = 500
    rate_window_s: float = 60.0
    reset_header: str = "epoch"
    latency_s: float = 0.0
    jitter_s: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS
    faults_at: dict[int, str] = field(default_factory=dict)
    slow_s: float = 5.0
    api_key: str = "sim-api-key-7c2f9d41e8b05a63"
    access_token: str = "sim-access-token-3b8e61f0a9d24c57"
    no_calls_scope_token: str = "sim-noscope-token"
    #: Endpoints the app is not granted, for every credential: 403 ``{"code": 200100, ...}``.
    #: Any of :data:`SCOPES` (the feed: ``feed_mode="no_scope"``).
    missing_scopes: tuple[str, ...] = ()
    #: ``GET /v2.0/communication/agent``: ``available``; ``no_team_permission`` (the caller
    #: lacks ACCESS_ALL_TEAM_LEADS: ``teamView=true`` answers 400); ``no_scope`` (the app is not
    #: granted the endpoint: 403 200100); ``absent`` (an older deployment: 404).
    feed_mode: str = "available"
    #: Indexing delay of the feed: a call, text or email appended with ``append_calls`` /
    #: ``append_messages`` shows in the feed only this many seconds after it was appended
    #: (the per-lead endpoints serve it at once).
    feed_delay_s: float = 0.0

    def __post_init__(self) -> None:
        """Validate and normalise (fault kinds to plain ``str``, ``faults_at`` keys to ``int``)."""
        if self.leads < 0:
            raise ValueError("leads must be >= 0")
        if self.big_leads < 0:
            raise ValueError("big_leads must be >= 0")
        if not 0.0 <= self.live_shape_share <= 1.0:
            raise ValueError("live_shape_share must be between 0 and 1")
        _check_extra_fields(self.extra_lead_fields)
        if self.calls_per_lead_mean < 0:
            raise ValueError("calls_per_lead_mean must be >= 0")
        if self.cursor_mode not in CURSOR_MODES:
            raise ValueError(f"cursor_mode must be one of {CURSOR_MODES}")
        if self.metadata_key not in METADATA_KEYS:
            raise ValueError(f"metadata_key must be one of {METADATA_KEYS}")
        if not 1 <= self.leads_default_limit <= 100:
            raise ValueError("leads_default_limit must be between 1 and 100")
        self._check_feed()
        if self.leads_order not in LEADS_ORDERS:
            raise ValueError(f"leads_order must be one of {LEADS_ORDERS}")
        if self.calls_page_cap is not None and self.calls_page_cap < 1:
            raise ValueError("calls_page_cap must be >= 1 or None")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be >= 1 or None (unlimited)")
        if self.rate_window_s <= 0:
            raise ValueError("rate_window_s must be > 0")
        if self.reset_header not in RESET_HEADER_FORMATS:
            raise ValueError(f"reset_header must be one of {RESET_HEADER_FORMATS}")
        if min(self.latency_s, self.jitter_s, self.slow_s, self.scroll_ttl_s) < 0:
            raise ValueError("latency_s, jitter_s, slow_s and scroll_ttl_s must be >= 0")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        # Fault(...) raises ValueError on an unknown kind; .value drops the enum type so the
        # config stays JSON-friendly.
        self.fault_kinds = tuple(Fault(k).value for k in self.fault_kinds)
        if self.fault_rate > 0 and not self.fault_kinds:
            raise ValueError("fault_kinds must not be empty when fault_rate > 0")
        # JSON bodies (POST /_sim/configure) carry object keys as strings.
        self.faults_at = {int(n): Fault(k).value for n, k in self.faults_at.items()}

    def _check_feed(self) -> None:
        """Validate the text/email/feed/team switches (and ``missing_scopes``, made a tuple)."""
        if min(self.texts_per_lead_mean, self.emails_per_lead_mean, self.big_text_leads) < 0:
            raise ValueError("texts_per_lead_mean, emails_per_lead_mean, big_text_leads >= 0")
        if isinstance(self.missing_scopes, str):
            raise ValueError("missing_scopes must be a list of endpoint names")
        self.missing_scopes = tuple(self.missing_scopes)
        unknown = set(self.missing_scopes) - set(SCOPES)
        if unknown:
            raise ValueError(f"missing_scopes: unknown {sorted(unknown)}; known: {SCOPES}")
        if self.feed_mode not in FEED_MODES:
            raise ValueError(f"feed_mode must be one of {FEED_MODES}")
        if self.feed_delay_s < 0:
            raise ValueError("feed_delay_s must be >= 0")
        if self.team_members < 13:
            raise ValueError("team_members must be >= 13 (the agents and the lender)")
        if self.members_max_limit < 25:
            raise ValueError("members_max_limit must be >= 25 (the documented default limit)")

    def to_json(self) -> dict[str, Any]:
        """Return the configuration as a JSON-serialisable dict."""
        out = dataclasses.asdict(self)
        out["fault_kinds"] = list(self.fault_kinds)
        out["missing_scopes"] = list(self.missing_scopes)
        out["faults_at"] = {str(n): k for n, k in self.faults_at.items()}
        return out
