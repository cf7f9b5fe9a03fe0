"""Parse source-lofty's output into Airbyte's protocol models, strictly.

The models package ships dataclasses without a parser; this builds them field by field from
the type hints, so an unknown key, a missing required field, a wrong type or a value outside
an enum fails the test instead of passing through.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import subprocess
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airbyte_protocol_dataclasses.models import airbyte_protocol as proto

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, vars(proto))
    return _HINTS[cls]


def build(tp: Any, value: Any, where: str = "$") -> Any:
    """Return ``value`` (JSON data) as an instance of the protocol type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return build(option, value, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"{where}: {value!r} matches none of {options}: {errors}")
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object, got {value!r}")
        return value
    if tp is proto.AirbyteStateBlob:
        # An open object in the protocol (any keys); the dataclass has no fields.
        if not isinstance(value, dict):
            raise TypeError(f"{where}: a state blob must be an object, got {value!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object for {tp.__name__}, got {value!r}")
        hints = _hints(tp)
        names = {f.name.rstrip("_"): f for f in dataclasses.fields(tp)}
        unknown = set(value) - set(names)
        if unknown:
            raise TypeError(f"{where}: unknown keys {sorted(unknown)} for {tp.__name__}")
        kwargs = {}
        for key, f in names.items():
            if key in value:
                kwargs[f.name] = build(hints[f.name], value[key], f"{where}.{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise TypeError(f"{where}: {tp.__name__} needs {key!r}")
        return tp(**kwargs)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if tp in (str, int, bool) and type(value) is tp:
        return value
    raise TypeError(f"{where}: expected {tp}, got {value!r}")


def parse_message(line: str) -> proto.AirbyteMessage:
    """One stdout line as an AirbyteMessage; its payload field must match its type."""
    message = build(proto.AirbyteMessage, json.loads(line))
    payload = {
        proto.Type.LOG: "log",
        proto.Type.SPEC: "spec",
        proto.Type.CONNECTION_STATUS: "connectionStatus",
        proto.Type.CATALOG: "catalog",
        proto.Type.RECORD: "record",
        proto.Type.STATE: "state",
        proto.Type.TRACE: "trace",
    }[message.type]
    assert getattr(message, payload) is not None, line
    return message


@dataclass
class SourceRun:
    """What one source-lofty command printed, as protocol messages."""

    returncode: int
    stderr: str
    messages: list[proto.AirbyteMessage] = field(default_factory=list)

    def of(self, kind: proto.Type) -> list[proto.AirbyteMessage]:
        return [m for m in self.messages if m.type == kind]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m.record.data for m in self.of(proto.Type.RECORD) if m.record.stream == stream]

    def states(self) -> list[dict[str, Any]]:
        """The STATE messages as JSON, as Airbyte would store and give back to ``--state``."""
        out = []
        for m in self.of(proto.Type.STATE):
            stream = m.state.stream
            out.append(
                {
                    "type": m.state.type.value,
                    "stream": {
                        "stream_descriptor": {"name": stream.stream_descriptor.name},
                        "stream_state": stream.stream_state,
                    },
                }
            )
        return out

    def latest_states(self) -> list[dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for state in self.states():
            latest[state["stream"]["stream_descriptor"]["name"]] = state
        return list(latest.values())

    def traces(self, kind: proto.TraceType) -> list[proto.AirbyteTraceMessage]:
        return [m.trace for m in self.of(proto.Type.TRACE) if m.trace.type == kind]

    def statuses(self, stream: str) -> list[str]:
        return [
            t.stream_status.status.value
            for t in self.traces(proto.TraceType.STREAM_STATUS)
            if t.stream_status.stream_descriptor.name == stream
        ]


def source_exe() -> str:
    return str(Path(sys.executable).parent / "source-lofty")


def run_source(
    args: list[str], tmp_path: Path, files: dict[str, Any] | None = None, timeout: float = 180
) -> SourceRun:
    """Run ``source-lofty`` with ``files`` written as JSON (``{"--config": {...}}``)."""
    command = [source_exe(), *args]
    for option, content in (files or {}).items():
        path = tmp_path / f"{option.strip('-')}.json"
        path.write_text(json.dumps(content))
        command += [option, str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_LOFTY_")}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env, check=False
    )
    run = SourceRun(returncode=done.returncode, stderr=done.stderr)
    for line in done.stdout.splitlines():
        run.messages.append(parse_message(line))  # every stdout line must be a message
    return run


def configured_catalog(catalog: proto.AirbyteCatalog, streams: dict[str, str]) -> dict[str, Any]:
    """A ConfiguredAirbyteCatalog (JSON) for ``{stream: sync_mode}``."""
    out = []
    for stream in catalog.streams:
        if stream.name not in streams:
            continue
        mode = streams[stream.name]
        out.append(
            {
                "stream": {
                    "name": stream.name,
                    "json_schema": stream.json_schema,
                    "supported_sync_modes": [m.value for m in stream.supported_sync_modes],
                },
                "sync_mode": mode,
                "destination_sync_mode": "append" if mode == "incremental" else "overwrite",
                **({"cursor_field": stream.default_cursor_field} if mode == "incremental" else {}),
            }
        )
    build(proto.ConfiguredAirbyteCatalog, {"streams": out})  # valid by the models
    return {"streams": out}
