"""``source-lofty``: the same tap, speaking the Airbyte protocol.

Nothing here reads Lofty: ``read`` runs TapLofty's own sync in this process with a message
writer that turns each Singer message into Airbyte messages on stdout, so streams, client,
request budget and bookmarks are the tap's. The Singer state ``{"bookmarks": {stream: {...}}}``
maps one to one onto per-stream Airbyte STATE messages (``stream_state`` = that bookmark dict),
and a list of those given to ``read --state`` becomes the Singer state again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, NoReturn

from airbyte_protocol_dataclasses.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteErrorTraceMessage,
    AirbyteLogMessage,
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateMessage,
    AirbyteStateType,
    AirbyteStream,
    AirbyteStreamState,
    AirbyteStreamStatus,
    AirbyteStreamStatusTraceMessage,
    AirbyteTraceMessage,
    ConnectorSpecification,
    FailureType,
    Level,
    Status,
    StreamDescriptor,
    SyncMode,
    TraceType,
    Type,
)
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import Message, RecordMessage, SchemaMessage, StateMessage
from singer_sdk.singerlib.encoding import GenericSingerWriter
from typing_extensions import override

from tap_lofty.client import LoftyError
from tap_lofty.ratelimit import RunAborted
from tap_lofty.tap import TapLofty, _read_json_file, _sentence

LOGGER = logging.getLogger("tap_lofty")

#: The Airbyte protocol version the messages follow (airbyte-protocol-models 0.18).
PROTOCOL_VERSION = "0.2.0"

_LEVELS = {
    logging.CRITICAL: Level.FATAL,
    logging.ERROR: Level.ERROR,
    logging.WARNING: Level.WARN,
    logging.INFO: Level.INFO,
    logging.DEBUG: Level.DEBUG,
}


def to_json(value: Any) -> Any:
    """Return a protocol dataclass as JSON data: enums as values, unset fields left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None:
                # The models spell the JSON key "global" as global_ (a Python keyword).
                out[f.name.rstrip("_")] = to_json(item)
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


class AirbyteOutput:
    """Writes Airbyte messages to stdout, one JSON line each, from any thread."""

    def __init__(self) -> None:
        # Re-entrant: the SDK's SIGTERM handler logs (and writes state) on the main thread,
        # possibly while that thread is inside emit(); a plain lock would deadlock there.
        self._lock = threading.RLock()

    def emit(self, message: AirbyteMessage) -> None:
        """Write one message and flush it (Airbyte reads stdout as it comes)."""
        line = json.dumps(to_json(message), separators=(",", ":"), default=str) + "\n"
        with self._lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def log(self, level: Level, text: str, stack_trace: str | None = None) -> None:
        """Emit a LOG message."""
        self.emit(
            AirbyteMessage(
                type=Type.LOG,
                log=AirbyteLogMessage(level=level, message=text, stack_trace=stack_trace),
            )
        )

    def trace_error(self, text: str, failure: FailureType, stack_trace: str | None = None) -> None:
        """Emit a TRACE ERROR message."""
        self.emit(
            AirbyteMessage(
                type=Type.TRACE,
                trace=AirbyteTraceMessage(
                    type=TraceType.ERROR,
                    emitted_at=_now_ms(),
                    error=AirbyteErrorTraceMessage(
                        message=text, failure_type=failure, stack_trace=stack_trace
                    ),
                ),
            )
        )

    def stream_status(self, stream: str, status: AirbyteStreamStatus) -> None:
        """Emit a STREAM_STATUS trace."""
        self.emit(
            AirbyteMessage(
                type=Type.TRACE,
                trace=AirbyteTraceMessage(
                    type=TraceType.STREAM_STATUS,
                    emitted_at=_now_ms(),
                    stream_status=AirbyteStreamStatusTraceMessage(
                        stream_descriptor=StreamDescriptor(name=stream), status=status
                    ),
                ),
            )
        )


