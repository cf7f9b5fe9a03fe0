"""A per-lead history stream's state: one small bookmark for the whole account, not one per lead.

Layout of ``bookmarks.<stream>`` (``calls``, ``texts``, ``emails``) in STATE::

    {"replication_key": "id",
     "replication_key_value": 7265..,     # every record with a lower or equal id is loaded
     "feedFrom": "2026-11-28T14:20:00Z",  # where the next feed window starts
     "lastFullScan": "2026-11-25T02:00:00Z",  # cut-off of the last full per-lead scan
     "fullScanBookmark": 7001..,          # the bookmark that scan ended with
     "resume": {                          # only while a run is unfinished
         "mode": "feed",                  # or "full": what the interrupted run was doing
         "createdBefore": "2026-11-28T15:10:00Z",  # this run's cut-off time
         "nextFeedFrom": "2026-11-28T14:20:00Z",  # feedFrom once this run is done
         "maxIdCreatedBefore": 7266..,    # highest id seen among records created before it
         "leadsCreatedBefore": "2026-01-03T08:00:00Z",  # see "Resume" below
         "leadsDone": 1234,
         "leadsDoneHash": "9f3c..."}}

Assumption (Lofty's ids are time-ordered, as its 15+ digit ids suggest): a record created
later gets a higher id. Then a run that asks every lead for ids above the bookmark
(``currentId``) gets every record created since the previous run, on old and new leads.

Change detection (:class:`ChangeDetection`): a run is a full scan (every lead, above
``fullScanBookmark``) on the first run, when ``change_detection`` is ``full`` or when the
last full scan is older than ``full_scan_interval_days``; otherwise a feed run, reading
only the leads the communications feed names from ``feedFrom`` on: the previous run's
start less ``feed_overlap_minutes``. A feed run's cut-off lies as far back, so a record
the feed shows late is still above the next bookmark and inside the next window.

Why a cut-off: a run visits leads one after another, so a call created on lead A after
A was visited is missed by this run, while lead B, visited later, may show a call with
a higher id. So the next bookmark is not the highest id seen but the highest id among
records created before this run started (less a margin for clock skew); records created
during the run are read again next run. That overlap is the documented, bounded
re-read; targets upsert on ``id``.

Resume, proven by what the run has seen, whatever order Lofty lists leads in. The
marker says: "the ``leadsDone`` leads created before ``leadsCreatedBefore`` (whose ids
hash to ``leadsDoneHash``) are done". It is built only from leads this run (or the run
it resumes) actually read: ``leadsCreatedBefore`` is the creation time of the oldest
lead listed but not yet done, so every listed lead created before it is done. Leads not
yet listed are unknown; that is what the count and hash are for. A resumed run skips
the leads created before the marker, and once the listing ends compares the leads it
skipped with the marker: same count and same hash (an order-independent sum of a hash
of each id) means they are the same leads. Otherwise (Lofty listed leads newest first,
or a lead created earlier appeared since) the skipped leads are read after all, before
the bookmark moves. So a listing in any order resumes without loss; the order only
decides how much a resume saves (leads listed oldest first: nearly everything).

The state stays a few hundred bytes whatever the number of leads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from tap_lofty.client import LoftyError
from tap_lofty.timefmt import LOFTY_UTC, LOFTY_UTC_FORMAT, format_rfc3339, parse_lofty_time

LOGGER = logging.getLogger("tap_lofty")

#: Records created this long before the run started still count as "created during it",
#: so a Lofty clock up to this far behind ours cannot make the tap skip one.
CLOCK_SKEW_MARGIN = dt.timedelta(minutes=10)
_HASH_MOD = 1 << 64


class StateError(LoftyError):
    """The STATE given to the tap cannot be used."""


def lead_hash(lead_id: int) -> int:
    """Return a 64-bit hash of a lead id; their sum identifies a set of leads in any order."""
    digest = hashlib.blake2b(lead_id.to_bytes(8, "big", signed=True), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class LeadSet:
    """A set of leads summarised as (count, sum of id hashes mod 2^64)."""

    def __init__(self, count: int = 0, digest: int = 0) -> None:
        """Start from a count and digest (an empty set by default)."""
        self.count = count
        self.digest = digest

    def add(self, lead_id: int) -> None:
        """Add one lead (never the same one twice)."""
        self.count += 1
        self.digest = (self.digest + lead_hash(lead_id)) % _HASH_MOD

    def __eq__(self, other: object) -> bool:
        """Compare as sets: the same count and the same digest."""
        return isinstance(other, LeadSet) and (self.count, self.digest) == (
            other.count,
            other.digest,
        )

    def __hash__(self) -> int:
        """Hash like the pair it is."""
        return hash((self.count, self.digest))


@dataclass(frozen=True)
class ChangeDetection:
    """How a run picks the leads to read: settings change_detection and its two companions."""

    setting: str = "full"  # auto | feed | full
    overlap: dt.timedelta = dt.timedelta(minutes=60)
    full_scan_interval: dt.timedelta | None = dt.timedelta(days=7)  # None: never

    def plan(
        self,
        started: dt.datetime,
        *,
        feed_from: dt.datetime | None,
        last_full_scan: dt.datetime | None,
    ) -> str:
        """Return "full" or "feed" for a run starting now with this state."""
        if self.setting == "full" or feed_from is None:
            return "full"  # asked for, or a first run (nothing says where the feed starts)
        interval = self.full_scan_interval
        if interval is not None and (
            last_full_scan is None or started - last_full_scan >= interval
        ):
            return "full"
        return "feed"


class LeadHistoryBookmark:
    """Reads and advances ``bookmarks.<stream>``, a dict owned by the SDK's tap state.

    The stream calls :meth:`lead_listed` for every lead it plans to read (in listing
    order), :meth:`should_sync_lead` to skip leads a resumed run has done,
    :meth:`observe` for every record it emits, :meth:`lead_done` after a lead's last
    record, :meth:`leads_to_reread` once the listing has ended and :meth:`finish` at the
    end of a complete run.
    """

    def __init__(
        self,
        stream_state: dict[str, Any],
        stream: str,
        *,
        created_field: str = "createTime",
        detection: ChangeDetection | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """Wrap the stream's writable state dict and start (or resume) a run."""
        self._state = stream_state
        self._stream = stream
        self._created_field = created_field  # when a record was created, in Lofty's words
        self._lock = threading.Lock()
        detection = detection or ChangeDetection()
        self.bookmark = self._int_or_none(stream_state.get("replication_key_value"))
        self._full_scan_bookmark = self._int_or_none(stream_state.get("fullScanBookmark"))
        feed_from = stream_state.get("feedFrom")
        last_full = stream_state.get("lastFullScan")
        stream_state["replication_key"] = "id"
        resume = stream_state.get("resume")
        # What the interrupted run proved done, and what this run has skipped for it.
        self.skip_before: dt.datetime | None = None
        self._carried = LeadSet()  # what the interrupted run claimed, to check the skips
        self._claimed = LeadSet()  # what this run claims: the carried leads and its own
        self._skipped = LeadSet()
        self._skipped_ids: list[int] = []
        self.feed_from = self._time(feed_from, "feedFrom") if feed_from else None
        if isinstance(resume, dict) and resume.get("createdBefore"):
            self._resume(resume)
        else:
            last = self._time(last_full, "lastFullScan") if last_full else None
            self._start(detection, now or dt.datetime.now(dt.timezone.utc), last)
        self.leads_done_before = self._claimed.count
        # Seconds only: a record in the cut-off's own second counts as after it (safe side).
        self._cutoff_text = self.cutoff.strftime(LOFTY_UTC_FORMAT)
        self._cutoff_ms = int(self.cutoff.replace(microsecond=0).timestamp()) * 1000
        # Leads listed and not yet done, in listing order, and the running minimum of
        # their creation times (a monotonic deque of (time, listing number)).
        self._pending: deque[int] = deque()
        self._pending_min: deque[tuple[dt.datetime, int]] = deque()
        self._listed = 0
        self._newest_listed: dt.datetime | None = None
        # Leads done but created at or after the marker: claimed once it passes them.
        self._done_unclaimed: list[tuple[dt.datetime, int]] = []
        self._marker: dt.datetime | None = self.skip_before
        self._write_resume()

    def _resume(self, resume: dict[str, Any]) -> None:
        """Go on with the interrupted run whose ``resume`` the STATE carries."""
        self.cutoff = self._time(resume["createdBefore"], "resume.createdBefore")
        self.max_id = self._int_or_none(resume.get("maxIdCreatedBefore"))
        self.mode = "feed" if resume.get("mode") == "feed" and self.feed_from else "full"
        next_from = resume.get("nextFeedFrom")
        self.next_feed_from = (
            self._time(next_from, "resume.nextFeedFrom") if next_from else self.cutoff
        )
        skip = resume.get("leadsCreatedBefore")
        if skip:
            self.skip_before = self._time(skip, "resume.leadsCreatedBefore")
            count = self._count(resume.get("leadsDone"))
            digest = self._digest(resume.get("leadsDoneHash"))
            self._carried = LeadSet(count, digest)
            self._claimed = LeadSet(count, digest)
        LOGGER.info(
            "%s: resuming an unfinished %s run: %s; records above id %s are read.",
            self._stream,
            "feed" if self.mode == "feed" else "full-scan",
            f"{self._claimed.count:,} lead(s) created before {skip} are done"
            if self.skip_before
            else "no lead is known to be done",
            self.bookmark,
        )

    def _start(
        self, detection: ChangeDetection, started: dt.datetime, last_full: dt.datetime | None
    ) -> None:
        """Plan a new run: a full scan or a feed run, and its cut-off."""
        self.mode = detection.plan(started, feed_from=self.feed_from, last_full_scan=last_full)
        margin = CLOCK_SKEW_MARGIN
        if self.mode == "feed":
            # A call the feed shows late (up to the overlap) must still be above the next
            # bookmark: so the bookmark stops that far back, where the next window starts.
            margin = max(margin, detection.overlap)
        self.cutoff = started - margin
        # The next feed window reaches the overlap back from this run's start, whatever
        # this run is: a call started before a full scan and logged after it is found.
        self.next_feed_from = started - max(detection.overlap, CLOCK_SKEW_MARGIN)
        self.max_id = None

    @property
    def start_after(self) -> int | None:
        """Records with ids above this are read: a full scan goes back to the last full scan."""
        if self.mode == "full" and self._full_scan_bookmark is not None:
            return min(self._full_scan_bookmark, self.bookmark or self._full_scan_bookmark)
        return self.bookmark

    def fall_back_to_full(self) -> None:
        """Read every lead after all: the feed is not available."""
        self.mode = "full"
        self._write_resume()

    # ------------------------------------------------------------------ per lead

    def should_sync_lead(self, lead: dict[str, Any]) -> bool:
        """Whether this lead's records still need reading in this run."""
        created = _lead_created(lead)
        if self.skip_before is None or created is None or created >= self.skip_before:
            return True
        self._skipped.add(lead["leadId"])
        self._skipped_ids.append(lead["leadId"])
        return False

    def lead_listed(self, lead: dict[str, Any]) -> None:
        """Record that this run will read this lead (call in listing order)."""
        created = _lead_created(lead)
        number = self._listed
        self._listed += 1
        self._pending.append(number)
        # A lead without a creation time can never be claimed: it holds the marker back.
        key = created if created is not None else dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        while self._pending_min and self._pending_min[-1][0] >= key:
            self._pending_min.pop()
        self._pending_min.append((key, number))
        if created is not None and (self._newest_listed is None or created > self._newest_listed):
            self._newest_listed = created

    def observe(self, record: dict[str, Any]) -> None:
        """Count an emitted record towards the next bookmark if created before the cut-off."""
        created = record.get(self._created_field)
        if isinstance(created, int) and not isinstance(created, bool):  # epoch milliseconds
            if created >= self._cutoff_ms:
                return
        elif not isinstance(created, str):
            return  # unknown creation time: cannot be trusted to advance the bookmark
        elif LOFTY_UTC.fullmatch(created):  # the documented format: compare as text, fast
            if created >= self._cutoff_text:
                return
        else:
            when = parse_lofty_time(created)
            if when is None or when >= self.cutoff:
                return
        record_id = record["id"]
        with self._lock:
            if self.max_id is None or record_id > self.max_id:
                self.max_id = record_id

    def lead_done(self, lead: dict[str, Any]) -> None:
        """Record that every record of this lead (listed next in order) has been emitted."""
        number = self._pending.popleft()
        if self._pending_min and self._pending_min[0][1] == number:
            self._pending_min.popleft()
        created = _lead_created(lead)
        if created is not None:
            heapq.heappush(self._done_unclaimed, (created, lead["leadId"]))
        # Every listed lead created before the oldest pending one is done.
        marker = self._pending_min[0][0] if self._pending_min else self._newest_listed
        if marker is None or (self._marker is not None and marker <= self._marker):
            return
        self._marker = marker
        while self._done_unclaimed and self._done_unclaimed[0][0] < marker:
            self._claimed.add(heapq.heappop(self._done_unclaimed)[1])
        self._write_resume()

    # ------------------------------------------------------------------ end of the run

    def leads_to_reread(self) -> list[int]:
        """After the listing: the skipped leads, if they are not exactly the ones done before.

        Empty when the resume marker holds (or there was none). Otherwise the marker is
        dropped from STATE, so that an interruption while re-reading them resumes safely.
        """
        if self.skip_before is None or self._skipped == self._carried:
            return []
        LOGGER.warning(
            "%s: the %s lead(s) created before %s that this resumed run skipped are not "
            "exactly the %s lead(s) the interrupted run had done (Lofty did not list "
            "leads oldest first, or leads appeared or left since). Reading them again; "
            "nothing is lost.",
            self._stream,
            f"{self._skipped.count:,}",
            format_rfc3339(self.skip_before),
            f"{self._carried.count:,}",
        )
        self.skip_before = None
        self._marker = None
        self._carried = self._claimed = LeadSet()
        self._done_unclaimed.clear()
        self._write_resume()
        reread, self._skipped_ids = self._skipped_ids, []
        return reread

    def finish(self) -> None:
        """End a complete run: promote the high-water mark, note the scan, drop ``resume``."""
        final = max(filter(None, (self.bookmark, self.max_id)), default=None)
        state = self._state
        state.pop("resume", None)
        if final is None:
            state.pop("replication_key_value", None)
        else:
            state["replication_key_value"] = final
        state["feedFrom"] = format_rfc3339(self.next_feed_from)
        if self.mode == "full":
            state["lastFullScan"] = format_rfc3339(self.cutoff)
            if final is None:
                state.pop("fullScanBookmark", None)
            else:
                state["fullScanBookmark"] = final

    def abandon(self) -> None:
        """End a run that read nothing for this stream: the state stays as it came."""
        self._state.pop("resume", None)

    def _write_resume(self) -> None:
        resume: dict[str, Any] = {
            "mode": self.mode,
            "createdBefore": format_rfc3339(self.cutoff),
            "nextFeedFrom": format_rfc3339(self.next_feed_from),
        }
        if self.max_id is not None:
            resume["maxIdCreatedBefore"] = self.max_id
        if self._marker is not None:
            resume["leadsCreatedBefore"] = format_rfc3339(self._marker)
            resume["leadsDone"] = self._claimed.count
            resume["leadsDoneHash"] = f"{self._claimed.digest:016x}"
        self._state["resume"] = resume

    # ------------------------------------------------------------------ reading STATE

    def _int_or_none(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        raise StateError(
            f"The {self._stream} bookmark in the STATE given to the tap is {value!r}; it must "
            "be an integer id. Fix the state (or clear it for a full sync: "
            "`meltano state clear <state id>`)."
        )

    def _count(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self._bad("resume.leadsDone", value, "a count of leads")

    def _digest(self, value: Any) -> int:
        try:
            digest = int(value, 16) if isinstance(value, str) else -1
        except ValueError:
            digest = -1
        if not 0 <= digest < _HASH_MOD:
            raise self._bad("resume.leadsDoneHash", value, "16 hexadecimal digits")
        return digest

    def _time(self, value: Any, name: str) -> dt.datetime:
        parsed = parse_lofty_time(value) if isinstance(value, str) else None
        if parsed is None:
            raise self._bad(name, value, "an RFC 3339 time")
        return parsed

    def _bad(self, name: str, value: Any, what: str) -> StateError:
        return StateError(
            f"bookmarks.{self._stream}.{name} in the STATE given to the tap is {value!r}, "
            f"not {what}. Fix or clear the state (`meltano state clear <state id>`)."
        )


def _lead_created(lead: dict[str, Any]) -> dt.datetime | None:
    value = lead.get("createTime")
    return parse_lofty_time(value) if isinstance(value, str) else None
