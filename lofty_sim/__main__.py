"""Command line: ``python -m lofty_sim --port 8765 --leads 500 --seed 7``.

Prints ``LOFTY_SIM_URL=...``, ``LOFTY_SIM_API_KEY=...`` and ``LOFTY_SIM_ACCESS_TOKEN=...`` (one per
line, flushed) and serves until SIGTERM or SIGINT, then exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from lofty_sim.config import DEFAULT_FAULT_KINDS, FEED_MODES, LEADS_ORDERS, SCOPES, SimConfig
from lofty_sim.oauth import OAuthConfig
from lofty_sim.server import LoftySimulator


def _rate_limit(text: str) -> int | None:
    """``0``, ``none`` or ``off`` turn the limit off."""
    if text.lower() in ("0", "none", "off", "unlimited"):
        return None
    return int(text)


def _extra_field(text: str) -> tuple[str, object]:
    """``NAME=JSON``, e.g. ``brandNewField={"a": 1}``; a value that is not JSON is a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (defaults mirror :class:`SimConfig`)."""
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="python -m lofty_sim", description="Local Lofty Open API simulator."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    p.add_argument("--leads", type=int, default=d.leads)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--calls-per-lead", type=float, default=d.calls_per_lead_mean, help="mean calls per lead"
    )
    p.add_argument(
        "--big-leads", type=int, default=d.big_leads, help="leads with 2,600..3,200 calls"
    )
    p.add_argument(
        "--live-shape-share",
        type=float,
        default=d.live_shape_share,
        help="share of leads in the live-observed (not the spec's) shapes",
    )
    p.add_argument(
        "--texts-per-lead", type=float, default=d.texts_per_lead_mean, help="mean texts per lead"
    )
    p.add_argument(
        "--big-text-leads", type=int, default=d.big_text_leads, help="leads with 2,100..2,600 texts"
    )
    p.add_argument(
        "--emails-per-lead",
        type=float,
        default=d.emails_per_lead_mean,
        help="mean emails sent per lead (each 1-2 event rows)",
    )
    p.add_argument("--cursor-mode", choices=("exclusive", "inclusive"), default=d.cursor_mode)
    p.add_argument("--metadata-key", choices=("_metadata", "get_metadata"), default=d.metadata_key)
    p.add_argument("--leads-default-limit", type=int, default=d.leads_default_limit)
    p.add_argument(
        "--leads-order",
        choices=LEADS_ORDERS,
        default=d.leads_order,
        help="as_asked honours sort/desc; the others imitate servers that do not",
    )
    p.add_argument(
        "--extra-lead-field",
        type=_extra_field,
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="add this field to every lead (repeatable)",
    )
    p.add_argument(
        "--calls-page-cap",
        type=int,
        default=d.calls_page_cap,
        help="serve at most N calls per page whatever limit asks (silently)",
    )
    p.add_argument(
        "--scroll-ttl", type=float, default=d.scroll_ttl_s, help="scrollId lifetime, seconds"
    )
    p.add_argument(
        "--rate-limit", type=_rate_limit, default=d.rate_limit, help="requests per window; 0 = off"
    )
    p.add_argument("--rate-window", type=float, default=d.rate_window_s, help="seconds")
    p.add_argument(
        "--reset-header", choices=("epoch", "epoch_ms", "seconds"), default=d.reset_header
    )
    p.add_argument(
        "--latency", type=float, default=d.latency_s, help="fixed delay per request, seconds"
    )
    p.add_argument(
        "--jitter", type=float, default=d.jitter_s, help="plus uniform 0..JITTER seconds"
    )
    p.add_argument(
        "--fault-rate", type=float, default=d.fault_rate, help="probability a request faults"
    )
    p.add_argument(
        "--fault-kinds",
        default=",".join(DEFAULT_FAULT_KINDS),
        help="comma-separated kinds drawn at --fault-rate",
    )
    p.add_argument(
        "--slow", type=float, default=d.slow_s, help="duration of the 'slow' fault, seconds"
    )
    p.add_argument(
        "--missing-scopes",
        default="",
        help=f"comma-separated endpoints the app is not granted (403 200100): {','.join(SCOPES)}",
    )
    p.add_argument(
        "--feed-mode",
        choices=FEED_MODES,
        default=d.feed_mode,
        help="/v2.0/communication/agent: available, or failing as Lofty can",
    )
    p.add_argument(
        "--feed-delay",
        type=float,
        default=d.feed_delay_s,
        help="seconds before an appended item shows in the feed",
    )
    p.add_argument("--api-key", default=d.api_key)
    p.add_argument("--access-token", default=d.access_token)
    # OAuth (lofty_sim/oauth.py): the app's client and the access tokens' lifetime.
    o = OAuthConfig()
    p.add_argument("--oauth-client-id", default=o.client_id)
    p.add_argument("--oauth-client-secret", default=o.client_secret)
    p.add_argument(
        "--oauth-access-ttl", type=int, default=o.access_ttl_s, help="seconds (default 3600)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT."""
    args = build_parser().parse_args(argv)
    try:
        config = SimConfig(
            leads=args.leads,
            seed=args.seed,
            calls_per_lead_mean=args.calls_per_lead,
            big_leads=args.big_leads,
            live_shape_share=args.live_shape_share,
            texts_per_lead_mean=args.texts_per_lead,
            emails_per_lead_mean=args.emails_per_lead,
            big_text_leads=args.big_text_leads,
            cursor_mode=args.cursor_mode,
            metadata_key=args.metadata_key,
            leads_default_limit=args.leads_default_limit,
            leads_order=args.leads_order,
            extra_lead_fields=dict(args.extra_lead_field) or None,
            calls_page_cap=args.calls_page_cap,
            scroll_ttl_s=args.scroll_ttl,
            rate_limit=args.rate_limit,
            rate_window_s=args.rate_window,
            reset_header=args.reset_header,
            latency_s=args.latency,
            jitter_s=args.jitter,
            fault_rate=args.fault_rate,
            fault_kinds=tuple(k for k in args.fault_kinds.split(",") if k),
            slow_s=args.slow,
            missing_scopes=tuple(k for k in args.missing_scopes.split(",") if k),
            feed_mode=args.feed_mode,
            feed_delay_s=args.feed_delay,
            api_key=args.api_key,
            access_token=args.access_token,
        )
    except ValueError as err:
        print(f"lofty_sim: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = LoftySimulator(config)
    try:
        sim.oauth.configure(
            client_id=args.oauth_client_id,
            client_secret=args.oauth_client_secret,
            access_ttl_s=args.oauth_access_ttl,
        )
    except ValueError as err:
        print(f"lofty_sim: {err}", file=sys.stderr)
        return 2
    url = sim.start(host=args.host, port=args.port)
    print(f"LOFTY_SIM_URL={url}")
    print(f"LOFTY_SIM_API_KEY={config.api_key}")
    print(f"LOFTY_SIM_ACCESS_TOKEN={config.access_token}")
    print(f"LOFTY_SIM_OAUTH_CLIENT_ID={sim.oauth.config.client_id}")
    print(f"LOFTY_SIM_OAUTH_CLIENT_SECRET={sim.oauth.config.client_secret}", flush=True)
    # Event.wait with a timeout in a loop: a bare wait() would not wake for signals promptly on
    # every platform.
    while not stop.wait(0.5):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
