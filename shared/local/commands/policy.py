"""`privacy-functions policy ...`: the declared policy versions and the policy-change notices (policy 11)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.local.server import drain_queues, load_manifest
from shared.platform.config import ConfigurationError, get_settings
from shared.platform.errors import AppError
from shared.policy import facts as policy
from shared.ports.db import get_engine
from shared.rights import policy_notices


def _settings() -> None:
    try:
        get_settings()
    except ConfigurationError as exc:
        sys.exit(f"privacy-functions: {exc}")


def cmd_versions(_args: argparse.Namespace) -> int:
    in_force = policy.version_in_force()
    print(
        json.dumps(
            [{**policy_notices.version_json(v), "in_force": v == in_force} for v in policy.POLICY_VERSIONS],
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0


def cmd_announce(args: argparse.Namespace) -> int:
    """What the announce-policy-changes CRON runs: queue every account not told yet, by chunks."""
    _settings()

    def progress(done: int) -> None:
        print(f"policy announce: {done} account(s) queued", file=sys.stderr, flush=True)

    try:
        result = policy_notices.announce(
            get_engine(), version=args.version, chunk_size=args.chunk_size, progress=progress
        )
    except AppError as exc:
        sys.exit(f"privacy-functions: {exc.message}")
    if args.drain:
        result["delivered_messages"] = drain_queues(load_manifest())
        if result["version"] is not None:
            result["accounts_not_told"] = policy_notices.pending_count(get_engine(), result["version"])
    print(json.dumps(result, indent=2))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="policy versions and policy-change notices (policy 11)")
    group = p.add_subparsers(dest="policy_command", required=True)
    group.add_parser("versions", help="the declared versions, the one in force marked").set_defaults(func=cmd_versions)
    p = group.add_parser("announce", help="mail every account not told yet of the latest substantial version in force")
    p.add_argument("--version", help="announce this substantial version instead (default: the latest in force)")
    p.add_argument("--chunk-size", type=int, default=None, help="accounts per queued message (default 200)")
    p.add_argument("--drain", action="store_true", help="then deliver the queued chunks to the worker (local queues)")
    p.set_defaults(func=cmd_announce)
