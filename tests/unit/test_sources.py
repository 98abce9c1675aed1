"""Every category of personal data has a source (Art. 15(1)(g)), and the statement on automated decisions exists in each language."""

from shared.policy import facts, sources


def test_every_category_has_a_known_source():
    assert set(sources.CATEGORY_SOURCES) == {c.id for c in facts.CATEGORIES}
    known = {s.id for s in sources.SOURCES}
    for category, ids in sources.CATEGORY_SOURCES.items():
        assert ids and set(ids) <= known, category
    assert sources.CATEGORY_SOURCES["payment.transactions"] == ("stripe",)


def test_statements_in_each_language():
    decisions = sources.automated_decisions_json()
    assert decisions["automated_decision_making"] is False and decisions["profiling"] is False
    assert set(decisions["statement"]) == set(facts.LANGUAGES) and all(decisions["statement"].values())
    labels = sources.sources_json()["labels"]
    assert all(set(v) == set(facts.LANGUAGES) for v in labels.values())
