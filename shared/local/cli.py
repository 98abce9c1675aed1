"""`privacy-functions`: run the suite locally and operate it.

Reads a `.env` file from the working directory when present (without
overriding the real environment), so that `make run` and a second shell share
the same development settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from shared.identity.client import issue_dev_token
from shared.identity.dpo import create_dpo_credential
from shared.local.commands import checked_settings as _settings
from shared.local.commands import deploy as deploy_commands
from shared.local.commands import dpo as dpo_commands
from shared.local.commands import holds as holds_commands
from shared.local.commands import policy as policy_commands
from shared.local.demo import seed_demo
from shared.local.server import drain_queues, invoke, load_manifest, serve
from shared.platform.clock import parse_date_argument
from shared.platform.errors import AppError
from shared.ports.backends import get_storage
from shared.ports.db import get_engine, migrate
from shared.ports.sealed_columns import reseal_all
from shared.records.audit import verify_chain
from shared.retention.operator import format_plan, plan, run_all
from shared.rights.erasure import parse_since, replay_erasures

# Modules under shared/local/commands/, each adding its subcommands (see build_parser).
_COMMAND_GROUPS: tuple = (dpo_commands, holds_commands, policy_commands, deploy_commands)


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv  # deferred: python-dotenv is local-only, absent from the function package
    except ImportError:  # deployed package: no .env files there
        return
    load_dotenv(Path.cwd() / ".env", override=False)


def cmd_serve(args: argparse.Namespace) -> int:

    # Links built locally (downloads, unsubscribe) point at this server unless told otherwise.
    os.environ.setdefault("LOCAL_BASE_URL", f"http://{args.host}:{args.port}")
    migrate(_settings().effective_database_url)
    serve(args.port, host=args.host)
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:

    _settings()
    manifest = load_manifest()
    spec = manifest.functions.get(args.function)
    if spec is None:
        sys.exit(
            f"privacy-functions: no function {args.function!r} in serverless.yml ({', '.join(manifest.functions)})"
        )
    event = json.loads(Path(args.event).read_text())
    if args.token:
        event.setdefault("headers", {})["Authorization"] = f"Bearer {issue_dev_token(args.token)}"
    if args.verification_code:
        event.setdefault("headers", {})["X-Verification-Code"] = args.verification_code
    response = invoke(spec, event)
    print(json.dumps(response, indent=2, ensure_ascii=False))
    if args.drain:
        drain_queues(manifest)
    return 0 if int(response.get("statusCode", 200)) < 500 else 1


def cmd_migrate(_args: argparse.Namespace) -> int:

    migrate(_settings().effective_database_url)
    print(json.dumps({"migrated": True}))
    return 0


def cmd_seed_demo(_args: argparse.Namespace) -> int:

    migrate(_settings().effective_database_url)
    accounts = seed_demo(get_engine(), get_storage())
    print(json.dumps({"accounts": accounts}, indent=2, ensure_ascii=False))
    return 0


def cmd_token(args: argparse.Namespace) -> int:

    _settings()
    try:
        print(issue_dev_token(args.account_id, ttl_seconds=args.ttl))
    except Exception as exc:  # no development key, unknown account...
        sys.exit(f"privacy-functions: {exc}")
    return 0


def cmd_dpo_credential(args: argparse.Namespace) -> int:

    _settings()
    with get_engine().begin() as conn:
        token = create_dpo_credential(conn, args.label)
    print(token)
    return 0


def cmd_audit_verify(_args: argparse.Namespace) -> int:

    _settings()
    with get_engine().connect() as conn:
        result = verify_chain(conn)
    print(json.dumps(result.to_json() if hasattr(result, "to_json") else result.__dict__, default=str))
    return 0 if result.ok else 1


def cmd_secrets_reseal(_args: argparse.Namespace) -> int:

    _settings()
    print(json.dumps(reseal_all(get_engine())))
    return 0


def cmd_replay_erasures(args: argparse.Namespace) -> int:

    _settings()
    try:
        since = parse_since(args.since)
    except AppError as exc:
        sys.exit(f"privacy-functions: {exc.message}")
    print(json.dumps(replay_erasures(get_engine(), since=since).to_json()))
    return 0


def cmd_retention_plan(args: argparse.Namespace) -> int:

    _settings()
    try:
        at = parse_date_argument(args.at, name="--at") if args.at else None
    except ValueError as exc:
        sys.exit(f"privacy-functions: {exc}")
    entries = plan(get_engine(), at=at)
    print(json.dumps(entries, indent=2, default=str) if args.json else format_plan(entries, at=at))
    return 0


def cmd_retention_run(args: argparse.Namespace) -> int:

    _settings()

    def progress(category: str, done: int) -> None:
        print(f"retention: {category}: {done}", file=sys.stderr, flush=True)

    result = run_all(get_engine(), progress=progress)
    if args.drain:
        result["delivered_messages"] = drain_queues(load_manifest())
    print(json.dumps(result, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="privacy-functions", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run every function of serverless.yml locally, with CRON and queues")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("invoke", help="one invocation of a function with an event file (events/<function>/<case>.json)")
    p.add_argument("function")
    p.add_argument("--event", required=True)
    p.add_argument("--token", metavar="ACCOUNT_ID", help="add a development client token for this account")
    p.add_argument("--verification-code", help="add an X-Verification-Code header")
    p.add_argument("--drain", action="store_true", help="then deliver the queued messages to their workers")
    p.set_defaults(func=cmd_invoke)

    sub.add_parser("migrate", help="apply the database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("seed-demo", help="create demo accounts and print them as JSON").set_defaults(func=cmd_seed_demo)

    p = sub.add_parser("token", help="print a client-area token signed with the development key")
    p.add_argument("account_id")
    p.add_argument("--ttl", type=int, default=3600)
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("dpo-credential", help="create a DPO credential and print it once")
    p.add_argument("--label", default="dpo")
    p.set_defaults(func=cmd_dpo_credential)

    p = sub.add_parser(
        "replay-erasures", help="after a backup restore, re-apply every erasure of the ledger since DATE"
    )
    p.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD or an ISO 8601 timestamp (UTC)")
    p.set_defaults(func=cmd_replay_erasures)

    p = sub.add_parser("retention", help="the retention schedule of policy 5 (the three daily CRON jobs)")
    retention = p.add_subparsers(dest="retention_command", required=True)
    p = retention.add_parser("plan", help="what is due per category, with counts and the rule; changes nothing")
    p.add_argument("--at", metavar="DATE", help="plan at this date (YYYY-MM-DD or ISO 8601, UTC) instead of now")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_retention_plan)
    p = retention.add_parser("run", help="apply it now: the code the CRON functions run, with progress")
    p.add_argument("--drain", action="store_true", help="then deliver queued chunks to their worker (local queues)")
    p.set_defaults(func=cmd_retention_run)

    p = sub.add_parser("audit", help="audit trail operations")
    audit = p.add_subparsers(dest="audit_command", required=True)
    audit.add_parser("verify", help="verify the hash chain; names the first broken entry").set_defaults(
        func=cmd_audit_verify
    )

    p = sub.add_parser("secrets", help="secrets sealed at rest (SECRETS_KEYS)")
    secrets = p.add_subparsers(dest="secrets_command", required=True)
    secrets.add_parser(
        "reseal", help="after a key rotation: re-encrypt every sealed secret under the first key of SECRETS_KEYS"
    ).set_defaults(func=cmd_secrets_reseal)

    # Command groups kept in modules of their own: each has `register(subparsers)`.
    for group in _COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _load_dotenv()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
