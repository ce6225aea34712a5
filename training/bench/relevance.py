"""Relevance: is `off_topic` right on comments and articles the component never trained on?

Protocol (training/experiment/relevance.py, the same as `raqib train`'s): the relation features are
fitted once on AOC's published comments grouped by article (no label; the AOC sample's articles
left out), then 5 folds grouped by article: AOC's real (comment, own article) pairs against the
same comments re-paired with a hard (same site, nearest article id) or a random article — those
off-topic labels are CONSTRUCTED — and SemEval-2015's human relevance labels, folds by question.
Every figure sits beside plain char-TF-IDF cosine in the same folds and beside the model before
this component (experiments/relevance_before.json, `python -m training.bench.relevance
--record-before BUNDLE`). Then the measured choices: feature families added one at a time, the
classifier (logistic regression vs gradient boosting), the generic-reaction rule; and the seed
cases scored by the champion bundle itself.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from serving.features.relevance import ALL_FAMILIES, DEFAULT_FAMILIES, FAMILIES
from serving.schema import OFF_TOPIC
from training.bench.quality import PUBLIC_CONFIG
from training.bench.report import Goal, Section, measured_on, missed_by, record_before_main
from training.data.contract import LabeledRecord
from training.data.relevance import HARD, RANDOM, REAL
from training.experiment.config import RelevanceConfig, load_config
from training.experiment.relevance import (
    CONTEXTS,
    RelevanceData,
    evaluate_relevance,
    features_for,
    relevance_data,
)
from training.experiment.train import split_records

BEFORE = Path("experiments/relevance_before.json")
GOAL_SEMEVAL, GOAL_TITLE, GOAL_TITLE_BODY, GOAL_HELD = 0.97, 0.85, 0.93, 0.05

# Seed cases: the seed page's article (data/seed/seed.jsonl), a sports report written for these
# checks, the football cheer and a comment arguing about the factions.
SPORTS_TITLE = "الزوراء بطلاً للدوري العراقي الممتاز لكرة القدم"
SPORTS_BODY = (
    "حسم فريق الزوراء لقب الدوري العراقي الممتاز لكرة القدم بعد فوزه على الطلبة بهدفين دون رد في "
    "المباراة التي جرت مساء أمس على ملعب الشعب الدولي في بغداد، ليبتعد بالصدارة قبل جولة من نهاية "
    "الموسم. وسجل مهاجم الزوراء الهدفين في الشوطين، وسط حضور جماهيري كبير احتفل باللقب الذي غاب عن "
    "النادي منذ عدة مواسم. وأشاد مدرب الفريق بلاعبيه وبالجمهور، وقال إن الفريق سيبدأ التحضير "
    "للمشاركة الآسيوية المقبلة."
)
CHEER = "مبروك للزوراء اللقب المستحق، أحسن فريق بالعراق"
FACTIONS_COMMENT = (
    "هذه الفصائل تجر العراق إلى مواجهة مع الأمريكان لا مصلحة للشعب فيها، والحكومة مطالبة بحصر "
    "السلاح بيد الدولة قبل أي مفاوضات مع واشنطن حول بقاء قوات التحالف"
)
# Reactions that fit under any article: thanks, prayers, congratulations, replies, laughter.
GENERIC_REACTIONS = (
    "بالتوفيق والنجاح وفقكم الله لخدمة الوطن",
    "شكرا على هذا الخبر",
    "الله يحمي بلادنا ويحفظ أهلها",
    "لا حول ولا قوة الا بالله",
    "كلامك صحيح يا أخي صاحب التعليق الأول",
    "ههههه والله حلو",
    "حسبي الله ونعم الوكيل",
)
SEED_FILE = Path("data/seed/seed.jsonl")


def seed_article() -> dict[str, str]:
    """The seed page: its comment, the article's title and body."""
    row = json.loads(SEED_FILE.read_text(encoding="utf-8").splitlines()[0])
    return {"text": row["text"], "title": row["article_title"], "body": row["article_text"]}


