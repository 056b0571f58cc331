"""`trainbot`: console, serve, config check and backup (the demo is `python -m demo`, from a source checkout)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import version
from pathlib import Path

from bot.words.config import config_error_text
from runner.config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trainbot", description="Run ms-swift fine-tuning jobs from Slack or a terminal.")
    p.add_argument("--version", action="version", version=f"trainbot {version('trainbot')}")
    p.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("TRAINBOT_CONFIG"),
        help="TOML config file (default: $TRAINBOT_CONFIG, else built-in defaults)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("console", help="type /train commands (without the slash) in a terminal or pipe them in")
    c.add_argument(
        "--wait",
        action="store_true",
        help="at the end of input, wait until every job and export has ended before exiting",
    )
    s = sub.add_parser(
        "serve",
        help="run the HTTP API, and the Slack bot when Slack tokens are set "
        "(Socket Mode with SLACK_APP_TOKEN, else HTTP)",
    )
    s.add_argument("--host", help="where the HTTP API listens (default from [http] host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="the HTTP API's port (default from [http] port, 8000; 0: any free one)")
    s.add_argument("--slack-api-url", help="Slack Web API base URL (tests, other Slack domains)")
    s.add_argument("--slack-port", type=int, help="Slack HTTP mode port (default from [slack] http_port, 3000)")
    cfg = sub.add_parser("config", help="check the configuration")
    cfg_sub = cfg.add_subparsers(dest="config_cmd", required=True)
    check = cfg_sub.add_parser(
        "check",
        help="validate a config file and print the effective configuration "
        "(defaults included, secrets masked); exit 2 if it is refused",
    )
    check.add_argument("file", type=Path, nargs="?", help="the TOML file (default: --config, $TRAINBOT_CONFIG)")
    b = sub.add_parser(
        "backup",
        help="copy the job database to FILE while the bot runs (SQLite's online backup; "
        "the copy is checked, then moved into place)",
    )
    b.add_argument("file", type=Path, help="where the copy goes (a new file, unless --replace)")
    b.add_argument("--replace", action="store_true", help="replace FILE if it exists")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.cmd == "config":
            from bot.config_check import effective_config_text

            print(effective_config_text(args.file or args.config), end="")
            return 0
        config = load_config(args.config)
        if args.cmd == "backup":
            return _backup(config.db_path, args.file, replace=args.replace)
        if args.cmd == "console":
            from bot.console import main as run_console

            return run_console(config, wait=args.wait)
        from bot.serve import main as run_serve

        return run_serve(config, api_url=args.slack_api_url, slack_port=args.slack_port, host=args.host, port=args.port)
    except ConfigError as exc:
        print(f"trainbot: {config_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _backup(db_path: Path, target: Path, *, replace: bool) -> int:
    from storage.backup import CopyFailed, NoDatabase, TargetExists, backup

    try:
        done = backup(db_path, target.absolute(), replace=replace)
    except NoDatabase as exc:
        why = f"there is no database at {exc.path}: check --config (its [paths] data_dir), or start the bot once"
    except TargetExists as exc:
        why = f"{exc.path} already exists: name a new file, or pass --replace to overwrite it"
    except CopyFailed as exc:
        check = "the copy failed SQLite's quick_check: " if exc.quick_check else ""
        why = f"could not back up to {exc.target}: {check}{exc.reason}; nothing was written there"
    else:
        print(
            f"backed up {done.jobs} job{'s' * (done.jobs != 1)} ({done.size_bytes / 1024:.0f} KiB, schema "
            f"version {done.schema_version}) from {db_path} to {done.target}"
        )
        return 0
    print(f"trainbot: {why}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
