"""The Lofty tap: its settings, its streams and its command line."""

from __future__ import annotations

import logging
import sys
from functools import cached_property
from importlib.metadata import version
from typing import Any, NoReturn

import click
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities, TapCapabilities
from singer_sdk.plugin_base import _ConfigInput
from singer_sdk.singerlib import Message, RecordMessage
from singer_sdk.tap_base import CliTestOptionValue
from typing_extensions import override

from tap_lofty.client import LoftyClient, LoftyError, auth_header
from tap_lofty.pagination import LEADS_PATH, to_id
from tap_lofty.progress import Progress
from tap_lofty.ratelimit import WINDOW_S, RequestBudget
from tap_lofty.streams import CallsStream, EmailsStream, LeadsStream, TextsStream

LOGGER = logging.getLogger("tap_lofty")
VERSION = version("tap-lofty")


class LoftyMessageWriter(MsgSpecWriter):
    """The SDK's msgspec writer, flushing stdout at each STATE instead of each RECORD.

    Output order is unchanged; a run killed at any moment has flushed everything up
    to its last STATE, which is all a rerun needs. Saves a system call per record.
    """

    @override
    def write_message(self, message: Message) -> None:
        sys.stdout.buffer.write(self.format_message(message))
        if not isinstance(message, RecordMessage):
            sys.stdout.flush()


