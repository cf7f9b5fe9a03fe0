"""The calls stream's state: one small bookmark for the whole account, not one per lead.

Layout of ``bookmarks.calls`` in STATE::

    {"replication_key": "id",
     "replication_key_value": 7265..,     # every call with a lower or equal id is loaded
     "resume": {                          # only while a run is unfinished
         "createdBefore": "2026-11-28T15:10:00Z",  # this run's cut-off time
         "maxIdCreatedBefore": 7266..,    # highest id seen among calls created before it
         "leadsCreatedBefore": "2026-01-03T08:00:00Z"}}  # leads before this are done

Assumption (Lofty's ids are time-ordered, as its 15+ digit ids suggest): a call created
later gets a higher id. Then a run that asks every lead for ids above the bookmark
(``currentId``) gets every call created since the previous run, on old and new leads.

Why a cut-off: a run visits leads one after another, so a call created on lead A after
A was visited is missed by this run, while lead B, visited later, may show a call with
a higher id. So the next bookmark is not the highest id seen but the highest id among
calls created before this run started (less a margin for clock skew); calls created
during the run are read again next run. That overlap is the documented, bounded
re-read; targets upsert on ``id``.

Resume: leads are listed oldest first; after each lead whose calls are all emitted,
``leadsCreatedBefore`` moves to that lead's ``createTime``. A rerun from an interrupted
run's STATE skips leads created strictly before it and keeps the interrupted run's
cut-off, so nothing created meanwhile is lost.

The state stays a few hundred bytes whatever the number of leads.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from tap_lofty.client import LoftyError
from tap_lofty.timefmt import LOFTY_UTC, LOFTY_UTC_FORMAT, format_rfc3339, parse_lofty_time

LOGGER = logging.getLogger("tap_lofty")

#: Calls created this long before the run started still count as "created during it",
#: so a Lofty clock up to this far behind ours cannot make the tap skip a call.
CLOCK_SKEW_MARGIN = dt.timedelta(minutes=10)


class StateError(LoftyError):
    """The STATE given to the tap cannot be used."""


class CallsBookmark:
    """Reads and advances ``bookmarks.calls``, a dict owned by the SDK's tap state."""

    def __init__(self, stream_state: dict[str, Any], *, now: dt.datetime | None = None) -> None:
        """Wrap the calls stream's writable state dict and start (or resume) a run."""
        self._state = stream_state
        self._lock = threading.Lock()
        self.start_after = _int_or_none(stream_state.get("replication_key_value"))
        stream_state["replication_key"] = "id"
        resume = stream_state.get("resume")
        if isinstance(resume, dict) and resume.get("createdBefore"):
            self.cutoff = _time(resume["createdBefore"], "resume.createdBefore")
            self.max_id = _int_or_none(resume.get("maxIdCreatedBefore"))
            skip = resume.get("leadsCreatedBefore")
            self.skip_leads_before = _time(skip, "resume.leadsCreatedBefore") if skip else None
            LOGGER.info(
                "Resuming an unfinished run: leads created before %s are done; calls above "
                "id %s are read.",
                skip or "(none)",
                self.start_after,
            )
        else:
            started = now or dt.datetime.now(dt.timezone.utc)
            self.cutoff = started - CLOCK_SKEW_MARGIN
            self.max_id = None
            self.skip_leads_before = None
        # Seconds only: a call in the cut-off's own second counts as after it (safe side).
        self._cutoff_text = self.cutoff.strftime(LOFTY_UTC_FORMAT)
        self._done_before: dt.datetime | None = self.skip_leads_before
        self._last_lead_time: dt.datetime | None = None
        self._ordered = True
        self._write_resume()

    def should_sync_lead(self, lead: dict[str, Any]) -> bool:
        """Whether this lead's calls still need reading in this run."""
        if self.skip_leads_before is None:
            return True
        created = _lead_created(lead)
        return created is None or created >= self.skip_leads_before

    def observe_call(self, call: dict[str, Any]) -> None:
        """Count an emitted call towards the next bookmark if created before the cut-off."""
        created = call.get("createTime")
        if not isinstance(created, str):
            return  # unknown creation time: cannot be trusted to advance the bookmark
        if LOFTY_UTC.fullmatch(created):  # the documented format: compare as text, fast
            if created >= self._cutoff_text:
                return
        else:
            when = parse_lofty_time(created)
            if when is None or when >= self.cutoff:
                return
        call_id = call["id"]
        with self._lock:
            if self.max_id is None or call_id > self.max_id:
                self.max_id = call_id

    def lead_done(self, lead: dict[str, Any]) -> None:
        """Record that every call of this lead (as listed) has been emitted."""
        created = _lead_created(lead)
        if not self._ordered:
            return
        if created is None or (self._last_lead_time is not None and created < self._last_lead_time):
            self._ordered = False
            LOGGER.warning(
                "Lofty did not list leads in creation order (sort=CreateTime), so this run "
                "cannot record which leads are done: if it is interrupted, the next run "
                "re-reads every lead from the bookmark. No call is lost."
            )
            self._state.get("resume", {}).pop("leadsCreatedBefore", None)
            self._done_before = None
            return
        self._last_lead_time = created
        self._done_before = created
        self._write_resume()

    def finish(self) -> None:
        """Every lead was read: promote the run's high-water mark and drop ``resume``."""
        final = max(filter(None, (self.start_after, self.max_id)), default=None)
        self._state["replication_key_value"] = final
        self._state.pop("resume", None)
        if final is None:
            self._state.pop("replication_key_value", None)

    def _write_resume(self) -> None:
        resume: dict[str, Any] = {"createdBefore": format_rfc3339(self.cutoff)}
        if self.max_id is not None:
            resume["maxIdCreatedBefore"] = self.max_id
        if self._done_before is not None:
            resume["leadsCreatedBefore"] = format_rfc3339(self._done_before)
        self._state["resume"] = resume


def _lead_created(lead: dict[str, Any]) -> dt.datetime | None:
    value = lead.get("createTime")
    return parse_lofty_time(value) if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise StateError(
        f"The calls bookmark in the STATE given to the tap is {value!r}; it must be an "
        "integer call id. Fix the state (or clear it for a full sync: "
        "`meltano state clear <state id>`)."
    )


def _time(value: Any, name: str) -> dt.datetime:
    parsed = parse_lofty_time(value) if isinstance(value, str) else None
    if parsed is None:
        raise StateError(
            f"bookmarks.calls.{name} in the STATE given to the tap is {value!r}, not an "
            "RFC 3339 time. Fix or clear the state."
        )
    return parsed