def seed_cases() -> list[dict[str, Any]]:
    """The product-level checks: comment, article title and body, expected 'held' or 'approved', and
    whether the case is one of the issue's goals (the title-only variants are reported beside them)."""
    seed = seed_article()
    factions, sports = (seed["title"], seed["body"]), (SPORTS_TITLE, SPORTS_BODY)
    cases = [
        ("seed comment under the seed article", seed["text"], *factions, "held", True),
        ("football cheer under the sports report", CHEER, *sports, "approved", True),
        ("football cheer under the factions story", CHEER, *factions, "held", True),
        ("comment on the factions under the factions story", FACTIONS_COMMENT, *factions, "approved", True),
        ("football cheer under the sports report, title only", CHEER, SPORTS_TITLE, "", "approved", False),
        ("football cheer under the factions story, title only", CHEER, seed["title"], "", "held", False),
        ("comment on the factions, title only", FACTIONS_COMMENT, seed["title"], "", "approved", False),
    ]
    for text in GENERIC_REACTIONS:
        for where, (title, body) in (
            ("factions story", factions),
            ("sports report", sports),
            ("sports report, title only", (SPORTS_TITLE, "")),
            ("no article", ("", "")),
        ):
            cases.append((f"generic '{text}' under the {where}", text, title, body, "approved", True))
    keys = ("case", "text", "title", "body", "expected", "goal")
    return [dict(zip(keys, c, strict=True)) for c in cases]


def _records(config_path: Path) -> list[LabeledRecord]:
    config = load_config(config_path)
    split = split_records(config, Path("."), ())
    return [*split.train, *split.frozen, *split.head_only]


def _cumulative_families() -> list[tuple[str, tuple[str, ...]]]:
    steps: list[tuple[str, tuple[str, ...]]] = []
    chosen: list[str] = []
    for name in (
        "char",
        "word",
        "bm25",
        "cover",
        "overlap",
        "lsa",
        "z",
        "esa",
        "unrelated",
        "comment",
        "script",
        "prf",
        "background",
    ):
        chosen.append(name)
        steps.append((f"+ {name}", tuple(chosen)))
    steps.append(("product default", tuple(DEFAULT_FAMILIES)))
    return steps


# Comments (title and body given) whose relation features are timed per family set.
COST_SAMPLE = 500


def family_costs(
    features: Any, frame: Any, steps: list[tuple[str, tuple[str, ...]]], repeats: int = 3
) -> dict[str, tuple[float, float]]:
    """µs per comment of the relation features of `frame`'s comments for each family set, computed
    by `features` restricted to it (`with_families`, the same fit): (all the comments in one call,
    one comment a call), medians of `repeats` passes after a warm-up pass, one thread. Article sides
    are computed beforehand, as the article cache keeps them across calls."""
    from threadpoolctl import threadpool_limits

    from serving.features.prepare import CommentPreprocessor

    prepared = CommentPreprocessor().transform(frame)
    texts = list(prepared.text)
    costs: dict[str, tuple[float, float]] = {}
    with threadpool_limits(limits=1):
        for name, families in steps:
            restricted = features.with_families(families)
            by_article: dict[tuple[str, str], Any] = {}
            for article in zip(prepared.title, prepared.body, strict=True):
                if article not in by_article:
                    by_article[article] = restricted.article_side(*article)
            sides = [by_article[article] for article in zip(prepared.title, prepared.body, strict=True)]

            def batch(restricted: Any = restricted, sides: list[Any] = sides) -> None:
                restricted.rows(texts, sides)

            def one_by_one(restricted: Any = restricted, sides: list[Any] = sides) -> None:
                for text, side in zip(texts, sides, strict=True):
                    restricted.rows([text], [side])

            timings = []
            for run in (batch, one_by_one):
                seconds = []
                for _ in range(repeats + 1):
                    started = time.perf_counter()
                    run()
                    seconds.append(time.perf_counter() - started)
                timings.append(float(np.median(seconds[1:])) / max(len(texts), 1) * 1e6)
            costs[name] = (timings[0], timings[1])
    return costs


def _left_out_families() -> list[tuple[str, tuple[str, ...]]]:
    """The product's families, then the product without each of them in turn ("context" and
    "comment" are always computed)."""
    product = tuple(DEFAULT_FAMILIES)
    steps = [("product default", product)]
    for family in product:
        if family not in ("context", "comment"):
            steps.append((f"without {family}", tuple(f for f in product if f != family)))
    return steps


def _columns_of(families: tuple[str, ...]) -> list[str]:
    return [n for f in FAMILIES if f in families or f in ("context", "comment") for n in FAMILIES[f]]


def _seed_rows(bundle: Path) -> list[dict[str, Any]]:
    from serving.model.moderation import CommentInput, ModerationModel

    model = ModerationModel.from_bundle(bundle)
    cases = seed_cases()
    scored = model.score([CommentInput(c["text"], c["title"] or None, c["body"] or None) for c in cases])
    rows = []
    for case, result in zip(cases, scored, strict=True):
        outcome = "approved" if result.action == "approve" else "held"
        rows.append(
            {
                **{k: case[k] for k in ("case", "expected", "goal")},
                "outcome": outcome,
                "label": result.label,
                "relation": result.relation,
                "off_topic": result.scores.get(OFF_TOPIC),
                "ok": outcome == case["expected"],
            }
        )
    return rows


