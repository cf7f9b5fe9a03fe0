"""The streams: ``leads`` and the per-lead history streams (``calls``) that are its children.

Each stream class says everything about its endpoint (path, response key, cursor, keys,
page-size setting); :class:`LeadHistoryStream` is the one machinery they share: the
resume-safe bookmark, the prefetch pool, page-size learning and per-lead progress.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from importlib import resources
from typing import Any, ClassVar, Protocol, TypeVar, cast

from singer_sdk import SchemaDirectory, Stream, StreamSchema, Tap, metrics
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context, Record
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from tap_lofty.client import (
    NO_PERMISSION,
    LeadNotFoundError,
    LoftyAPIError,
    LoftyClient,
    LoftyError,
)
from tap_lofty.feed import FeedUnavailableError, read_feed
from tap_lofty.pagination import (
    HistoryPageSize,
    PaginationError,
    TeamListing,
    scroll_leads,
    to_id,
    walk_history,
)
from tap_lofty.prefetch import OrderedPrefetcher
from tap_lofty.progress import Progress
from tap_lofty.state import CLOCK_SKEW_MARGIN, ChangeDetection, LeadHistoryBookmark
from tap_lofty.timefmt import TimeFormatError, to_rfc3339
from tap_lofty.versions import FullTableVersion

LOGGER = logging.getLogger("tap_lofty")
SCHEMAS = SchemaDirectory(resources.files("tap_lofty") / "schemas")
#: The column that keeps, per record, every field Lofty sent that the schema lacks.
UNKNOWN_FIELDS = "lofty_unknown_fields"
_QUIET_METRICS = logging.getLogger("tap_lofty.per_lead_metrics")
_QUIET_METRICS.setLevel(logging.WARNING)

M = TypeVar("M", bound=metrics.Meter)


def _quiet(meter: M) -> M:
    meter.logger = _QUIET_METRICS
    return meter


class LoftyTap(Protocol):
    """What the streams need from the tap: the run's one client and its progress counters."""

    @property
    def client(self) -> LoftyClient:
        """The HTTP client every request goes through."""

    @property
    def progress(self) -> Progress:
        """Counters behind the progress lines."""


