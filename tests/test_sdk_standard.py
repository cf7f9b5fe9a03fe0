"""The Singer SDK's standard tap tests, run offline against the simulator.

The SDK builds the test class when this module is imported, so the simulator starts here
rather than in a fixture. Its built-in primary-key test cannot fail in singer-sdk 0.54.9;
tests/test_tap.py checks key uniqueness itself.
"""

from __future__ import annotations

import atexit

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from lofty_sim import LoftySimulator, SimConfig
from tap_lofty.tap import TapLofty

SIMULATOR = LoftySimulator(
    SimConfig(leads=25, seed=17, calls_per_lead_mean=4, big_leads=0, rate_limit=None)
)
SIMULATOR.start(host="127.0.0.1", port=0)
atexit.register(SIMULATOR.stop)

TestTapLofty = get_tap_test_class(
    tap_class=TapLofty,
    config={
        "api_url": SIMULATOR.url,
        "api_key": SIMULATOR.config.api_key,
        "requests_per_minute": 100_000,
    },
    parse_env_config=False,
    suite_config=SuiteConfig(max_records_limit=60),
)
