"""Deterministic, seeded generator of MiSC-shaped starter episodes.

Follows the MiSC construction of the EMMA paper (§3):

* §3.1 scenario setup — a main speaker and three partners with names and jobs/relationships,
  six sessions, each with an event and exactly one partner (partners recur: mixed-session);
* §3.2 dialogue generation — 6–12 alternating turns per session, continuing earlier sessions
  (the main speaker follows up with a returning partner, partners ask about *other* partners);
* §3.3 egocentric memory — memory sentences about the main speaker and about the session's
  partner, written from the main speaker's perspective ("Bob told me he is …", "I promised Bob
  I would …"); *memory connection* — links within the session and to earlier sessions, newer →
  older, kind ``update`` when a fact changed (never overwritten), else ``related``; *memory
  tagging* — main-speaker utterances that use an earlier memory carry its id, and their text is
  rendered from the same fact as the memory, so a retriever can learn the association.

The same ``(n, seed)`` always gives the same episodes (each episode has its own
``random.Random`` seeded from a string, which is stable across processes and platforms).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..model import Episode, Link, Memory, Session, Speaker, Turn
from .templates import Family, Fact, Person, Templates, fill, load_templates, render_offer, render_person, sentence_case

GENERATOR = "memlab-starter-corpus/1"
N_SESSIONS = 6
N_PARTNERS = 3
MIN_TURNS, MAX_TURNS = 6, 12
MAIN, PARTNER = "main", "partner"


@dataclass
class FactState:
    """A fact one speaker has shared, with the memory that currently holds it."""

    owner: str
    family: Family
    fact: Fact
    values: dict
    clause: str  # slots filled, person tokens left
    memory_id: str
    session: int
    changed: bool = False


@dataclass
class Offer:
    partner: str
    text: str  # offer tokens left
    memory_id: str
    done: bool = False


@dataclass
class _Seg:
    role: str
    text: str
    tags: list = field(default_factory=list)


@dataclass
class _PendingMemory:
    memory: Memory
    family: str
    segs: list
    links: list  # (dst, kind)


@dataclass
class _Beat:
    kind: str
    roles: list
    data: dict = field(default_factory=dict)


_CONTRACTIONS = (("I am ", "I'm "), ("I have been ", "I've been "), ("you are ", "you're "),
                 ("You are ", "You're "), ("I have had ", "I've had "), ("it is ", "it's "))


def contract(text: str) -> str:
    """Spoken contractions ("I am" → "I'm"); memory sentences keep the full forms."""
    for full, short in _CONTRACTIONS:
        text = text.replace(full, short)
    return text


def _other(role: str) -> str:
    return PARTNER if role == MAIN else MAIN


def _runs(roles: list[str]) -> int:
    return sum(1 for i, r in enumerate(roles) if i == 0 or roles[i - 1] != r)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class _EpisodeBuilder:
    """Builds one episode; every random choice comes from ``self.rng``."""

    def __init__(self, tpl: Templates, rng: random.Random, ep_id: str):
        self.t, self.rng, self.ep_id = tpl, rng, ep_id
        self.used_templates: set[str] = set()
        self.memories: list[Memory] = []
        self.links: list[Link] = []
        self.link_set: set[tuple[str, str]] = set()
        self.mem_family: dict[str, str] = {}
        self.facts: list[FactState] = []
        self.offers: list[Offer] = []
        self.used_facts: set[tuple[str, str]] = set()
        self.family_order = [f for f in tpl.families]
        rng.shuffle(self.family_order)
        self.pron: dict[str, str] = {}
        self.asked_about: set[tuple[str, str]] = set()
        self.followed: set[str] = set()  # memories already followed up

    # -- small helpers ------------------------------------------------------------------------
    def pick(self, key: str, section: str = "phrasings") -> str:
        pool = getattr(self.t, section)[key]
        i = self.rng.randrange(len(pool))
        self.used_templates.add(f"{section}.{key}[{i}]")
        return pool[i]

    def pick_from(self, family: Family, key: str) -> str:
        pool = getattr(family, key)
        i = self.rng.randrange(len(pool))
        self.used_templates.add(f"topic.{family.id}.{key}[{i}]")
        return pool[i]

    def pick_for(self, family: Family, fact: Fact, key: str) -> str:
        """A feeling or offer: the fact's own list when it has one, else the family's."""
        pool = getattr(fact, key)
        if not pool:
            return self.pick_from(family, key)
        i = self.rng.randrange(len(pool))
        self.used_templates.add(f"topic.{family.id}.fact.{fact.id}.{key}[{i}]")
        return pool[i]

    def person(self, name: str, grammatical: str, named: bool = False) -> Person:
        return Person(grammatical, name, self.pron[name], named)

    def say(self, frame: str, **values) -> str:
        return sentence_case(fill(frame, values))

    @staticmethod
    def phrase(frame: str, **values) -> str:
        """A clause inside a longer sentence (no capitalisation)."""
        return fill(frame, values)

    def prons(self, name: str, prefix: str = "") -> dict:
        from .templates import PRONOUNS

        p = PRONOUNS[self.pron[name]]
        return {f"{prefix}sub": p["sub"], f"{prefix}obj": p["obj"], f"{prefix}pos": p["pos"]}

    # -- scenario ----------------------------------------------------------------------------
    def cast(self) -> tuple[Speaker, list[Speaker]]:
        rng, t = self.rng, self.t
        pron = rng.choice(sorted(t.names))
        main_name = rng.choice(t.names[pron])
        self.pron[main_name] = pron
        main = Speaker(main_name, rng.choice(t.main_jobs))
        partners, roles_used = [], set()
        while len(partners) < N_PARTNERS:
            p = rng.choice(sorted(t.names))
            name = rng.choice(t.names[p])
            if name in self.pron:
                continue
            pool = list(t.partner_roles) * 3 + list(t.gendered_roles[p])
            role = rng.choice(pool)
            if role in roles_used:
                continue
            roles_used.add(role)
            self.pron[name] = p
            partners.append(Speaker(name, role))
        return main, partners

    def schedule(self, partners: list[Speaker]) -> list[Speaker]:
        """Six sessions, one partner each, every partner at least once, never twice in a row."""
        while True:
            order = [self.rng.randrange(N_PARTNERS) for _ in range(N_SESSIONS)]
            if len(set(order)) == N_PARTNERS and all(a != b for a, b in zip(order, order[1:])):
                return [partners[i] for i in order]

    # -- facts -------------------------------------------------------------------------------
    def new_fact(self, owner: str, session: int, family: Family | None = None,
                 coincidence: bool = False) -> tuple[Family, Fact, dict]:
        """A fact nobody in the episode has shared yet; from a new topic family unless one is given
        (a coincidence with another partner's news is never about bad news)."""
        if family is None:
            family = next(f for f in self.family_order
                          if any((f.id, x.id) not in self.used_facts for x in f.facts)
                          and f.id not in {fs.family.id for fs in self.facts})
        fresh = [x for x in family.facts if (family.id, x.id) not in self.used_facts]
        fact = self.rng.choice([x for x in fresh if not x.sad] if coincidence else fresh)
        self.used_facts.add((family.id, fact.id))
        self.used_templates.add(f"topic.{family.id}.fact.{fact.id}")
        values = {k: self.rng.choice(v) for k, v in sorted(fact.slots.items())}
        return family, fact, values

    def clause(self, fs_or_clause, who: str, grammatical: str, named: bool = False) -> str:
        text = fs_or_clause.clause if isinstance(fs_or_clause, FactState) else fs_or_clause
        return render_person(text, self.person(who, grammatical, named))

    def coincidence_family(self, partner: str, avoid: FactState | None = None) -> FactState | None:
        """An earlier fact of another partner whose topic family this partner's news can share."""
        options = [fs for fs in self.facts if fs.owner not in (partner, self.main.name) and fs is not avoid
                   and (avoid is None or fs.owner != avoid.owner)
                   and not fs.fact.sad
                   and any((fs.family.id, x.id) not in self.used_facts and not x.sad for x in fs.family.facts)]
        return self.rng.choice(options) if options else None

    # -- memories ----------------------------------------------------------------------------
    def memory(self, session: int, about: str, key: str, family: str, segs: list, links=(), **values) -> _PendingMemory:
        mid = f"m{len(self.memories) + len(self.pending)}"
        text = self.say(self.pick(key, "memory"), **values)
        pm = _PendingMemory(Memory(mid, self.main.name, about, text, session), family, list(segs), list(links))
        self.pending.append(pm)
        return pm

    def add_link(self, src: str, dst: str, kind: str):
        if src != dst and (src, dst) not in self.link_set:
            self.link_set.add((src, dst))
            self.links.append(Link(src, dst, kind))

    # -- session planning ----------------------------------------------------------------------
    def plan(self, si: int, partner: Speaker) -> list[_Beat]:
        rng, P = self.rng, partner.name
        opener = rng.choice([MAIN, PARTNER])
        head = [_Beat("open", [opener, _other(opener)], {"opener": opener})]
        own = [fs for fs in self.facts if fs.owner == P and fs.memory_id not in self.followed]
        if own:
            fs = rng.choice(own)
            self.followed.add(fs.memory_id)
            change = bool(fs.fact.change) and not fs.changed and rng.random() < 0.6
            head.append(_Beat("followup", [MAIN, PARTNER, MAIN], {"fs": fs, "change": change}))
        offers = [o for o in self.offers if o.partner == P and not o.done]
        if offers and rng.random() < 0.7:
            head.append(_Beat("promise", [MAIN, PARTNER], {"offer": offers[0]}))
        middle = []
        others = [fs for fs in self.facts if fs.owner not in (P, self.main.name)
                  and (P, fs.owner) not in self.asked_about]
        if others and rng.random() < 0.65:
            middle.append(_Beat("cross", [PARTNER, MAIN, PARTNER], {"fs": rng.choice(others)}))
        used = middle[0].data["fs"] if middle else None
        coinc = self.coincidence_family(P, avoid=used) if rng.random() < 0.35 else None
        fact = _Beat("fact", [], {"coinc": coinc, "feel": rng.random() < 0.6, "offer": rng.random() < 0.45})
        middle.append(fact)
        if rng.random() < 0.55:
            middle.append(self.self_beat(P))
        rng.shuffle(middle)
        if rng.random() < 0.3:
            middle.insert(rng.randrange(len(middle) + 1), self.small_beat())
        closer = rng.choice([MAIN, PARTNER])
        beats = head + middle + [_Beat("close", [closer, _other(closer)])]

        def total() -> int:
            for b in beats:
                if b.kind == "fact":
                    b.roles = [PARTNER, MAIN] + ([PARTNER] if b.data["coinc"] else []) \
                        + ([PARTNER, MAIN] if b.data["feel"] else []) + ([MAIN, PARTNER] if b.data["offer"] else [])
            return _runs([r for b in beats for r in b.roles])

        drops = [lambda: self._drop(beats, "small"), lambda: self._drop(beats, "promise"),
                 lambda: self._drop(beats, "self"), lambda: fact.data.update(feel=False) if fact.data["feel"] else False,
                 lambda: fact.data.update(offer=False) if fact.data["offer"] else False,
                 lambda: self._drop(beats, "cross")]
        while total() > MAX_TURNS:
            for d in drops:
                if d() is not False:
                    break
        adds = [lambda: self._add(beats, "self", P), lambda: fact.data.update(feel=True) if not fact.data["feel"] else False,
                lambda: fact.data.update(offer=True) if not fact.data["offer"] else False,
                lambda: self._add(beats, "small")]
        while total() < MIN_TURNS:
            for a in adds:
                if a() is not False:
                    break
        return beats

    def self_beat(self, partner: str) -> _Beat:
        """The partner asks about the main speaker; the answer is new, or a fact told to another partner."""
        mine = [fs for fs in self.facts if fs.owner == self.main.name
                and self.sessions[fs.session].partner.name != partner]
        again = bool(mine) and self.rng.random() < 0.4
        return _Beat("self", [PARTNER, MAIN, PARTNER], {"again": self.rng.choice(mine) if again else None})

    def small_beat(self) -> _Beat:
        first = self.rng.choice([MAIN, PARTNER])
        return _Beat("small", [first, _other(first)])

    @staticmethod
    def _drop(beats, kind):
        for i, b in enumerate(beats):
            if b.kind == kind:
                del beats[i]
                return True
        return False

    def _add(self, beats, kind, partner=""):
        if any(b.kind == kind for b in beats):
            if kind != "small":
                return False
        beat = self.self_beat(partner) if kind == "self" else self.small_beat()
        beats.insert(len(beats) - 1, beat)
        return True

    # -- session rendering ---------------------------------------------------------------------
    def session(self, si: int, partner: Speaker, setting: dict) -> Session:
        M, P = self.main.name, partner.name
        self.pending: list[_PendingMemory] = []
        segs: list[_Seg] = []
        events: list[str] = []

        def add(role, text, tags=()):
            if self.rng.random() < 0.6:
                text = contract(text)
            segs.append(_Seg(role, text, list(tags)))
            return len(segs) - 1

        for beat in self.plan(si, partner):
            getattr(self, f"_beat_{beat.kind}")(si, M, P, beat, add, events, setting)

        # merge consecutive segments of one speaker into one turn (turns alternate)
        turns: list[Turn] = []
        seg_turn: list[int] = []
        for seg in segs:
            speaker = M if seg.role == MAIN else P
            if turns and turns[-1].speaker == speaker:
                turns[-1].text += " " + seg.text
                turns[-1].memory_ids.extend(x for x in seg.tags if x not in turns[-1].memory_ids)
            else:
                turns.append(Turn(f"s{si}t{len(turns)}", speaker, seg.text, list(seg.tags)))
            seg_turn.append(len(turns) - 1)
        assert MIN_TURNS <= len(turns) <= MAX_TURNS, len(turns)

        for pm in self.pending:
            pm.memory.source_turns = sorted({turns[seg_turn[s]].id for s in pm.segs}, key=lambda x: int(x.split("t")[1]))
            self.memories.append(pm.memory)
            self.mem_family[pm.memory.id] = pm.family
            for dst, kind in pm.links:
                self.add_link(pm.memory.id, dst, kind)
            # memory connection to earlier sessions on the same topic family (§3.3)
            earlier = [m for m in self.memories if m.session < si and self.mem_family[m.id] == pm.family]
            for m in earlier[-2:]:
                self.add_link(pm.memory.id, m.id, "related")
        event = self.say(setting["event"], M=M, P=P)
        if events:
            event += ", where " + _join(events)
        return Session(si, partner, event + ".", turns, None)

    def _beat_open(self, si, M, P, beat, add, events, setting):
        opener = beat.data["opener"]
        greet = self.say(self.pick("greet_open"), P=P if opener == MAIN else M)
        if opener == MAIN and setting.get("line") and self.rng.random() < 0.5:
            greet += " " + setting["line"]
        add(opener, greet)
        add(_other(opener), self.say(self.pick("greet_reply")))

    def _beat_followup(self, si, M, P, beat, add, events, setting):
        fs: FactState = beat.data["fs"]
        if fs.changed:
            ask = self.say(self.pick("ask_generic"))
        else:
            ask = self.say(render_person(fill(self._ask(fs), fs.values), self.person(P, "second")))
        s_ask = add(MAIN, self.say(self.pick("followup"), clause_you=self.clause(fs, P, "second"), ask=ask), [fs.memory_id])
        events.append(self.phrase(self.pick("followup", "event"), M=M, np_named=render_person(fill(fs.fact.np, fs.values), self.person(P, "third", True))))
        if beat.data["change"]:
            ch = fs.fact.change
            values = dict(fs.values)
            for k, pool in sorted(ch["slots"].items()):
                values[k] = self.rng.choice([v for v in pool if v not in fs.values.values()] or list(pool))
            new_clause = fill(ch["clause"], values)
            s_ans = add(PARTNER, self.say(self.pick("change"), change_i=self.clause(new_clause, P, "first")))
            add(MAIN, self.say(self.pick("change_react")))
            pm = self.memory(si, P, "update", fs.family.id, [s_ask, s_ans], [(fs.memory_id, "update")], P=P,
                             change_they=self.clause(new_clause, P, "third"),
                             change_named=self.clause(new_clause, P, "third", True))
            self.used_templates.add(f"topic.{fs.family.id}.fact.{fs.fact.id}.change")
            fs.clause, fs.values, fs.changed, fs.memory_id, fs.session = new_clause, values, True, pm.memory.id, si
        else:
            s_ans = add(PARTNER, self.say(self.pick("progress")))
            add(MAIN, self.say(self.pick("progress_react")))
            np_they = render_person(fill(fs.fact.np, fs.values), self.person(P, "third"))
            self.memory(si, P, "progress", fs.family.id, [s_ask, s_ans], [(fs.memory_id, "related")], P=P, np_they=np_they)

    def _ask(self, fs: FactState) -> str:
        i = self.rng.randrange(len(fs.fact.ask))
        self.used_templates.add(f"topic.{fs.family.id}.fact.{fs.fact.id}.ask[{i}]")
        return fs.fact.ask[i]

    def _beat_promise(self, si, M, P, beat, add, events, setting):
        offer: Offer = beat.data["offer"]
        add(MAIN, self.say(self.pick("promise_recall"), offer_you=render_offer(offer.text, "second", self.pron[P])), [offer.memory_id])
        add(PARTNER, self.say(self.pick("promise_thanks")))
        offer.done = True

    def _beat_cross(self, si, M, P, beat, add, events, setting):
        fs: FactState = beat.data["fs"]
        B = fs.owner
        self.asked_about.add((P, B))
        bp = self.prons(B, "B_")
        s_q = add(PARTNER, self.say(self.pick("cross_ask"), B=B, **bp))
        s_a = add(MAIN, self.say(self.pick("cross_answer"), B=B, **bp, b_clause_they=self.clause(fs, B, "third"),
                                 b_clause_they_named=self.clause(fs, B, "third", True)), [fs.memory_id])
        add(PARTNER, self.say(self.pick("cross_react"), B=B, **bp))
        events.append(self.phrase(self.pick("cross", "event"), P=P, B=B))
        self.memory(si, P, "cross", fs.family.id, [s_q, s_a], [(fs.memory_id, "related")], P=P, B=B,
                    b_clause_named=self.clause(fs, B, "third", True), **self.prons(P))

    def _beat_fact(self, si, M, P, beat, add, events, setting):
        coinc: FactState | None = beat.data["coinc"]
        family, fact, values = self.new_fact(P, si, coinc.family if coinc else None, coincidence=bool(coinc))
        clause = fill(fact.clause, values)
        s_share = add(PARTNER, self.say(self.pick("share"), clause_i=self.clause(clause, P, "first")))
        if fact.sad:
            react = self.pick("react_sad")
        else:
            react = self.pick_from(family, "react") if self.rng.random() < 0.6 else self.pick("react_main")
        links = []
        if coinc:
            B = coinc.owner
            bp = self.prons(B, "B_")
            s_react = add(MAIN, react + " " + self.say(self.pick("coincidence"), B=B, **bp,
                                                      b_clause_they=self.clause(coinc, B, "third")), [coinc.memory_id])
            add(PARTNER, self.say(self.pick("coincidence_react"), B=B, **bp))
            links.append((coinc.memory_id, "related"))
        else:
            s_react = add(MAIN, react)
        events.append(self.phrase(self.pick("share", "event"), P=P, label=family.label))
        pm = self.memory(si, P, "partner_fact", family.id, [s_share, s_react], links, P=P,
                         clause_they=self.clause(clause, P, "third"), clause_named=self.clause(clause, P, "third", True))
        fs = FactState(P, family, fact, values, clause, pm.memory.id, si)
        self.facts.append(fs)
        if beat.data["feel"]:
            feel = fill(self.pick_for(family, fact, "feel"), values)
            happy = feel.startswith("+")
            feel = feel.lstrip("+")
            s_feel = add(PARTNER, self.say(self.pick("feel"), feel_i=render_person(feel, self.person(P, "first"))))
            add(MAIN, self.say(self.pick("support_positive" if happy else "support")))
            self.memory(si, P, "partner_feel", family.id, [s_feel], [(pm.memory.id, "related")], P=P,
                        feel_they=render_person(feel, self.person(P, "third")))
        if beat.data["offer"]:
            offer = fill(self.pick_for(family, fact, "offer"), values)
            s_off = add(MAIN, self.say(self.pick("offer"), offer_you=render_offer(offer, "second", self.pron[P])))
            s_acc = add(PARTNER, self.say(self.pick("accept"), M=M))
            om = self.memory(si, M, "offer", family.id, [s_off, s_acc], [(pm.memory.id, "related")], P=P,
                             offer_they=render_offer(offer, "third", self.pron[P]))
            self.offers.append(Offer(P, offer, om.memory.id))

    def _beat_self(self, si, M, P, beat, add, events, setting):
        s_q = add(PARTNER, self.say(self.pick("what_about_you"), M=M))
        old: FactState | None = beat.data["again"]
        if old is not None:
            told = next(m for m in self.memories if m.id == old.memory_id)
            B = next(s.partner.name for s in self.sessions if s.index == told.session)
            s_a = add(MAIN, self.say(self.pick("self_again"), B=B, clause_i=self.clause(old, M, "first")), [old.memory_id])
            family, links = old.family, [(old.memory_id, "related")]
            clause = old.clause
        else:
            family, fact, values = self.new_fact(M, si)
            clause = fill(fact.clause, values)
            s_a = add(MAIN, self.say(self.pick("share"), clause_i=self.clause(clause, M, "first")))
            links = []
        add(PARTNER, self.say(self.pick("react_generic")))
        events.append(self.phrase(self.pick("main", "event"), M=M, label=family.label))
        pm = self.memory(si, M, "main_fact", family.id, [s_q, s_a], links, P=P, clause_i=self.clause(clause, M, "first"))
        if old is None:
            self.facts.append(FactState(M, family, fact, values, clause, pm.memory.id, si))

    def _beat_small(self, si, M, P, beat, add, events, setting):
        pairs = self.t.phrasings["smalltalk"]
        i = self.rng.randrange(len(pairs))
        self.used_templates.add(f"phrasings.smalltalk[{i}]")
        add(beat.roles[0], pairs[i][0])
        add(beat.roles[1], pairs[i][1])

    def _beat_close(self, si, M, P, beat, add, events, setting):
        add(beat.roles[0], self.say(self.pick("close")))
        add(beat.roles[1], self.say(self.pick("close_reply")))

    # -- episode -------------------------------------------------------------------------------
    def build(self, seed: int, index: int) -> Episode:
        self.main, partners = self.cast()
        order = self.schedule(partners)
        settings = self.rng.sample(list(self.t.settings), N_SESSIONS)
        self.sessions: list[Session] = []
        for si, partner in enumerate(order):
            self.sessions.append(self.session(si, partner, settings[si]))
        meta = {
            "generator": GENERATOR, "seed": seed, "index": index,
            "families": sorted({fs.family.id for fs in self.facts}),
            "templates": sorted(self.used_templates),
        }
        return Episode(self.ep_id, self.main, partners, self.sessions, self.memories, self.links,
                       "starter-corpus", meta)


def generate_episode(seed: int, index: int, templates: Templates | None = None) -> Episode:
    """Episode ``index`` of the corpus with ``seed`` (independent of the other episodes)."""
    tpl = templates or load_templates()
    rng = random.Random(f"{GENERATOR}/{seed}/{index}")
    return _EpisodeBuilder(tpl, rng, f"starter-{seed}-{index:05d}").build(seed, index)


def generate_episodes(n: int, seed: int = 0, templates: Templates | None = None) -> list[Episode]:
    """``n`` MiSC-shaped episodes (EMMA paper §3), deterministic in ``(n, seed)``."""
    if n < 0:
        raise ValueError(f"number of episodes must be ≥ 0, got {n}")
    tpl = templates or load_templates()
    return [generate_episode(seed, i, tpl) for i in range(n)]
