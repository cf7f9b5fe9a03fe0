"""The simulator's answers, checked against Lofty's published OpenAPI document.

Every kind of response the simulator serves (each endpoint it implements, success and error) is
validated with openapi-core against ``openapi.json`` (api-notes Part II: Lofty's published OpenAPI
3.0.1 document, copied verbatim). Where live Lofty answers contradict that document, the simulator
follows the live observation (api-notes §16), and the document is patched for exactly that path
or field: see ``DEVIATIONS``. Nothing else is relaxed. On top of that the check is *stricter*
than the document: every object schema the simulator serves gets ``additionalProperties: false``,
so a field the simulator invents (or misspells) fails here unless a deviation names it.

The document's location: ``$LOFTY_OPENAPI`` if set, else ``../shared/lofty/openapi.json`` from the
repository root (CI clones the repository with ``shared/`` beside it). A missing document fails
the test run; it is never skipped.

Adding an endpoint to the simulator = one more ``Endpoint`` entry in ``ENDPOINTS``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

# In the `test` extra. Imported plainly: a missing validator is an error, never a skip.
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from lofty_sim import LoftySimulator, SimConfig

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = Path(
    os.environ.get("LOFTY_OPENAPI") or ROOT.parent / "shared" / "lofty" / "openapi.json"
)
SPEC_HOST = "https://api.lofty.com"  # the document's server; requests are matched against it
TIMEOUT = 10.0

# ----------------------------------------------------------------------------- the document


def load_spec() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        pytest.fail(
            f"Lofty's OpenAPI document is missing: {SPEC_PATH} does not exist. Set LOFTY_OPENAPI "
            "to its path, or clone the repository with shared/ beside it "
            "(shared/lofty/openapi.json).",
            pytrace=False,
        )
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


ERROR_BODY = {
    "type": "object",
    "required": ["code", "message"],
    "additionalProperties": False,
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
}
RATE_LIMIT_BODY = {
    "type": "object",
    "required": ["message"],
    "additionalProperties": False,
    "properties": {"message": {"type": "string", "enum": ["Too Many Requests"]}},
}


def _schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return spec["components"]["schemas"][name]


def _prop(spec: dict[str, Any], name: str, prop: str) -> dict[str, Any]:
    props = _schema(spec, name)["properties"]
    assert prop in props, f"deviation names {name}.{prop}, which the document does not have"
    return props[prop]


def nullable(*fields: str) -> Callable[[dict[str, Any]], None]:
    """Mark ``Schema.field`` entries nullable (and nothing else about them)."""

    def apply(spec: dict[str, Any]) -> None:
        for dotted in fields:
            name, prop = dotted.split(".")
            _prop(spec, name, prop)["nullable"] = True

    return apply


def add_props(name: str, **props: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Declare fields the document lacks on one schema."""

    def apply(spec: dict[str, Any]) -> None:
        existing = _schema(spec, name)["properties"]
        for prop, schema in props.items():
            assert prop not in existing, f"{name}.{prop} is in the document now: drop the deviation"
            existing[prop] = schema

    return apply


def error_objects(pairs: dict[str, tuple[int, ...]]) -> Callable[[dict[str, Any]], None]:
    """Error bodies as ``{code, message}`` objects where the document types them as strings,
    and the statuses the document leaves out; only for the given (path, statuses)."""

    def apply(spec: dict[str, Any]) -> None:
        for path, statuses in pairs.items():
            responses = spec["paths"][path]["get"]["responses"]
            for status in statuses:
                body = RATE_LIMIT_BODY if status == 429 else ERROR_BODY
                documented = responses.get(str(status))
                if documented is not None:
                    schema = documented["content"]["application/json"]["schema"]
                    assert schema == {"type": "string"}, (path, status, schema)
                responses[str(status)] = {
                    "description": (documented or {}).get("description", "undocumented status"),
                    "content": {"application/json": {"schema": copy.deepcopy(body)}},
                }

    return apply


