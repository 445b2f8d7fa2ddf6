"""Multi-hop questions over a procedurally generated fictional world, answered with a search tool.

"In which country is the city where the founder of Zentrix was born?" needs two or three look-ups
in an encyclopedia that exists only on disk: the world (people, cities, countries, companies) is
invented from a seed, with names built from syllables, so no pretrained knowledge helps and the
policy has to search (Search-R1's setting, made offline and checkable).

Relations (:data:`RELATIONS`): a company's founder (a person) and headquarters (a city), a
person's birthplace (a city) and mentor (an earlier person, so mentor chains never loop), a city's
country (one capital per country). Every fact is one corpus document titled by its subject, e.g.
``{"title": "Tala Voskin", "text": "Tala Voskin was born in Velmora. Tala worked as a glassblower."}``;
``distractors`` extra documents (landmarks, products, students, movers) have fresh titles and
mention world entities in their text. A question follows ``hops`` relations from a company or a
person; every relation is a function, so the answer (one entity name) is unique.

Solvability: an entity titles at most two documents, and a titled document matches a search for
the name in both title and text, so searching each hop's entity name ranks the needed fact in the
top 3 of :class:`rlvr.tools.search.SearchIndex` (the tests check every question they draw).

Held out by world, not by hash: the eval questions come from a second, disconnected part of the
world (``eval_percent`` % of the ``entities``, its own names) that no train question touches, so
a policy cannot pass eval by memorising facts seen in training; it must search. Both parts and the
distractors share one corpus file, written once under ``<rlvr cache>/multihop/`` with a name that
holds a hash of its content (so changed generator code never reuses a stale file), atomically.
``Example.meta`` carries ``corpus`` (that path), ``hops``, ``supporting`` (the fact documents' ids,
in hop order) and ``path`` (the entity names from the start to the answer).

Limits: questions are drawn uniformly over (chain, start entity), so mentor chains, which have the
most starts, dominate; countries are few (one per eight entities), so a blind guess is right more
often on a country question than on a person question; ``eval_percent`` here is a share of the
world, not of the questions; train questions are drawn with replacement from a finite pool (a few
hundred per chain with the default 500 entities); the wording comes from a handful of templates.
"""

import hashlib
import itertools
import json
import os
import random
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rlvr.errors import ConfigError, DataError
from rlvr.tasks import TASKS, ListTask, Task, check_params
from rlvr.types import Example

# The tool-call syntax shown to the model; the multi-turn rollout parses the same tags.
SEARCH_CALL_HELP = (
    "You can search a private encyclopedia by writing <search>your query</search>; "
    "results appear in <result>...</result>."
)
MIN_PART_ENTITIES = 12  # smallest world part that still has every kind of entity and relation
MENTOR_WINDOW = 8  # a person's mentor is one of the 8 people generated just before them


@dataclass(frozen=True)
class Relation:
    """A functional relation between two kinds of entity, with its wording."""

    subject: str  # kind of the subject entity
    object: str  # kind of the object entity
    phrase: str  # noun phrase naming the object of {x}: nests inner hops
    question: str  # the question when this relation is the last hop
    fact: str  # the corpus sentence stating it


RELATIONS = {
    "founder": Relation("company", "person", "the founder of {x}", "Who founded {x}?", "{s} was founded by {o}."),
    "headquarters": Relation(
        "company",
        "city",
        "the city where {x} is headquartered",
        "In which city is {x} headquartered?",
        "{s} is headquartered in {o}.",
    ),
    "mentor": Relation("person", "person", "the mentor of {x}", "Who was the mentor of {x}?", "{s}'s mentor was {o}."),
    "birthplace": Relation(
        "person", "city", "the city where {x} was born", "In which city was {x} born?", "{s} was born in {o}."
    ),
    "country": Relation(
        "city", "country", "the country that {x} is in", "In which country is {x}?", "{s} is a city in {o}."
    ),
}
CAPITAL_FACT = "{s} is the capital of {o}."

