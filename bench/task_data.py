"""Four task kinds built from the shipped BBC News corpus, so every task runs offline.

The benchmarks need a sentence-pair classifier, a similarity regressor, a token tagger
and an extractive QA model, but the project only ships one topic-labelled corpus. This
module derives one dataset per kind from it, deterministically from a seed, with labels
found by fixed rules rather than annotation:

* pairs: does this body lead belong to this headline (``same``/``other``)?
* regression: STS-B-like score of a headline against a body lead (5.0 / 2.5 / 0.0).
* tagging: IOB2 tags for MONEY, DATE and PCT found by surface rules.
* qa: SQuAD-format questions whose answers are the first MONEY, DATE or PCT span.

Run ``python bench/task_data.py DIR [--seed N]`` to write all four into DIR.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
LEADING = frozenset("\"'“”‘’([")
TRAILING = frozenset(".,;:!?\"'“”‘’)]")
MONTHS = frozenset(
    "January February March April May June July August September October November December".split()
)
WEEKDAYS = frozenset("Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split())
SCALES = frozenset({"m", "bn", "million", "billion"})
MONEY_START = re.compile(r"^[£$€]\d")
NUMBER = re.compile(r"^\d[\d,]*(\.\d+)?$")
PERCENT = re.compile(r"^\d[\d,]*(\.\d+)?%$")
YEAR = re.compile(r"^\d{4}$")
PAIR_SENTENCES = 2
QA_SENTENCES = 4
MIN_TOKENS, MAX_TOKENS = 5, 60
PLAIN_SHARE = 0.2


@dataclass(frozen=True)
class Article:
    """One corpus file: its topic folder, file name, headline and body sentences."""

    topic: str
    name: str
    headline: str
    sentences: tuple[str, ...]

    @property
    def lead(self) -> str:
        """The body's opening, short enough to pair with a headline."""
        return " ".join(self.sentences[:PAIR_SENTENCES])


@dataclass(frozen=True)
class Token:
    """A word with its character offsets, so QA answers can be cut from the context."""

    text: str
    start: int
    end: int


# ---------------------------------------------------------------- corpus


def corpus_root() -> Path:
    """The shipped corpus folder; imported lazily so the rules need no prunetune install."""
    from prunetune.builtins import builtin_dataset_dir

    return builtin_dataset_dir("bbc_news")