def lead_time_format(*fields: str) -> Callable[[dict[str, Any]], None]:
    """``format: date-time`` fields that carry the lead time format ``2026-03-01T15:00:00GMT``."""

    def apply(spec: dict[str, Any]) -> None:
        for dotted in fields:
            name, prop = dotted.split(".")
            schema = _prop(spec, name, prop)
            assert schema.get("format") == "date-time", (dotted, schema)
            del schema["format"]
            schema["pattern"] = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dGMT$"

    return apply


def opportunity_object(spec: dict[str, Any]) -> None:
    props = _schema(spec, "LeadResponse")["properties"]
    documented = props["opportunity"]
    assert documented.get("type") == "string", documented
    # null belongs to the enum branch only (OpenAPI 3.0.3: a nullable enum lists null), so that
    # exactly one branch matches it.
    as_documented = {**documented, "nullable": True, "enum": [*documented["enum"], None]}
    props["opportunity"] = {
        "oneOf": [
            as_documented,
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "type", "status"],
                "properties": {
                    "id": {"type": "integer", "format": "int64"},
                    "type": {"type": "string"},
                    "status": {"type": "string"},
                },
            },
        ],
    }


def metadata_key(spec: dict[str, Any]) -> None:
    _schema(spec, "LeadListResponse")["properties"]["_metadata"] = {
        "$ref": "#/components/schemas/MetaData"
    }


def team_metadata_key(spec: dict[str, Any]) -> None:
    for name in ("MemberListResponse", "PipelineListResponse"):
        _schema(spec, name)["properties"]["_metadata"] = {"$ref": "#/components/schemas/MetaData"}


def bathrooms_number(spec: dict[str, Any]) -> None:
    for prop in ("bathroomsMin", "bathroomsMax"):
        documented = _prop(spec, "LeadInquiry", prop)
        assert documented.get("type") == "string", documented
        _schema(spec, "LeadInquiry")["properties"][prop] = {
            "oneOf": [{**documented, "nullable": True}, {"type": "number"}],
        }


@dataclass(frozen=True)
class Deviation:
    """One deliberate difference from the document, and the observation that justifies it."""

    what: str
    why: str
    apply: Callable[[dict[str, Any]], None]


LEADS = "/v1.0/leads"
CALLS = "/v1.0/communication/call"
TEXTS = "/v1.0/communication/text"
EMAILS = "/v1.0/communication/email"
FEED = "/v2.0/communication/agent"
MEMBERS = "/v1.0/members"
STAGES = "/v1.0/teamFeatures/lead-pipelines"
PONDS = "/v1.0/team-features/lead-ponds"
TRANSACTIONS = "/v2.0/transactions"