SYLLABLES = (
    "ka lo ren mir vo tal zen dra sha bel cor quin fa nor el is tor ves ul ar mo dan ke rho sil var ith ob "
    "pel ru sen tam ux vel wyn yr zor ha jo lun ne os pra gil bra cai del fen"
).split()
SUFFIXES = {
    "country": ("ia", "land", "esh", "ovia", "istan"),
    "city": ("mora", "vik", "holm", "port", "dal", "ford"),
    "company": ("ix", "ex", "on", "ium", "ent", "ara"),
    "first": ("", "a", "o", "el", "is"),
    "last": ("in", "ov", "ard", "ez", "ski", "sen"),
    "thing": ("o", "ite", "ax", "ule"),
}
PROFESSIONS = ("a cartographer", "a glassblower", "an archivist", "an engineer", "a violinist", "a botanist")
GOODS = ("water filters", "clockwork toys", "river barges", "solar lanterns", "paper maps", "bicycle bells")
FEATURES = ("salt markets", "old bridges", "tea houses", "lantern festival", "copper mines", "harbour")
LANDMARKS = ("a museum", "a bridge", "a lighthouse", "a market hall", "an observatory", "a library")
PRODUCTS = ("a lantern", "a kettle", "a sewing machine", "a barometer", "a camera", "a bicycle")
_TEMPLATE_TEXT = " ".join(
    [SEARCH_CALL_HELP, CAPITAL_FACT, *PROFESSIONS, *GOODS, *FEATURES, *LANDMARKS, *PRODUCTS]
    + [text for r in RELATIONS.values() for text in (r.phrase, r.question, r.fact)]
    + ["worked as It is known for its studied under moved from to made by in answer question boxed name"]
)
RESERVED = frozenset(w.lower() for w in re.findall(r"[A-Za-z]+", _TEMPLATE_TEXT))  # names never equal these


@dataclass
class Part:
    """One disconnected part of the world: its entities by kind and its facts."""

    entities: dict[str, list[str]] = field(default_factory=dict)  # kind -> names
    facts: dict[tuple[str, str], str] = field(default_factory=dict)  # (subject, relation) -> object
    fact_doc: dict[tuple[str, str], str] = field(default_factory=dict)  # (subject, relation) -> doc id


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    supporting: tuple[str, ...]  # doc ids, one per hop
    path: tuple[str, ...]  # entity names: start, ..., answer


@dataclass(frozen=True)
class World:
    train: Part
    eval: Part
    docs: list[dict[str, str]]  # corpus rows {"id", "title", "text"}, sorted by id


def prompt_text(question: str) -> str:
    return f"Answer the question. {SEARCH_CALL_HELP} Give the final answer as \\boxed{{name}}.\n\nQuestion: {question}"


@TASKS.register("multihop")
def multihop(
    hops: int = 2,
    entities: int = 500,
    distractors: int = 200,
    train_size: int = 2000,
    eval_size: int = 200,
    seed: int = 0,
    eval_percent: int = 30,
) -> Task:
    """``hops``-hop questions (1 to 3) over a world of ``entities`` invented entities.

    Eval: ``eval_size`` distinct questions from the held-out part of the world (DataError if it has
    fewer). Train: ``train_size`` questions drawn with replacement from the train part.
    """
    if hops not in (1, 2, 3):
        raise ConfigError(f"task 'multihop': hops must be 1, 2 or 3, got {hops}")
    check_params(
        "multihop", eval_percent=eval_percent, train_size=train_size, eval_size=eval_size, distractors=distractors
    )
    world = build_world(seed, entities, distractors, eval_percent)
    corpus = str(write_corpus(world.docs, seed))
    held_pool = questions(world.eval, hops)
    train_pool = questions(world.train, hops)
    if len(held_pool) < eval_size:
        raise DataError(
            f"task 'multihop': the held-out part of the world has only {len(held_pool)} {hops}-hop questions "
            f"but eval_size={eval_size}; raise entities or eval_percent, or lower eval_size"
        )
    held = random.Random(f"multihop:eval:{seed}").sample(held_pool, eval_size)
    train = random.Random(f"multihop:train:{seed}").choices(train_pool, k=train_size) if train_size else []
    return ListTask(
        "multihop",
        train=[_example(q, f"multihop-train-{i}", corpus, hops) for i, q in enumerate(train)],
        eval=[_example(q, f"multihop-eval-{i}", corpus, hops) for i, q in enumerate(held)],
        verifier="exact_match",
    )


