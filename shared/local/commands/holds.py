"""`privacy-functions holds place|list|release` and `privacy-functions authority register|list|disclose` (policy 6.4).

The operator's side of the legal-holds function: the same domain operations, audited with the
actor `operator:cli`. `--json` prints the result as JSON; otherwise one line per item.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

from shared.platform.clock import parse_iso
from shared.platform.errors import AppError
from shared.ports.db import get_engine
from shared.records import disclosures, holds

ACTOR = "operator:cli"


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a day is written YYYY-MM-DD") from None


def _moment(value: str) -> dt.datetime:
    try:
        return parse_iso(value)
    except ValueError:
        raise argparse.ArgumentTypeError("an ISO 8601 moment with a time zone") from None


def _categories(value: str) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()]


def _print(args: argparse.Namespace, document: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
    else:
        print("\n".join(lines) if lines else "(none)")


def _run(action: Callable[[], int]) -> int:
    try:
        return action()
    except AppError as exc:
        print(json.dumps(exc.to_body()), file=sys.stderr)
        return 2


def _hold_line(hold: holds.LegalHold) -> str:
    subject = f"account {hold.account_id}" if hold.account_id else f"prospect {hold.prospect_id}"
    state = "in force" if hold.in_force() else "ended"
    until = hold.ends_on.isoformat() if hold.ends_on else "until released"
    return f"{hold.id}  {state:8}  {subject}  {','.join(hold.categories)}  {until}  {hold.reason}"


def cmd_place(args: argparse.Namespace) -> int:
    def action() -> int:
        with get_engine().begin() as conn:
            hold = holds.place_hold(
                conn,
                account_id=args.account,
                prospect_id=args.prospect,
                categories=args.categories,
                reason=args.reason,
                ends_on=args.ends_on,
                authority_request_id=args.authority_request,
                actor=ACTOR,
            )
        _print(args, {"hold": hold.to_json()}, [_hold_line(hold)])
        return 0

    return _run(action)


def cmd_list(args: argparse.Namespace) -> int:
    def action() -> int:
        with get_engine().connect() as conn:
            found = holds.list_holds(conn, account_id=args.account, in_force_only=args.in_force)
        _print(args, {"holds": [h.to_json() for h in found]}, [_hold_line(h) for h in found])
        return 0

    return _run(action)


def cmd_release(args: argparse.Namespace) -> int:
    def action() -> int:
        with get_engine().begin() as conn:
            hold = holds.release_hold(conn, args.hold_id, reason=args.reason, actor=ACTOR)
        _print(args, {"hold": hold.to_json()}, [_hold_line(hold)])
        return 0

    return _run(action)


def _request_line(request: disclosures.AuthorityRequest) -> str:
    return (
        f"{request.id}  {request.received_on}  {request.authority_kind}  {request.authority_name}  "
        f"{request.reference}  {len(request.disclosures)} disclosure(s)"
    )


def cmd_register(args: argparse.Namespace) -> int:
    def action() -> int:
        with get_engine().begin() as conn:
            request = disclosures.register_request(
                conn,
                authority_kind=args.kind,
                authority_name=args.name,
                reference=args.reference,
                legal_basis=args.legal_basis,
                received_on=args.received_on,
                actor=ACTOR,
            )
        _print(args, {"authority_request": request.to_json()}, [_request_line(request)])
        return 0

    return _run(action)


def cmd_authority_list(args: argparse.Namespace) -> int:
    def action() -> int:
        with get_engine().connect() as conn:
            found = disclosures.list_requests(conn)
        _print(args, {"authority_requests": [r.to_json() for r in found]}, [_request_line(r) for r in found])
        return 0

    return _run(action)


def cmd_disclose(args: argparse.Namespace) -> int:
    def action() -> int:
        with get_engine().begin() as conn:
            disclosure = disclosures.record_disclosure(
                conn,
                args.request_id,
                categories=args.categories,
                disclosed_at=args.disclosed_at,
                method=args.method,
                account_id=args.account,
                prospect_id=args.prospect,
                actor=ACTOR,
            )
        _print(
            args,
            {"disclosure": disclosure.to_json()},
            [
                f"{disclosure.id}  {disclosure.disclosed_at.isoformat()}  {disclosure.method}  {','.join(disclosure.categories)}"
            ],
        )
        return 0

    return _run(action)


def register(sub: Any) -> None:
    p = sub.add_parser("holds", help="legal holds (policy 6.4): erasure and retention skip exactly the held data")
    group = p.add_subparsers(dest="holds_command", required=True)

    p = group.add_parser("place", help="place a hold on an account's (or a prospect's) data of some categories")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", metavar="ACCOUNT_ID")
    who.add_argument("--prospect", metavar="PROSPECT_ID")
    p.add_argument("--categories", required=True, type=_categories, help="data-map category ids, comma-separated")
    p.add_argument("--reason", required=True, help="why (no personal data)")
    p.add_argument(
        "--ends-on", type=_day, metavar="YYYY-MM-DD", help="in force through this day (default: until released)"
    )
    p.add_argument("--authority-request", metavar="ID", help="the authority request it answers")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_place)

    p = group.add_parser("list", help="the holds (of an account; in force only)")
    p.add_argument("--account", metavar="ACCOUNT_ID")
    p.add_argument("--in-force", action="store_true")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = group.add_parser("release", help="release a hold: its data is back under its rules at the next run")
    p.add_argument("hold_id")
    p.add_argument("--reason", required=True, help="why (no personal data)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("authority", help="the register of authority requests and disclosures (policy 6.4)")
    group = p.add_subparsers(dest="authority_command", required=True)

    p = group.add_parser("register", help="register a request received from an authority")
    p.add_argument("--kind", required=True, choices=disclosures.AUTHORITY_KINDS)
    p.add_argument("--name", required=True, help="the authority (an institution, not a person)")
    p.add_argument("--reference", required=True)
    p.add_argument("--legal-basis", required=True)
    p.add_argument("--received-on", required=True, type=_day, metavar="YYYY-MM-DD")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_register)

    p = group.add_parser("list", help="the register, with each request's disclosures")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_authority_list)

    p = group.add_parser("disclose", help="record what was disclosed for a request, when and how")
    p.add_argument("request_id")
    p.add_argument("--categories", required=True, type=_categories, help="data-map category ids, comma-separated")
    p.add_argument("--disclosed-at", required=True, type=_moment, metavar="ISO8601")
    p.add_argument("--method", required=True, choices=disclosures.METHODS)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--account", metavar="ACCOUNT_ID")
    who.add_argument("--prospect", metavar="PROSPECT_ID")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_disclose)