#: The deliberate deviations. Each is narrow (named paths, statuses or fields) and cites the
#: live observation (api-notes.md) it follows.
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "LeadListResponse: metadata under `_metadata` (the document says `get_metadata`)",
        "§2.2: live responses use `_metadata` (COMMUNITY quirk #31); `get_metadata` is a "
        "getter-name artifact. The simulator serves either (metadata_key); both are checked.",
        metadata_key,
    ),
    Deviation(
        "MemberListResponse, PipelineListResponse: metadata under `_metadata` as well",
        "§2.2 and §15: the same MetaData as the leads listing, whose live key is `_metadata`; "
        "the simulator serves one metadata_key for every listing.",
        team_metadata_key,
    ),
    Deviation(
        "error bodies are `{code, message}` objects (the document types them as strings)",
        "§7 and §16: live answers use `{code, message}` objects; 429 is "
        '`{"message": "Too Many Requests"}` (§6). Only the statuses listed per path.',
        error_objects(
            {
                # 400: limit / parameters / 200058 (API key as Bearer, §5, §16)
                # 403 200100: app not granted the endpoint (§5), undocumented per operation
                # 429: §6, undocumented per operation
                LEADS: (400, 401, 403, 429, 500),
                # 400: undocumented for the per-lead history endpoints (§7 GUESS:
                # INVALID_PARAMETER, LIMIT_NOT_VALID)
                CALLS: (400, 401, 403, 404, 429, 500),
                TEXTS: (400, 401, 403, 404, 429, 500),
                EMAILS: (400, 401, 403, 404, 429, 500),
                # 403 200100: the global scope rule (§12); 404: a deployment without the
                # endpoint (§12 GUESS, feed_mode="absent")
                FEED: (400, 401, 403, 404, 429, 500),
                # §15: 404 20003 when no member matches; 400 for a limit too large
                MEMBERS: (400, 401, 403, 404, 429, 500),
                STAGES: (400, 401, 403, 429, 500),
                # 415: without a JSON Content-Type (§1, COMMUNITY quirks #21/#22)
                PONDS: (400, 401, 403, 415, 429, 500),
                TRANSACTIONS: (400, 401, 403, 429, 500),
            }
        ),
    ),
    Deviation(
        "nulls where the document does not say nullable",
        "§16: live answers send nulls freely (lastTouch/lastVisit of untouched leads, pondName "
        "outside a pond, notes of calls without one); §16: unassigned customRoleList entries "
        "have `assignee: null`; the document's own text says opportunity is null when none.",
        nullable(
            "LeadResponse.lastTouch",
            "LeadResponse.lastVisit",
            "LeadResponse.pondName",
            "CustomRole.assignee",
            "CallResponse.note",
            "TextResponse.textContent",
            "EmailResponse.emailSubject",
        ),
    ),
    Deviation(
        "feed items: null call fields on texts and emails, null status on logged calls",
        "§16: live answers send nulls freely; a text or an email has no callOutcome or "
        "callDuration, a manually logged call no dialer status.",
        nullable(
            "CommunicationResponse.callOutcome",
            "CommunicationResponse.callDuration",
            "CommunicationResponse.status",
        ),
    ),
    Deviation(
        "CommunicationCursorPage.nextCursor: null on the last page",
        "§12: the document's own description says nextCursor is null when there are no more "
        "pages, but its schema does not mark it nullable.",
        nullable("CommunicationCursorPage.nextCursor"),
    ),
    Deviation(
        "LeadResponse.opportunity: an object `{id, type, status}` (or null) on some leads",
        "§16: `opportunity` comes as an object or null live; its fields are undocumented, the "
        "simulator's object is a guess. Other leads keep the documented string enum.",
        opportunity_object,
    ),
    Deviation(
        "LeadInquiry.bathroomsMin/Max: a number or null on some leads (the document: string)",
        "§16: live leadInquiry.bathroomsMin/Max can be a float or null.",
        bathrooms_number,
    ),
    Deviation(
        "lead fields the document lacks: LeadResponse.leadType, .privateFlag; "
        "LeadProperty.propertySource, .createTime",
        "§16: live leads carry `leadType` (int), `privateFlag` (bool), and leadPropertyList[] "
        "items `propertySource`, `county`, `createTime` (county is in the document already).",
        lambda spec: (
            add_props(
                "LeadResponse",
                leadType={"type": "integer", "format": "int32"},
                privateFlag={"type": "boolean"},
            )(spec),
            add_props(
                "LeadProperty",
                propertySource={"type": "string"},
                createTime={"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dGMT$"},
            )(spec),
        ),
    ),
    Deviation(
        "LeadInquiry.createTime/updateTime in the lead time format, not RFC 3339 date-time",
        "§2.4 (COMMUNITY quirk #32) and §8: lead-level times come as `2026-03-01T15:00:00GMT`.",
        lead_time_format("LeadInquiry.createTime", "LeadInquiry.updateTime"),
    ),
)

#: Response schemas served by the simulator; made strict (``additionalProperties: false``).
STRICT_SCHEMAS = (
    "LeadListResponse",
    "MetaData",
    "LeadResponse",
    "UserLeadTagVo",
    "LeadInquiry",
    "Location",
    "LeadProperty",
    "CustomAttribute",
    "CustomRole",
    "LeadFamilyMember",
    "CommunicationCallListResponse",
    "CallResponse",
    "CommunicationTextListResponse",
    "TextResponse",
    "CommunicationEmailListResponse",
    "EmailResponse",
    "CommunicationCursorPage",
    "CommunicationResponse",
    "MemberListResponse",
    "UserResponse",
    "AgentInfo",
    "OfficeBo",
    "PipelineListResponse",
    "PipelineResponse",
    "LeadPond",
    "TransactionV2PageResponse",
    "TransactionV2Item",
    "CustomFieldRequest",
)