def decode(raw: bytes) -> str:
    """UTF-8 text; one article in the corpus is Windows-1252 and would otherwise fail."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def split_sentences(body: str) -> tuple[str, ...]:
    """Sentences by a plain punctuation rule: good enough for news prose, and reproducible."""
    return tuple(s for s in SENTENCE_BREAK.split(body.strip()) if s)


def parse_article(topic: str, path: Path) -> Article:
    """Headline from the first line, body from the rest with its line breaks joined."""
    lines = decode(path.read_bytes()).splitlines()
    body = " ".join(line.strip() for line in lines[1:] if line.strip())
    return Article(topic, path.name, lines[0].strip(), split_sentences(body))


def unique_articles(articles: list[Article]) -> tuple[Article, ...]:
    """Drop repeated stories (about 100 in the corpus are copies or re-headlined copies).

    A copy would turn an ``other`` pair into the same text with the wrong label, and put
    identical rows on both sides of any train/test split.
    """
    seen_headlines: set[str] = set()
    seen_leads: set[str] = set()
    kept = []
    for article in articles:
        if not article.sentences or article.headline in seen_headlines or article.lead in seen_leads:
            continue
        seen_headlines.add(article.headline)
        seen_leads.add(article.lead)
        kept.append(article)
    return tuple(kept)


@lru_cache(maxsize=4)
def load_articles(root: str | None = None) -> tuple[Article, ...]:
    """All distinct articles, topics and files in sorted order so seeds mean the same everywhere."""
    base = Path(root) if root else corpus_root()
    articles = [
        parse_article(topic_dir.name, path)
        for topic_dir in sorted(p for p in base.iterdir() if p.is_dir())
        for path in sorted(topic_dir.glob("*.txt"))
    ]
    return unique_articles(articles)


def by_topic(articles: tuple[Article, ...]) -> dict[str, list[Article]]:
    """Articles grouped by topic, for drawing same-topic and other-topic distractors."""
    groups: dict[str, list[Article]] = {}
    for article in articles:
        groups.setdefault(article.topic, []).append(article)
    return groups


# ---------------------------------------------------------------- tokens and entity rules


def split_chunk(text: str, start: int, end: int) -> list[Token]:
    """Peel quotes, brackets and trailing punctuation off one whitespace chunk as own tokens.

    Without this, ``£5m.`` or ``(£600m)`` would not look like money to the rules or a model.
    """
    lead, trail = [], []
    while start < end and text[start] in LEADING:
        lead.append(Token(text[start], start, start + 1))
        start += 1
    while end > start and text[end - 1] in TRAILING:
        trail.append(Token(text[end - 1], end - 1, end))
        end -= 1
    core = [Token(text[start:end], start, end)] if start < end else []
    return lead + core + trail[::-1]


def tokenize(text: str, offset: int = 0) -> list[Token]:
    """Whitespace words of ``text`` with punctuation split off, offsets shifted by ``offset``."""
    tokens: list[Token] = []
    for match in re.finditer(r"\S+", text):
        tokens.extend(split_chunk(text, match.start(), match.end()))
    return [Token(t.text, t.start + offset, t.end + offset) for t in tokens]


def money_length(words: list[str], i: int) -> int:
    """Tokens in a currency amount at ``i``: the amount, plus a following scale word."""
    if not MONEY_START.match(words[i]):
        return 0
    return 2 if i + 1 < len(words) and words[i + 1] in SCALES else 1


def date_length(words: list[str], i: int) -> int:
    """Tokens in a date at ``i``: a weekday, or a month with an optional 4-digit year.

    A sentence-initial ``May`` without a year is usually the verb, so it is not a date.
    """
    word = words[i]
    if word in WEEKDAYS:
        return 1
    if word not in MONTHS:
        return 0
    has_year = i + 1 < len(words) and YEAR.match(words[i + 1]) is not None
    if word == "May" and i == 0 and not has_year:
        return 0
    return 2 if has_year else 1


def pct_length(words: list[str], i: int) -> int:
    """Tokens in a percentage at ``i``: ``5%`` or ``5 per cent``."""
    if PERCENT.match(words[i]):
        return 1
    if NUMBER.match(words[i]) and words[i + 1 : i + 3] == ["per", "cent"]:
        return 3
    return 0


RULES = (("MONEY", money_length), ("DATE", date_length), ("PCT", pct_length))


def find_spans(words: list[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, first, end)`` by the rules, left to right, never overlapping."""
    spans, i = [], 0
    while i < len(words):
        for kind, rule in RULES:
            length = rule(words, i)
            if length:
                spans.append((kind, i, i + length))
                i += length
                break
        else:
            i += 1
    return spans


def iob2(length: int, spans: list[tuple[str, int, int]]) -> list[str]:
    """IOB2 tags for ``length`` words with the given spans."""
    tags = ["O"] * length
    for kind, first, end in spans:
        tags[first] = f"B-{kind}"
        for j in range(first + 1, end):
            tags[j] = f"I-{kind}"
    return tags


def tag_words(words: list[str]) -> list[str]:
    """IOB2 tags for one sentence's words."""
    return iob2(len(words), find_spans(words))


# ---------------------------------------------------------------- writers


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    """A UTF-8 CSV with a header, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """One JSON object a line, UTF-8 with currency signs kept readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# ---------------------------------------------------------------- pairs and regression


def distractor(rng: random.Random, anchor: Article, groups: dict[str, list[Article]], same_topic: bool) -> Article:
    """Another article, from the anchor's topic or from a different one."""
    if same_topic:
        pool = [a for a in groups[anchor.topic] if a is not anchor]
    else:
        pool = [a for topic, members in groups.items() if topic != anchor.topic for a in members]
    return rng.choice(pool)


