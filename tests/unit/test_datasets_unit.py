"""Public-corpus loaders, registry and CLI on tiny invented corpora (no real data, no network).

Every fixture row below is made up for these tests; only the file layouts follow the corpora.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.text.normalize import EMAIL_TOKEN, MENTION_TOKEN, URL_TOKEN
from training.cli.main import app
from training.data.contract import read_records
from training.data.datasets import aoc as aoc_mod
from training.data.datasets.aljazeera_deleted import load_aljazeera_deleted
from training.data.datasets.aoc import AocArticle, load_aoc, load_articles, parse_docs
from training.data.datasets.aoc_repaired import article_bucket, choose_partner, load_aoc_repaired
from training.data.datasets.ar_spam_tweets import load_ar_spam_tweets, strip_retweet
from training.data.datasets.ar_tweet_accounts import load_ar_tweet_accounts
from training.data.datasets.common import finalize, iso_datetime, scrub
from training.data.datasets.fox_news import fox_article_id, load_fox_news
from training.data.datasets.mpold import load_mpold
from training.data.datasets.omp import load_omp
from training.data.datasets.registry import DEFAULT_SOURCES, SOURCES, build, select_sources
from training.data.datasets.semeval2015 import load_semeval2015
from training.data.datasets.sms_spam import load_sms_spam
from training.data.datasets.youtube_spam import load_youtube_spam

pytestmark = pytest.mark.unit

EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
# Invented addresses and names: none of them may reach any output.
SECRET_EMAILS = (
    "reader.one@example.com",
    "editor-desk@example.org",
    "fan_99@example.net",
    "sms.promo@example.co",
    "tweet.ads@example.com",
    "asker@example.info",
)
SECRET_NAMES = ("Commenter Zeta", "Viewer Omega", "fox_user_17", "qari_x")

SITES = (
    ("alghad", "جريدة الغد - ", "http://www.alghad.com/?news={n}"),
    ("alriyadh", "جريدة الرياض : ", "http://www.alriyadh.com/article{n}.html"),
    ("youm7", "اليوم السابع | ", "http://www.youm7.com/News.asp?NewsID={n}"),
)
TOPICS = (
    ("مباراة الفريق في الدوري", "سجل اللاعب هدفين في المباراة وفاز الفريق بالدوري"),
    ("أسعار النفط اليوم", "ارتفعت أسعار النفط في الأسواق العالمية بسبب الطلب"),
    ("حالة الطقس غدا", "تتوقع الأرصاد أمطارا غزيرة ورياحا قوية على المناطق الشمالية"),
    ("افتتاح معرض الكتاب", "افتتح الوزير معرض الكتاب بمشاركة دور نشر عربية كثيرة"),
    ("نتائج الامتحانات", "أعلنت الوزارة نتائج امتحانات الثانوية العامة للطلاب"),
)
N_ARTICLES = 30


# --------------------------------------------------------------------------- fixture corpora


def _aoc_articles() -> list[dict[str, str]]:
    articles = []
    for i in range(N_ARTICLES):
        site, prefix, url = SITES[i % 3]
        news_id = 900000 + i
        title, body = TOPICS[i % len(TOPICS)]
        articles.append(
            {
                "docid": f"{site}_{news_id}_article",
                "site": site,
                "news_id": str(news_id),
                "url": url.format(n=news_id),
                "htmlTitle": f"{prefix}{title} رقم {i}",
                "title": f"{title} رقم {i}",
                "body": body,
            }
        )
    # A raw double quote inside the title attribute, as in the real file.
    articles[1]["htmlTitle"] = SITES[1][1] + '"الوزارة" تعلن القرار'
    articles[1]["title"] = '"الوزارة" تعلن القرار'
    return articles


def write_aoc(root: Path, *, wellformed: bool = False) -> list[dict[str, str]]:
    folder = root / "aoc_arabic_online_commentary"
    folder.mkdir(parents=True, exist_ok=True)
    articles = _aoc_articles()

    def attr(value: str) -> str:
        # The real files put raw quotes into attributes; the well-formed variant escapes them.
        return value.replace('"', "&quot;") if wellformed else value

    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<ArabicOnlineNews>"]
    for i, a in enumerate(articles):
        time = "" if a["site"] == "alriyadh" else ' time="10:15"'
        lines.append(
            f'<doc docid="{a["docid"]}" articleURL="{a["url"]}" htmlTitle="{attr(a["htmlTitle"])}"'
            f' date="03/05/2010"{time}>'
        )
        lines.append('<STRONG>\n<seg id="1"> عمان -الغد- </seg>\n</STRONG>')
        lines.append(f'<seg id="2"> {a["body"]} &#1633;&#1634; </seg>')
        if i == 0:
            lines.append(f'<seg id="3"> للتواصل مع المحرر: {SECRET_EMAILS[1]} </seg>')
        lines.append("</doc>")
    lines.append("</ArabicOnlineNews>")
    (folder / "AOC_sample_articles.xml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<ArabicOnlineCommentary>"]
    for i, a in enumerate(articles):
        for c in range(1, 4):
            docid = f"{a['site']}_{a['news_id']}_comment{c:03d}"
            email = f' authorEmail="{SECRET_EMAILS[0]}" authorLocation="عمان"' if c == 1 else ""
            lines.append(
                f'<doc docid="{docid}" articleURL="{a["url"]}" date="04/05/2010" time="1{c}:0{c}"'
                f' subtitle="{SECRET_EMAILS[2]}" author="{SECRET_NAMES[0]}"{email}>'
            )
            lines.append(f'<seg id="1"> تعليق رقم {c} على الخبر {i} </seg>')
            if c == 2:
                lines.append(f'<seg id="2"> راسلني على {SECRET_EMAILS[0]} </seg>')
            if c == 3 and not wellformed:
                lines.append('<seg id="2"> كلام جميل < :) </seg>')  # raw '<' as in the real file
            lines.append("</doc>")
    # An exact duplicate comment on the same article (must be dropped).
    a = articles[0]
    lines.append(
        f'<doc docid="{a["site"]}_{a["news_id"]}_comment009" articleURL="{a["url"]}"'
        f' date="04/05/2010" time="19:09">'
    )
    lines.append('<seg id="1"> تعليق رقم 1 على الخبر 0 </seg>\n</doc>')
    lines.append("</ArabicOnlineCommentary>")
    (folder / "AOC_sample_comments.xml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return articles


def write_semeval(root: Path) -> None:
    folder = root / "semeval2015_t3_arabic_cqa_half"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        (
            "101",
            "فقه > صلاة",
            "سؤال عن الصلاة",
            "ما حكم الجمع بين الصلاتين؟",
            "5001",
            "direct",
            "يجوز الجمع في السفر والمطر.",
        ),
        (
            "101",
            "فقه > صلاة",
            "سؤال عن الصلاة",
            "ما حكم الجمع بين الصلاتين؟",
            "5002",
            "related",
            f"راجع الفتوى السابقة أو راسل {SECRET_EMAILS[5]}",
        ),
        (
            "101",
            "فقه > صلاة",
            "سؤال عن الصلاة",
            "ما حكم الجمع بين الصلاتين؟",
            "5003",
            "irrelevant",
            "زكاة الفطر صاع من طعام.",
        ),
        ("102", "معاملات", "سؤال عن البيع", "هل يجوز البيع بالتقسيط؟", "5004", "direct", "نعم يجوز بشروط."),
    ]
    with (folder / "pairs.shared-half.csv").open("w", encoding="utf-8", newline="") as h:
        writer = csv.writer(h)
        writer.writerow(["qid", "qcategory", "qsubject", "qbody", "cid", "label", "answer_text"])
        writer.writerows(rows)


YOUTUBE_VIDEOS = ("Psy", "KatyPerry", "LMFAO", "Eminem", "Shakira")


def write_youtube(root: Path) -> None:
    folder = root / "youtube_spam_collection"
    folder.mkdir(parents=True, exist_ok=True)
    for i, video in enumerate(YOUTUBE_VIDEOS, start=1):
        rows = [
            (
                f"ID{video}AAAAAAAAAAAAAAAAAAAAAAAA1",
                SECRET_NAMES[1],
                f"2014-01-0{i}T10:00:00",
                "subscribe to my channel &amp; win a prize http://example.com/x",
                "1",
            ),
            (f"ID{video}AAAAAAAAAAAAAAAAAAAAAAAA2", SECRET_NAMES[1], "", "great song<br />love it", "0"),
            # Same comment twice under the same id (dropped by de-duplication).
            (f"ID{video}AAAAAAAAAAAAAAAAAAAAAAAA2", SECRET_NAMES[1], "", "great song<br />love it", "0"),
        ]
        path = folder / f"Youtube0{i}-{video}.csv"
        with path.open("w", encoding="utf-8", newline="") as h:
            writer = csv.writer(h)
            writer.writerow(["COMMENT_ID", "AUTHOR", "DATE", "CONTENT", "CLASS"])
            writer.writerows(rows)
        if video == "Eminem":
            # A row with an unclosed quote swallows the next rows (as in the real Eminem file).
            with path.open("a", encoding="utf-8", newline="") as h:
                h.write(f'IDglued0AAAAAAAAAAAAAAAAAAAAA,{SECRET_NAMES[1]},,"nice beat ,0\n')
                h.write(
                    f"IDglued1AAAAAAAAAAAAAAAAAAAAA,{SECRET_NAMES[1]},"
                    "2014-02-02T10:00:00.123000,best video,0\n"
                )
                h.write(
                    f"IDglued2AAAAAAAAAAAAAAAAAAAAA,{SECRET_NAMES[1]},"
                    '2014-02-03T10:00:00,""visit my page for free stuff",1\n'
                )


def write_sms(root: Path) -> None:
    folder = root / "sms_spam_collection"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "Label\tSMS",
        "ham\tsee you at the cafe at 5",
        f"spam\tWIN a free phone now! reply to {SECRET_EMAILS[3]}",
        "ham\tsee you at the cafe at 5",
        "spam\tcall &lt;#&gt; now for cash",
    ]
    (folder / "SMSSpamCollection").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_tweets(root: Path) -> None:
    folder = root / "arabic_lowquality_spam_tweets"
    folder.mkdir(parents=True, exist_ok=True)
    ad = "منتج طبيعي لانقاص الوزن اطلبه الان https://t.co/abc123"
    rows = [
        ("9.89E+17", "4/24/2018 13:35", f"RT @seller_one: {ad}"),
        ("9.89E+17", "4/24/2018 13:36", f"RT @seller_two: {ad}"),  # same advert, other account
        ("9.89E+17", "4/24/2018 13:37", "RT @seller_three: عرض خاص على المتابعين زيادة…"),
        ("9.89E+17", "4/24/2018 13:38", f"تواصل معنا {SECRET_EMAILS[4]} للطلب"),
        (
            "9.89E+17",
            "4/24/2018 13:39",
            "خصم كبير اليوم\r\n988788421144571904,2018-04-24 14:35:05,RT @seller_four: متجر جديد",
        ),
    ]
    with (folder / "2018_low-quality Tweets..csv").open("w", encoding="utf-8", newline="") as h:
        writer = csv.writer(h)
        writer.writerow(["id", "created_at", "text"])
        writer.writerows(rows)
    users = [
        ("اخبار الرياضة اليوم مباراة الفريق رابط", "0"),
        ("منتج تخسيس رابط منتج تخسيس رابط", "1"),
        ("اخبار الرياضة اليوم مباراة الفريق رابط", "0"),  # duplicate account text
    ]
    with (folder / "Users_Dataset_15Tweets.csv").open("w", encoding="utf-8-sig", newline="") as h:
        csv.writer(h).writerows(users)


def write_mpold(root: Path) -> None:
    folder = root / "mpold_arabic_news_comments"
    folder.mkdir(parents=True, exist_ok=True)
    header = [
        "Id",
        "Platform",
        "Comment",
        "Majority_Label",
        "Agreement",
        "NumOfJudgementUsed",
        "Total_Judgement",
        "Vulgar:V/HateSpeech:HS/None:-",
    ]
    rows = [
        ("1", "Twitter", "@User.IDX خبر مهم شكرا <url>", "Non-Offensive", "1.0", "3", "3", "-"),
        ("2", "Facebook", "انت حمار وغبي", "Offensive", "0.67", "3", "3", "V"),
        ("3", "YouTube", "   ", "Non-Offensive", "1.0", "3", "3", "-"),  # empty: dropped
    ]
    with (folder / "mpold_4000.csv").open("w", encoding="utf-8", newline="") as h:
        writer = csv.writer(h)
        writer.writerow(header)
        writer.writerows(rows)


def write_aljazeera(root: Path) -> None:
    folder = root / "aljazeera_deleted_comments_mubarak2017"
    folder.mkdir(parents=True, exist_ok=True)
    splits = {
        "train": [("كلام نظيف حذفه المشرف", "0"), ("يا كلب يا خائن", "-1"), ("كلام بذيء جدا", "-2")],
        "dev": [("تعليق عادي محذوف", "0"), ('قال "الحقير" كلاما', "-1")],
        "test": [("يا كلب يا خائن", "-1")],  # also in train: de-duplicated
    }
    for split, rows in splits.items():
        lines = ["\ttext\tlevel", *[f"\t{text}\t{level}" for text, level in rows]]
        (folder / f"AJ-{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


FOX_TITLES = ("Senate passes budget bill", "City council bans plastic bags")


def write_fox(root: Path) -> None:
    folder = root / "fox_news_comments_hateful"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "title": FOX_TITLES[0],
            "meta": "The bill now goes to the house.",
            "text": "about time",
            "label": 0,
            "user": SECRET_NAMES[2],
            "mentions": "",
            "prev": "",
            "succ": "x",
        },
        {
            "title": FOX_TITLES[0],
            "meta": "The bill now goes to the house.",
            "text": "these people are vermin",
            "label": 1,
            "user": SECRET_NAMES[2],
            "mentions": SECRET_NAMES[3],
            "prev": "about time",
            "succ": "",
        },
        {
            "title": FOX_TITLES[1],
            "meta": "Stores must charge for bags.",
            "text": "good idea",
            "label": 0,
            "user": SECRET_NAMES[3],
            "mentions": "",
            "prev": "",
            "succ": "",
        },
    ]
    (folder / "fox-news-comments.json").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )


def write_omp(root: Path) -> None:
    folder = root / "omp_one_million_posts_labeled"
    folder.mkdir(parents=True, exist_ok=True)
    header = [
        "ID_Post",
        "ID_Parent_Post",
        "ID_Article",
        "ID_User",
        "CreatedAt",
        "Status",
        "Headline",
        "Body",
        "PositiveVotes",
        "NegativeVotes",
        "ArgumentsUsed",
        "Discriminating",
        "Inappropriate",
        "OffTopic",
        "PersonalStories",
        "PossiblyFeedback",
        "SentimentNegative",
        "SentimentNeutral",
        "SentimentPositive",
    ]
    rows = [
        [
            "11",
            "",
            "7",
            "900",
            "2015-06-01 08:58:32.363",
            "online",
            "Titel",
            "Ein Beitrag",
            "1",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "1",
            "0",
        ],
        [
            "12",
            "11",
            "7",
            "901",
            "2015-06-01 09:00:00.000",
            "deleted",
            "",
            "Ganz anderes Thema",
            "0",
            "2",
            "0",
            "0",
            "0",
            "1",
            "0",
            "0",
            "1",
            "0",
            "0",
        ],
        [
            "13",
            "",
            "8",
            "902",
            "2015-06-02 10:00:00.000",
            "online",
            "",
            "Nicht annotiert",
            "0",
            "0",
            "",
            "",
            "",
            "",
            "1",
            "",
            "",
            "",
            "",
        ],
    ]
    with (folder / "posts_labeled_wide.csv").open("w", encoding="utf-8", newline="") as h:
        writer = csv.writer(h)
        writer.writerow(header)
        writer.writerows(rows)


def write_all(root: Path) -> Path:
    write_aoc(root)
    write_semeval(root)
    write_youtube(root)
    write_sms(root)
    write_tweets(root)
    write_mpold(root)
    write_aljazeera(root)
    write_fox(root)
    write_omp(root)
    return root


@pytest.fixture
def corpora(tmp_path: Path) -> Path:
    return write_all(tmp_path / "datasets")


def all_strings(records) -> list[str]:
    return [v for r in records for v in (r.text, r.article_title, r.article_text) if v]


# --------------------------------------------------------------------------- common helpers


def test_scrub_masks_emails_and_strips():
    assert scrub(f"  contact {SECRET_EMAILS[0]} now \ufeff") == f"contact {EMAIL_TOKEN} now"
    assert scrub("write to name [at] example . com") == f"write to {EMAIL_TOKEN}"
    assert scrub("meet @ home. later") == "meet @ home. later"  # a bare '@' is not an address
    assert scrub("   ") is None
    assert scrub(None) is None


def test_finalize_dedupes_and_drops_author_and_empty():
    from training.data.contract import LabeledRecord

    records = [
        LabeledRecord(text=" a ", label="spam", comment_id="s:1", author="someone"),
        LabeledRecord(text="a", label="spam", comment_id="s:2"),  # same after strip
        LabeledRecord(text="a", label="on_topic", comment_id="s:3"),  # other label: kept
        LabeledRecord(text="b", label="spam", comment_id="s:1"),  # reused id: suffixed
        LabeledRecord(text="  ", label="spam", comment_id="s:4"),
    ]
    out = list(finalize(records))
    assert [(r.text, r.label, r.comment_id) for r in out] == [
        ("a", "spam", "s:1"),
        ("a", "on_topic", "s:3"),
        ("b", "spam", "s:1~2"),
    ]
    assert all(r.author is None for r in out)


def test_iso_datetime():
    assert iso_datetime("22/04/2010 19:01:04", ("%d/%m/%Y %H:%M:%S",)) == "2010-04-22T19:01:04"
    assert iso_datetime("2013-11-07T06:20:48.123000") == "2013-11-07T06:20:48"
    assert iso_datetime("") is None
    assert iso_datetime("not a date") is None


# --------------------------------------------------------------------------- AOC


def test_aoc_joins_comments_to_articles(corpora: Path):
    records = list(load_aoc(corpora))
    assert len(records) == N_ARTICLES * 3  # the duplicate comment009 is gone
    assert {r.label for r in records} == {"on_topic"}
    first = next(r for r in records if r.comment_id == "aoc:alghad_900000_comment001")
    assert first.article_id == "aoc:alghad_900000"
    assert first.article_title == "مباراة الفريق في الدوري رقم 0"  # site prefix removed
    assert first.article_text.startswith("عمان -الغد- سجل اللاعب")
    assert "١٢" in first.article_text  # character references decoded
    assert first.site == "alghad"
    assert first.created_at == "2010-05-04T11:01:00"
    assert first.author is None
    quoted = next(r for r in records if r.article_id == "aoc:alriyadh_900001")
    assert quoted.article_title == '"الوزارة" تعلن القرار'
    third = next(r for r in records if r.comment_id == "aoc:alghad_900000_comment003")
    assert third.text == "تعليق رقم 3 على الخبر 0 كلام جميل < :)"


def test_aoc_scrubs_every_email_and_never_reads_authors(corpora: Path):
    records = list(load_aoc(corpora)) + list(load_aoc_repaired(corpora))
    joined = "\n".join(all_strings(records))
    for secret in (*SECRET_EMAILS, SECRET_NAMES[0]):
        assert secret not in joined
    assert not EMAIL_RE.search(joined)
    assert EMAIL_TOKEN in joined  # the comment and the article body held addresses


def test_aoc_regex_and_xml_parsers_agree(tmp_path: Path):
    broken, clean = tmp_path / "broken", tmp_path / "clean"
    write_aoc(broken, wellformed=False)
    write_aoc(clean, wellformed=True)
    name = "aoc_arabic_online_commentary/AOC_sample_articles.xml"
    assert aoc_mod._parse_wellformed((broken / name).read_bytes()) is None
    assert aoc_mod._parse_wellformed((clean / name).read_bytes()) is not None
    assert parse_docs(broken / name) == parse_docs(clean / name)
    assert load_articles(broken) == load_articles(clean)


def test_aoc_unjoined_comment_is_an_error(corpora: Path):
    path = corpora / "aoc_arabic_online_commentary/AOC_sample_comments.xml"
    text = path.read_text(encoding="utf-8").replace("?news=900000", "?news=123", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(aoc_mod.UnjoinedComment):
        list(load_aoc(corpora))


# --------------------------------------------------------------------------- aoc_repaired


def test_repaired_pairs_stay_in_bucket_and_leave_their_article(corpora: Path):
    own = {r.comment_id.split(":", 1)[1]: r for r in load_aoc(corpora)}
    repaired = list(load_aoc_repaired(corpora, seed=13))
    assert repaired, "no repaired pairs built"
    assert 0.25 <= len(repaired) / len(own) <= 0.75
    for r in repaired:
        mine = own[r.comment_id.split(":", 1)[1]]
        assert r.label == "off_topic"
        assert r.comment_id.startswith("aoc_repaired:")
        assert r.text == mine.text
        assert r.article_id != mine.article_id
        assert article_bucket(r.article_id) == article_bucket(mine.article_id)
        assert r.article_title and r.article_text
        assert r.author is None


def test_repaired_is_deterministic_and_seeded(corpora: Path):
    a = list(load_aoc_repaired(corpora, seed=13))
    b = list(load_aoc_repaired(corpora, seed=13))
    c = list(load_aoc_repaired(corpora, seed=14))
    assert a == b
    assert [r.comment_id for r in a] != [r.comment_id for r in c]


def test_choose_partner_prefers_unrelated_article():
    own = AocArticle("aoc:alghad_1", "alghad", "u1", "مباراة الفريق", "سجل اللاعب هدفين في المباراة")
    similar = AocArticle("aoc:alghad_2", "alghad", "u2", "الفريق يفوز", "سجل اللاعب هدفين للفريق")
    unrelated = AocArticle("aoc:alghad_3", "alghad", "u3", "الطقس", "أمطار غزيرة ورياح قوية")
    other_site = AocArticle("aoc:youm7_4", "youm7", "u4", "بورصة", "هبوط الأسهم في البورصة")
    for seed in range(20):
        rng = random.Random(seed)
        partner = choose_partner(own, [own, similar, unrelated, other_site], rng, n_candidates=3)
        assert partner == unrelated  # same site first, then the smallest word overlap
    assert choose_partner(own, [own], random.Random(0)) is None


# --------------------------------------------------------------------------- other loaders


def test_semeval(corpora: Path):
    records = {r.comment_id: r for r in load_semeval2015(corpora)}
    assert {k: r.label for k, r in records.items()} == {
        "semeval2015:101_5001": "on_topic",
        "semeval2015:101_5002": "on_topic",
        "semeval2015:101_5003": "off_topic",
        "semeval2015:102_5004": "on_topic",
    }
    r = records["semeval2015:101_5003"]
    assert (r.article_id, r.article_title) == ("semeval:101", "سؤال عن الصلاة")
    assert r.article_text == "ما حكم الجمع بين الصلاتين؟"
    assert SECRET_EMAILS[5] not in records["semeval2015:101_5002"].text


def test_youtube(corpora: Path):
    records = list(load_youtube_spam(corpora))
    by_id = {r.comment_id: r for r in records}
    spam = by_id["youtube_spam:IDPsyAAAAAAAAAAAAAAAAAAAAAAAA1"]
    assert spam.label == "spam" and spam.article_id == "youtube:Psy"
    assert spam.text == "subscribe to my channel & win a prize http://example.com/x"
    assert spam.created_at == "2014-01-01T10:00:00" and spam.site == "youtube"
    assert spam.article_title is None and spam.article_text is None
    ham = by_id["youtube_spam:IDPsyAAAAAAAAAAAAAAAAAAAAAAAA2"]
    assert ham.label == "on_topic" and ham.created_at is None
    assert ham.text == "great song love it"
    assert sum(r.article_id == "youtube:Psy" for r in records) == 2  # duplicate dropped
    # The glued Eminem rows come back as separate comments with their own labels.
    assert by_id["youtube_spam:IDglued0AAAAAAAAAAAAAAAAAAAAA"].label == "on_topic"
    assert by_id["youtube_spam:IDglued0AAAAAAAAAAAAAAAAAAAAA"].text == "nice beat"
    assert by_id["youtube_spam:IDglued1AAAAAAAAAAAAAAAAAAAAA"].text == "best video"
    assert by_id["youtube_spam:IDglued1AAAAAAAAAAAAAAAAAAAAA"].created_at == "2014-02-02T10:00:00"
    glued2 = by_id["youtube_spam:IDglued2AAAAAAAAAAAAAAAAAAAAA"]
    assert (glued2.label, glued2.text) == ("spam", "visit my page for free stuff")
    assert SECRET_NAMES[1] not in "\n".join(all_strings(records))


def test_sms(corpora: Path):
    records = list(load_sms_spam(corpora))
    assert [(r.comment_id, r.label) for r in records] == [
        ("sms_spam:2", "on_topic"),
        ("sms_spam:3", "spam"),
        ("sms_spam:5", "spam"),
    ]
    assert records[1].text == f"WIN a free phone now! reply to {EMAIL_TOKEN}"
    assert records[2].text == "call <#> now for cash"
    assert all(r.article_id is None for r in records)


def test_spam_tweets_strip_retweet_and_dedupe(corpora: Path):
    records = list(load_ar_spam_tweets(corpora))
    texts = [r.text for r in records]
    assert all(not t.startswith("RT") and "RT @" not in t for t in texts)
    assert texts[0] == "منتج طبيعي لانقاص الوزن اطلبه الان https://t.co/abc123"  # link kept
    assert texts.count(texts[0]) == 1  # two accounts retweeting one advert → one record
    assert "عرض خاص على المتابعين زيادة" in texts  # truncation '…' of the retweet removed
    assert f"تواصل معنا {EMAIL_TOKEN} للطلب" in texts
    glued = {r.comment_id: r for r in records}
    assert glued["ar_spam_tweets:5"].text == "خصم كبير اليوم"
    assert glued["ar_spam_tweets:5-2"].text == "متجر جديد"
    assert glued["ar_spam_tweets:5-2"].created_at == "2018-04-24T14:35:05"
    assert glued["ar_spam_tweets:1"].created_at == "2018-04-24T13:35:00"
    assert {r.label for r in records} == {"spam"} and {r.site for r in records} == {"twitter"}


def test_strip_retweet_keeps_ellipsis_on_original_tweets():
    assert strip_retweet("RT @a_b: نص…") == "نص"
    assert strip_retweet("نص اصلي…") == "نص اصلي…"


def test_tweet_accounts(corpora: Path):
    records = list(load_ar_tweet_accounts(corpora))
    assert [(r.comment_id, r.label) for r in records] == [
        ("ar_tweet_accounts:1", "on_topic"),
        ("ar_tweet_accounts:2", "spam"),
    ]
    assert not records[0].text.startswith("\ufeff")


def test_mpold(corpora: Path):
    records = list(load_mpold(corpora))
    assert [(r.comment_id, r.label, r.site) for r in records] == [
        ("mpold:1", "on_topic", "twitter"),
        ("mpold:2", "abusive", "facebook"),
    ]
    assert records[0].text == f"{MENTION_TOKEN} خبر مهم شكرا {URL_TOKEN}"


def test_aljazeera_excludes_clean_deletions(corpora: Path):
    records = list(load_aljazeera_deleted(corpora))
    assert {r.label for r in records} == {"abusive"}
    texts = [r.text for r in records]
    assert "كلام نظيف حذفه المشرف" not in texts and "تعليق عادي محذوف" not in texts
    assert sorted(texts) == sorted(["يا كلب يا خائن", "كلام بذيء جدا", 'قال "الحقير" كلاما'])
    assert {r.comment_id for r in records} == {
        "aljazeera_deleted:train_2",
        "aljazeera_deleted:train_3",
        "aljazeera_deleted:dev_2",
    }


def test_fox_news(corpora: Path):
    records = list(load_fox_news(corpora))
    assert [(r.comment_id, r.label) for r in records] == [
        ("fox_news:1", "on_topic"),
        ("fox_news:2", "abusive"),
        ("fox_news:3", "on_topic"),
    ]
    assert records[0].article_id == fox_article_id(FOX_TITLES[0])
    assert re.fullmatch(r"fox:[0-9a-f]{10}", records[0].article_id)
    assert records[0].article_text == "The bill now goes to the house."
    assert records[2].article_id != records[0].article_id
    joined = "\n".join(all_strings(records))
    assert SECRET_NAMES[2] not in joined and SECRET_NAMES[3] not in joined


def test_omp(corpora: Path):
    records = list(load_omp(corpora))
    assert [(r.comment_id, r.label, r.article_id) for r in records] == [
        ("omp:11", "on_topic", "omp:7"),
        ("omp:12", "off_topic", "omp:7"),
    ]
    assert records[0].text == "Titel\nEin Beitrag"
    assert records[0].created_at == "2015-06-01T08:58:32"
    assert records[0].article_title is None and records[0].article_text is None


# --------------------------------------------------------------------------- registry / build


def test_registry_defaults():
    assert "omp" in SOURCES and "omp" not in DEFAULT_SOURCES
    assert [s.name for s in select_sources(include=["omp"])][-1] == "omp"
    assert "mpold" not in [s.name for s in select_sources(exclude=["mpold"])]
    with pytest.raises(ValueError, match="unknown source"):
        select_sources(include=["nope"])


def test_build_is_deterministic_sorted_and_clean(corpora: Path, tmp_path: Path):
    first = build(corpora, tmp_path / "a.jsonl")
    second = build(corpora, tmp_path / "b.jsonl", include=[])
    assert first.sha256 == second.sha256
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    keys = [(r.source, r.comment_id) for r in first.records]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # The abusive head's corpora are not faked here (their loaders are tested on the real files in
    # test_datasets_abuse.py): they are reported skipped, and every other default source is built.
    head_corpora = {
        "osact2020", "omcd", "alakrot_youtube", "darija_offensive", "letmi", "egyptian_tweets",
        "sectarian", "mlma", "saudi_hate", "aljazeera_levels", "aoc_sentences", "myc", "msac", "mac",
    }  # fmt: skip
    assert set(first.skipped) <= head_corpora
    assert {r.source for r in first.records} == set(DEFAULT_SOURCES) - set(first.skipped)
    back = read_records(tmp_path / "a.jsonl", allowed_labels=("on_topic", "off_topic", "spam", "abusive"))
    assert back == first.records
    raw = (tmp_path / "a.jsonl").read_text(encoding="utf-8")
    assert not EMAIL_RE.search(raw)
    for secret in (*SECRET_EMAILS, *SECRET_NAMES):
        assert secret not in raw
    other_seed = build(corpora, tmp_path / "c.jsonl", seed=99)
    assert other_seed.sha256 != first.sha256


def test_build_with_omp_and_missing_corpus(corpora: Path, tmp_path: Path):
    (corpora / "sms_spam_collection/SMSSpamCollection").unlink()
    result = build(corpora, tmp_path / "x.jsonl", include=["omp"])
    assert "sms_spam" in result.skipped
    assert "omp" in result.counts()
    assert "sms_spam" not in result.counts()


# --------------------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_build_prints_table_and_writes_file(corpora: Path, tmp_path: Path):
    out = tmp_path / "build" / "public.jsonl"
    result = runner.invoke(app, ["datasets", "build", "--from", str(corpora), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    for name in DEFAULT_SOURCES:
        assert name in result.output
    assert "total" in result.output and "sha256" in result.output
    digest = re.search(r"sha256: ([0-9a-f]{64})", result.output).group(1)
    import hashlib

    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest


def test_cli_build_warns_on_missing_corpus(corpora: Path, tmp_path: Path):
    (corpora / "fox_news_comments_hateful/fox-news-comments.json").unlink()
    out = tmp_path / "p.jsonl"
    result = runner.invoke(app, ["datasets", "build", "--from", str(corpora), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipping fox_news" in result.output
    assert out.is_file()


def test_cli_build_missing_directory_fails(tmp_path: Path):
    result = runner.invoke(
        app, ["datasets", "build", "--from", str(tmp_path / "absent"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code != 0
    assert "not found" in result.output


def test_cli_build_empty_directory_fails(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(
        app, ["datasets", "build", "--from", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code != 0
    assert "None of the corpora" in " ".join(result.output.split())


def test_cli_build_unknown_include_fails(corpora: Path, tmp_path: Path):
    result = runner.invoke(
        app, ["datasets", "build", "--from", str(corpora), "-o", str(tmp_path / "o"), "--include", "nope"]
    )
    assert result.exit_code != 0
    assert "unknown source" in result.output


def test_cli_build_uses_env_var(corpora: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RAQIB_DATASETS", str(corpora))
    out = tmp_path / "env.jsonl"
    result = runner.invoke(app, ["datasets", "build", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_cli_stats(corpora: Path, tmp_path: Path):
    out = tmp_path / "p.jsonl"
    build(corpora, out)
    result = runner.invoke(app, ["datasets", "stats", str(out)])
    assert result.exit_code == 0, result.output
    for word in ("aoc", "median", "p95", "arabic", "latin", "mixed"):
        assert word in result.output


def test_cli_stats_broken_record_exits_1(tmp_path: Path):
    path = tmp_path / "broken.jsonl"
    path.write_text(
        json.dumps({"text": "تعليق جيد", "label": "on_topic"}) + "\n" + json.dumps({"label": "spam"}) + "\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["datasets", "stats", str(path)])
    assert result.exit_code == 1
    flat = "".join(result.output.split())
    assert f"{path}:2".replace(" ", "") in flat
    assert "'text'" in flat