def build_world(seed: int, entities: int, distractors: int, eval_percent: int) -> World:
    """The whole world for these parameters: deterministic, names unique across both parts."""
    n_eval = round(entities * eval_percent / 100)
    if min(n_eval, entities - n_eval) < MIN_PART_ENTITIES:
        raise ConfigError(
            f"task 'multihop': entities={entities} with eval_percent={eval_percent} leaves a world part under "
            f"{MIN_PART_ENTITIES} entities; raise entities"
        )
    rng = random.Random(f"multihop:world:{seed}")
    names = _Names(rng)
    pending: list[tuple[str, str, tuple[Part, str, str] | None]] = []  # (title, text, fact it states)
    train = _build_part(rng, names, entities - n_eval, pending)
    held = _build_part(rng, names, n_eval, pending)
    _add_distractors(rng, names, [train, held], distractors, pending)
    rng.shuffle(pending)
    width = len(str(len(pending)))
    docs = []
    for n, (title, text, fact) in enumerate(pending):
        doc_id = f"d{n:0{width}d}"
        docs.append({"id": doc_id, "title": title, "text": text})
        if fact is not None:
            part, subject, relation = fact
            part.fact_doc[(subject, relation)] = doc_id
    return World(train=train, eval=held, docs=docs)


def questions(part: Part, hops: int) -> list[Question]:
    """Every ``hops``-hop question of one world part, in a fixed order."""
    out = []
    for chain in chains(hops):
        for start in part.entities[RELATIONS[chain[0]].subject]:
            path, supporting = [start], []
            for relation in chain:
                obj = part.facts.get((path[-1], relation))
                if obj is None:
                    break
                supporting.append(part.fact_doc[(path[-1], relation)])
                path.append(obj)
            else:
                out.append(Question(question_text(chain, start), path[-1], tuple(supporting), tuple(path)))
    return out


def chains(hops: int) -> list[tuple[str, ...]]:
    """Relation sequences of length ``hops`` where each object is the next subject, sorted."""
    return sorted(
        chain
        for chain in itertools.product(RELATIONS, repeat=hops)
        if all(RELATIONS[a].object == RELATIONS[b].subject for a, b in itertools.pairwise(chain))
    )


def question_text(chain: tuple[str, ...], start: str) -> str:
    """``("founder", "birthplace"), "Zentrix"`` -> "In which city was the founder of Zentrix born?"."""
    phrase = start
    for relation in chain[:-1]:
        phrase = RELATIONS[relation].phrase.format(x=phrase)
    return RELATIONS[chain[-1]].question.format(x=phrase)


