"""A local simulator of the Lofty CRM Open API for tap-lofty.

Endpoints: the leads listing, the per-lead call, text and email histories, the team
communications feed (``GET /v2.0/communication/agent``), and the team-level members, lead
stages, lead ponds and transactions (``lofty_sim.team``).

Example::

    from lofty_sim import LoftySimulator, SimConfig

    with LoftySimulator(SimConfig(leads=50, seed=7)) as sim:
        print(sim.url, sim.config.api_key)
"""

from lofty_sim.config import Fault, SimConfig
from lofty_sim.server import LoftySimulator

__all__ = ["Fault", "LoftySimulator", "SimConfig"]