class LoftyStream(Stream):
    """A stream whose schema is ``schemas/<name>.json`` and whose data comes from Lofty."""

    schema = StreamSchema(SCHEMAS)
    id_fields: ClassVar[tuple[str, ...]] = ()
    time_fields: ClassVar[tuple[str, ...]] = ()
    # post_process conforms each record itself (see _conform): the SDK's generic
    # conformance walks every field of every record and took half the tap's CPU.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap) -> None:
        """Create the stream for ``tap``."""
        super().__init__(tap)
        self.lofty = cast(LoftyTap, tap)
        self._shape_cache: _RecordShape | None = None

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """Make ids exact ints and times RFC 3339 UTC; fail clearly on anything else."""
        for field in self.id_fields:
            value = row.get(field)
            if value is not None:
                row[field] = to_id(value, f"{self.name}.{field}")
        try:
            for field in self.time_fields:
                if field in row:
                    row[field] = to_rfc3339(row[field], field)
        except TimeFormatError as exc:
            raise self._record_error(row, str(exc)) from exc
        self._conform(row)
        return row

    def _record_error(self, row: Record, problem: str) -> LoftyError:
        key = self.primary_keys[0]
        return LoftyError(
            f"{self.name} record {key}={row.get(key)}: {problem}. The tap stopped rather "
            "than load a wrong value; please report this value."
        )

    @property
    def _shape(self) -> _RecordShape:
        if self._shape_cache is None:
            self._shape_cache = _RecordShape.of(self)
        return self._shape_cache

    def _conform(self, row: Record) -> None:
        """Make the record fit its schema without losing or silently changing anything.

        - A field the schema does not know moves into ``lofty_unknown_fields`` (one
          object per record), with one warning per stream and set of fields.
        - 0/1 in a boolean field become false/true (Lofty's booleans are sometimes ints).
        - An object, array, number or boolean in a string field becomes its JSON text,
          with one warning per field; a digit string in an integer field becomes the
          exact integer. Any other mismatch stops the run, naming record and field.
        """
        shape = self._shape
        if not shape.properties.issuperset(row):
            unknown = {k: row.pop(k) for k in [k for k in row if k not in shape.properties]}
            row[UNKNOWN_FIELDS] = unknown
            names = tuple(sorted(unknown))
            if names not in shape.warned:
                shape.warned.add(names)
                self.logger.warning(
                    "Lofty sent fields %s in the '%s' stream that its schema does not have; "
                    "they are loaded in the %s column.",
                    names,
                    self.name,
                    UNKNOWN_FIELDS,
                )
        accepts = shape.accepts
        for field, value in row.items():
            allowed = accepts.get(field)
            if allowed is not None and type(value) not in allowed:
                row[field] = self._fix(row, field, value, allowed)
        for field, item_types in shape.scalar_items.items():
            items = row.get(field)
            if isinstance(items, list) and any(type(i) not in item_types for i in items):
                row[field] = [
                    i if type(i) in item_types else self._fix(row, f"{field}[]", i, item_types)
                    for i in items
                ]

    def _fix(self, row: Record, field: str, value: Any, allowed: frozenset[type]) -> Any:
        """Turn a value of the wrong JSON type into the declared one, or fail clearly."""
        if bool in allowed and type(value) is int and value in (0, 1):
            return value == 1
        if int in allowed and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            self._warn_once(field, "a digit string", "the exact integer")
            return int(value)
        if str in allowed and not isinstance(value, str):
            self._warn_once(field, f"a JSON {_json_type(value)}", "its JSON text")
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        declared = sorted(_JSON_NAMES[t] for t in allowed)
        raise self._record_error(
            row,
            f"field {field!r} holds a JSON {_json_type(value)} ({value!r:.80}) where the schema "
            f"declares {' or '.join(declared)}",
        )

    def _warn_once(self, field: str, got: str, loaded_as: str) -> None:
        if (field, got) not in self._shape.warned_types:
            self._shape.warned_types.add((field, got))
            self.logger.warning(
                "Lofty sent %s in the '%s' field of the '%s' stream, whose schema declares "
                "another type; it is loaded as %s.",
                got,
                field,
                self.name,
                loaded_as,
            )

    @override
    def _generate_record_messages(self, record: Record) -> Generator[RecordMessage, None, None]:
        # The SDK's version also walks every record to drop deselected fields, a
        # no-op when every field is selected (the usual case), so it is kept for
        # catalogs that deselect some.
        if self._shape.deselects:
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=utc_now(),
                )


_PY_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "integer": frozenset({int}),
    "number": frozenset({int, float}),
    "boolean": frozenset({bool}),
    "object": frozenset({dict}),
    "array": frozenset({list}),
    "null": frozenset({type(None)}),
}
_JSON_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _accepted(prop: dict[str, Any]) -> frozenset[type] | None:
    """Return the Python types a JSON Schema ``type`` allows; None if it names none."""
    kinds = _types(prop)
    if not kinds:
        return None
    return frozenset().union(*(_PY_TYPES.get(kind, frozenset()) for kind in kinds))


@dataclasses.dataclass
class _RecordShape:
    """What :meth:`LoftyStream._conform` needs from a stream's schema."""

    properties: frozenset[str]
    accepts: dict[str, frozenset[type]]
    scalar_items: dict[str, frozenset[type]]  # arrays of strings or integers: item types
    deselects: bool  # whether the catalog deselects a field
    warned: set[tuple[str, ...]] = dataclasses.field(default_factory=set)
    warned_types: set[tuple[str, str]] = dataclasses.field(default_factory=set)

    @classmethod
    def of(cls, stream: Stream) -> _RecordShape:
        """Read it from the stream's schema and catalog selection (known once it syncs)."""
        properties: dict[str, Any] = stream.schema.get("properties", {})
        accepts = {name: kinds for name, p in properties.items() if (kinds := _accepted(p))}
        scalar_items = {}
        for name, prop in properties.items():
            items = prop.get("items")
            kinds = _accepted(items) if isinstance(items, dict) else None
            if kinds and not kinds & {dict, list}:
                scalar_items[name] = kinds | {type(None)}
        return cls(
            frozenset(properties),
            accepts,
            scalar_items,
            deselects=not all(stream.mask.values()),
        )


