"""The console's activity chart (inline SVG, no script): requests per month by kind, and time taken to answer.

    activity_page(now=...) -> the context of pages/dpo_console_activity

Every shape is computed here (coordinates, colours, the title each shape carries) so the template
only draws; the same figures are given as a table for whoever does not see the chart.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from shared.platform.clock import UTC, add_months, moment
from shared.ports.db import get_engine
from shared.ports.tables import dsr_requests
from shared.records import registry

MONTHS = 12
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 220, 40, 30, 10
COLOURS = {
    "access": "#1a5fb4",
    "portability": "#62a0ea",
    "erasure": "#a51d2d",
    "rectification": "#e66100",
    "restriction": "#865e3c",
    "objection": "#613583",
    "consent_withdrawal": "#26a269",
}
ANSWERED = (registry.COMPLETED, registry.REJECTED)


def _month(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m")


def _days(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 86400, 1)


def activity_page(*, now: dt.datetime | None = None) -> dict[str, Any]:
    now = moment(now)
    first = add_months(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), -(MONTHS - 1))
    months = [_month(add_months(first, i)) for i in range(MONTHS)]
    with get_engine().connect() as conn:
        rows = conn.execute(
            select(
                dsr_requests.c.kind,
                dsr_requests.c.state,
                dsr_requests.c.received_at,
                dsr_requests.c.due_at,
                dsr_requests.c.closed_at,
            ).where(dsr_requests.c.received_at >= first)
        ).all()
    counts = {m: dict.fromkeys(registry.KINDS, 0) for m in months}
    answers: list[dict[str, Any]] = []
    for row in rows:
        received = row.received_at if row.received_at.tzinfo else row.received_at.replace(tzinfo=UTC)
        month = _month(received)
        if month not in counts:
            continue
        counts[month][row.kind] += 1
        if row.state in ANSWERED and row.closed_at is not None:
            closed = row.closed_at if row.closed_at.tzinfo else row.closed_at.replace(tzinfo=UTC)
            due = row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=UTC)
            answers.append(
                {
                    "month": month,
                    "kind": row.kind,
                    "days": _days(closed - received),
                    "limit": _days(due - received),
                    "late": closed > due,
                }
            )
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    slot = plot_w / MONTHS
    top_count = max([sum(c.values()) for c in counts.values()] + [1])
    bars, labels = [], []
    for i, month in enumerate(months):
        x = LEFT + i * slot + slot * 0.15
        y = float(TOP + plot_h)
        for kind in registry.KINDS:
            n = counts[month][kind]
            if not n:
                continue
            h = plot_h * n / top_count
            y -= h
            bars.append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "w": round(slot * 0.7, 1),
                    "h": round(h, 1),
                    "fill": COLOURS[kind],
                    "title": f"{month} {kind}: {n}",
                }
            )
        labels.append({"x": round(LEFT + i * slot + slot / 2, 1), "text": month[2:]})
    top_days = max([a["days"] for a in answers] + [62.0])
    dots = []
    for a in answers:
        i = months.index(a["month"])
        dots.append(
            {
                "cx": round(LEFT + i * slot + slot / 2, 1),
                "cy": round(TOP + plot_h - plot_h * a["days"] / top_days, 1),
                "fill": "#a51d2d" if a["late"] else "#26a269",
                "late": a["late"],
                "title": f"{a['month']} {a['kind']}: {a['days']} / {a['limit']}",
            }
        )
    limit_y = round(TOP + plot_h - plot_h * 31 / top_days, 1)
    return {
        "months": months,
        "kinds": registry.KINDS,
        "colours": COLOURS,
        "counts": [{"month": m, "by_kind": counts[m], "total": sum(counts[m].values())} for m in months],
        "answers": len(answers),
        "late": sum(1 for a in answers if a["late"]),
        "median_days": sorted(a["days"] for a in answers)[len(answers) // 2] if answers else None,
        "svg": {
            "width": WIDTH,
            "height": HEIGHT,
            "left": LEFT,
            "top": TOP,
            "bottom": TOP + plot_h,
            "right": WIDTH - 10,
            "top_count": top_count,
            "top_days": round(top_days),
            "bars": bars,
            "labels": labels,
            "dots": dots,
            "limit_y": limit_y,
        },
    }
