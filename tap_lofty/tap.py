"""The Lofty tap: its settings, its streams and its command line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.helpers._util import load_json
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities, TapCapabilities
from singer_sdk.plugin_base import _ConfigInput
from singer_sdk.singerlib import Message, RecordMessage
from singer_sdk.tap_base import CliTestOptionValue
from typing_extensions import override

from tap_lofty import auth
from tap_lofty.client import LoftyClient, LoftyError, safe_url
from tap_lofty.pagination import LEADS_PATH, to_id
from tap_lofty.progress import Progress
from tap_lofty.ratelimit import WINDOW_S, RequestBudget, RunAborted
from tap_lofty.streams import (
    CallsStream,
    EmailsStream,
    LeadsStream,
    LeadStagesStream,
    MembersStream,
    PondsStream,
    TeamStream,
    TextsStream,
    TransactionsStream,
)

LOGGER = logging.getLogger("tap_lofty")
VERSION = version("tap-lofty")

#: ``--test`` answers within seconds: it waits at most this long for one response,
#: and for a rate-limit window.
TEST_TIMEOUT_S = 10.0
#: ``--test`` retries a 5xx or a broken answer once, this soon.
TEST_RETRY_S = 0.5
#: click's ``ctx.meta`` key for the ``--config`` arguments, to name them in errors.
_CONFIG_SOURCES = "tap_lofty.config_sources"


class _QuietCleanErrors(logging.Filter):
    """Drops the SDK's "An unhandled error occurred while syncing" for the tap's own errors.

    A LoftyError is explained in one paragraph by main(); the SDK's line, logged while
    the error passes through each stream, only comes before it as noise.
    """

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("An unhandled error occurred"):
            return True
        return not isinstance(sys.exc_info()[1], LoftyError | RunAborted)


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
                "'Authorization: token <key>'. Give this, access_token or the OAuth "
                "settings (client_id, ...), only one."
            ),
        ),
        th.Property(
            "access_token",
            th.StringType,
            secret=True,
            title="OAuth access token",
            description=(
                "A Lofty OAuth 2.0 access token, sent as 'Authorization: Bearer <token>' "
                "and never renewed (for a run that renews its own, see client_id). Give "
                "this, api_key or the OAuth settings, only one."
            ),
        ),
        th.Property(
            "client_id",
            th.StringType,
            title="OAuth client ID",
            description=(
                "Your Lofty app's client ID (Developer Portal). With client_secret and either "
                "refresh_token (or the token cache `tap-lofty --login` fills) or customer_key, "
                "the tap gets and renews OAuth access tokens itself."
            ),
        ),
        th.Property(
            "client_secret",
            th.StringType,
            secret=True,
            title="OAuth client secret",
            description="Your Lofty app's client secret (Developer Portal).",
        ),
        th.Property(
            "refresh_token",
            th.StringType,
            secret=True,
            title="OAuth refresh token",
            description=(
                "A refresh token from a user's sign-in. Optional after `tap-lofty --login`. "
                "Lofty may replace it at each renewal: the newest one is kept in the token "
                "cache, which is used instead while it is for the same client_id and this "
                "setting is unchanged."
            ),
        ),
        th.Property(
            "customer_key",
            th.StringType,
            secret=True,
            title="OAuth customer key",
            description=(
                "For the client-credentials grant: the API key of the Lofty user whose data "
                "the tap reads (the token is scoped to that user). Give this or "
                "refresh_token, not both."
            ),
        ),
        th.Property(
            "oauth_token_url",
            th.URIType,
            default=auth.DEFAULT_TOKEN_URL,
            title="OAuth token URL",
            description=(
                "Lofty's token endpoint. Lofty documents two; the default is the one "
                "documented to return refresh tokens (https://api.lofty.com/oauth/token is "
                "the other)."
            ),
        ),
        th.Property(
            "oauth_authorize_url",
            th.URIType,
            default=auth.DEFAULT_AUTHORIZE_URL,
            title="OAuth consent page",
            description="Lofty's consent page that `tap-lofty --login` sends the user to.",
        ),
        th.Property(
            "oauth_redirect_uri",
            th.StringType,
            default=auth.DEFAULT_REDIRECT_URI,
            title="OAuth redirect URI",
            description=(
                "Where Lofty sends the user after consent; register it for your app. "
                "`--login` receives an http://127.0.0.1:<port>/... one itself; with any "
                "other, paste the address the browser ends on."
            ),
        ),
        th.Property(
            "oauth_client_auth",
            th.StringType(allowed_values=list(auth.CLIENT_AUTH_METHODS)),
            default="basic",
            title="OAuth client authentication",
            description=(
                "How token requests carry client_id and client_secret: 'basic' (HTTP Basic, "
                "as working Lofty clients do) or 'body' (form fields)."
            ),
        ),
        th.Property(
            "token_cache_path",
            th.StringType,
            title="OAuth token cache file",
            description=(
                "File keeping the newest OAuth tokens between runs (mode 0600, replaced "
                "atomically). Default: $XDG_CACHE_HOME/tap-lofty/ or ~/.cache/tap-lofty/, "
                "one file per client_id. Keep it out of backups you share."
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
            "emit_activate_version_messages",
            th.BooleanType,
            default=True,
            title="Emit ACTIVATE_VERSION messages",
            description=(
                "After a complete listing of a full-table stream (leads, members, "
                "lead_stages, ponds, transactions), send ACTIVATE_VERSION, so that a target "
                "that honours it (target-postgres with activate_version) marks the rows "
                "gone from Lofty deleted. Never after an interrupted or partial listing."
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

        Not BATCH (calls come one lead at a time). ACTIVATE_VERSION for the full-table
        streams, after a complete listing only (see tap_lofty.versions).
        """
        return [
            TapCapabilities.CATALOG,
            TapCapabilities.STATE,
            TapCapabilities.DISCOVER,
            TapCapabilities.TEST,
            TapCapabilities.ACTIVATE_VERSION,
            PluginCapabilities.ABOUT,
            PluginCapabilities.STREAM_MAPS,
            PluginCapabilities.FLATTENING,
            PluginCapabilities.STRUCTURED_LOGGING,
        ]

    @override
    def discover_streams(self) -> list[Stream]:
        """Return the streams: ``leads``, its per-lead children, and the team-level ones."""
        return [
            LeadsStream(self),
            CallsStream(self),
            TextsStream(self),
            EmailsStream(self),
            MembersStream(self),
            LeadStagesStream(self),
            PondsStream(self),
            TransactionsStream(self),
        ]

    @property
    @override
    def streams(self) -> dict[str, Stream]:
        """Return the SDK's streams (in name order), the team-level ones last.

        The leads listing and its per-lead children are the run's main work and make its
        first requests, so a credential or scope problem shows on them first; the
        team-level streams add their handful of requests after them.
        """
        streams = super().streams
        return dict(sorted(streams.items(), key=lambda item: isinstance(item[1], TeamStream)))

    @cached_property
    def client(self) -> LoftyClient:
        """The run's one HTTP client, shared by both streams and all threads."""
        config = self.config
        return LoftyClient(
            api_url=config["api_url"],
            authorization=auth.credential_from_config(config, timeout_s=config["request_timeout"]),
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
        # Asked to raise, the SDK hands over its errors without logging a warning line
        # first; the user gets them all in one paragraph (see main()).
        try:
            errors = super()._validate_config(raise_errors=True)
        except ConfigValidationError as exc:
            errors = [_without_secret(e) for e in exc.errors]
        errors += _check_api_url(self.config.get("api_url"))
        errors += auth.config_problems(self.config)
        if errors and raise_errors:
            # The reasons go in the message too: without them a traceback says only
            # "Config validation failed".
            raise ConfigValidationError(
                "Config validation failed: " + " ".join(_sentence(e) for e in errors),
                errors=errors,
                schema=self.config_jsonschema,
            )
        return errors

    # The SDK marks sync_all final; this override only wraps it (progress, abort).
    @override  # type: ignore[misc]
    def sync_all(self) -> None:
        """Sync all streams, with progress lines; on failure stop every thread at once.

        When the run fails, the client is aborted before the error travels on: call
        fetches still retrying for other leads stop within moments and print nothing,
        and worker threads cannot keep the failed process alive.
        """
        quiet = _QuietCleanErrors()
        for stream in self.streams.values():
            stream.logger.addFilter(quiet)
        progress = self.progress
        progress.leads_page_size = self.config["leads_page_size"]  # for the ETA
        progress.start()
        try:
            super().sync_all()
        except BaseException:
            self.client.abort()
            raise
        finally:
            progress.stop()
            for stream in self.streams.values():
                stream.logger.removeFilter(quiet)

    def test_client(self) -> LoftyClient:
        """A client for ``--test``: short timeout, no retry when nothing answers.

        The user waits for a yes or no, so a refused connection, a DNS or TLS failure
        or a timeout is reported at once instead of after minutes of backoff.
        """
        config = self.config
        timeout = config["request_timeout"]
        label = "request_timeout"
        if timeout > TEST_TIMEOUT_S:
            label = f"--test waits at most {TEST_TIMEOUT_S:g} s; request_timeout is {timeout:g} s"
        return LoftyClient(
            api_url=config["api_url"],
            authorization=auth.credential_from_config(
                config, timeout_s=min(timeout, TEST_TIMEOUT_S)
            ),
            # Two requests: never wait for a new window for the second one.
            budget=RequestBudget(max(config["requests_per_minute"], 2), WINDOW_S),
            timeout_s=min(timeout, TEST_TIMEOUT_S),
            timeout_label=label,
            user_agent=config["user_agent"],
            max_retries=1,
            max_rate_limit_wait_s=min(config["max_rate_limit_wait"], TEST_TIMEOUT_S),
            retry_no_response=False,
            backoff_base_s=TEST_RETRY_S,
        )

    def check_connection(self, client: LoftyClient | None = None) -> str:
        """Check the credential with one leads request and one calls request."""
        client = client or self.client
        body = client.get(LEADS_PATH, {"limit": 1})
        leads = body.get("leads") or []
        if not leads:
            return "the leads endpoint answered; no lead to try the calls endpoint with"
        lead_id = to_id(leads[0].get("leadId"), "leadId")
        client.get(CallsStream.path, {"leadId": lead_id, "limit": 1})
        return "both the leads and the calls endpoints answered"

    @override
    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``: say in one line whether the credentials work (exit 1 if not)."""
        if value != CliTestOptionValue.All.value:
            with _config_errors_explained(ctx):
                super().cb_test(ctx, param, value)
            return
        config: _ConfigInput = ctx.params.get("config", _ConfigInput())
        with _config_errors_explained(ctx):
            tap = cls(config=config.config, parse_env_config=config.parse_env, validate_config=True)
        try:
            outcome = tap.check_connection(tap.test_client())
        except LoftyError as exc:
            raise LoftyError(f"connection test failed: {exc}") from exc
        LOGGER.info(
            "Connection test passed: %s accepted the credential; %s.",
            safe_url(tap.config["api_url"]),
            outcome,
        )
        ctx.exit()

    @classmethod
    def cb_login(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """``--login``: sign a user in (authorization code) and store the tokens in the cache."""
        if not value:
            return
        config: _ConfigInput = ctx.params.get("config", _ConfigInput())
        with _config_errors_explained(ctx):
            # Not validated as a run's config: it has no refresh token yet, by design.
            tap = cls(
                config=config.config, parse_env_config=config.parse_env, validate_config=False
            )
        try:
            path = auth.login(
                tap.config,
                say=lambda text: click.echo(text, err=True),
                read_line=sys.stdin.readline,
                wait_s=auth.LOGIN_WAIT_S,
                timeout_s=min(float(tap.config["request_timeout"]), 60.0),
            )
        except KeyboardInterrupt:
            raise LoftyError("--login was interrupted; no tokens were stored.") from None
        click.echo(
            f"Signed in: the OAuth tokens are in {path} (only you can read it). Runs with this "
            "client_id use and renew them; refresh_token need not be in the config.",
            err=True,
        )
        ctx.exit()

    @override
    @classmethod
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> _ConfigInput:
        """Read the ``--config`` files, naming the one that cannot be read."""
        ctx.meta[_CONFIG_SOURCES] = value
        config: dict[str, Any] = {}
        parse_env = False
        for path in value:
            if path == "ENV":
                parse_env = True
                continue
            file_config = _read_json_file(path, "--config")
            if not isinstance(file_config, dict):
                raise LoftyError(
                    f"the --config file {path!r} holds a JSON {_json_kind(file_config)}, not "
                    'an object of settings like {"api_key": "..."}. Fix that file.'
                )
            config |= file_config
        return _ConfigInput(config=config, parse_env=parse_env)

    @override
    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        state: str | None = None,
        catalog: str | None = None,
    ) -> None:
        """Sync, as the SDK does, but with --state and --catalog read and checked by name.

        The SDK's version would take a JSON list as the state, i.e. silently run a
        full sync, and cannot say which file is not valid JSON.
        """
        if about:
            cls.print_about(about_format)
            sys.exit(0)
        cls.print_version(print_fn=cls.logger.info)
        config = config or _ConfigInput()
        state_dict = None if state is None else _read_json_file(state, "--state")
        if state_dict is not None and not isinstance(state_dict, dict):
            raise LoftyError(
                f"the --state file {state!r} holds a JSON {_json_kind(state_dict)}, not a "
                'Singer state object like {"bookmarks": {...}}. Give it the value of the '
                "last STATE message of an earlier run, or leave --state out for a full sync."
            )
        catalog_dict = None if catalog is None else _read_json_file(catalog, "--catalog")
        if catalog_dict is not None and not isinstance(catalog_dict, dict):
            raise LoftyError(
                f"the --catalog file {catalog!r} holds a JSON {_json_kind(catalog_dict)}, "
                'not a Singer catalog like {"streams": [...]}. Make one with '
                "`tap-lofty --discover > catalog.json`."
            )
        with _config_errors_explained(click.get_current_context(silent=True)):
            tap = cls(
                config=config.config,
                state=state_dict,
                catalog=catalog_dict,
                parse_env_config=config.parse_env,
                validate_config=True,
            )
        tap.sync_all()

    @override
    @classmethod
    def get_singer_command(cls) -> click.Command:
        """Return the SDK's command, with a truthful --test help and --state/--catalog as paths."""
        command = super().get_singer_command()
        command.params.append(
            click.Option(
                ["--login"],
                is_flag=True,
                expose_value=False,
                callback=cls.cb_login,
                help=(
                    "Sign a Lofty user in for OAuth (client_id and client_secret in the "
                    "config): prints the consent address, receives Lofty's redirect on "
                    "oauth_redirect_uri (or takes the pasted address), and stores the tokens "
                    "in the token cache for later runs."
                ),
            )
        )
        for param in command.params:
            if param.name == "test" and isinstance(param, click.Option):
                param.help = (
                    "Check api_url and the credential with one small request to each "
                    "endpoint (one lead, one call), answer in one line within seconds, and "
                    "exit (1 on failure). --test=schema prints the SCHEMA messages instead."
                )
            elif param.name in ("state", "catalog"):
                # Read by invoke(), so that a missing or broken file is one clear error
                # naming it (exit 1) rather than click's usage message (exit 2).
                param.type = click.Path()
                param.help = (
                    "A Singer catalog (from --discover) selecting streams and fields."
                    if param.name == "catalog"
                    else "The value of the last STATE message of an earlier run (a JSON "
                    "object): the run resumes or continues from it."
                )
        return command


def _read_json_file(path: str, option: str) -> Any:
    """Parse a JSON file given to ``option``, or raise a LoftyError that names it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        where = "" if os.path.isabs(path) else f" Relative paths start from {os.getcwd()}."
        raise LoftyError(
            f"File at '{path}' was not found. Check the path given to {option}.{where}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LoftyError(
            f"the {option} file {path!r} cannot be read ({exc.__class__.__name__}: "
            f"{getattr(exc, 'strerror', None) or exc}). Check the path given to {option}."
        ) from None
    try:
        return load_json(text)
    except ValueError as exc:  # simplejson's JSONDecodeError
        hint = (
            " A broken --state can also be removed (with Meltano: `meltano state clear "
            "<state id>`) for a full sync."
            if option == "--state"
            else ""
        )
        raise LoftyError(
            "a file given to --config, --state or --catalog is not valid JSON "
            f"({option} {path!r}: {exc}). Fix that file.{hint}"
        ) from None


def _json_kind(value: Any) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _check_api_url(api_url: Any) -> list[str]:
    """Return what is wrong with api_url; ``127.0.0.1:8765`` passes the SDK's "uri" check."""
    if not isinstance(api_url, str):
        return []  # the schema check reports the wrong type
    parts = urlsplit(api_url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return []
    return [
        f"api_url is {safe_url(api_url)!r}; it must start with https:// (or http:// for a "
        "local test server) and name a host, e.g. https://api.lofty.com."
    ]


#: Settings whose values must never be shown, not even in a validation error.
SECRET_SETTINGS = auth.SECRET_SETTINGS


def _without_secret(error: str) -> str:
    """Return the error without the value, which the SDK quotes ("123 is not of type ...")."""
    for name in SECRET_SETTINGS:
        if error.endswith(f"in config['{name}']"):
            return f"{name} must be a string (its value is not shown: it is a secret)"
    return error


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


@contextmanager
def _config_errors_explained(ctx: click.Context | None) -> Iterator[None]:
    """Turn a ConfigValidationError into a LoftyError naming where the settings came from."""
    try:
        yield
    except ConfigValidationError as exc:
        sources: Sequence[str] = ctx.meta.get(_CONFIG_SOURCES, ()) if ctx else ()
        files = [s for s in sources if s != "ENV"]
        parts = [f"--config {', '.join(repr(f) for f in files)}"] if files else []
        if "ENV" in sources:
            parts.append("TAP_LOFTY_* environment variables")
        where = " and ".join(parts) if parts else "no --config given"
        reasons = " ".join(_sentence(e) for e in exc.errors) or str(exc)
        raise LoftyError(
            f"invalid settings ({where}): {reasons} Fix them and run again; "
            "`tap-lofty --about` describes every setting."
        ) from None


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: the SDK's CLI, with clean one-paragraph errors."""
    try:
        return TapLofty.cli(args=argv)
    except LoftyError as exc:
        # Known failures are explained by their message; a traceback adds only noise.
        _fail(str(exc))
    except RunAborted:  # pragma: no cover (the run's own error is raised instead)
        _fail("the run was stopped after an earlier error.")


def _fail(message: str) -> NoReturn:
    print(f"tap-lofty: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
