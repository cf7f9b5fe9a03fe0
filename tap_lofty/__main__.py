"""Allow ``python -m tap_lofty``."""

from tap_lofty.tap import main

main()
