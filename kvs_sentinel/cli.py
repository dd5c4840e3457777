"""Command line: parse args → load config → configure logging → run.

Exit codes: 0 the run completed; 1 detector examples failed or alerts could not be delivered;
2 invalid configuration or arguments (output paths are checked before any work), or no input could be
read at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from kvs_sentinel import __version__
from kvs_sentinel.app import configured_dispatcher, replay_pipeline
from kvs_sentinel.config import LoadedConfig, SentinelConfig, compile_config, load_config
from kvs_sentinel.detectors.spec import ExampleSpec
from kvs_sentinel.errors import ConfigError, DeliveryError, InputError, UsageError
from kvs_sentinel.flood import Suppressions
from kvs_sentinel.logs import configure_logging
from kvs_sentinel.output_paths import check_writable
from kvs_sentinel.routing import Dispatcher
from kvs_sentinel.run_config import DEFAULT_PORT
from kvs_sentinel.sinks.base import Sink
from kvs_sentinel.sinks.stdout import JsonLinesSink
from kvs_sentinel.sources.files import STDIN
from kvs_sentinel.sources.local import FileSource
from kvs_sentinel.startup_signals import exit_cleanly_on_stop_signals, stoppable
from kvs_sentinel.state.base import StateError
from kvs_sentinel.state.registry import StoreUse, check_state_url, open_store
from kvs_sentinel.stateful import baselines
from kvs_sentinel.stats import RunStats

if TYPE_CHECKING:
    from kvs_sentinel.sources.s3_archive import ArchiveSource

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# the default of every --config: how a container image or an ECS task names its configuration
CONFIG_ENV = "KVS_SENTINEL_CONFIG"


def _config_default() -> Path | None:
    value = os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


def _config_option(command: argparse.ArgumentParser, what: str = "sentinel.yaml") -> None:
    command.add_argument(
        "--config",
        type=Path,
        default=_config_default(),
        help=f"{what} (default: ${CONFIG_ENV}, else the shipped config)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvs-sentinel",
        description="CloudTrail detections for Kinesis Video Streams security best practices.",
    )
    parser.add_argument("--version", action="version", version=f"kvs-sentinel {__version__}")
    _logging_options(parser, default_level="info")
    # the same options after the subcommand (`kvs-sentinel replay --log-level debug ...`); SUPPRESS keeps
    # a subcommand that does not repeat them from resetting what was given before it
    logging_options = argparse.ArgumentParser(add_help=False)
    _logging_options(logging_options, default_level=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[logging_options], **kwargs)  # type: ignore[arg-type]

    replay = command("replay", help="run the detectors over local CloudTrail files")
    replay.add_argument(
        "paths", nargs="+", metavar="PATH", help="files, directories (recursive) or - for stdin"
    )
    _config_option(replay)
    replay.add_argument("--output", "-o", help="where alerts go, as JSON Lines (default: stdout)")
    replay.add_argument(
        "--format",
        choices=["alert", "ocsf"],
        default="alert",
        help="JSON Lines of alerts, or of OCSF Detection Findings (for Security Lake); default: alert",
    )
    replay.add_argument(
        "--summary-json", type=Path, help="also write the closing summary as JSON to this file"
    )
    replay.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    _time_range_options(replay)
    replay.add_argument(
        "--state",
        default="memory",
        metavar="URL",
        help="what stateful detectors remember: memory (forgotten at exit), sqlite:PATH or dynamodb:TABLE",
    )
    replay.add_argument(
        "--learn",
        action="store_true",
        help="stateful detectors remember the replay in --state but give no alert (a baseline for run)",
    )
    replay.add_argument(
        "--deliver",
        action="store_true",
        help="send alerts to the configured sinks (routes, suppressions, grouping) instead of JSON Lines",
    )

    validate = command("validate", help="check a configuration and its detector packs")
    _config_option(validate)

    test = command("test", help="run the example events of every detector")
    test.add_argument("packs", nargs="*", type=Path, help="pack files to test instead of the config's packs")
    _config_option(test)
    test.add_argument("--verbose", "-v", action="store_true", help="list passing examples too")

    baseline = command("baseline", help="what the first_seen detectors have learnt for one principal")
    baseline.add_argument("group", metavar="PRINCIPAL", help="the group's value, e.g. a principal's ARN")
    baseline.add_argument("--state", required=True, metavar="URL", help="sqlite:PATH or dynamodb:TABLE")
    baseline.add_argument("--at", type=_event_time, help="as of this ISO 8601 time (default: now)")
    _config_option(baseline)

    run = command("run", help="consume CloudTrail from SQS until SIGTERM (the ECS service)")
    _config_option(run, "sentinel.yaml with sources and sinks sections")

    backfill = command(
        "backfill",
        help="enqueue S3 notifications for archived CloudTrail log files: the run service reads the history",
    )
    backfill.add_argument(
        "urls", nargs="+", metavar="S3_URL", help="s3://BUCKET[/PREFIX] (CloudTrail's layout)"
    )
    backfill.add_argument("--queue", required=True, help="the SQS queue URL the run service consumes")
    backfill.add_argument("--dry-run", action="store_true", help="list the selected log files, send nothing")
    _time_range_options(backfill)

    audit = command(
        "audit", help="check the account's configuration against the same practices (identities, trail, rule)"
    )
    _config_option(audit)
    audit.add_argument("--format", choices=["table", "jsonl"], default="table", help="default: table")
    audit.add_argument(
        "--fail-on",
        choices=["none", "info", "low", "medium", "high", "critical"],
        default="high",
        help="exit 1 when a finding is at least this severe (default: high)",
    )
    audit.add_argument(
        "--deliver", action="store_true", help="also send the findings to the configured sinks"
    )
    audit.add_argument("--region", help="the region of the trail, rule and queue (default: $AWS_REGION)")
    audit.add_argument(
        "--role-arn-template", help="audit other accounts through this role: arn:aws:iam::{account}:role/NAME"
    )
    audit.add_argument(
        "--accounts",
        help="comma-separated account ids, or `all` (the Organization's), with --role-arn-template",
    )
    audit.add_argument(
        "--suggest-policy", metavar="ROLE", help="print the least-privilege policy for producer ROLE instead"
    )
    audit.add_argument("paths", nargs="*", metavar="PATH", help="CloudTrail files for --suggest-policy")

    health = command(
        "health", help="exit 0 if a running sentinel answers /healthz (an ECS container health check)"
    )
    health.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"1-65535 (default: {DEFAULT_PORT})")
    health.add_argument("--path", default="/healthz", choices=["/healthz", "/readyz"])
    health.add_argument("--url", type=_health_url, help="the whole URL instead (http://host:port/healthz)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default: 3)")
    return parser


def _time_range_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--since",
        help="s3:// only: log files written at or after this UTC time (2026-11-01, 2026-11-01T10:00Z)",
    )
    command.add_argument(
        "--until", help="s3:// only: log files written before this UTC time; a bare date includes that day"
    )


def _logging_options(parser: argparse.ArgumentParser, default_level: str) -> None:
    parser.add_argument("--log-level", default=default_level, choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=argparse.SUPPRESS if default_level == argparse.SUPPRESS else None,
        help="default: json unless stderr is a terminal",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a number from 1 to 65535")
    return port


def _event_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (2026-02-03T10:00:00Z)") from None


def _health_url(text: str) -> str:
    """http(s)://host[:port]/path; urllib would quietly wrap a port past 65535 onto another one."""
    try:
        parts = urlsplit(text)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number, or out of range
        usable = False
    if not usable:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http(s)://host[:port]/path URL with a port from 1 to 65535"
        )
    return text