class AirbyteLogHandler(logging.Handler):
    """Turns the tap's log lines (progress lines included) into LOG messages."""

    def __init__(self, output: AirbyteOutput) -> None:
        super().__init__()
        self.output = output

    @override
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = _LEVELS.get(record.levelno, Level.INFO)
            text = f"{record.name}: {record.getMessage()}"
            stack = None
            if record.exc_info and record.exc_info[1] is not None:
                stack = "".join(traceback.format_exception(*record.exc_info))
            self.output.log(level, text, stack)
        except Exception:  # pragma: no cover (logging must never break the run)
            self.handleError(record)


class AirbyteMessageWriter(GenericSingerWriter[bytes, Message]):
    """The tap's message writer for ``read``: Singer messages in, Airbyte messages out."""

    def __init__(self, output: AirbyteOutput, streams: Iterable[str]) -> None:
        self.output = output
        self.streams = set(streams)
        self.started: list[str] = []
        self._sent_state: dict[str, Any] = {}

    @override
    def serialize_message(self, message: Message) -> bytes:  # pragma: no cover (unused)
        raise NotImplementedError

    @override
    def write_message(self, message: Message) -> None:
        if isinstance(message, RecordMessage):
            self.output.emit(
                AirbyteMessage(
                    type=Type.RECORD,
                    record=AirbyteRecordMessage(
                        stream=message.stream, data=message.record, emitted_at=_now_ms()
                    ),
                )
            )
        elif isinstance(message, SchemaMessage):
            self.start(message.stream)
        elif isinstance(message, StateMessage):
            self.write_state(message.value)
        # ACTIVATE_VERSION has no Airbyte counterpart: a full_refresh overwrite sync already
        # replaces the stream's rows, so it is dropped.

    def start(self, stream: str) -> None:
        """Say STARTED once per stream, before its first record."""
        if stream in self.streams and stream not in self.started:
            self.started.append(stream)
            self.output.stream_status(stream, AirbyteStreamStatus.STARTED)

    def write_state(self, value: Mapping[str, Any]) -> None:
        """One STREAM state per configured stream whose bookmark changed since the last one.

        The Singer STATE always carries every stream; Airbyte keeps the newest state per
        stream, so sending only the changed ones is equivalent and keeps the output small.
        """
        bookmarks = value.get("bookmarks") or {}
        for stream, bookmark in bookmarks.items():
            if stream not in self.streams or self._sent_state.get(stream) == bookmark:
                continue
            self._sent_state[stream] = json.loads(json.dumps(bookmark))
            self.output.emit(
                AirbyteMessage(
                    type=Type.STATE,
                    state=AirbyteStateMessage(
                        type=AirbyteStateType.STREAM,
                        stream=AirbyteStreamState(
                            stream_descriptor=StreamDescriptor(name=stream),
                            stream_state=bookmark,
                        ),
                    ),
                )
            )

    def finish(self, status: AirbyteStreamStatus) -> None:
        """End every configured stream with COMPLETE (or INCOMPLETE after a failure)."""
        for stream in sorted(self.streams):
            self.start(stream)
            self.output.stream_status(stream, status)


def _now_ms() -> int:
    return int(time.time() * 1000)


def spec() -> ConnectorSpecification:
    """Return the ConnectorSpecification: the tap's settings, secrets marked ``airbyte_secret``."""
    schema = json.loads(json.dumps(TapLofty.config_jsonschema))
    for prop in schema.get("properties", {}).values():
        if prop.pop("secret", False) or prop.get("writeOnly"):
            prop["airbyte_secret"] = True
    schema.setdefault("$schema", "http://json-schema.org/draft-07/schema#")
    schema.setdefault("title", "Lofty Source Spec")
    return ConnectorSpecification(
        connectionSpecification=schema,
        supportsIncremental=True,
        protocol_version=PROTOCOL_VERSION,
    )


