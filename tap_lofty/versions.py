"""``ACTIVATE_VERSION`` for the full-table streams, sent only after a complete listing.

A full-table stream lists every row on every run, so the rows a complete listing no
longer shows are gone from Lofty. Singer says so with table versions: every RECORD of
the run carries the run's version, and an ``ACTIVATE_VERSION`` message with it tells a
target that rows of older versions are gone (MeltanoLabs target-postgres with
``activate_version`` sets their ``_sdc_deleted_at``, or deletes them with
``hard_delete``).

The SDK (0.54) sends that message *before* the first record. A target acting on it at
that point marks every existing row deleted and revives each row as its record
arrives, so a run that fails or is killed mid-listing leaves the rows it did not reach
marked deleted. Here the message is sent once, *after* the listing ended cleanly and
showed every row it announced; an interrupted or partial listing sends none, and
marks nothing deleted.
"""

from __future__ import annotations

import logging

from singer_sdk import Stream

LOGGER = logging.getLogger("tap_lofty")
#: The setting (the SDK's name for it) that turns the messages off.
SETTING = "emit_activate_version_messages"


class FullTableVersion:
    """The table version of one full-table stream in one run."""

    def __init__(self, stream: Stream) -> None:
        """Prepare versions for ``stream``; :meth:`begin` starts one."""
        self.stream = stream
        self.version: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether this run versions the stream: it is selected and the setting is on."""
        return self.stream.selected and bool(self.stream.config.get(SETTING, True))

    def begin(self) -> None:
        """Give this run's records the run's version (its start, epoch milliseconds).

        Milliseconds, not the SDK's seconds: two runs within one second must not
        share a version, or the second could not mark the first one's rows deleted.
        """
        if self.enabled:
            self.version = self.stream._initialized_at
            self.stream._stream_version = self.version

    def activate(self) -> None:
        """Send ``ACTIVATE_VERSION``: the listing was complete, older rows are gone."""
        if self.version is not None:
            self.stream._write_activate_version_message(self.version)

    def skip(self, why: str) -> None:
        """Send nothing, and say why: the listing was not complete."""
        if self.version is not None:
            LOGGER.warning(
                "The '%s' listing was not complete (%s), so no ACTIVATE_VERSION is sent: "
                "rows missing from it are not marked deleted in this run.",
                self.stream.name,
                why,
            )
