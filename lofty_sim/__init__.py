"""A local simulator of the Lofty CRM Open API (leads listing and call history) for tap-lofty.

Example::

    from lofty_sim import LoftySimulator, SimConfig

    with LoftySimulator(SimConfig(leads=50, seed=7)) as sim:
        print(sim.url, sim.config.api_key)
"""

from lofty_sim.config import Fault, SimConfig
from lofty_sim.server import LoftySimulator

__all__ = ["Fault", "LoftySimulator", "SimConfig"]