def _types(prop: dict[str, Any]) -> list[str]:
    kind = prop.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


class LeadsStream(LoftyStream):
    """Every lead of the account, from ``GET /v1.0/leads`` (scroll pagination).

    Full table: a complete listing ends with ``ACTIVATE_VERSION``, so that a target
    marks the leads deleted in Lofty (see :mod:`tap_lofty.versions`).
    """

    name = "leads"
    primary_keys: ClassVar[tuple[str, ...]] = ("leadId",)
    replication_key = None
    id_fields = ("leadId", "leadUserId", "stageId", "assignedUserId", "lenderUserId", "teamId")
    time_fields = ("createTime", "assignTime", "lastUpdateTime", "lastTouch", "lastVisit")

    @property
    @override
    def emit_activate_version_messages(self) -> bool:
        # Never the SDK's ACTIVATE_VERSION before the records: see tap_lofty.versions.
        return False

    def _histories(self) -> list[LeadHistoryStream]:
        """Return the per-lead child streams this run syncs (whichever they are)."""
        return [
            child
            for child in self.child_streams
            if isinstance(child, LeadHistoryStream)
            and (child.selected or child.has_selected_descendents)
        ]

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Yield every lead, keeping the next leads' history fetches in flight."""
        histories = self._histories()
        progress = self.lofty.progress
        progress.reads_histories = bool(histories)
        progress.leads_done_before = max(
            (h.bookmark.leads_done_before for h in histories), default=0
        )
        changed = self._detect_changes(histories)
        if changed is not None:
            progress.leads_total = len(changed)
        version = FullTableVersion(self)
        if self.selected or any(h.changed is None for h in histories):
            version.begin()
            listed, total = 0, None
            lookahead = max((h.lookahead for h in histories), default=0)
            ahead: deque[dict[str, Any]] = deque()
            for page in scroll_leads(self.lofty.client, self.config["leads_page_size"]):
                listed, total = listed + len(page.leads), page.total
                if page.total is not None and changed is None:
                    progress.leads_total = page.total
                for lead in page.leads:
                    for history in histories:
                        history.admit(lead)
                for lead in page.leads:
                    for history in histories:
                        history.start(lead)
                    ahead.append(lead)
                    while len(ahead) > lookahead:
                        progress.lead_listed()
                        yield ahead.popleft()
            while ahead:
                progress.lead_listed()
                yield ahead.popleft()
            # The scroll ended cleanly (an error would have left by now); it showed every
            # lead only if it listed as many as Lofty counted (a lead created meanwhile
            # is counted but outside the scroll: the next run completes it).
            if total is None or listed >= total:
                version.activate()
            else:
                version.skip(f"{listed:,} leads listed, {total:,} counted by Lofty")
        # else: only children are selected and the feed named their leads: no listing.
        for history in histories:
            history.finish_listing()
        LOGGER.info(progress.summary())

    def _detect_changes(self, histories: list[LeadHistoryStream]) -> set[int] | None:
        """Read the feed once for the children in feed mode; return their leads (None: none)."""
        feeders = [h for h in histories if h.bookmark.mode == "feed"]
        if not feeders:
            return None
        start = min(h.bookmark.feed_from for h in feeders if h.bookmark.feed_from)
        # Ahead of our clock by the skew margin: an item Lofty's clock stamps a little in
        # our future is read now, not one run later.
        end = dt.datetime.now(dt.timezone.utc) + CLOCK_SKEW_MARGIN
        try:
            result = read_feed(self.lofty.client, {h.feed_type for h in feeders}, start, end)
        except FeedUnavailableError as exc:
            if self.config["change_detection"] == "feed":
                msg = (
                    f"{exc}. change_detection is 'feed', so the run stopped: grant {exc.missing}, "
                    "or set change_detection to 'auto' (falls back to reading every lead) or "
                    "'full'."
                )
                raise LoftyError(msg) from exc
            LOGGER.warning(
                "%s. Lofty's communications feed needs %s. This run reads every lead instead "
                "(change_detection=auto): one request per lead plus one per 100 leads listed, "
                "as a full scan costs; grant it to make incremental runs cost what changed.",
                exc,
                exc.missing,
            )
            for history in feeders:
                history.bookmark.fall_back_to_full()
            return None
        if result.unknown_events:
            LOGGER.warning(
                "GET /v2.0/communication/agent sent eventType values the tap does not know "
                "(%s); their leads are read by every per-lead stream.",
                ", ".join(sorted(result.unknown_events)),
            )
        union: set[int] = set()
        for history in feeders:
            history.changed = result.leads_for(history.feed_type)
            union |= history.changed
        LOGGER.info(
            "Communications feed since %s: %s item(s) in %s request(s); %s lead(s) to read.",
            start.isoformat(),
            f"{result.items:,}",
            result.requests,
            f"{len(union):,}",
        )
        return union

    @override
    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[Context | None]:
        """Hand ``{"leadId": ...}`` to the children, unless none of them reads this lead."""
        if any(h.is_scheduled(record["leadId"]) for h in self._histories()):
            yield {"leadId": record["leadId"]}


