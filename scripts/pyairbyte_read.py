"""Read the simulator through source-lofty with PyAirbyte (run in .venv-pyairbyte/).

Usage: pyairbyte_read.py CONFIG_JSON SOURCE_LOFTY_EXE CACHE_DIR [STREAM ...]
Prints one JSON object: {stream: [ids of the records this read brought]} and the cache totals.
The caller sets DO_NOT_TRACK=1, AIRBYTE_OFFLINE_MODE=1 and AIRBYTE_LOCAL_REGISTRY=0.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

config_path, executable, cache_dir, *streams = sys.argv[1:]
# Read by airbyte.constants at import time.
os.environ["AIRBYTE_CACHE_ROOT"] = cache_dir

import airbyte as ab  # noqa: E402

source = ab.get_source(
    "source-lofty",
    config=json.loads(Path(config_path).read_text(encoding="utf-8")),
    local_executable=executable,
    install_if_missing=False,
)
source.select_streams(streams or ["leads", "calls"])
cache = ab.get_default_cache()
started = time.monotonic()
started_wall = time.time()
result = source.read(cache=cache)
elapsed = time.monotonic() - started
out = {
    "seconds": round(elapsed, 2),
    "processed": result.processed_records,
    "ids": {},
    "new_ids": {},
}
key = {"leads": "leadid", "calls": "id"}
for name in streams or ["leads", "calls"]:
    frame = cache.get_pandas_dataframe(name)
    column = key.get(name, "id")
    out["ids"][name] = sorted(int(v) for v in frame[column].tolist())
    # The rows this read wrote (an incremental read merges into the earlier rows).
    extracted = frame["_airbyte_extracted_at"].map(lambda t: t.timestamp())
    out["new_ids"][name] = sorted(int(v) for v in frame[extracted >= started_wall - 1][column])
print(json.dumps(out))