def relevance_section(bundle: Path, config_path: Path = PUBLIC_CONFIG) -> Section:
    """The out-of-fold relevance figures, the comparisons behind the choices and the seed cases (~6 min)."""
    started = time.perf_counter()
    config = load_config(config_path).relevance.model_copy(update={"enabled": True})
    print("relevance: building pairs and corpus", flush=True)
    data = relevance_data(config, _records(config_path), 13)
    print("relevance: fitting every feature family on the corpus", flush=True)
    every = features_for(config, data, ALL_FAMILIES)
    product = evaluate_relevance(config, data, every, columns=_columns_of(tuple(DEFAULT_FAMILIES)))
    before = json.loads(BEFORE.read_text(encoding="utf-8")) if BEFORE.is_file() else {}
    lines = [
        f"{measured_on()}",
        "",
        *textwrap.wrap(__doc__.split("\n\n")[1].replace("\n", " "), 100),
        "",
        f"Data: {product['data']['pairs']:,} AOC pairs over {product['data']['pair_articles']} articles "
        f"({product['data']['pairs_constructed']:,} of them CONSTRUCTED re-pairings), "
        f"{product['data']['labelled']} SemEval pairs ({product['data']['labelled_off_topic']} irrelevant), "
        f"a corpus of {product['data']['corpus_comments']:,} published comments under "
        f"{product['data']['corpus_articles']:,} articles.",
        "",
        "| figure | relevance component | plain cosine | before |",
        "|---|---|---|---|",
    ]

    def f3(value: Any) -> str:
        return "" if value is None else f"{value:.3f}"

    def pct(value: Any) -> str:
        return "" if value is None else f"{100 * value:.1f} %"

    names = {"title_body": "title and body", "title": "title only"}
    for c in CONTEXTS:
        e, b = product[c], before.get(c, {})
        lines += [
            f"| AOC real vs hard re-pairing, {names[c]}: ROC-AUC | **{f3(e['auc_hard'])}** | "
            f"{f3(e['auc_hard_cosine'])} | {f3(b.get('auc_hard'))} |",
            f"| AOC real vs random re-pairing, {names[c]}: ROC-AUC | {f3(e['auc_random'])} | "
            f"{f3(e['auc_random_cosine'])} | {f3(b.get('auc_random'))} |",
            f"| AOC real pairs held as off_topic, {names[c]} | **{pct(e['real_held'])}** | | "
            f"{pct(b.get('real_held'))} |",
            f"| AOC hard / random re-pairings held as off_topic, {names[c]} | {pct(e['hard_caught'])} / "
            f"{pct(e['random_caught'])} | | {pct(b.get('hard_caught'))} / {pct(b.get('random_caught'))} |",
        ]
    lines.append(
        f"| AOC real comments held as off_topic, no article | **{pct(product['none']['real_held'])}** | | "
        f"{pct(before.get('none', {}).get('real_held'))} |"
    )
    sem, sem_before = product.get("labelled", {}), before.get("labelled", {})
    lines += [
        f"| SemEval irrelevant vs relevant answers: ROC-AUC | **{f3(sem.get('auc'))}** | "
        f"{f3(sem.get('auc_cosine'))} | "
        f"{f3(sem_before.get('auc'))} |",
        f"| SemEval relevant answers held as off_topic | {pct(sem.get('relevant_held'))} | | "
        f"{pct(sem_before.get('relevant_held'))} |",
        "",
        *textwrap.wrap(
            f"*before*: {before.get('model', '(experiments/relevance_before.json absent)')}, "
            "its p(off_topic) "
            "and its off_topic decisions on the same pairs; it trained on most AOC and SemEval rows (its own "
            "training split), so its figures are partly in-sample and flatter it. Held = relation "
            "`about_something_else` at the threshold chosen inside the training folds (target "
            f"{config.target_held:.0%} of real pairs per context).",
            100,
        ),
    ]
    # --- the choices, measured in the same folds
    print("relevance: feature families", flush=True)
    lines += [
        "",
        "Feature families added one at a time (same folds; ROC-AUC real vs hard re-pairing, and SemEval):",
        "",
        "| families | title and body | title only | SemEval |",
        "|---|---|---|---|",
    ]
    family_rows = []
    for name, families in _cumulative_families():
        e = evaluate_relevance(config, data, every, columns=_columns_of(families))
        family_rows.append(
            {
                "families": name,
                **{c: e[c]["auc_hard"] for c in CONTEXTS},
                "semeval": e.get("labelled", {}).get("auc"),
            }
        )
        lines.append(
            f"| {name} | {f3(e['title_body']['auc_hard'])} | {f3(e['title']['auc_hard'])} | "
            f"{f3(e.get('labelled', {}).get('auc'))} |"
        )
    print("relevance: each product family left out, with its cost", flush=True)
    left_out = _left_out_families()
    sample = data.frame("pairs", "title_body").head(COST_SAMPLE)
    costs = family_costs(every, sample, left_out)
    lines += [
        "",
        *textwrap.wrap(
            "Each family of the product left out in turn (same folds and figures), and what the relation "
            f"features cost: µs per comment for the first {len(sample)} AOC pairs with title and body, "
            "all in one call and one comment a call (the extractor fitted once and restricted to the "
            "set, the articles' sides computed beforehand as the article cache keeps them, one thread, "
            "median of 3 passes). A comment's character, word and topical vectors are computed whatever "
            "the families, so leaving one out saves only its own comparisons: making the comment's side "
            "follow the families would come first if one went.",
            100,
        ),
        "",
        "| families | title and body | title only | SemEval | µs a comment, in one call "
        "| µs, one comment a call |",
        "|---|---|---|---|---|---|",
    ]
    left_out_rows = []
    for name, families in left_out:
        e = evaluate_relevance(config, data, every, columns=_columns_of(families))
        batch_us, single_us = costs[name]
        left_out_rows.append(
            {
                "families": name,
                **{c: e[c]["auc_hard"] for c in CONTEXTS},
                "semeval": e.get("labelled", {}).get("auc"),
                "us_per_comment_batch": batch_us,
                "us_per_comment_single": single_us,
            }
        )
        lines.append(
            f"| {name} | {f3(e['title_body']['auc_hard'])} | {f3(e['title']['auc_hard'])} | "
            f"{f3(e.get('labelled', {}).get('auc'))} | {batch_us:,.0f} | {single_us:,.0f} |"
        )
    print("relevance: classifier and generic rule", flush=True)
    variants: list[tuple[str, RelevanceConfig]] = [
        ("logistic regression, generic = no specific word (product)", config),
        ("gradient boosting", config.model_copy(update={"classifier": "boosting"})),
        ("generic = at most one specific word", config.model_copy(update={"generic_max_specific": 1})),
        ("no generic rule", config.model_copy(update={"generic_max_specific": -1})),
    ]
    lines += [
        "",
        "Classifier and generic-reaction rule (default families):",
        "",
        "| variant | AUC hard, title+body | AUC hard, title | real held, title+body / title "
        "| hard caught, title+body / title | SemEval AUC |",
        "|---|---|---|---|---|---|",
    ]
    variant_rows = []
    for name, variant in variants:
        e = (
            product
            if variant is config
            else evaluate_relevance(variant, data, every, columns=_columns_of(tuple(DEFAULT_FAMILIES)))
        )
        variant_rows.append({"variant": name, **{c: e[c] for c in CONTEXTS}, "semeval": e.get("labelled")})
        lines.append(
            f"| {name} | {f3(e['title_body']['auc_hard'])} | {f3(e['title']['auc_hard'])} | "
            f"{pct(e['title_body']['real_held'])} / {pct(e['title']['real_held'])} | "
            f"{pct(e['title_body']['hard_caught'])} / {pct(e['title']['hard_caught'])} | "
            f"{f3(e.get('labelled', {}).get('auc'))} |"
        )
    # --- seed cases through the champion bundle
    seeds = _seed_rows(bundle)
    lines += [
        "",
        "Seed cases, scored by the champion bundle (base model + abusive head + relevance component); the "
        "title-only variants of the seed cases are reported, not goals:",
        "",
        "| case | expected | outcome | label | relation | off_topic score |",
        "|---|---|---|---|---|---|",
    ]
    for row in seeds:
        mark = "" if row["ok"] else " ✗"
        lines.append(
            f"| {row['case']} | {row['expected']} | {row['outcome']}{mark} | {row['label']} | "
            f"{row['relation']} | "
            f"{f3(row['off_topic'])} |"
        )
    lines += ["", f"Took {time.perf_counter() - started:.0f} s."]
    tb, t = product["title_body"], product["title"]
    worst_held = max(tb["real_held"], t["real_held"], product["none"]["real_held"])
    goal_cases = [r for r in seeds if r["goal"]]
    seed_ok = sum(r["ok"] for r in goal_cases)
    goals = [
        Goal(
            "relevance, SemEval ROC-AUC (folds by question)",
            f"{sem.get('auc', float('nan')):.3f} (cosine {sem.get('auc_cosine', float('nan')):.3f})",
            f"≥ {GOAL_SEMEVAL} and above cosine",
            _beat(sem.get("auc"), sem.get("auc_cosine"), GOAL_SEMEVAL),
        ),
        Goal(
            "relevance, AOC hard re-pairing ROC-AUC, title only",
            f"{t['auc_hard']:.3f} (cosine {t['auc_hard_cosine']:.3f})",
            f"≥ {GOAL_TITLE} and above cosine",
            _beat(t["auc_hard"], t["auc_hard_cosine"], GOAL_TITLE),
        ),
        Goal(
            "relevance, AOC hard re-pairing ROC-AUC, title and body",
            f"{tb['auc_hard']:.3f} (cosine {tb['auc_hard_cosine']:.3f})",
            f"≥ {GOAL_TITLE_BODY} and above cosine",
            _beat(tb["auc_hard"], tb["auc_hard_cosine"], GOAL_TITLE_BODY),
        ),
        Goal(
            "relevance, real on-topic pairs held as off_topic (worst context)",
            f"{100 * worst_held:.1f} %",
            f"≤ {GOAL_HELD:.0%} in every context",
            missed_by(worst_held, GOAL_HELD),
        ),
        Goal(
            "relevance, seed and generic-reaction cases as expected",
            f"{seed_ok} / {len(goal_cases)}",
            "all",
            "met" if seed_ok == len(goal_cases) else f"missed ({len(goal_cases) - seed_ok} wrong)",
        ),
    ]
    figures = {
        "product": product,
        "families": family_rows,
        "families_left_out": left_out_rows,
        "variants": variant_rows,
        "seed_cases": seeds,
        "before": before,
    }
    return Section(
        "relevance", "Relevance: off_topic against the article, beside plain cosine", lines, goals, figures
    )