def build_spec(extra: tuple[Deviation, ...] = ()) -> dict[str, Any]:
    """The document with the deviations applied and the served schemas made strict."""
    spec = load_spec()
    for name in STRICT_SCHEMAS:
        _schema(spec, name)["additionalProperties"] = False
    for deviation in (*DEVIATIONS, *extra):
        deviation.apply(spec)
    return spec


# ----------------------------------------------------------------------------- checking


@dataclass
class Checker:
    """Validates simulator answers against one (patched) document and counts what it saw."""

    api: Any
    responses: int = 0
    items: int = 0
    seen: set[tuple[str, int]] = field(default_factory=set)

    def check(
        self,
        resp: requests.Response,
        path: str,
        params: dict[str, Any],
        *,
        key: str | None = None,
        validate_request: bool = True,
    ) -> Any:
        request = MockRequest(
            SPEC_HOST,
            "get",
            path,
            args={k: str(v) for k, v in params.items()},
            headers={"Authorization": resp.request.headers.get("Authorization", "")},
        )
        if validate_request:
            # Our own requests must be valid too, or a 200 proves little.
            self.api.validate_request(request)
        content_type = resp.headers.get("Content-Type", "")
        response = MockResponse(resp.content, resp.status_code, content_type=content_type)
        try:
            self.api.validate_response(request, response)
        except Exception as err:  # the cause carries the schema errors
            pytest.fail(
                f"GET {path} {params} -> {resp.status_code} violates the document: "
                f"{type(err).__name__}: {describe(err)}\nbody: {resp.text[:300]}",
                pytrace=False,
            )
        self.responses += 1
        self.seen.add((path, resp.status_code))
        body = resp.json()
        if key is not None and resp.status_code == 200:
            self.items += len(body[key] if key else body)  # "": the body is the list
        return body


def describe(err: Exception) -> str:
    """The first few schema errors, each with where in the body it is (not the whole body)."""
    errors = list(getattr(err.__cause__, "schema_errors", None) or [])
    if not errors:
        return str(err)[:300]
    lines = []
    for e in errors[:6]:
        where = "/".join(str(p) for p in e.absolute_path)
        lines.append(f"at /{where}: {e.message[:160]}")
    return f"{len(errors)} errors; " + "; ".join(lines)


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker(OpenAPI.from_dict(build_spec()))


@pytest.fixture(scope="module")
def sim() -> Iterator[LoftySimulator]:
    # 200 leads with a big one: a few thousand calls, every lead shape.
    with LoftySimulator(
        SimConfig(leads=200, seed=11, calls_per_lead_mean=6, big_leads=1, rate_limit=None)
    ) as simulator:
        yield simulator


def call(
    sim: LoftySimulator,
    path: str,
    params: dict[str, Any],
    auth: str = "key",
    content_type: str = "application/json",
) -> Any:
    if auth == "key":
        header = f"token {sim.config.api_key}"
    elif auth == "bearer":
        header = f"Bearer {sim.config.access_token}"
    else:
        header = auth
    headers = {"Authorization": header} if header else {}
    if content_type:  # what the tap sends (Lofty answers some GETs 415 without it)
        headers["Content-Type"] = content_type
    return requests.get(sim.url + path, params=params, headers=headers, timeout=TIMEOUT)


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class ErrorCase:
    """One error answer: how to provoke it, and the status and code it must have."""

    name: str
    status: int
    code: int | None  # None: no code in the body (429)
    params: Callable[[LoftySimulator], dict[str, Any]]
    auth: str = "key"  # "key", "bearer", or a raw header ("" = none)
    config: dict[str, Any] = field(default_factory=dict)  # switches set for this case only
    rate_limited: bool = False  # spend the budget first (429)
    fault: str | None = None  # inject this fault on the request
    content_type: str = "application/json"  # the Content-Type request header ("" = none)