def pair_rows(seed: int, count: int, kinds: tuple[str, ...]) -> list[tuple[Article, Article, str]]:
    """``count`` (headline article, body article, kind) triples with kinds cycled evenly.

    Kinds are ``same``, ``topic`` (other article, same topic) and ``cross`` (other topic).
    Each headline is used once while ``count`` does not exceed the number of articles.
    """
    rng = random.Random(seed)
    articles = load_articles()
    groups = by_topic(articles)
    order = list(articles)
    rng.shuffle(order)
    triples = []
    for k in range(count):
        anchor, kind = order[k % len(order)], kinds[k % len(kinds)]
        body = anchor if kind == "same" else distractor(rng, anchor, groups, kind == "topic")
        triples.append((anchor, body, kind))
    rng.shuffle(triples)
    return triples


def pairs_csv(path, *, seed: int = 0, max_pairs: int = 2000) -> Path:
    """Headline/lead match classification; half the mismatches share a topic so it is not topic ID."""
    labels = {"same": "same", "topic": "other", "cross": "other"}
    triples = pair_rows(seed, max_pairs, ("same", "topic", "same", "cross"))
    rows = [{"text": a.headline, "text_pair": b.lead, "label": labels[kind]} for a, b, kind in triples]
    return write_csv(path, ["text", "text_pair", "label"], rows)


def regression_csv(path, *, seed: int = 0, max_pairs: int = 2000) -> Path:
    """STS-B-like similarity: 5 for the article's own lead, 2.5 same topic, 0 another topic."""
    scores = {"same": 5.0, "topic": 2.5, "cross": 0.0}
    triples = pair_rows(seed, max_pairs, ("same", "topic", "cross"))
    rows = [{"text": a.headline, "text_pair": b.lead, "score": scores[kind]} for a, b, kind in triples]
    return write_csv(path, ["text", "text_pair", "score"], rows)


# ---------------------------------------------------------------- tagging


@lru_cache(maxsize=1)
def tagged_sentences() -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """Distinct body sentences of a usable length, split into with and without entities.

    Cached because tagging the whole corpus is the slow part and does not depend on the seed.
    """
    seen: set[tuple[str, ...]] = set()
    with_entities, plain = [], []
    for article in load_articles():
        for sentence in article.sentences:
            words = tuple(t.text for t in tokenize(sentence))
            if not MIN_TOKENS <= len(words) <= MAX_TOKENS or words in seen:
                continue
            seen.add(words)
            tags = tag_words(list(words))
            row = {"tokens": list(words), "tags": tags}
            (with_entities if any(t != "O" for t in tags) else plain).append(row)
    return tuple(with_entities), tuple(plain)


def tagging_jsonl(path, *, seed: int = 0, max_rows: int = 2000) -> Path:
    """MONEY/DATE/PCT tagging; about a fifth of rows have no entity so ``O`` is learnt too."""
    rng = random.Random(seed)
    with_entities, plain = (list(rows) for rows in tagged_sentences())
    rng.shuffle(with_entities)
    rng.shuffle(plain)
    n_entity = min(len(with_entities), round(max_rows * (1 - PLAIN_SHARE)))
    n_plain = min(len(plain), max_rows - n_entity, round(n_entity * PLAIN_SHARE / (1 - PLAIN_SHARE)))
    rows = with_entities[:n_entity] + plain[:n_plain]
    rng.shuffle(rows)
    return write_jsonl(path, rows)


# ---------------------------------------------------------------- qa


def context_tokens(article: Article) -> tuple[str, list[list[Token]]]:
    """The QA context (first sentences joined) and its tokens per sentence, with offsets.

    Tokenising per sentence keeps the sentence-initial rules of the tagger the same here.
    """
    parts, sentences, offset = [], [], 0
    for sentence in article.sentences[:QA_SENTENCES]:
        sentences.append(tokenize(sentence, offset))
        parts.append(sentence)
        offset += len(sentence) + 1
    return " ".join(parts), sentences


