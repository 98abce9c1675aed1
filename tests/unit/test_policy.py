"""The policy module says what docs/privacy-policy-v1.1.txt says: every table, row by row."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from shared.platform.config import EU_REGIONS
from shared.policy import facts as policy

POLICY_TEXT = (Path(__file__).resolve().parents[2] / "docs" / "privacy-policy-v1.1.txt").read_text(encoding="utf-8")
HEADING = re.compile(r"^(\d+(?:\.\d+)?)\.? ")
UTC = dt.UTC


def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every markdown table of the policy, keyed by the number of the section it sits in."""
    tables: dict[str, list[dict[str, str]]] = {}
    section, rows = None, []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if rows:
            header, separator, *body = rows
            assert all(set(cell) <= {"-", ":"} for cell in separator)
            assert section not in tables, f"two tables in section {section}"
            tables[section] = [dict(zip(header, row, strict=True)) for row in body]
            rows = []
        if match := HEADING.match(line):
            section = match.group(1)
    return tables


TABLES = _tables(POLICY_TEXT)


def _months(period: str) -> int:
    match = re.match(r"(\d+) (year|month)s?", period)
    assert match, period
    return int(match.group(1)) * (12 if match.group(2) == "year" else 1)


def test_every_table_of_the_policy_is_checked():
    assert set(TABLES) == {"2.1", "2.2", "2.3", "4", "5", "6.2"}


@pytest.mark.parametrize("section", ["2.1", "2.2", "2.3"])
def test_data_category_tables(section):
    listed = [c for c in policy.categories_in_section(section) if c.in_table]
    assert [
        {"Data": c.label.en, "Purpose": c.purpose.en, "Legal basis": policy.LEGAL_BASES[c.legal_basis].label.en}
        for c in listed
    ] == TABLES[section]


def test_card_data_is_never_stored():
    card = policy.category("payment.card")
    assert card.note.en in POLICY_TEXT
    assert card.retention == ()


def test_documents_section_covers_third_parties():
    ids = {c.id for c in policy.categories_in_section("2.4")}
    assert {"documents.invoices", "documents.third_parties"} <= ids
    assert policy.category("documents.third_parties").note.en.startswith("The user is responsible")


def test_legal_bases_table():
    assert [
        {
            "Processing": p.label.en,
            "Legal basis": policy.LEGAL_BASES[p.legal_basis].label.en,
            "GDPR article": policy.LEGAL_BASES[p.legal_basis].gdpr_article,
        }
        for p in policy.PROCESSINGS
    ] == TABLES["4"]


def test_retention_table():
    rules = [r for r in policy.RETENTION_RULES if r.from_policy]
    assert [{"Data type": r.data_type.en, "Retention period": r.period.en} for r in rules] == TABLES["5"]
    for rule, row in zip(rules, TABLES["5"], strict=True):
        period = row["Retention period"]
        if period.startswith("Duration of the contractual relationship"):
            assert rule.active_months is None
            continue
        assert rule.active_months == _months(period), rule.id
        archive = re.search(r"\+ (\d+)-year archives", period)
        assert rule.archive_months == (int(archive.group(1)) * 12 if archive else 0), rule.id
        if "(LCEN)" in period:
            assert "LCEN" in rule.legal_reference
        if "legal obligation" in period:
            assert rule.legal_basis == "legal_obligation"


def test_retention_rule_details():
    assert policy.retention_rule("inactive_account").warning_days_before == (30, 7)
    assert policy.retention_rule("invoices").clock_columns == ("invoices.issue_date",)
    assert "L123-22" in policy.retention_rule("invoices").legal_reference
    assert policy.retention_rule("payment_data").clock_columns == (
        "payment_records.transaction_at",
        "payment_records.disputed_until",
    )
    assert policy.retention_rule("prospects").clock_columns == ("prospects.last_contact_at",)
    operational = {r.id for r in policy.RETENTION_RULES if not r.from_policy}
    assert {"exports", "request_records"} <= operational
    assert policy.retention_rule("request_records").active_months == 60


def test_subprocessors_table():
    assert [
        {
            "Subprocessor": s.name,
            "Service": s.service.en,
            "Location": s.location.en,
            "Compliance": ", ".join(s.compliance),
        }
        for s in policy.SUBPROCESSORS
    ] == TABLES["6.2"]
    assert all(s.in_eu for s in policy.SUBPROCESSORS)