#: What a prefetch hands back for one lead: its first page and the walk that goes on
#: from there (so memory is bounded by pages, not by a lead's history), or ``GONE``.
_Fetched = tuple[list[dict[str, Any]], Iterator[list[dict[str, Any]]]]
#: A lead Lofty no longer has when its history is fetched (404 LEAD_NOT_EXIST).
GONE = None


class LeadHistoryStream(LoftyStream):
    """One lead's history from a per-lead endpoint paged by the ``currentId`` cursor.

    Incremental on ``id`` with one bookmark for the whole account (see
    :mod:`tap_lofty.state`), not one per lead. A subclass names its endpoint
    (``path``, ``records_key``, ``page_size_setting``) and its fields.
    """

    parent_stream_type = LeadsStream
    primary_keys: ClassVar[tuple[str, ...]] = ("id",)
    replication_key = "id"
    # One flat bookmark: the SDK's default of one partition per lead makes STATE grow
    # with the account and every STATE message quadratic in the number of leads.
    state_partitioning_keys: ClassVar[tuple[str, ...]] = ()
    path: ClassVar[str]
    records_key: ClassVar[str]
    page_size_setting: ClassVar[str]
    #: The communications feed's ``type`` for this stream's records (CALL, TEXT, EMAIL).
    feed_type: ClassVar[str]
    #: The field that says when a record was created (the bookmark's cut-off rule).
    created_field: ClassVar[str] = "createTime"
    #: Whether an app without this endpoint's scope skips the stream (with a warning)
    #: instead of failing the run.
    scope_optional: ClassVar[bool] = True
    #: Shortest gap between two STATE messages written after a lead; at most this
    #: much progress is lost if the run is killed.
    STATE_INTERVAL_S = 1.0

    def __init__(self, tap: Tap) -> None:
        """Create the stream; the run's bookmark and fetch pool start with the sync."""
        super().__init__(tap)
        self._bookmark: LeadHistoryBookmark | None = None
        self._prefetcher: OrderedPrefetcher[_Fetched | None] | None = None
        self._scheduled: dict[int, dict[str, Any]] = {}
        self._last_state_write = 0.0
        self._schema_sent = False
        #: Leads the feed says changed (None: a full scan reads every lead).
        self.changed: set[int] | None = None
        #: Why Lofty refused this stream's endpoint in this run (403 scope), if it did.
        self.refused: str | None = None
        self._page_size = HistoryPageSize(
            self.path, self.page_size_setting, self.config[self.page_size_setting]
        )
        #: Leads to keep in flight: two per worker, so none waits for the next one.
        self.lookahead = 2 * max(self.config["max_concurrency"], 1)
        # The SDK logs two lines and two metrics per child context, i.e. per lead:
        # 400,000 lines on a 100,000-lead account. Progress lines replace them.
        self.logger.setLevel(max(self.logger.getEffectiveLevel(), logging.WARNING))

    @property
    def bookmark(self) -> LeadHistoryBookmark:
        """Return this run's bookmark, created from the incoming STATE on first use."""
        if self._bookmark is None:
            config = self.config
            interval = float(config["full_scan_interval_days"])
            detection = ChangeDetection(
                setting=config["change_detection"],
                overlap=dt.timedelta(minutes=config["feed_overlap_minutes"]),
                full_scan_interval=dt.timedelta(days=interval) if interval > 0 else None,
            )
            self._bookmark = LeadHistoryBookmark(
                self.stream_state,
                self.name,
                created_field=self.created_field,
                detection=detection,
            )
        return self._bookmark

    def admit(self, lead: dict[str, Any]) -> None:
        """Plan this lead's history unless this run need not read it (call in listing order).

        The parent admits a whole listing page before it starts any of its fetches, so
        that the resume marker knows every lead of the page (a page may not be sorted).
        """
        lead_id = lead["leadId"]
        if self.refused is not None:
            return
        if self.changed is not None:
            if lead_id not in self.changed:
                return  # the feed shows nothing new for this lead
            self.changed.discard(lead_id)  # what is left after the listing was not listed
        if not self.bookmark.should_sync_lead(lead):
            return
        self.bookmark.lead_listed(lead)
        self._scheduled[lead_id] = lead

    def start(self, lead: dict[str, Any]) -> None:
        """Start fetching this lead's history in the background, if it was admitted."""
        lead_id = lead["leadId"]
        if lead_id not in self._scheduled:
            return
        if self._prefetcher is None:
            self._prefetcher = OrderedPrefetcher(self._fetch_lead, self.config["max_concurrency"])
        self._prefetcher.submit(lead_id)

    def is_scheduled(self, lead_id: int) -> bool:
        """Whether :meth:`admit` planned a fetch for this lead."""
        return lead_id in self._scheduled

    def finish_listing(self) -> None:
        """Every lead was listed: read the leads still due, then promote the bookmark.

        Still due: the leads a resume skipped wrongly, and the leads the feed named that
        the listing did not show (or all of them, when nothing was listed).
        """
        due = self.bookmark.leads_to_reread()
        if self.changed:
            due += sorted(self.changed)
        self.changed = None  # the leads due now are read whatever the feed said
        leads = [{"leadId": lead_id} for lead_id in due]
        for lead in leads:
            self.admit(lead)
        _bounded(
            leads,
            self.start,
            lambda lead: self.sync(context={"leadId": lead["leadId"]}),
            self.lookahead,
        )
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
        if self.refused is not None:
            self.bookmark.abandon()
        elif self.selected:
            self.bookmark.finish()
        self._force_state_message()

    @override
    def get_record_counter(
        self, *, endpoint: str | None = None, log_interval: float = metrics.DEFAULT_LOG_INTERVAL
    ) -> metrics.Counter:
        """Count records without a metric line per lead (see the progress lines)."""
        return _quiet(super().get_record_counter(endpoint=endpoint, log_interval=log_interval))

    @override
    def get_sync_timer(self) -> metrics.Timer:
        """Time each lead without a metric line per lead."""
        return _quiet(super().get_sync_timer())

    def _fetch_lead(self, lead_id: int) -> _Fetched | None:
        """Fetch the first page of a lead's history above the bookmark (on a worker thread)."""
        pages = walk_history(
            self.lofty.client,
            self.path,
            self.records_key,
            lead_id=lead_id,
            after_id=self.bookmark.start_after or 1,
            page_size=self._page_size,
        )
        try:
            return next(pages, []), pages
        except LeadNotFoundError:
            return GONE

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        """Yield one lead's new records, ascending by id, then mark the lead done."""
        if context is None:
            msg = f"{self.name} is a child of leads and needs a leadId context"
            raise LoftyError(msg)
        lead_id = context["leadId"]
        lead = self._scheduled.pop(lead_id, None)
        if lead is None:
            return  # another child stream reads this lead; this one need not
        assert self._prefetcher is not None
        count = 0
        bookmark = self.bookmark
        try:
            fetched = self._prefetcher.take(lead_id)
            if fetched is GONE:
                self._gone(lead_id)
            else:
                for page in _chain(*fetched):
                    for record in page:
                        record.setdefault("leadId", lead_id)
                        bookmark.observe(record)
                        yield record
                    count += len(page)
        except LeadNotFoundError:
            self._gone(lead_id)
        except LoftyAPIError as exc:
            if not (
                self.scope_optional and exc.status == 403 and str(exc.code) == str(NO_PERMISSION)
            ):
                raise
            self._refuse(exc)
            return
        bookmark.lead_done(lead)
        self.lofty.progress.lead_finished(self.name, count)
        if time.monotonic() - self._last_state_write >= self.STATE_INTERVAL_S:
            self.state_manager.is_flushed = False

    def _refuse(self, exc: LoftyAPIError) -> None:
        """Lofty says the app lacks this endpoint's scope: skip the stream, keep its state."""
        if self.refused is None:
            self.refused = str(exc)
            LOGGER.warning(
                "The Lofty app lacks the scope for GET %s (403, code %s), so the '%s' stream "
                "is skipped in this run and its bookmark stays where it was; the other "
                "streams go on. Grant the scope in the Lofty Developer Portal, or deselect "
                "'%s'.",
                self.path,
                NO_PERMISSION,
                self.name,
                self.name,
            )
            self._scheduled.clear()

    def _gone(self, lead_id: int) -> None:
        LOGGER.warning(
            "Lead %s was listed but Lofty answered 404 LEAD_NOT_EXIST for its %s "
            "(deleted meanwhile); skipped.",
            lead_id,
            self.name,
        )
        self.lofty.progress.lead_skipped(lead_id)

    @override
    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        # The bookmark is advanced by LeadHistoryBookmark (cut-off rule), not by the
        # SDK's "highest value seen", which could skip records created during the run.
        return

    @override
    def _write_state_message(self) -> None:
        # The SDK writes STATE after every child context, i.e. after every lead; at
        # most one every STATE_INTERVAL_S keeps STATE output small on big accounts.
        if time.monotonic() - self._last_state_write < self.STATE_INTERVAL_S:
            return
        super()._write_state_message()
        self._last_state_write = time.monotonic()

    @override
    def _write_schema_message(self) -> None:
        # The SDK sends SCHEMA at the start of every child context, i.e. per lead;
        # the schema never changes within a run, so once is enough for any target.
        if not self._schema_sent:
            super()._write_schema_message()
            self._schema_sent = True

    def _force_state_message(self) -> None:
        self.state_manager.is_flushed = False
        self._last_state_write = 0.0
        self._write_state_message()