def _tap(config: dict[str, Any], **kwargs: Any) -> TapLofty:
    """Return a validated TapLofty; settings errors are worded for source-lofty.

    Without a message writer it gets one for no stream: the SDK's SIGTERM handler writes a
    STATE through it, which must not reach stdout as a Singer message (PyAirbyte stops
    ``discover`` with SIGTERM as soon as it has the catalog).
    """
    kwargs.setdefault("message_writer", AirbyteMessageWriter(AirbyteOutput(), ()))
    try:
        return TapLofty(config=config, validate_config=True, **kwargs)
    except ConfigValidationError as exc:
        reasons = " ".join(_sentence(e) for e in exc.errors) or str(exc)
        raise LoftyError(
            f"invalid settings: {reasons} Fix them and run again; `source-lofty spec` "
            "describes every setting."
        ) from None


def check(config: dict[str, Any]) -> AirbyteConnectionStatus:
    """Run the connection test of ``tap-lofty --test``; return it as a connection status."""
    try:
        tap = _tap(config)
        outcome = tap.check_connection(tap.test_client())
    except LoftyError as exc:
        return AirbyteConnectionStatus(
            status=Status.FAILED, message=f"connection test failed: {exc}"
        )
    return AirbyteConnectionStatus(
        status=Status.SUCCEEDED, message=f"Lofty accepted the credential; {outcome}."
    )


def discover(config: dict[str, Any]) -> AirbyteCatalog:
    """Return the tap's streams as an Airbyte catalog."""
    tap = _tap(config)
    streams = []
    for stream in tap.streams.values():
        incremental = stream.replication_key is not None
        streams.append(
            AirbyteStream(
                name=stream.name,
                json_schema=stream.schema,
                supported_sync_modes=[SyncMode.full_refresh]
                + ([SyncMode.incremental] if incremental else []),
                source_defined_cursor=incremental or None,
                default_cursor_field=[stream.replication_key] if incremental else None,
                source_defined_primary_key=[[key] for key in stream.primary_keys or ()],
                is_resumable=incremental,
            )
        )
    return AirbyteCatalog(streams=streams)


def singer_state(airbyte_state: Any, incremental: set[str]) -> dict[str, Any]:
    """Return the Singer state for a list of per-stream Airbyte states (incremental only)."""
    if airbyte_state is None:
        return {}
    if isinstance(airbyte_state, dict):  # a legacy state: the Singer state itself
        airbyte_state = [{"type": "LEGACY", "data": airbyte_state}]
    if not isinstance(airbyte_state, list):
        raise LoftyError(
            "the --state file must hold the list of STATE messages of an earlier read "
            '([{"type": "STREAM", "stream": {...}}, ...]). Fix it, or leave --state out '
            "for a full sync."
        )
    bookmarks: dict[str, Any] = {}
    for item in airbyte_state:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "LEGACY" and isinstance(item.get("data"), dict):
            bookmarks |= item["data"].get("bookmarks") or {}
        elif kind in ("STREAM", None) and isinstance(item.get("stream"), dict):
            name = (item["stream"].get("stream_descriptor") or {}).get("name")
            if isinstance(name, str):
                bookmarks[name] = item["stream"].get("stream_state") or {}
        else:
            raise LoftyError(
                f"the --state file holds a {kind or 'malformed'} state; source-lofty keeps "
                "one STREAM state per stream. Give it the STATE messages of an earlier read, "
                "or leave --state out for a full sync."
            )
    # A full_refresh stream starts over: its old bookmark must not narrow the read.
    return {"bookmarks": {k: v for k, v in bookmarks.items() if k in incremental}}


def _configured_streams(catalog: Any) -> dict[str, str]:
    """Map each stream of a ConfiguredAirbyteCatalog to its sync mode."""
    try:
        return {
            item["stream"]["name"]: item.get("sync_mode", "full_refresh")
            for item in catalog["streams"]
        }
    except (TypeError, KeyError) as exc:
        raise LoftyError(
            f"the --catalog file is not a configured Airbyte catalog ({exc!r} missing): it "
            'must be {"streams": [{"stream": {"name": ...}, "sync_mode": ...}, ...]}.'
        ) from None