def context_spans(sentences: list[list[Token]]) -> list[tuple[str, int, int, str]]:
    """Entity spans of the context as ``(type, char start, char end, first word)`` in order."""
    found = []
    for tokens in sentences:
        words = [t.text for t in tokens]
        for kind, first, end in find_spans(words):
            found.append((kind, tokens[first].start, tokens[end - 1].end, words[first]))
    return found


def questions_for(rng: random.Random, spans: list[tuple[str, int, int, str]]) -> list[tuple[str, str, int, int]]:
    """``(type, question, start, end)`` per entity type present, answered by its first span.

    A date that starts with a month may be asked either way; a weekday only as "when".
    """
    first: dict[str, tuple[int, int, str]] = {}
    for kind, start, end, word in spans:
        first.setdefault(kind, (start, end, word))
    questions = []
    if "MONEY" in first:
        questions.append(("money", "How much money is mentioned?", *first["MONEY"][:2]))
    if "DATE" in first:
        start, end, word = first["DATE"]
        month = word in MONTHS and rng.random() < 0.5
        qtype, question = ("month", "Which month is mentioned?") if month else ("when", "When did it happen?")
        questions.append((qtype, question, start, end))
    if "PCT" in first:
        questions.append(("percentage", "What percentage is given?", *first["PCT"][:2]))
    return questions


@lru_cache(maxsize=1)
def qa_contexts() -> tuple[tuple[Article, str, tuple[tuple[str, int, int, str], ...]], ...]:
    """Every article's context with its entity spans; cached as it does not depend on the seed."""
    found = []
    for article in load_articles():
        context, sentences = context_tokens(article)
        found.append((article, context, tuple(context_spans(sentences))))
    return tuple(found)


def qa_row(article: Article, context: str, qtype: str, question: str, start: int, end: int) -> dict:
    """One SQuAD-format row; the answer is checked to be the exact context slice."""
    answer = context[start:end]
    assert answer and context[start : start + len(answer)] == answer
    return {
        "id": f"{article.topic}-{Path(article.name).stem}-{qtype}",
        "question": question,
        "context": context,
        "answers": {"text": [answer], "answer_start": [start]},
    }


def qa_jsonl(path, *, seed: int = 0, max_rows: int = 2000) -> Path:
    """Extractive QA over article openings; contexts are left long so windowing is exercised."""
    rng = random.Random(seed)
    rows = []
    for article, context, spans in qa_contexts():
        for qtype, question, start, end in questions_for(rng, list(spans)):
            rows.append(qa_row(article, context, qtype, question, start, end))
    rng.shuffle(rows)
    return write_jsonl(path, rows[:max_rows])


# ---------------------------------------------------------------- all of them


def build_all(directory, *, seed: int = 0) -> dict[str, Path]:
    """All four datasets in ``directory`` with default sizes."""
    directory = Path(directory)
    return {
        "pairs": pairs_csv(directory / "pairs.csv", seed=seed),
        "regression": regression_csv(directory / "regression.csv", seed=seed),
        "tagging": tagging_jsonl(directory / "tagging.jsonl", seed=seed),
        "qa": qa_jsonl(directory / "qa.jsonl", seed=seed),
    }


def breakdown(kind: str, path: Path) -> tuple[int, Counter]:
    """Row count and the counts a reader checks first: labels, scores, entity types, questions."""
    if kind in ("pairs", "regression"):
        with Path(path).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        column = "label" if kind == "pairs" else "score"
        return len(rows), Counter(row[column] for row in rows)
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    if kind == "qa":
        return len(rows), Counter(row["question"] for row in rows)
    counts = Counter(tag[2:] for row in rows for tag in row["tags"] if tag.startswith("B-"))
    counts["rows without entities"] = sum(all(t == "O" for t in row["tags"]) for row in rows)
    return len(rows), counts


def main(argv: list[str] | None = None) -> None:
    """Build everything into the given folder and print what came out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for kind, path in build_all(args.directory, seed=args.seed).items():
        count, counts = breakdown(kind, path)
        print(f"{kind}: {path} ({count} rows)")
        for key, value in sorted(counts.items(), key=lambda item: str(item[0])):
            print(f"    {key}: {value}")


if __name__ == "__main__":
    main()