def _chain(
    first: list[dict[str, Any]], rest: Iterator[list[dict[str, Any]]]
) -> Iterator[list[dict[str, Any]]]:
    yield first
    yield from rest


T = TypeVar("T")


def _bounded(
    items: Iterable[T], start: Callable[[T], None], finish: Callable[[T], None], ahead: int
) -> None:
    """``start`` each item, and ``finish`` it once ``ahead`` more have been started."""
    started: deque[T] = deque()
    for item in items:
        start(item)
        started.append(item)
        while len(started) > ahead:
            finish(started.popleft())
    while started:
        finish(started.popleft())


class CallsStream(LeadHistoryStream):
    """Each lead's call history, from ``GET /v1.0/communication/call``."""

    name = "calls"
    path = "/v1.0/communication/call"
    records_key = "calls"
    page_size_setting = "calls_page_size"
    feed_type = "CALL"
    scope_optional = False  # the tap's main stream: a missing scope is an error
    id_fields = ("id", "leadId", "dialerCallRecordId", "userId", "agentId")
    time_fields = ("startTime", "endTime", "createTime", "updateTime")


class TextsStream(LeadHistoryStream):
    """Each lead's text messages, from ``GET /v1.0/communication/text``.

    ``textTime`` is the only time a text carries; its format is undocumented, so every
    Lofty time format and epoch milliseconds are accepted.
    """

    name = "texts"
    path = "/v1.0/communication/text"
    records_key = "texts"
    page_size_setting = "texts_page_size"
    feed_type = "TEXT"
    created_field = "textTime"
    id_fields = ("id", "leadId", "agentId")
    time_fields = ("textTime",)