def main(argv: Sequence[str] | None = None) -> int:
    # pydantic looks for plugins in every installed package's entry points when it first validates
    # (20-30 ms of each start-up); the configuration's models have no use for them
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, None if args.log_format is None else args.log_format == "json")
    if args.command == "health":  # no configuration: it must stay cheap, it runs every 30 s
        from kvs_sentinel.health import check_health

        url = args.url or f"http://127.0.0.1:{args.port}{args.path}"
        return check_health(url, args.timeout, report=lambda line: print(line, file=sys.stderr))
    if args.command == "backfill":  # no configuration: it only lists S3 and sends to SQS
        from kvs_sentinel.archive_commands import run_backfill

        return asyncio.run(run_backfill(args))
    if args.command == "run":
        exit_cleanly_on_stop_signals()  # ECS may stop a task that is still loading its configuration
    if args.command == "replay":
        try:
            _check_outputs(args)
        except UsageError as exc:
            print(f"kvs-sentinel: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        if args.command == "test" and args.packs:
            for pack in args.packs:
                if not pack.is_file():
                    raise ConfigError(f"{pack}: no such pack file")
            loaded = compile_config(
                SentinelConfig(packs=[str(p.resolve()) for p in args.packs]), Path.cwd() / "-"
            )
        else:
            # only run and replay --deliver send, only run consumes: the others check a production
            # configuration without its secrets (a CI job has no Slack webhook)
            delivers = args.command == "run" or (args.command in ("replay", "audit") and args.deliver)
            load = partial(load_config, args.config, deliver=delivers, consume=args.command == "run")
            loaded = stoppable(load) if args.command == "run" else load()
    except ConfigError as exc:
        print(f"kvs-sentinel: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "validate":
        return _validate(loaded)
    if args.command == "test":
        return _test(loaded, verbose=args.verbose)
    if args.command == "run":
        return _run(loaded)
    if args.command == "audit":
        from kvs_sentinel.audit.command import run_audit

        return asyncio.run(run_audit(args, loaded))
    if args.command == "baseline":
        return asyncio.run(_baseline(args, loaded))
    return asyncio.run(_replay(args, loaded))


def _run(loaded: LoadedConfig) -> int:
    from kvs_sentinel.service import serve  # aiohttp, prometheus and aiobotocore: only for run

    try:
        return asyncio.run(serve(loaded))
    except ConfigError as exc:
        print(f"kvs-sentinel: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeliveryError as exc:  # a sink that cannot even be built (a file that cannot be opened)
        print(f"kvs-sentinel: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _validate(loaded: LoadedConfig) -> int:
    examples = sum(len(d.spec.examples) for d in loaded.detectors)
    print(
        f"{loaded.path}: valid: {len(loaded.detectors)} detectors from {len(loaded.packs)} pack(s), "
        f"{len(loaded.lists)} named lists, {examples} examples"
    )
    for name, values in sorted(loaded.lists.items()):
        if not values:
            print(f"  note: list ${name} is empty")
    stateful = [d.id for d in loaded.detectors if d.stateful is not None]
    if stateful:
        state = loaded.config.service.state
        where = (
            "each task alone, forgotten at exit"
            if state == "memory"
            else "kept" + (", shared by every task" if state.startswith("dynamodb:") else "")
        )
        print(f"  stateful: {len(stateful)} detectors remember in service.state {state} ({where})")
    for unset in loaded.unset_env:
        needs = "run and replay --deliver need it" if unset.startswith("sinks") else "run needs it"
        print(f"  note: {unset} is not set; {needs} (the field is checked then)")
    if loaded.sources:
        sources = ", ".join(source.describe() for source in loaded.sources)
        service = loaded.config.service
        print(f"  run: {sources}; health port {service.health_port}, grace {service.grace_seconds:g} s")
    delivery = loaded.delivery
    if delivery.sinks:
        sinks = ", ".join(f"{name} ({setting.type})" for name, setting in delivery.sinks.items())
        default = ", ".join(delivery.default_route) or "none: unrouted alerts are dropped"
        print(f"  sinks: {sinks}; {len(delivery.routes)} route(s), default route: {default}")
        grouping = delivery.grouping
        print(
            "  grouping: off"
            if not grouping.window_seconds
            else f"  grouping: {grouping.window_seconds:g} s windows by detector, severity, "
            + ", ".join(grouping.key)
        )
    suppressions = Suppressions(delivery.suppressions)
    today = suppressions.today()
    for suppression in suppressions.all:
        expires = suppression.spec.expires
        if expires < today:
            print(
                f"  warning: {suppression.label} expired on {expires} and no longer applies: "
                "renew or remove it"
            )
        elif (expires - today).days <= 7:
            print(f"  note: {suppression.label} expires on {expires}")
    return EXIT_OK


def _test(loaded: LoadedConfig, *, verbose: bool) -> int:
    from kvs_sentinel.examples import run_examples  # only `test` runs the examples

    results = run_examples(loaded.detectors)
    failed = [result for result in results if not result.passed]
    for result in results:
        if verbose or not result.passed:
            status = "ok  " if result.passed else "FAIL"
            line = f"{status} {result.detector} :: {result.example} [{result.form}]"
            print(line + (f": {result.problem}" if result.problem else ""))
    untested = [
        d.id
        for d in loaded.detectors
        if not any(_must_alert(e) for e in d.spec.examples) and d.id not in loaded.sigma_detectors
    ]
    for detector_id in untested:
        print(f"FAIL {detector_id}: no example that must match")
    sigma = [d for d in loaded.detectors if d.id in loaded.sigma_detectors]
    if sigma:
        print(
            f"note: {len(sigma)} detector(s) from Sigma rules, which carry no examples: "
            "replay events of your own through them"
        )
    print(f"{len(results) - len(failed)} passed, {len(failed) + len(untested)} failed")
    return EXIT_FAILED if failed or untested else EXIT_OK


async def _baseline(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    try:
        check_state_url(args.state)
        store = await open_store(args.state)
    except (ValueError, StateError) as exc:
        print(f"kvs-sentinel: --state: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        found = await baselines(store, loaded.detectors, args.group, args.at or time.time())
    except StateError as exc:
        print(f"kvs-sentinel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.aclose()
    if not found:
        print(f"{args.group}: nothing learnt in {args.state}")
    for baseline in found:
        status = "still learning" if baseline.learning else "learnt: a new value alerts"
        print(f"{baseline.detector} ({baseline.grouped_by}): {len(baseline.values)} value(s), {status}")
        for value in baseline.values:
            print(f"  {value}")
    return EXIT_OK


def _must_alert(example: ExampleSpec) -> bool:
    return example.expect == "match" or any(step.alerts for step in example.steps or ())


def _progress_bar(shown: bool, total: int | None) -> Any:
    """A tqdm bar on a terminal; imported only then (it costs start-up time every replay would pay)."""
    if not shown:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, leave=False)


class _NoProgress:
    def update(self, count: int) -> None:
        return None

    def close(self) -> None:
        return None


def _check_outputs(args: argparse.Namespace) -> None:
    """-o and --summary-json before the replay: a bad path is known now, not after the work is done."""
    try:
        check_state_url(args.state)
    except ValueError as exc:
        raise UsageError(f"--state: {exc}") from None
    if args.learn and args.state == "memory":
        raise UsageError("--learn needs --state sqlite:PATH or dynamodb:TABLE: memory is forgotten at exit")
    if args.output and args.output != "-":
        check_writable(Path(args.output), "--output")
    if args.summary_json:
        check_writable(args.summary_json, "--summary-json")


async def _replay(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    stats = RunStats()
    show_progress = sys.stderr.isatty() and not args.no_progress
    async with AsyncExitStack() as stack:
        try:
            source = await _replay_source(args, stats, stack)
        except (UsageError, InputError) as exc:
            print(f"kvs-sentinel: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if source is None:
            print("kvs-sentinel: no input files found", file=sys.stderr)
            return EXIT_USAGE
        progress = _progress_bar(show_progress, source.total_bytes())
        if show_progress:
            source.on_bytes = progress.update
        try:
            dispatcher = _dispatcher(args, loaded)
        except (DeliveryError, ConfigError) as exc:
            print(f"kvs-sentinel: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            # grouped commits hold the file's write lock between messages: not while a pipe or S3
            # pauses, or sinks pace their deliveries, where a commit per message costs nothing anyway
            local = all(path != STDIN and not path.startswith("s3://") for path in args.paths)
            grouped = local and not args.deliver
            state = await open_store(args.state, StoreUse(group_commits=grouped))
        except StateError as exc:
            await dispatcher.aclose()
            print(f"kvs-sentinel: --state: {exc}", file=sys.stderr)
            return EXIT_USAGE
        pipeline = replay_pipeline(loaded, source, stats, dispatcher, state=state, learn=args.learn)
        unsaved = None  # the store's last commit failed (SQLite commits a replay's last group at close)
        try:
            counts = await pipeline.run()
        finally:
            progress.close()
            await dispatcher.aclose()
            try:
                await state.aclose()
            except StateError as exc:
                unsaved = exc
    if unsaved is not None:
        print(f"kvs-sentinel: --state: what the replay learnt last was not saved: {unsaved}", file=sys.stderr)
    if args.learn:
        print(f"learnt into {args.state}; stateful detectors gave no alert (--learn)", file=sys.stderr)
    print(stats.render(), file=sys.stderr)
    if args.deliver:
        print(dispatcher.render_totals(), file=sys.stderr)
    if counts.messages_failed:
        print(f"batches failed: {counts.messages_failed} (see the errors above)", file=sys.stderr)
    if args.summary_json:
        summary = stats.as_dict() | {"messages_failed": counts.messages_failed}
        try:
            args.summary_json.write_bytes(msgspec.json.encode(summary))
        except OSError as exc:  # checked before the replay, so only a change since then gets here
            print(f"kvs-sentinel: --summary-json {args.summary_json}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
    if stats.files_read == 0:
        print("kvs-sentinel: no input could be read", file=sys.stderr)
        return EXIT_USAGE
    failed = counts.messages_failed or dispatcher.counts.summaries_lost or unsaved is not None
    return EXIT_FAILED if failed else EXIT_OK


async def _replay_source(
    args: argparse.Namespace, stats: RunStats, stack: AsyncExitStack
) -> FileSource | ArchiveSource | None:
    """Local files, or CloudTrail's archive in S3 for s3:// URLs; None when nothing was found."""
    if any(path.startswith("s3://") for path in args.paths):
        from kvs_sentinel.archive_commands import archive_source, time_range_of

        archive = await archive_source(args.paths, time_range_of(args), stats, stack)
        return archive if archive.files else None
    if args.since or args.until:
        raise UsageError("--since and --until select log files in S3 by their key: give s3:// URLs")
    local = FileSource(args.paths, stats)
    return local if local.names else None


def _dispatcher(args: argparse.Namespace, loaded: LoadedConfig) -> Dispatcher:
    """JSON Lines to stdout or --output; with --deliver, the configured sinks, routes and flood control."""
    if not args.deliver:
        sinks: list[Sink] = [JsonLinesSink(args.output, format=args.format)]
        return Dispatcher.broadcast(sinks)
    if args.output or args.format != "alert":
        raise ConfigError(
            "--deliver sends to the configured sinks; --output and --format are for JSON Lines, not both"
        )
    return configured_dispatcher(loaded, "--deliver")