@dataclass(frozen=True)
class Endpoint:
    """A simulator endpoint: its path, list key, how to page through it, how to make it fail."""

    path: str
    key: str
    #: Makes the success requests through the given ``get(params) -> body`` (which validates
    #: each answer); returns how many items it saw.
    pages: Callable[[LoftySimulator, Callable[[dict[str, Any]], Any]], int]
    errors: tuple[ErrorCase, ...]
    #: At least this many items over the success requests (a team has few stages, ponds).
    min_items: int = 200
    min_responses: int = 8


def first_lead(sim: LoftySimulator) -> int:
    return sim.lead_ids()[0]


def page_leads(sim: LoftySimulator, get: Callable[[dict[str, Any]], Any]) -> int:
    """Every lead by offset pages, then by a scroll; both metadata keys."""
    n = 0
    for offset in range(0, len(sim.lead_ids()) + 100, 100):
        n += len(get({"limit": 100, "offset": offset})["leads"])
    body = get({"limit": 37, "sort": "CreateTime", "desc": "false"})
    while True:
        n += len(body["leads"])
        token = body["_metadata"].get("scrollId")
        if not token:
            break
        body = get({"scrollId": token})
    sim.configure(metadata_key="get_metadata")
    try:
        n += len(get({"limit": 100})["leads"])
    finally:
        sim.configure(metadata_key="_metadata")
    return n


DATA_NOW_MS = 1_793_491_200_000  # lofty_sim.data.DATA_NOW_MS: the end of the generated data
DAY = 86_400_000
WINDOW = {"startTime": DATA_NOW_MS - 90 * DAY, "endTime": DATA_NOW_MS}


def page_feed(sim: LoftySimulator, get: Callable[[dict[str, Any]], Any]) -> int:
    """The whole team feed in 90-day windows over the data's two years, each type, both views."""
    n = 0
    for start in range(DATA_NOW_MS - 9 * 90 * DAY, DATA_NOW_MS, 90 * DAY):
        window = {"startTime": start, "endTime": start + 90 * DAY}
        for kind, team in (("ALL", "true"), ("ALL", "false"), ("CALL", "true"), ("EMAIL", "true")):
            params = {**window, "type": kind, "teamView": team, "limit": 1000}
            body = get(params)
            while True:
                n += len(body["data"])
                if body["nextCursor"] is None:
                    break
                body = get({**params, "cursor": body["nextCursor"]})
    get({**WINDOW, "type": "TEXT"})  # the defaults: limit 100, teamView false
    return n