class TapLofty(Tap):
    """Singer tap for the Lofty CRM: leads and the call history of each lead."""

    name = "tap-lofty"
    message_writer_class = LoftyMessageWriter

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_url",
            th.URIType,
            default="https://api.lofty.com",
            title="API URL",
            description="Root of Lofty's API. Change it only for a proxy or a test server.",
        ),
        th.Property(
            "api_key",
            th.StringType,
            secret=True,
            title="API key",
            description=(
                "A Lofty API key (Settings > Integrations > API), sent as "
                "'Authorization: token <key>'. Give this or access_token, not both."
            ),
        ),
        th.Property(
            "access_token",
            th.StringType,
            secret=True,
            title="OAuth access token",
            description=(
                "A Lofty OAuth 2.0 access token, sent as 'Authorization: Bearer <token>'. "
                "Give this or api_key, not both."
            ),
        ),
        th.Property(
            "leads_page_size",
            th.IntegerType(minimum=1, maximum=100),
            default=100,
            title="Leads page size",
            description="Leads per request to GET /v1.0/leads (Lofty allows 1 to 100).",
        ),
        th.Property(
            "calls_page_size",
            th.IntegerType(minimum=2, maximum=1000),
            default=1000,
            title="Calls page size",
            description=(
                "Calls per request to GET /v1.0/communication/call (Lofty allows up to "
                "1000; the tap needs 2 or more to page with an inclusive cursor)."
            ),
        ),
        th.Property(
            "texts_page_size",
            th.IntegerType(minimum=2, maximum=1000),
            default=1000,
            title="Texts page size",
            description=(
                "Texts per request to GET /v1.0/communication/text (Lofty allows up to "
                "1000; the tap needs 2 or more to page with an inclusive cursor)."
            ),
        ),
        th.Property(
            "emails_page_size",
            th.IntegerType(minimum=2, maximum=1000),
            default=1000,
            title="Emails page size",
            description=(
                "Email events per request to GET /v1.0/communication/email (Lofty allows "
                "up to 1000; the tap needs 2 or more to page with an inclusive cursor)."
            ),
        ),
        th.Property(
            "requests_per_minute",
            th.IntegerType(minimum=1),
            default=100,
            title="Requests per minute",
            description=(
                "The tap's request budget per 60 s window, shared by all streams and "
                "threads. Lofty allows 100 (development apps) or 500 (production apps); "
                "the budget is lowered further whenever Lofty's X-RateLimit-Remaining says so."
            ),
        ),
        th.Property(
            "max_concurrency",
            th.IntegerType(minimum=1, maximum=16),
            default=4,
            title="Concurrent call fetches",
            description=(
                "How many leads' call histories are fetched at once. More hides network "
                "latency; the request budget still caps the rate."
            ),
        ),
        th.Property(
            "request_timeout",
            th.NumberType(exclusive_minimum=0),
            default=60,
            title="Request timeout",
            description="Seconds to wait for one response before retrying it.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0, maximum=50),
            default=8,
            title="Max retries",
            description=(
                "Retries of one request after a 5xx, a timeout, a dropped connection or a "
                "malformed body, with exponential backoff (1 s doubling, capped at 60 s)."
            ),
        ),
        th.Property(
            "max_rate_limit_wait",
            th.NumberType(minimum=0),
            default=600,
            title="Max rate-limit wait",
            description=(
                "Seconds one request may spend waiting out 429 Too Many Requests "
                "answers before the run fails."
            ),
        ),
        th.Property(
            "change_detection",
            th.StringType(allowed_values=["auto", "feed", "full"]),
            default="auto",
            title="Change detection",
            description=(
                "How a run after the first picks the leads whose calls it reads. 'auto': "
                "the leads Lofty's team communications feed (GET /v2.0/communication/agent, "
                "teamView) names since the last run, or every lead, with a warning, when "
                "Lofty refuses the feed; 'feed': the feed or a clear error; 'full': every "
                "lead, every run."
            ),
        ),
        th.Property(
            "feed_overlap_minutes",
            th.IntegerType(minimum=30, maximum=1440),
            default=60,
            title="Feed overlap (minutes)",
            description=(
                "How far each feed window reaches back before the previous run's cut-off, "
                "to cover Lofty's indexing delay and clock skew; the id bookmark stops as "
                "far back. Calls started this long before a run and logged after it are "
                "still found."
            ),
        ),
        th.Property(
            "full_scan_interval_days",
            th.NumberType(minimum=0),
            default=7,
            title="Full scan interval (days)",
            description=(
                "A run whose last full per-lead scan is older than this reads every lead "
                "(above the bookmark of that scan), so calls the feed never showed (a call "
                "logged with a past time) still arrive. Fractions allowed; 0 = never."
            ),
        ),
        th.Property(
            "user_agent",
            th.StringType,
            default=f"tap-lofty/{VERSION}",
            title="User agent",
            description="User-Agent header sent with every request.",
        ),
    ).to_dict()

    @override
    @classproperty
    def capabilities(self) -> list[CapabilitiesEnum]:
        """Declare what the tap supports.

        Not BATCH (calls come one lead at a time), nor ACTIVATE_VERSION (not offered yet:
        see the README's known limits).
        """
        return [
            TapCapabilities.CATALOG,
            TapCapabilities.STATE,
            TapCapabilities.DISCOVER,
            TapCapabilities.TEST,
            PluginCapabilities.ABOUT,
            PluginCapabilities.STREAM_MAPS,
            PluginCapabilities.FLATTENING,
            PluginCapabilities.STRUCTURED_LOGGING,
        ]

    @override
    def discover_streams(self) -> list[Stream]:
        """Return the streams: ``leads`` and its per-lead children."""
        return [LeadsStream(self), CallsStream(self), TextsStream(self), EmailsStream(self)]

    @cached_property
    def client(self) -> LoftyClient:
        """The run's one HTTP client, shared by both streams and all threads."""
        config = self.config
        return LoftyClient(
            api_url=config["api_url"],
            authorization=auth_header(
                api_key=config.get("api_key"), access_token=config.get("access_token")
            ),
            budget=RequestBudget(config["requests_per_minute"], WINDOW_S),
            timeout_s=config["request_timeout"],
            user_agent=config["user_agent"],
            max_retries=config["max_retries"],
            max_rate_limit_wait_s=config["max_rate_limit_wait"],
        )

    @cached_property
    def progress(self) -> Progress:
        """Counters behind the progress lines and the end-of-run summary."""
        return Progress(self.client.stats, self.client.budget)

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        errors = super()._validate_config(raise_errors=False)
        has_key, has_token = bool(self.config.get("api_key")), bool(self.config.get("access_token"))
        if has_key == has_token:
            errors.append(
                "Give exactly one credential: api_key (a Lofty API key, sent as 'token "
                "<key>') or access_token (an OAuth token, sent as 'Bearer <token>'); "
                + ("both are set." if has_key else "neither is set.")
            )
        if errors and raise_errors:
            raise ConfigValidationError(
                "Config validation failed", errors=errors, schema=self.config_jsonschema
            )
        return errors

    def check_connection(self) -> str:
        """Check the credential with one leads request and one calls request."""
        body = self.client.get(LEADS_PATH, {"limit": 1})
        leads = body.get("leads") or []
        if not leads:
            return "the leads endpoint answered; no lead to try the calls endpoint with"
        lead_id = to_id(leads[0].get("leadId"), "leadId")
        self.client.get(CallsStream.path, {"leadId": lead_id, "limit": 1})
        return "both the leads and the calls endpoints answered"

    @override
    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``: say in one line whether the credentials work (exit 1 if not)."""
        if value != CliTestOptionValue.All.value:
            super().cb_test(ctx, param, value)
            return
        config: _ConfigInput = ctx.params.get("config", _ConfigInput())
        tap = cls(config=config.config, parse_env_config=config.parse_env, validate_config=True)
        outcome = tap.check_connection()  # raises LoftyError with the reason
        LOGGER.info(
            "Connection test passed: %s accepted the credential; %s.",
            tap.config["api_url"],
            outcome,
        )
        ctx.exit()


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: the SDK's CLI, with clean one-paragraph errors."""
    try:
        return TapLofty.cli(args=argv)
    except LoftyError as exc:
        # Known failures are explained by their message; a traceback adds only noise.
        _fail(str(exc))
    except FileNotFoundError as exc:
        if not str(exc).startswith("File at "):  # the SDK's words for a --config path
            raise
        _fail(f"{exc} Check the path given to --config.")
    except ValueError as exc:
        # The SDK parses --config, --state and --catalog with simplejson or json.
        if type(exc).__name__ != "JSONDecodeError":
            raise
        _fail(
            f"a file given to --config, --state or --catalog is not valid JSON ({exc}). Fix "
            "that file; a broken --state can also be removed (with Meltano: `meltano state "
            "clear <state id>`) for a full sync."
        )


def _fail(message: str) -> NoReturn:
    print(f"tap-lofty: error: {message}", file=sys.stderr)
    sys.exit(1)