class EmailsStream(LeadHistoryStream):
    """Each lead's email events (sent, opened, bounced), from ``GET /v1.0/communication/email``.

    One record per event; ``emailEventTime``'s format is undocumented, so every Lofty
    time format and epoch milliseconds are accepted.
    """

    name = "emails"
    path = "/v1.0/communication/email"
    records_key = "emails"
    page_size_setting = "emails_page_size"
    feed_type = "EMAIL"
    created_field = "emailEventTime"
    id_fields = ("id", "leadId", "agentId")
    time_fields = ("emailEventTime",)


# ------------------------------------------------------------------------------------------
# Team-level streams: a few requests per run each, read whole every run.


class TeamStream(LoftyStream):
    """A team-level listing, read whole every run (full table), with a table version.

    A complete listing ends with ``ACTIVATE_VERSION`` (rows it no longer shows are gone,
    see :mod:`tap_lofty.versions`). An app without the endpoint's scope (403, code
    200100) skips the stream with one warning; the other streams go on.
    """

    replication_key = None
    listing: ClassVar[TeamListing]

    @property
    @override
    def emit_activate_version_messages(self) -> bool:
        # Never the SDK's ACTIVATE_VERSION before the records: see tap_lofty.versions.
        return False

    @override
    def _write_state_message(self) -> None:
        # Nothing to save or resume: the stream is read whole every run. Its STATE lines
        # would only repeat the other streams' bookmarks, before the leads' first one.
        return

    def _rows(self) -> tuple[Iterator[list[dict[str, Any]]], Callable[[], bool]]:
        """Return the listing's pages, and a function saying afterwards whether it was complete."""
        pages = self.listing.pages(self.lofty.client)
        return iter(pages), lambda: pages.complete

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        """Yield every row of the listing; version the table if it was complete."""
        version = FullTableVersion(self)
        version.begin()
        pages, complete = self._rows()
        try:
            for page in pages:
                yield from page
        except LoftyAPIError as exc:
            if not (exc.status == 403 and str(exc.code) == str(NO_PERMISSION)):
                raise
            LOGGER.warning(
                "The Lofty app lacks the scope for GET %s (403, code %s), so the '%s' stream "
                "is skipped in this run (its rows in the warehouse stay as they are); the "
                "other streams go on. Grant the scope in the Lofty Developer Portal, or "
                "deselect '%s'.",
                self.listing.path,
                NO_PERMISSION,
                self.name,
                self.name,
            )
            return
        if complete():
            version.activate()
        else:
            version.skip("it ended with fewer rows than Lofty counted")