def read(
    config: dict[str, Any], catalog: Any, state: Any, output: AirbyteOutput
) -> AirbyteMessageWriter:
    """Sync the configured streams with the tap, writing Airbyte messages."""
    modes = _configured_streams(catalog)
    probe = _tap(config)
    unknown = sorted(set(modes) - set(probe.streams))
    if unknown:
        raise LoftyError(
            f"the --catalog names streams source-lofty does not have: {', '.join(unknown)}. "
            "Run discover again and configure its streams."
        )
    incremental = {
        name
        for name, mode in modes.items()
        if mode == "incremental" and probe.streams[name].replication_key
    }
    singer_catalog = probe.catalog_dict
    for entry in singer_catalog["streams"]:
        for meta in entry.get("metadata", []):
            if not meta.get("breadcrumb"):
                meta["metadata"]["selected"] = entry["tap_stream_id"] in modes
    writer = AirbyteMessageWriter(output, modes)
    tap = _tap(
        config,
        catalog=singer_catalog,
        state=singer_state(state, incremental),
        message_writer=writer,
    )
    try:
        tap.sync_all()
    except BaseException:
        writer.finish(AirbyteStreamStatus.INCOMPLETE)
        raise
    writer.finish(AirbyteStreamStatus.COMPLETE)
    return writer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="source-lofty", description="Lofty CRM source (Airbyte protocol) on tap-lofty."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("spec", help="print the connector specification")
    for name in ("check", "discover", "read"):
        sub = commands.add_parser(name)
        sub.add_argument("--config", required=True)
        if name == "read":
            sub.add_argument("--catalog", required=True)
            sub.add_argument("--state")
    return parser


def _setup_logging(output: AirbyteOutput) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(AirbyteLogHandler(output))
    root.setLevel(logging.INFO)


def _load_config(path: str) -> dict[str, Any]:
    config = _read_json_file(path, "--config")
    if not isinstance(config, dict):
        raise LoftyError(
            f"the --config file {path!r} is not a JSON object of settings like "
            '{"api_key": "..."}. Fix that file.'
        )
    return config


def run(argv: list[str] | None = None) -> int:
    """Run one Airbyte command; return the exit code."""
    args = _parser().parse_args(argv)
    output = AirbyteOutput()
    _setup_logging(output)
    try:
        if args.command == "spec":
            output.emit(AirbyteMessage(type=Type.SPEC, spec=spec()))
        elif args.command == "check":
            # Airbyte reads the outcome from CONNECTION_STATUS; exit 0 either way.
            try:
                status = check(_load_config(args.config))
            except LoftyError as exc:
                status = AirbyteConnectionStatus(status=Status.FAILED, message=str(exc))
            output.emit(AirbyteMessage(type=Type.CONNECTION_STATUS, connectionStatus=status))
        elif args.command == "discover":
            catalog = discover(_load_config(args.config))
            output.emit(AirbyteMessage(type=Type.CATALOG, catalog=catalog))
        else:
            config = _load_config(args.config)
            catalog = _read_json_file(args.catalog, "--catalog")
            state = None if args.state is None else _read_json_file(args.state, "--state")
            read(config, catalog, state, output)
    except (LoftyError, RunAborted) as exc:
        # The tap's one-paragraph errors are the user's to fix (credential, settings, files).
        output.trace_error(str(exc), FailureType.config_error)
        return 1
    except Exception as exc:
        output.trace_error(
            f"source-lofty failed unexpectedly: {exc.__class__.__name__}: {exc}",
            FailureType.system_error,
            traceback.format_exc(),
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point of ``source-lofty``."""
    sys.exit(run(argv))
