"""`privacy-functions dpo ...`: the DPO desk from a shell, the same operations as the `dpo-desk` routes.

Each subcommand prints JSON (`--json` is accepted for symmetry: the output is always JSON).
Errors print `{"error": {"code", "message"}}` and exit 2, like a 4xx answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from shared.desk import digest, operations
from shared.local.commands import checked_settings
from shared.platform.clock import parse_date_argument
from shared.platform.errors import AppError
from shared.policy.facts import IDENTITY_VERIFICATION_METHODS
from shared.ports.db import get_engine
from shared.records.registry import KINDS, REJECTION_REASON_CODES

ACTOR = "dpo:cli"


def _run(produce: Callable[[], dict[str, Any]]) -> int:
    checked_settings()
    try:
        result = produce()
    except AppError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}}), file=sys.stdout)
        return 2
    except ValueError as exc:  # a date argument
        print(json.dumps({"error": {"code": "invalid_argument", "message": str(exc)}}))
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0


def _identifiers(args: argparse.Namespace) -> dict[str, str] | None:
    given = {
        "email": args.email,
        "phone": args.phone,
        "siret": args.siret,
        "name": args.name,
        "postal_address": args.postal_address,
    }
    given = {key: value for key, value in given.items() if value is not None}
    return given or None


def cmd_register(args: argparse.Namespace) -> int:
    return _run(
        lambda: operations.register(
            actor=ACTOR,
            kind=args.kind,
            channel=args.channel,
            received_at=parse_date_argument(args.received_at, name="--received-at") if args.received_at else None,
            account_id=args.account_id,
            identifiers=_identifiers(args),
        )
    )


def cmd_requests(args: argparse.Namespace) -> int:
    return _run(
        lambda: operations.list_requests(
            state=args.state,
            kind=args.kind,
            channel=args.channel,
            due_within_days=args.due_within,
            overdue=args.overdue,
        )
    )


def cmd_show(args: argparse.Namespace) -> int:
    return _run(lambda: operations.view(operations.checked_request_id(args.request_id)))


def cmd_verify_identity(args: argparse.Namespace) -> int:
    return _run(
        lambda: operations.verify_identity(
            operations.checked_request_id(args.request_id), method=args.method, actor=ACTOR
        )
    )


def cmd_extend(args: argparse.Namespace) -> int:
    return _run(
        lambda: operations.extend(
            operations.checked_request_id(args.request_id), months=args.months, reason=args.reason, actor=ACTOR
        )
    )


def cmd_reject(args: argparse.Namespace) -> int:
    return _run(
        lambda: operations.reject(
            operations.checked_request_id(args.request_id), reason_code=args.reason_code, note=args.note, actor=ACTOR
        )
    )


def cmd_complete(args: argparse.Namespace) -> int:
    return _run(
        lambda: operations.complete(operations.checked_request_id(args.request_id), note=args.note, actor=ACTOR)
    )


def cmd_rectify(args: argparse.Namespace) -> int:
    def produce() -> dict[str, Any]:
        try:
            fields = json.loads(args.fields)
        except json.JSONDecodeError:
            raise ValueError("--fields must be a JSON object") from None
        return operations.rectify(operations.checked_request_id(args.request_id), fields=fields, actor=ACTOR)

    return _run(produce)


def cmd_decide_objection(args: argparse.Namespace) -> int:
    return _run(
        lambda: operations.decide_objection(
            operations.checked_request_id(args.request_id), outcome=args.outcome, grounds=args.grounds, actor=ACTOR
        )
    )


def cmd_search(args: argparse.Namespace) -> int:
    return _run(lambda: operations.search(_identifiers(args) or {}, actor=ACTOR))


def cmd_resume(args: argparse.Namespace) -> int:
    return _run(lambda: operations.resume(operations.checked_request_id(args.request_id), actor=ACTOR))


def cmd_register_of_processing(args: argparse.Namespace) -> int:
    checked_settings()
    _content_type, text = operations.register_of_processing(fmt=args.format, language=args.language)
    print(text)
    return 0


def _identifier_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email")
    parser.add_argument("--phone")
    parser.add_argument("--siret")
    parser.add_argument("--name")
    parser.add_argument("--postal-address")


def cmd_notices(args: argparse.Namespace) -> int:
    return _run(lambda: operations.deliver_notices(operations.checked_request_id(args.request_id)))


def cmd_archive_link(args: argparse.Namespace) -> int:
    return _run(lambda: operations.archive_link(operations.checked_request_id(args.request_id), actor=ACTOR))


def cmd_digest(_args: argparse.Namespace) -> int:
    return _run(lambda: digest.daily(get_engine()))


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (always the case)")


def register(sub: Any) -> None:
    p = sub.add_parser("dpo", help="the DPO desk: requests by email or post, identity, deadlines, notices")
    dpo = p.add_subparsers(dest="dpo_command", required=True)

    p = dpo.add_parser("register", help="register a request received by email or post; prints its JSON view")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--channel", required=True, choices=operations.INTAKE_CHANNELS)
    p.add_argument("--received-at", metavar="DATE", help="the day it arrived (YYYY-MM-DD or ISO 8601); default now")
    p.add_argument("--account-id")
    _identifier_options(p)
    _json_flag(p)
    p.set_defaults(func=cmd_register)

    p = dpo.add_parser("requests", help='open requests, soonest due first: {"requests": [...]}')
    p.add_argument("--overdue", action="store_true")
    p.add_argument("--due-within", type=int, metavar="DAYS")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--channel")
    p.add_argument("--state")
    _json_flag(p)
    p.set_defaults(func=cmd_requests)

    p = dpo.add_parser("show", help="one request with its notices and timeline")
    p.add_argument("request_id")
    _json_flag(p)
    p.set_defaults(func=cmd_show)

    p = dpo.add_parser("verify-identity", help="record how identity was checked; the work starts")
    p.add_argument("request_id")
    p.add_argument("--method", required=True, choices=IDENTITY_VERIFICATION_METHODS)
    _json_flag(p)
    p.set_defaults(func=cmd_verify_identity)

    p = dpo.add_parser("extend", help="extend the deadline by 1 or 2 months; the person is told")
    p.add_argument("request_id")
    p.add_argument("--months", required=True, type=int, choices=(1, 2))
    p.add_argument("--reason", required=True)
    _json_flag(p)
    p.set_defaults(func=cmd_extend)

    p = dpo.add_parser("reject", help="refuse with a reason code; the person is told (CNIL, judicial remedy)")
    p.add_argument("request_id")
    p.add_argument("--reason-code", required=True, choices=REJECTION_REASON_CODES)
    p.add_argument("--note")
    _json_flag(p)
    p.set_defaults(func=cmd_reject)

    p = dpo.add_parser("complete", help="close a verified request answered by hand, saying what was done")
    p.add_argument("request_id")
    p.add_argument("--note", required=True)
    _json_flag(p)
    p.set_defaults(func=cmd_complete)

    p = dpo.add_parser(
        "rectify", help="apply the corrections of a verified rectification request (Stripe, Resend told)"
    )
    p.add_argument("request_id")
    p.add_argument("--fields", required=True, metavar="JSON", help='e.g. \'{"phone": "06 12 34 56 78"}\'')
    _json_flag(p)
    p.set_defaults(func=cmd_rectify)

    p = dpo.add_parser("decide-objection", help="an objection to security or fraud prevention: accept or override")
    p.add_argument("request_id")
    p.add_argument("--outcome", required=True, choices=("accepted", "overridden"))
    p.add_argument("--grounds", help="the compelling legitimate grounds (when overridden)")
    _json_flag(p)
    p.set_defaults(func=cmd_decide_objection)

    p = dpo.add_parser("notices", help="deliver the notices a request still owes (prints letters for the post)")
    p.add_argument("request_id")
    _json_flag(p)
    p.set_defaults(func=cmd_notices)

    p = dpo.add_parser("archive-link", help="a completed export's download link, to send by other means (audited)")
    p.add_argument("request_id")
    _json_flag(p)
    p.set_defaults(func=cmd_archive_link)

    p = dpo.add_parser("search", help="where a person appears, by category and owning account (never the identifiers)")
    _identifier_options(p)
    _json_flag(p)
    p.set_defaults(func=cmd_search)

    p = dpo.add_parser("resume", help="run again the work of a verified request left unfinished (nothing repeated)")
    p.add_argument("request_id")
    _json_flag(p)
    p.set_defaults(func=cmd_resume)

    p = dpo.add_parser("register-of-processing", help="the register of processing activities (Art. 30)")
    p.add_argument("--format", choices=operations.REGISTER_FORMATS, default="md")
    p.add_argument("--language", choices=("en", "fr"), default="en")
    p.set_defaults(func=cmd_register_of_processing)

    p = dpo.add_parser("digest", help="what the daily CRON does: owed notices, then the DPO's digest")
    _json_flag(p)
    p.set_defaults(func=cmd_digest)