class MembersStream(TeamStream):
    """The team's members (agents, admins, lenders...), from ``GET /v1.0/members``.

    ``memberUserId`` is the user id that ``agentId``, ``userId`` and ``assignedUserId``
    elsewhere refer to (inferred from the naming; Lofty does not document it); ``id``
    is the team-member record.
    """

    name = "members"
    primary_keys: ClassVar[tuple[str, ...]] = ("id",)
    id_fields = ("id", "teamId", "invitorUserId", "memberUserId", "groupId")
    # Lofty states no maximum limit ("too large" answers 400 LIMIT_PARAM_OVERSIZE):
    # asked for 100, a refusal is learnt at run time, down to the documented 25.
    listing = TeamListing(
        path="/v1.0/members",
        key="members",
        id_field="id",
        size_param="limit",
        position_param="offset",
        by_page=False,
        size=100,
        documented_size=25,
        params={},
    )


class LeadStagesStream(TeamStream):
    """The lead pipeline's stages, from ``GET /v1.0/teamFeatures/lead-pipelines``.

    ``id`` is what a lead's ``stageId`` holds.
    """

    name = "lead_stages"
    primary_keys: ClassVar[tuple[str, ...]] = ("id",)
    id_fields = ("id",)
    # No maximum pageSize is documented (default 10): a refusal is learnt as for members.
    listing = TeamListing(
        path="/v1.0/teamFeatures/lead-pipelines",
        key="pipelines",
        id_field="id",
        size_param="pageSize",
        position_param="currPage",
        by_page=True,
        size=100,
        documented_size=10,
        params={},
    )


