"""Per-site policy: threshold overrides, trusted authors, observe mode."""

from __future__ import annotations

import pytest

from serving.model.decisions import Thresholds, decide
from serving.runtime.policy import SiteRules, apply_policy, resolve_sites, unknown_labels
from serving.settings import SitePolicy

pytestmark = pytest.mark.unit

BASE = Thresholds(reject_at={"spam": 0.8, "abusive": 0.8}, review_at={"spam": 0.4, "abusive": 0.4})


def rules(mode: str = "enforce", trusted: frozenset[str] = frozenset()) -> SiteRules:
    return SiteRules(thresholds=BASE, trusted_authors=trusted, mode=mode)


def test_no_site_rules_pass_the_model_decision_through() -> None:
    decision = apply_policy("reject", "spam", None, "anyone")
    assert (decision.action, decision.decided_action, decision.label, decision.mode) == (
        "reject",
        "reject",
        "spam",
        "enforce",
    )
    assert not decision.trusted_author


def test_approved_comment_has_no_decision_label() -> None:
    assert apply_policy("approve", None, rules(), None).label is None


@pytest.mark.parametrize(
    ("model_action", "expected"),
    [
        ("reject", "review"),
        ("review", "review"),
        ("approve", "approve"),
    ],
)
def test_trusted_author_is_never_rejected(model_action: str, expected: str) -> None:
    decision = apply_policy(
        model_action,
        "spam" if model_action != "approve" else None,
        rules(trusted=frozenset({"editor"})),
        " editor ",
    )
    assert decision.action == expected and decision.decided_action == expected
    assert decision.trusted_author


def test_untrusted_or_anonymous_author_is_rejected() -> None:
    site = rules(trusted=frozenset({"editor"}))
    assert apply_policy("reject", "spam", site, "reader").action == "reject"
    assert apply_policy("reject", "spam", site, None).action == "reject"
    assert apply_policy("reject", "spam", site, "Editor").action == "reject"  # exact match only


@pytest.mark.parametrize("model_action", ["approve", "review", "reject"])
def test_observe_mode_always_approves_and_keeps_the_decision(model_action: str) -> None:
    decision = apply_policy(model_action, "spam", rules(mode="observe"), None)
    assert decision.action == "approve"
    assert decision.decided_action == model_action
    assert decision.mode == "observe"


def test_observe_mode_with_trusted_author_reports_review() -> None:
    decision = apply_policy("reject", "spam", rules(mode="observe", trusted=frozenset({"e"})), "e")
    assert (decision.action, decision.decided_action) == ("approve", "review")


def test_resolve_sites_merges_overrides_over_model_thresholds() -> None:
    sites = resolve_sites(
        BASE,
        {
            "strict": SitePolicy(reject_at={"spam": 0.5}),
            "lenient": SitePolicy(review_at={"abusive": 0.9}, mode="observe", trusted_authors=[" a "]),
        },
    )
    assert sites["strict"].thresholds.reject_at == {"spam": 0.5, "abusive": 0.8}
    assert sites["strict"].thresholds.review_at == BASE.review_at
    assert sites["lenient"].thresholds.review_at == {"spam": 0.4, "abusive": 0.9}
    assert sites["lenient"].mode == "observe" and sites["lenient"].trusted_authors == {"a"}
    scores = {"on_topic": 0.3, "spam": 0.6, "abusive": 0.1}
    assert decide(scores, BASE) == ("review", "spam")
    assert decide(scores, sites["strict"].thresholds) == ("reject", "spam")


def test_unknown_labels_are_reported() -> None:
    sites = {"a": SitePolicy(reject_at={"spma": 0.9}), "b": SitePolicy(reject_at={"spam": 0.9})}
    assert unknown_labels(sites, ("on_topic", "spam")) == {"a": ["spma"]}