def _beat(value: float | None, cosine: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    verdict = missed_by(value, goal, higher_is_better=True)
    if cosine is not None and value <= cosine:
        return (
            f"{verdict}; below cosine by {cosine - value:.3f}"
            if verdict != "met"
            else f"below cosine by {cosine - value:.3f}"
        )
    return verdict


def record_before(bundle: Path, config_path: Path = PUBLIC_CONFIG) -> dict[str, Any]:
    """Score the bench's pairs with an earlier bundle (its p(off_topic) and off_topic decisions), as
    `relevance_before.json`: e.g. `raqib export --version 4 -o /tmp/v4` then
    `python -m training.bench.relevance --record-before /tmp/v4`."""
    from serving.model.moderation import CommentInput, ModerationModel

    config = load_config(config_path).relevance.model_copy(update={"enabled": True})
    data: RelevanceData = relevance_data(config, _records(config_path), 13)
    model = ModerationModel.from_bundle(bundle)

    def score(frame: Any) -> tuple[np.ndarray, np.ndarray]:
        items = [
            CommentInput(t, a or None, b or None)
            for t, a, b in zip(frame["text"], frame["article_title"], frame["article_text"], strict=True)
        ]
        results = []
        for start in range(0, len(items), 256):
            results += model.score(items[start : start + 256], explain=False)
        p = np.array([r.scores.get(OFF_TOPIC, 0.0) for r in results])
        held = np.array([r.decided_label == OFF_TOPIC for r in results])
        return p, held

    def auc(y: np.ndarray, p: np.ndarray) -> float | None:
        return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None

    out: dict[str, Any] = {"model": f"{model.name} v{model.version}", "sha256": model.metadata.get("sha256")}
    for c in (*CONTEXTS, "none"):
        frame = data.frame("pairs", c)
        p, held = score(frame)
        y, kind = frame["label"].to_numpy(), frame["kind"].to_numpy()
        hard, rand, real = kind != RANDOM, kind != HARD, kind == REAL
        out[c] = {
            "auc_hard": auc(y[hard], p[hard]),
            "auc_random": auc(y[rand], p[rand]),
            "real_held": float(held[real].mean()),
            "hard_caught": float(held[kind == HARD].mean()),
            "random_caught": float(held[kind == RANDOM].mean()),
        }
    frame = data.frame("labelled", "title_body")
    p, held = score(frame)
    y = frame["label"].to_numpy()
    out["labelled"] = {"auc": auc(y, p), "relevant_held": float(held[y == 0].mean())}
    return out


if __name__ == "__main__":
    record_before_main("training.bench.relevance", __doc__, record_before, BEFORE)