def per_lead_pages(key: str) -> Callable[[LoftySimulator, Callable[[dict[str, Any]], Any]], int]:
    """Every item of every lead: newest-first offset pages, then the currentId cursor."""

    def pages(sim: LoftySimulator, get: Callable[[dict[str, Any]], Any]) -> int:
        n = 0
        for lead in sim.lead_ids():
            n += len(get({"leadId": lead, "limit": 1000})[key])
        lead = sim.lead_ids()[len(sim.lead_ids()) // 2]
        get({"leadId": lead})  # the default limit
        cursor = 1
        while items := get({"leadId": lead, "currentId": cursor, "limit": 3})[key]:
            cursor = items[-1]["id"]
        return n

    return pages


def common_errors(params: Callable[[LoftySimulator], dict[str, Any]]) -> tuple[ErrorCase, ...]:
    """What every endpoint answers alike: credentials, the rate limit, an internal error."""
    return (
        ErrorCase("no credentials", 401, 401, params, auth=""),
        ErrorCase("bad token", 401, 401, params, auth="Bearer nope"),
        ErrorCase("API key as Bearer", 400, 200058, params, auth="BEARER_KEY"),
        ErrorCase("rate limited", 429, None, params, rate_limited=True),
        ErrorCase("internal error", 500, 20005, params, fault="500_json"),
    )


def history_errors(
    scope: dict[str, Any] | None = None, token: bool = False
) -> tuple[ErrorCase, ...]:
    """Errors of the per-lead history endpoints (calls, texts, emails)."""
    lead = first_lead
    no_scope = (
        ErrorCase(
            "no scope",
            403,
            200100,
            lambda s: {"leadId": lead(s)},
            auth="NOSCOPE" if token else "key",
            config=scope or {},
        ),
    )
    return (
        *common_errors(lambda s: {"leadId": lead(s)}),
        *no_scope,
        ErrorCase("leadId missing", 400, 20012, lambda s: {}),
        ErrorCase("leadId zero", 400, 20012, lambda s: {"leadId": 0}),
        ErrorCase("limit 0", 400, 20042, lambda s: {"leadId": lead(s), "limit": 0}),
        ErrorCase("limit 1001", 400, 20042, lambda s: {"leadId": lead(s), "limit": 1001}),
        ErrorCase("offset -1", 400, 20012, lambda s: {"leadId": lead(s), "offset": -1}),
        ErrorCase(
            "currentId -2^63", 400, 20012, lambda s: {"leadId": lead(s), "currentId": -(2**63)}
        ),
        ErrorCase("currentId 2^63", 400, 20012, lambda s: {"leadId": lead(s), "currentId": 2**63}),
        ErrorCase("unknown lead", 404, 20006, lambda s: {"leadId": 123456789}),
        ErrorCase(
            "lead deleted after listing",
            404,
            20006,
            lambda s: {"leadId": s.lead_ids()[1]},
            fault="lead_deleted",
        ),
    )


def page_members(sim: LoftySimulator, get: Callable[[dict[str, Any]], Any]) -> int:
    """Every member by offset pages of each size up to the maximum, and the default."""
    n = 0
    for limit in (7, 25, sim.config.members_max_limit):
        offset = 0
        while body := get({"limit": limit, "offset": offset})["members"]:
            n += len(body)
            offset += limit
    n += len(get({})["members"])  # the default limit (25)
    n += len(get({"groupIds": sim.members()[0]["groupId"]})["members"])
    return n


def page_stages(sim: LoftySimulator, get: Callable[[dict[str, Any]], Any]) -> int:
    """Every stage by pages of 1, 3 and the default 10, and a name filter."""
    n = 0
    for size in (1, 3, None):
        page = 0
        while True:
            params = {"currPage": page} if size is None else {"currPage": page, "pageSize": size}
            rows = get(params)["pipelines"]
            if not rows:
                break
            n += len(rows)
            page += 1
    n += len(get({"name": "contact"})["pipelines"])
    return n


def page_ponds(sim: LoftySimulator, get: Callable[[dict[str, Any]], Any]) -> int:
    return sum(len(get({})) for _ in range(3))


def page_transactions(sim: LoftySimulator, get: Callable[[dict[str, Any]], Any]) -> int:
    """Every transaction of each type by pages of 100, then the default (Purchase, 20)."""
    n = 0
    for kind in ("All", "Purchase", "Listing", "Lease", "Other"):
        page = 0
        while rows := get({"transactionType": kind, "pageNum": page, "pageSize": 100})["pageData"]:
            n += len(rows)
            page += 1
    n += len(get({})["pageData"])
    lead = sim.transactions()[0]["leadId"]
    n += len(get({"transactionType": "All", "leadId": lead, "queryKey": "a"})["pageData"])
    return n


def team_errors(
    scope: str, params: Callable[[LoftySimulator], dict[str, Any]]
) -> tuple[ErrorCase, ...]:
    """What every team-level endpoint answers alike, and its missing scope."""
    return (
        *common_errors(params),
        ErrorCase("no scope", 403, 200100, params, config={"missing_scopes": [scope]}),
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        LEADS,
        "leads",
        page_leads,
        (
            *common_errors(lambda s: {}),
            ErrorCase("no scope", 403, 200100, lambda s: {}, config={"missing_scopes": ["leads"]}),
            ErrorCase("limit 0", 400, 20042, lambda s: {"limit": 0}),
            ErrorCase("limit 101", 400, 20042, lambda s: {"limit": 101}),
            ErrorCase("desc not a boolean", 400, 20012, lambda s: {"desc": "maybe"}),
            ErrorCase("unknown scrollId", 400, 20012, lambda s: {"scrollId": "nope"}),
        ),
    ),
    Endpoint(CALLS, "calls", per_lead_pages("calls"), history_errors(token=True)),
    Endpoint(
        TEXTS, "texts", per_lead_pages("texts"), history_errors({"missing_scopes": ["texts"]})
    ),
    Endpoint(
        EMAILS, "emails", per_lead_pages("emails"), history_errors({"missing_scopes": ["emails"]})
    ),
    Endpoint(
        FEED,
        "data",
        page_feed,
        (
            *common_errors(lambda s: dict(WINDOW)),
            ErrorCase("startTime missing", 400, 20012, lambda s: {"endTime": WINDOW["endTime"]}),
            ErrorCase(
                "window over 90 days",
                400,
                20012,
                lambda s: {"startTime": 0, "endTime": 90 * DAY + 1},
            ),
            ErrorCase("type unknown", 400, 20012, lambda s: {**WINDOW, "type": "SMS"}),
            ErrorCase("limit 1001", 400, 20042, lambda s: {**WINDOW, "limit": 1001}),
            ErrorCase("bad cursor", 400, 20012, lambda s: {**WINDOW, "cursor": "nope"}),
            ErrorCase(
                "teamView without ACCESS_ALL_TEAM_LEADS",
                400,
                20017,
                lambda s: {**WINDOW, "teamView": "true"},
                config={"feed_mode": "no_team_permission"},
            ),
            ErrorCase("no scope", 403, 200100, lambda s: WINDOW, config={"feed_mode": "no_scope"}),
            ErrorCase("absent", 404, 20007, lambda s: WINDOW, config={"feed_mode": "absent"}),
        ),
    ),
    Endpoint(
        MEMBERS,
        "members",
        page_members,
        (
            *team_errors("members", lambda s: {}),
            ErrorCase("limit 0", 400, 20042, lambda s: {"limit": 0}),
            ErrorCase("limit oversize", 400, 20042, lambda s: {"limit": 51}),
            ErrorCase("no member in the groups", 404, 20003, lambda s: {"groupIds": 12345}),
        ),
        min_items=100,
    ),
    Endpoint(
        STAGES,
        "pipelines",
        page_stages,
        (
            *team_errors("lead_stages", lambda s: {}),
            ErrorCase("pageSize 0", 400, 20042, lambda s: {"pageSize": 0}),
            ErrorCase("currPage -1", 400, 20012, lambda s: {"currPage": -1}),
        ),
        min_items=33,  # 11 stages, three times
    ),
    Endpoint(
        PONDS,
        "",
        page_ponds,
        (
            *team_errors("ponds", lambda s: {}),
            ErrorCase("no JSON Content-Type", 415, 20001, lambda s: {}, content_type=""),
        ),
        min_items=6,
        min_responses=3,
    ),
    Endpoint(
        TRANSACTIONS,
        "pageData",
        page_transactions,
        (
            *team_errors("transactions", lambda s: {}),
            ErrorCase("pageSize 101", 400, 20042, lambda s: {"pageSize": 101}),
            ErrorCase("pageSize 0", 400, 20042, lambda s: {"pageSize": 0}),
            ErrorCase("pageNum -1", 400, 20012, lambda s: {"pageNum": -1}),
            ErrorCase("transactionType unknown", 400, 20012, lambda s: {"transactionType": "x"}),
        ),
        min_items=120,  # every transaction twice (All, then by type): ~60 on 200 leads
    ),
)


