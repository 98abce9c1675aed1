"""The register of processing activities (shared.policy.register): complete against the policy, in three formats."""

from __future__ import annotations

import csv
import io
import json

import pytest

from shared.policy import facts as policy
from shared.policy import register as reg


@pytest.fixture(params=policy.LANGUAGES)
def register(request):
    return reg.register_of_processing(request.param)


def test_every_purpose_is_an_activity_with_its_legal_basis(register):
    by_id = {a["id"]: a for a in register["activities"]}
    for purpose in policy.PURPOSES:
        assert by_id[purpose.id]["legal_basis"]["id"] == purpose.legal_basis
        assert by_id[purpose.id]["name"] == purpose.label.get(register["language"])
    assert set(by_id) == {p.id for p in policy.PURPOSES} | {reg.REQUESTS_ACTIVITY}
    assert set(reg.ACTIVITY_DATA) == set(by_id)


def test_every_category_and_subprocessor_is_covered(register):
    categories = {c["id"] for a in register["activities"] for c in a["data_categories"]}
    assert categories == {c.id for c in policy.CATEGORIES}
    named = {s["id"] for a in register["activities"] for s in a["recipients"]["subprocessors"]}
    assert named == {s.id for s in policy.SUBPROCESSORS}
    subjects = {s["id"] for a in register["activities"] for s in a["data_subjects"]}
    assert subjects == set(reg.DATA_SUBJECTS)


def test_each_activity_is_complete(register):
    for activity in [*register["activities"], register["as_processor"]]:
        assert activity["data_subjects"] and activity["data_categories"] and activity["recipients"]["internal"]
        assert activity["transfers"]["outside_eu"] == []
        # Retention: every rule of every category the activity holds.
        rules = {r for c in activity["data_categories"] for r in policy.category(c["id"]).retention}
        assert {r["id"] for r in activity["retention"]} == rules
    assert len(register["security_measures"]) == len(policy.SECURITY_MEASURES)
    assert {m["section"] for m in register["security_measures"]} == {"7.1", "7.2", "7.3"}
    assert register["transfers_outside_eu"]["statement"] == policy.NO_TRANSFER_OUTSIDE_EU.get(register["language"])
    assert register["controller"]["dpo_email"] == policy.CONTROLLER.dpo_email


def test_marketing_and_authorities_recipients(register):
    by_id = {a["id"]: a for a in register["activities"]}
    assert {s["id"] for s in by_id["payments"]["recipients"]["subprocessors"]} == {"scaleway", "stripe"}
    assert (
        by_id["invoice_retention"]["recipients"]["authorities"] and not by_id["newsletter"]["recipients"]["authorities"]
    )
    assert {s["id"] for s in by_id["newsletter"]["data_subjects"]} == {"users", "prospects"}
    assert "documents.third_parties" in {c["id"] for c in register["as_processor"]["data_categories"]}


def test_renderers(register):
    assert json.loads(reg.render(register, "json")) == register
    rows = list(csv.DictReader(io.StringIO(reg.render(register, "csv"))))
    assert [r["id"] for r in rows] == [a["id"] for a in register["activities"]] + ["as_processor"]
    assert all(r[column] for r in rows for column in reg.CSV_COLUMNS)
    markdown = reg.render(register, "md")
    assert markdown.startswith(f"# {register['title']}")
    for activity in register["activities"]:
        assert f"## {activity['name']}" in markdown
    for measure in register["security_measures"]:
        assert measure["label"] in markdown
    with pytest.raises(ValueError):
        reg.render(register, "xml")


def test_unknown_language():
    with pytest.raises(ValueError):
        reg.register_of_processing("de")
