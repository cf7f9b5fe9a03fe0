"""A minimal Lofty extractor: the yardstick for the tap's per-record CPU cost.

Usage: ``python benchmarks/baseline.py --config config.json > out.jsonl`` (the tap's config file).

It fetches the pages the tap fetches (the leads scroll sorted by ``CreateTime``, then each lead's
calls by ``currentId`` cursor from 1, ``limit`` 1000), one request at a time on one
``requests.Session``, and writes the same Singer RECORD lines with the standard library ``json``:
leads and calls with ids as ints, times converted to RFC 3339 UTC, ``leadId`` in every call and
only the properties in the tap's schemas. One SCHEMA per stream, one STATE at the end. No retries,
no rate limit, no validation beyond what the output needs: the least work a correct extractor does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import requests

SCHEMAS = Path(__file__).resolve().parents[1] / "tap_lofty" / "schemas"
LEAD_TIMES = ("createTime", "assignTime", "lastUpdateTime", "lastTouch", "lastVisit")
CALL_TIMES = ("startTime", "endTime", "createTime", "updateTime")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def rfc3339(value: Any) -> Any:
    """``yyyy-MM-dd HH:mm:ss`` or ``yyyy-MM-ddTHH:mm:ssGMT`` (UTC) to ``yyyy-MM-ddTHH:mm:ssZ``."""
    if not value:
        return None
    if isinstance(value, str) and len(value) >= 19:
        return f"{value[:10]}T{value[11:19]}Z"
    return value


def keep(record: dict[str, Any], props: frozenset[str]) -> dict[str, Any]:
    """Drop what the schema does not declare (as the tap's type conformance does)."""
    if props.issuperset(record):
        return record
    return {k: v for k, v in record.items() if k in props}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text(encoding="utf-8"))
    api = config["api_url"].rstrip("/")
    session = requests.Session()
    session.headers.update(
        {
            "Authorization": f"token {config['api_key']}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
    )
    leads_limit = int(config.get("leads_page_size", 100))
    calls_limit = int(config.get("calls_page_size", 1000))
    schemas = {n: json.loads((SCHEMAS / f"{n}.json").read_text()) for n in ("leads", "calls")}
    props = {name: frozenset(s["properties"]) for name, s in schemas.items()}
    out = sys.stdout
    for name, key in (("leads", ["leadId"]), ("calls", ["id"])):
        message = {"type": "SCHEMA", "stream": name, "schema": schemas[name], "key_properties": key}
        out.write(_dumps(message) + "\n")

    def get(path: str, params: dict[str, Any]) -> dict[str, Any]:
        response = session.get(api + path, params=params, timeout=60)
        response.raise_for_status()
        return response.json()

    lead_ids: list[int] = []
    params: dict[str, Any] = {"limit": leads_limit, "sort": "CreateTime", "desc": "false"}
    while True:
        body = get("/v1.0/leads", params)
        leads = body.get("leads") or []
        now = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
        for lead in leads:
            lead["leadId"] = int(lead["leadId"])
            for field in LEAD_TIMES:
                if field in lead:
                    lead[field] = rfc3339(lead[field])
            record = {"type": "RECORD", "stream": "leads", "record": keep(lead, props["leads"])}
            record["time_extracted"] = now
            out.write(_dumps(record) + "\n")
            lead_ids.append(lead["leadId"])
        scroll = (body.get("_metadata") or body.get("get_metadata") or {}).get("scrollId")
        if not leads or not scroll:
            break
        params = {"limit": leads_limit, "sort": "CreateTime", "desc": "false", "scrollId": scroll}

    high = 0
    for lead_id in lead_ids:
        cursor = 1
        while True:
            body = get(
                "/v1.0/communication/call",
                {"leadId": lead_id, "limit": calls_limit, "currentId": cursor},
            )
            calls = body.get("calls") or []
            now = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
            for call in calls:
                call_id = int(call["id"])
                if call_id <= cursor:
                    continue  # an inclusive cursor repeats its own row
                call["id"] = cursor = call_id
                call.setdefault("leadId", lead_id)
                for field in CALL_TIMES:
                    if field in call:
                        call[field] = rfc3339(call[field])
                record = {"type": "RECORD", "stream": "calls", "record": keep(call, props["calls"])}
                record["time_extracted"] = now
                out.write(_dumps(record) + "\n")
            high = max(high, cursor)
            if len(calls) < calls_limit:
                break
    state = {"bookmarks": {"calls": {"replication_key": "id", "replication_key_value": high}}}
    out.write(_dumps({"type": "STATE", "value": state}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    sys.exit(main())