def _ids(cases: Any) -> list[str]:
    return [getattr(c, "path", None) or getattr(c, "name", "") for c in cases]


# ----------------------------------------------------------------------------- the tests


def test_document_is_there_and_covers_every_simulated_endpoint():
    spec = load_spec()
    assert spec["openapi"].startswith("3.0")
    for endpoint in ENDPOINTS:
        assert "get" in spec["paths"][endpoint.path], endpoint.path


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_ids(ENDPOINTS))
def test_success_responses_match_the_document(endpoint, sim, checker):
    def get(params: dict[str, Any]) -> Any:
        resp = call(sim, endpoint.path, params)
        assert resp.status_code == 200, resp.text
        return checker.check(resp, endpoint.path, params, key=endpoint.key)

    before = checker.responses
    items = endpoint.pages(sim, get)
    # Many real answers, not one: every lead / every item of every lead / every member.
    assert checker.responses - before >= endpoint.min_responses
    assert items >= endpoint.min_items


CASES = [(e, c) for e in ENDPOINTS for c in e.errors]


@pytest.mark.parametrize(("endpoint", "case"), CASES, ids=[f"{e.path} {c.name}" for e, c in CASES])
def test_error_responses_match_the_document(endpoint, case, make_sim, checker):
    sim = make_sim(leads=5, seed=3, calls_per_lead_mean=3, big_leads=0, **case.config)
    params = case.params(sim)
    auth = {
        "BEARER_KEY": f"Bearer {sim.config.api_key}",
        "NOSCOPE": f"Bearer {sim.config.no_calls_scope_token}",
    }.get(case.auth, case.auth)
    if case.rate_limited:
        sim.configure(rate_limit=1)
        call(sim, endpoint.path, params, auth)
    if case.fault:
        sim.configure(faults_at={sim.request_count + 1: case.fault})
    resp = call(sim, endpoint.path, params, auth, case.content_type)
    assert resp.status_code == case.status, resp.text
    body = checker.check(resp, endpoint.path, params, validate_request=False)
    assert body.get("code") == case.code, body