class PondsStream(TeamStream):
    """The team's lead ponds, from ``GET /v1.0/team-features/lead-ponds`` (one request).

    ``id`` is what a lead's ``pondId`` holds (0 or -1: in no pond).
    """

    name = "ponds"
    primary_keys: ClassVar[tuple[str, ...]] = ("id",)
    id_fields = ("id", "pondOwnerId")
    # Unpaged, a bare JSON array; only path is used, for messages and the scope warning.
    listing = TeamListing(
        path="/v1.0/team-features/lead-ponds",
        key="",
        id_field="id",
        size_param="",
        position_param="",
        by_page=False,
        size=0,
        documented_size=0,
        params={},
    )

    @override
    def _rows(self) -> tuple[Iterator[list[dict[str, Any]]], Callable[[], bool]]:
        def one_page() -> Iterator[list[dict[str, Any]]]:
            rows = self.lofty.client.get_list(self.listing.path, {})
            for row in rows:
                if not isinstance(row, dict):
                    msg = (
                        f"GET {self.listing.path} returned a JSON {type(row).__name__} in its "
                        "array where Lofty documents pond objects. The API has changed or "
                        "api_url points at something else."
                    )
                    raise PaginationError(msg)
                row["id"] = to_id(row.get("id"), f"id from GET {self.listing.path}")
            yield rows

        return one_page(), lambda: True


class TransactionsStream(TeamStream):
    """Every transaction of every type, from ``GET /v2.0/transactions``.

    ``transactionType=All`` is sent: without it Lofty lists Purchase transactions only.
    The endpoint has no time filter, so every run reads all of them (full table). All
    dates are epoch milliseconds, loaded as RFC 3339 UTC times.
    """

    name = "transactions"
    primary_keys: ClassVar[tuple[str, ...]] = ("transactionId",)
    id_fields = ("transactionId", "leadId", "propertyId", "assignedAgent")
    time_fields = (
        "created",
        "updated",
        "expectedCloseDate",
        "closeDate",
        "appointmentDate",
        "agreementSignedDate",
        "offerDate",
        "contractDate",
        "appraisalDate",
        "homeInspectionDate",
        "escrowDate",
        "expiration",
    )
    listing = TeamListing(
        path="/v2.0/transactions",
        key="pageData",
        id_field="transactionId",
        size_param="pageSize",
        position_param="pageNum",
        by_page=True,
        size=100,  # the documented maximum
        documented_size=20,
        params={"transactionType": "All"},
        total_key="totalCount",
    )