def test_version_controller_and_transfers():
    match = re.search(r"Effective date: (\d+ \w+ \d{4}) — v([\d.]+)", POLICY_TEXT)
    assert dt.datetime.strptime(match.group(1), "%d %B %Y").date() == policy.POLICY_EFFECTIVE_DATE
    assert match.group(2) == policy.POLICY_VERSION
    c = policy.CONTROLLER
    for fact in (
        c.name,
        c.share_capital,
        c.registration,
        c.vat_number,
        c.registered_office,
        c.representative,
        c.dpo_email,
        c.contact_email,
        c.website,
    ):
        assert fact in POLICY_TEXT, fact
    assert c.registration.replace(" ", "").endswith(c.siren)
    assert policy.NO_TRANSFER_OUTSIDE_EU.en in POLICY_TEXT
    assert policy.INTERNAL_ACCESS.en in POLICY_TEXT
    assert policy.AUTHORITIES_STATEMENT.en in POLICY_TEXT
    assert policy.HOSTING_REGIONS is EU_REGIONS


def test_purposes_match_section_3():
    for section in ("3.1", "3.2", "3.3", "3.4"):
        body = POLICY_TEXT.split(f"\n{section} ", 1)[1].split("\n3.", 1)[0].split("\n4.", 1)[0]
        bullets = [line[2:] for line in body.splitlines() if line.startswith("- ")]
        assert [p.label.en for p in policy.PURPOSES if p.section == section] == bullets, section
    assert policy.CONSENT_PURPOSES == ("newsletter", "analytics")


def test_rights_8_1_to_8_8():
    found = re.findall(r"^8\.(\d) (Right(?: [a-z]+)+)(?: \(Art\. (\d+)\))? ([A-Z].+)$", POLICY_TEXT, re.M)
    assert len(found) == 8
    for right, (number, label, article, description) in zip(policy.RIGHTS, found, strict=True):
        assert right.section == f"8.{number}"
        assert right.label.en == label
        assert right.description.en.rstrip(".") == description.rstrip(".:")
        if article:
            assert right.article_in_policy and right.gdpr_article == f"Art. {article}"
        else:
            assert not right.article_in_policy


def test_exercising_rights_and_cnil():
    assert f"Website: {policy.CNIL.website}" in POLICY_TEXT
    assert f"Address: {policy.CNIL.address}" in POLICY_TEXT
    assert f"By email: {policy.CONTROLLER.dpo_email}" in POLICY_TEXT
    assert (
        "By post: QR Communication SAS For the attention of the DPO 23 rue de Richelieu 75001 Paris, France"
        in POLICY_TEXT
    )
    assert policy.RESPONSE_TIME.en in POLICY_TEXT
    assert policy.IDENTITY_VERIFICATION.en in POLICY_TEXT
    assert (policy.RESPONSE_MONTHS, policy.EXTENSION_MAX_MONTHS) == (1, 2)


@pytest.mark.parametrize(
    "rule, start, archive, end",
    [
        # 13 months after 31 Jan 2025 is 28 Feb 2026; + 60 months is 28 Feb 2031.
        ("payment_data", dt.date(2025, 1, 31), dt.date(2026, 2, 28), dt.date(2031, 2, 28)),
        # Lands on a leap day, then a common year.
        ("payment_data", dt.date(2027, 1, 31), dt.date(2028, 2, 29), dt.date(2033, 2, 28)),
        # From a leap day: the period ends on 28 February.
        ("invoices", dt.date(2028, 2, 29), dt.date(2038, 2, 28), dt.date(2038, 2, 28)),
        (
            "connection_logs",
            dt.datetime(2024, 2, 29, 13, 5, tzinfo=UTC),
            dt.datetime(2025, 2, 28, 13, 5, tzinfo=UTC),
            dt.datetime(2025, 2, 28, 13, 5, tzinfo=UTC),
        ),
        ("inactive_account", dt.date(2025, 3, 31), dt.date(2028, 3, 31), dt.date(2028, 3, 31)),
        (
            "exports",
            dt.datetime(2026, 12, 28, tzinfo=UTC),
            dt.datetime(2027, 1, 4, tzinfo=UTC),
            dt.datetime(2027, 1, 4, tzinfo=UTC),
        ),
    ],
)
def test_period_arithmetic(rule, start, archive, end):
    assert policy.archive_at(rule, start) == archive
    assert policy.expires_at(rule, start) == end