def test_unknown_lead_fields_pass_the_verbatim_document_and_are_a_named_deviation(make_sim):
    sim = make_sim(leads=20, seed=2, extra_lead_fields={"brandNewField": {"a": 1}})
    resp = call(sim, LEADS, {"limit": 100})
    assert resp.json()["leads"][0]["brandNewField"] == {"a": 1}
    # The document itself allows unknown fields (no additionalProperties: false) ...
    loose = load_spec()
    for deviation in DEVIATIONS:
        deviation.apply(loose)
    Checker(OpenAPI.from_dict(loose)).check(resp, LEADS, {"limit": 100})
    # ... the strict check does not, unless the field is declared (extra_lead_fields is a test
    # switch: the deviation exists only where it is on).
    strict = Checker(OpenAPI.from_dict(build_spec()))
    with pytest.raises(pytest.fail.Exception, match="brandNewField"):
        strict.check(resp, LEADS, {"limit": 100})
    declared = Deviation(
        "LeadResponse.brandNewField (extra_lead_fields)",
        "§16: live leads carry fields the document lacks; this one is configured by the test.",
        add_props("LeadResponse", brandNewField={"type": "object"}),
    )
    Checker(OpenAPI.from_dict(build_spec((declared,)))).check(resp, LEADS, {"limit": 100})


def test_each_deviation_is_needed(sim):
    """Without any one deviation, some real answer fails: none is dead weight."""
    samples: list[tuple[str, dict[str, Any], requests.Response]] = []

    def sample(path: str, params: dict[str, Any]) -> Any:
        resp = call(sim, path, params)
        samples.append((path, params, resp))
        return resp.json()

    for offset in (0, 100):
        sample(LEADS, {"limit": 100, "offset": offset})
    for path in (CALLS, TEXTS, EMAILS):
        for lead in sim.lead_ids()[:60]:
            sample(path, {"leadId": lead, "limit": 1000})
    sample(CALLS, {"leadId": 1})  # a 404 object
    sample(MEMBERS, {"limit": 50})
    sample(STAGES, {"pageSize": 100})
    body = sample(FEED, {**WINDOW, "teamView": "true", "limit": 1000})
    while body["nextCursor"]:
        body = sample(
            FEED, {**WINDOW, "teamView": "true", "limit": 1000, "cursor": body["nextCursor"]}
        )
    for i, deviation in enumerate(DEVIATIONS):
        others = DEVIATIONS[:i] + DEVIATIONS[i + 1 :]
        spec = load_spec()
        for name in STRICT_SCHEMAS:
            _schema(spec, name)["additionalProperties"] = False
        for other in others:
            other.apply(spec)
        checker = Checker(OpenAPI.from_dict(spec))
        failed = False
        for path, params, resp in samples:
            try:
                checker.check(resp, path, params, validate_request=False)
            except pytest.fail.Exception:
                failed = True
                break
        assert failed, f"deviation not needed by any answer: {deviation.what}"


def test_a_missing_document_fails_loudly(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "SPEC_PATH", tmp_path / "nowhere.json")
    with pytest.raises(pytest.fail.Exception, match="OpenAPI document is missing"):
        load_spec()
