"""The two streams: ``leads`` and its child ``calls``."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from singer_sdk import Stream, metrics
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context, Record
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from tap_lofty.client import LeadNotFoundError, LoftyError
from tap_lofty.pagination import CallPageSize, scroll_leads, to_id, walk_calls
from tap_lofty.prefetch import OrderedPrefetcher
from tap_lofty.state import CallsBookmark
from tap_lofty.timefmt import TimeFormatError, to_rfc3339

if TYPE_CHECKING:
    from tap_lofty.tap import TapLofty

LOGGER = logging.getLogger("tap_lofty")
SCHEMAS = resources.files("tap_lofty") / "schemas"
_QUIET_METRICS = logging.getLogger("tap_lofty.per_lead_metrics")
_QUIET_METRICS.setLevel(logging.WARNING)

M = TypeVar("M", bound=metrics.Meter)


def _quiet(meter: M) -> M:
    meter.logger = _QUIET_METRICS
    return meter


#: A lead Lofty no longer has when its calls are fetched.
GONE = None


class LoftyStream(Stream):
    """A stream whose schema is ``schemas/<name>.json`` and whose data comes from Lofty."""

    id_fields: ClassVar[tuple[str, ...]] = ()
    time_fields: ClassVar[tuple[str, ...]] = ()
    # post_process conforms each record itself (see _conform): the SDK's generic
    # conformance walks every field of every record and took half the tap's CPU.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapLofty) -> None:
        """Create the stream for ``tap``, loading its JSON schema file."""
        schema = json.loads((SCHEMAS / f"{self.name}.json").read_text(encoding="utf-8"))
        super().__init__(tap, schema=schema)
        self.tap: TapLofty = tap
        self._shape_cache: _RecordShape | None = None

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """Make ids exact ints and times RFC 3339 UTC; fail clearly on anything else."""
        self._conform(row)
        for field in self.id_fields:
            value = row.get(field)
            if value is not None:
                row[field] = to_id(value, f"{self.name}.{field}")
        try:
            for field in self.time_fields:
                if field in row:
                    row[field] = to_rfc3339(row[field], field)
        except TimeFormatError as exc:
            key = self.primary_keys[0]
            msg = (
                f"{self.name} record {key}={row.get(key)}: {exc}. The tap stopped rather "
                "than load a wrong time; please report this value."
            )
            raise LoftyError(msg) from exc
        return row

    @property
    def _shape(self) -> _RecordShape:
        if self._shape_cache is None:
            self._shape_cache = _RecordShape.of(self)
        return self._shape_cache

    def _conform(self, row: Record) -> None:
        """Do what the SDK's root-level conformance does, for this schema only.

        Fields the schema does not know are dropped (with one warning per stream and
        set of fields), and 0/1 in boolean fields become false/true. Nested objects
        pass through as Lofty sent them.
        """
        shape = self._shape
        if not shape.properties.issuperset(row):
            unknown = tuple(sorted(k for k in row if k not in shape.properties))
            for key in unknown:
                del row[key]
            if unknown not in shape.warned:
                shape.warned.add(unknown)
                self.logger.warning(
                    "Lofty sent fields %s in the '%s' stream that its schema does not have; "
                    "they are not loaded.",
                    unknown,
                    self.name,
                )
        for field in shape.booleans:
            value = row.get(field)
            if isinstance(value, int) and not isinstance(value, bool):
                row[field] = value != 0

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


@dataclasses.dataclass
class _RecordShape:
    """What :meth:`LoftyStream._conform` needs from a stream's schema."""

    properties: frozenset[str]
    booleans: tuple[str, ...]
    deselects: bool  # whether the catalog deselects a field
    warned: set[tuple[str, ...]] = dataclasses.field(default_factory=set)

    @classmethod
    def of(cls, stream: Stream) -> _RecordShape:
        """Read it from the stream's schema and catalog selection (known once it syncs)."""
        properties = stream.schema.get("properties", {})
        booleans = tuple(
            name
            for name, prop in properties.items()
            if set(_types(prop)) in ({"boolean"}, {"boolean", "null"})
        )
        return cls(frozenset(properties), booleans, deselects=not all(stream.mask.values()))


def _types(prop: dict[str, Any]) -> list[str]:
    kind = prop.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


class LeadsStream(LoftyStream):
    """Every lead of the account, from ``GET /v1.0/leads`` (scroll pagination)."""

    name = "leads"
    primary_keys: ClassVar[tuple[str, ...]] = ("leadId",)
    replication_key = None
    id_fields = ("leadId", "leadUserId", "stageId", "assignedUserId", "lenderUserId", "teamId")
    time_fields = ("createTime", "assignTime", "lastUpdateTime", "lastTouch", "lastVisit")

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Yield leads oldest first, keeping the next leads' call fetches in flight."""
        calls = self.tap.calls_stream
        progress = self.tap.progress
        ahead: deque[dict[str, Any]] = deque()
        for page in scroll_leads(self.tap.client, self.config["leads_page_size"]):
            if page.total is not None:
                progress.leads_total = page.total
            for lead in page.leads:
                calls.schedule(lead)
                ahead.append(lead)
                while len(ahead) > calls.lookahead:
                    yield ahead.popleft()
        while ahead:
            yield ahead.popleft()
        calls.finish_run()

    @override
    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[Context | None]:
        """Hand ``{"leadId": ...}`` to ``calls``, except for leads a resumed run has done."""
        if self.tap.calls_stream.is_scheduled(record["leadId"]):
            yield {"leadId": record["leadId"]}