def test_total_period_is_counted_from_the_clock_start():
    # 31 Mar 2025 + 13 months = 30 Apr 2026 (clamped); the total must not inherit the clamp.
    start = dt.date(2025, 3, 31)
    assert policy.archive_at("payment_data", start) == dt.date(2026, 4, 30)
    assert policy.expires_at("payment_data", start) == dt.date(2031, 4, 30)
    start = dt.date(2025, 5, 31)
    assert policy.archive_at("payment_data", start) == dt.date(2026, 6, 30)
    assert policy.expires_at("payment_data", start) == dt.date(2031, 6, 30)


def test_dispute_moves_the_payment_clock():
    transaction = dt.datetime(2025, 1, 10, tzinfo=UTC)
    dispute_closed = dt.datetime(2025, 4, 2, tzinfo=UTC)
    start = policy.clock_start(transaction, dispute_closed)
    assert start == dispute_closed
    assert policy.archive_at("payment_data", start) == dt.datetime(2026, 5, 2, tzinfo=UTC)
    assert policy.clock_start(transaction, None) == transaction
    assert policy.retention_rule("payment_data").hold_while


def test_inactivity_warnings():
    last_activity = dt.datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert policy.warning_dates("inactive_account", last_activity) == (
        dt.datetime(2027, 1, 30, 9, 0, tzinfo=UTC),
        dt.datetime(2027, 2, 22, 9, 0, tzinfo=UTC),
    )


def test_contract_duration_has_no_date():
    with pytest.raises(ValueError):
        policy.expires_at("active_account", dt.date(2026, 1, 1))


def test_configured_rules():
    longer = policy.configured_rule("invoices", active_months=132)
    assert policy.expires_at(longer, dt.date(2026, 1, 15)) == dt.date(2037, 1, 15)
    assert policy.expires_at("invoices", dt.date(2026, 1, 15)) == dt.date(2036, 1, 15)
    with pytest.raises(ValueError):
        policy.configured_rule("invoices", active_months=100)
    with pytest.raises(ValueError):
        policy.configured_rule("connection_logs", active_months=6)
    assert policy.configured_rule("request_records", active_months=72).active_months == 72


def test_ids_are_unique():
    for items in (
        policy.CATEGORIES,
        policy.PURPOSES,
        policy.RETENTION_RULES,
        policy.SUBPROCESSORS,
        policy.RIGHTS,
        policy.PROCESSINGS,
    ):
        ids = [item.id for item in items]
        assert len(ids) == len(set(ids))


def test_references_resolve():
    rule_ids = {r.id for r in policy.RETENTION_RULES}
    for c in policy.CATEGORIES:
        assert c.legal_basis in policy.LEGAL_BASES
        assert set(c.retention) <= rule_ids, c.id
    for item in (*policy.PURPOSES, *policy.PROCESSINGS, *policy.RETENTION_RULES):
        assert item.legal_basis in policy.LEGAL_BASES


@pytest.mark.parametrize("language", ["en", "fr"])
def test_art15_information(language):
    info = policy.art15_information(language)
    assert json.loads(json.dumps(info)) == info
    assert info["policy"]["version"] == "1.1"
    assert {p["id"] for p in info["purposes"]} >= {"newsletter", "analytics"}
    assert [r["id"] for r in info["rights"]] == [r.id for r in policy.RIGHTS]
    assert {s["name"] for s in info["recipients"]["subprocessors"]} == {s.name for s in policy.SUBPROCESSORS}
    assert {r["id"] for r in info["retention"]} == {r.id for r in policy.RETENTION_RULES}
    assert all(c["retention"] is not None for c in info["categories"])
    assert info["complaint"]["address"] == policy.CNIL.address
    assert info["how_to_exercise"]["email"] == "dpo@jefacturebien.fr"
    assert info["hosting_regions"] == list(EU_REGIONS)


def test_art15_information_is_translated():
    en, fr = policy.art15_information("en"), policy.art15_information("fr")
    assert en["rights"][0]["label"] == "Right of access"
    assert fr["rights"][0]["label"] == "Droit d'accès"
    assert [c["id"] for c in en["categories"]] == [c["id"] for c in fr["categories"]]
    with pytest.raises(ValueError):
        policy.art15_information("de")