def write_corpus(docs: list[dict[str, str]], seed: int) -> Path:
    """The corpus as JSONL under the rlvr cache, named by its content hash; written once, atomically."""
    from rlvr.models import cache_dir

    data = "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs).encode("utf-8")
    path = cache_dir() / "multihop" / f"corpus-seed{seed}-{hashlib.sha256(data).hexdigest()[:16]}.jsonl"
    if path.is_file() and path.stat().st_size == len(data):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class _Names:
    """Unique invented names: syllables plus a suffix that hints at the kind, never an English template word."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set(RESERVED)

    def word(self, style: str) -> str:
        for _ in range(1000):
            syllables = self.rng.choice((1, 2, 2, 2, 3))
            word = "".join(self.rng.choice(SYLLABLES) for _ in range(syllables)) + self.rng.choice(SUFFIXES[style])
            if len(word) >= 4 and word not in self.used:
                self.used.add(word)
                return word.capitalize()
        raise DataError("task 'multihop': ran out of distinct invented names; lower entities or distractors")

    def person(self) -> str:
        return f"{self.word('first')} {self.word('last')}"


def _build_part(
    rng: random.Random, names: _Names, size: int, docs: list[tuple[str, str, tuple[Part, str, str] | None]]
) -> Part:
    n_countries = max(2, size // 8)
    n_cities = max(n_countries + 1, size // 4)
    n_companies = max(2, size // 5)
    part = Part()
    part.entities = {
        "country": [names.word("country") for _ in range(n_countries)],
        "city": [names.word("city") for _ in range(n_cities)],
        "company": [names.word("company") for _ in range(n_companies)],
        "person": [names.person() for _ in range(size - n_countries - n_cities - n_companies)],
    }
    countries, cities, people = part.entities["country"], part.entities["city"], part.entities["person"]

    def state(subject: str, relation: str, obj: str, flavor: str, template: str | None = None) -> None:
        part.facts[(subject, relation)] = obj
        text = (template or RELATIONS[relation].fact).format(s=subject, o=obj)
        docs.append((subject, f"{text} {flavor}".strip(), (part, subject, relation)))

    for i, city in enumerate(cities):  # the first city of each country is its capital
        country = countries[i] if i < n_countries else rng.choice(countries)
        feature = f"It is known for its {rng.choice(FEATURES)}." if rng.random() < 0.5 else ""
        state(city, "country", country, feature, CAPITAL_FACT if i < n_countries else None)
    roots = max(1, len(people) // 8)  # the first people have no mentor
    for i, person in enumerate(people):
        job = f"{person.split()[0]} worked as {rng.choice(PROFESSIONS)}."
        state(person, "birthplace", rng.choice(cities), job if rng.random() < 0.5 else "")
        if i >= roots:
            mentor = people[rng.randrange(max(0, i - MENTOR_WINDOW), i)]  # a recent one: no person mentors dozens
            state(person, "mentor", mentor, job if rng.random() < 0.5 else "")
    for company in part.entities["company"]:
        goods = f"It is known for its {rng.choice(GOODS)}."
        state(company, "founder", rng.choice(people), goods if rng.random() < 0.5 else "")
        state(company, "headquarters", rng.choice(cities), goods if rng.random() < 0.5 else "")
    return part


def _add_distractors(
    rng: random.Random,
    names: _Names,
    parts: list[Part],
    count: int,
    docs: list[tuple[str, str, tuple[Part, str, str] | None]],
) -> None:
    """Documents with fresh titles that mention world entities: they match searches but answer nothing."""
    for _ in range(count):
        ents = rng.choice(parts).entities
        kind = rng.randrange(4)
        if kind == 0:
            title = names.word("thing")
            text = f"{title} is {rng.choice(LANDMARKS)} in {rng.choice(ents['city'])}."
        elif kind == 1:
            title = names.word("thing")
            text = f"{title} is {rng.choice(PRODUCTS)} made by {rng.choice(ents['company'])}."
        elif kind == 2:
            title = names.person()
            text = f"{title} studied under {rng.choice(ents['person'])}."
        else:
            title = names.person()
            text = f"{title} moved from {rng.choice(ents['country'])} to {rng.choice(ents['city'])}."
        docs.append((title, text, None))


def _example(q: Question, example_id: str, corpus: str, hops: int) -> Example:
    return Example(
        id=example_id,
        prompt=[{"role": "user", "content": prompt_text(q.text)}],
        answer=q.answer,
        meta={"corpus": corpus, "hops": hops, "supporting": list(q.supporting), "path": list(q.path)},
    )