class CallsStream(LoftyStream):
    """Each lead's call history, from ``GET /v1.0/communication/call`` (``currentId`` cursor).

    Incremental on ``id`` with one bookmark for the whole account (see
    :mod:`tap_lofty.state`), not one per lead.
    """

    name = "calls"
    parent_stream_type = LeadsStream
    primary_keys: ClassVar[tuple[str, ...]] = ("id",)
    replication_key = "id"
    # One flat bookmark: the SDK's default of one partition per lead makes STATE grow
    # with the account and every STATE message quadratic in the number of leads.
    state_partitioning_keys: ClassVar[tuple[str, ...]] = ()
    id_fields = ("id", "leadId", "dialerCallRecordId", "userId", "agentId")
    time_fields = ("startTime", "endTime", "createTime", "updateTime")
    #: Shortest gap between two STATE messages written after a lead; at most this
    #: much progress is lost if the run is killed.
    STATE_INTERVAL_S = 1.0

    def __init__(self, tap: TapLofty) -> None:
        """Create the stream; the run's bookmark and fetch pool start with the sync."""
        super().__init__(tap)
        self._bookmark: CallsBookmark | None = None
        self._prefetcher: OrderedPrefetcher[list[dict[str, Any]] | None] | None = None
        self._scheduled: dict[int, dict[str, Any]] = {}
        self._last_state_write = 0.0
        self._schema_sent = False
        self._page_size = CallPageSize(self.config["calls_page_size"])
        self.lookahead = 0
        # The SDK logs two lines and two metrics per child context, i.e. per lead:
        # 400,000 lines on a 100,000-lead account. Progress lines replace them.
        self.logger.setLevel(max(self.logger.getEffectiveLevel(), logging.WARNING))

    @property
    def bookmark(self) -> CallsBookmark:
        """Return this run's bookmark, created from the incoming STATE on first use."""
        if self._bookmark is None:
            self._bookmark = CallsBookmark(self.stream_state)
        return self._bookmark

    def schedule(self, lead: dict[str, Any]) -> None:
        """Plan (and start fetching) this lead's calls unless this run need not read them."""
        if not (self.selected or self.has_selected_descendents):
            return
        if not self.bookmark.should_sync_lead(lead):
            return
        lead_id = lead["leadId"]
        self._scheduled[lead_id] = lead
        if self._prefetcher is None:
            self._prefetcher = OrderedPrefetcher(self._fetch_lead, self.config["max_concurrency"])
            self.lookahead = self._prefetcher.lookahead
        self._prefetcher.submit(lead_id)

    def is_scheduled(self, lead_id: int) -> bool:
        """Whether :meth:`schedule` planned a call fetch for this lead."""
        return lead_id in self._scheduled

    def finish_run(self) -> None:
        """Every lead was listed and read: promote the bookmark and log the summary."""
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
        if self.selected:
            self.bookmark.finish()
            self._force_state_message()
        LOGGER.info(self.tap.progress.summary())

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

    def _fetch_lead(self, lead_id: int) -> list[dict[str, Any]] | None:
        """All calls of one lead above the bookmark, or ``GONE``; runs on a worker thread."""
        calls: list[dict[str, Any]] = []
        try:
            for page in walk_calls(
                self.tap.client,
                lead_id,
                self.bookmark.start_after or 1,
                self._page_size,
            ):
                calls.extend(page)
        except LeadNotFoundError:
            return GONE
        return calls

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        """Yield one lead's new calls, ascending by id, then mark the lead done."""
        if context is None:
            msg = "calls is a child of leads and needs a leadId context"
            raise LoftyError(msg)
        lead_id = context["leadId"]
        lead = self._scheduled.pop(lead_id)
        assert self._prefetcher is not None
        calls = self._prefetcher.take(lead_id)
        if calls is GONE:
            LOGGER.warning(
                "Lead %s was listed but Lofty answered 404 LEAD_NOT_EXIST for its calls "
                "(deleted meanwhile); skipped.",
                lead_id,
            )
            self.tap.progress.lead_skipped(lead_id)
            calls = []
        bookmark = self.bookmark
        for call in calls:
            call.setdefault("leadId", lead_id)
            bookmark.observe_call(call)
            yield call
        bookmark.lead_done(lead)
        self.tap.progress.lead_finished(len(calls))
        if time.monotonic() - self._last_state_write >= self.STATE_INTERVAL_S:
            self.state_manager.is_flushed = False

    @override
    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        # The bookmark is advanced by CallsBookmark (cut-off rule), not by the SDK's
        # "highest value seen", which could skip calls created during the run.
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
