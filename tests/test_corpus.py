"""The MiSC-shaped starter corpus (EMMA paper §3): shape, memories, links, tags, determinism, CLI."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from collections import Counter

import pytest

from engine.data import DataFormatError, episode_from_dict, episode_to_dict, read_episodes, write_episodes
from engine.data.corpus import generate_episodes, load_templates, split
from engine.data.corpus.templates import Person, default_root, render_person
from engine.data import corpus_cli


@pytest.fixture(scope="module")
def episodes():
    return generate_episodes(40, seed=11)


def _words(text: str) -> list[str]:
    text = text.lower().replace("i'm", "i am").replace("you're", "you are").replace("i've", "i have")
    return re.findall(r"[a-z0-9']+", text)


_PERSON = dict.fromkeys(["i", "you", "he", "she", "me", "him", "her", "my", "your", "his"], "P")
_PERSON.update({"am": "BE", "are": "BE", "is": "BE", "have": "HAVE", "has": "HAVE"})


def _longest_shared_run(a: str, b: str) -> int:
    """Length in words of the longest word sequence ``a`` and ``b`` share, ignoring grammatical
    person (the reply says "you bought your …" where the memory says "he bought his …")."""
    wa, wb = ([_PERSON.get(w, w) for w in _words(x)] for x in (a, b))
    best = 0
    prev = [0] * (len(wb) + 1)
    for x in wa:
        cur = [0] * (len(wb) + 1)
        for j, y in enumerate(wb, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def test_episode_shape_is_misc(episodes):
    assert episodes
    for e in episodes:
        assert len(e.partners) == 3 and len({p.name for p in e.partners} | {e.main.name}) == 4
        assert e.main.job and all(p.job for p in e.partners)
        assert len(e.sessions) == 6
        names = [s.partner.name for s in e.sessions]
        assert set(names) == {p.name for p in e.partners}, "every partner takes part"
        assert all(a != b for a, b in zip(names, names[1:])), "the partner changes every session"
        assert len(set(names)) < len(names), "partners recur (mixed-session)"
        for s in e.sessions:
            assert s.event.startswith(e.main.name) or e.main.name in s.event
            assert s.partner.name in s.event
            assert 6 <= len(s.turns) <= 12
            speakers = [t.speaker for t in s.turns]
            assert set(speakers) == {e.main.name, s.partner.name}
            assert all(a != b for a, b in zip(speakers, speakers[1:])), "turns alternate"
            for t in s.turns:
                assert len(t.text) >= 10 and "{" not in t.text and "}" not in t.text, t.text
                assert t.text[0].isupper()


def test_memories_are_egocentric(episodes):
    for e in episodes:
        by_turn = {t.id: s.index for s in e.sessions for t in s.turns}
        assert e.memories
        for m in e.memories:
            partner = e.sessions[m.session].partner.name
            assert m.owner == e.main.name
            assert m.about in (e.main.name, partner), "about the main speaker or that session's partner"
            assert m.source_turns and all(by_turn[t] == m.session for t in m.source_turns)
            assert "{" not in m.text and m.text.endswith(".") and m.text[0].isupper()
            assert partner in m.text, "written from the main speaker's view, naming the partner"
            if m.about == e.main.name:
                assert re.search(r"\b(I|my|me)\b", m.text), m.text
            else:
                assert e.main.name not in m.text, "the main speaker says 'I'/'me', not their own name"
        for s in e.sessions:
            abouts = {m.about for m in e.memories if m.session == s.index}
            assert s.partner.name in abouts, "every session leaves a memory about its partner"
    about_main = sum(m.about == e.main.name for e in episodes for m in e.memories)
    assert about_main >= len(episodes), "memories about the main speaker are formed too"


def test_links_go_newer_to_older_within_and_across_sessions(episodes):
    within = across = updates = 0
    for e in episodes:
        mem = {m.id: m for m in e.memories}
        for link in e.links:
            src, dst = mem[link.src], mem[link.dst]
            assert src.session >= dst.session
            assert e.memories.index(src) > e.memories.index(dst), "newer → older"
            within += src.session == dst.session
            across += src.session > dst.session
            if link.kind == "update":
                updates += 1
                assert src.session > dst.session and src.about == dst.about
    assert within > 0 and across > 0 and updates > 0


def test_tags_point_to_earlier_memories_whose_content_the_reply_uses(episodes):
    n_tags = cross = 0
    for e in episodes:
        mem = {m.id: m for m in e.memories}
        for s in e.sessions:
            for t in s.turns:
                for mid in t.memory_ids:
                    n_tags += 1
                    m = mem[mid]
                    assert t.speaker == e.main.name, "tags are on the main speaker's utterances"
                    assert m.session < s.index, "a tag uses a memory from an earlier session"
                    assert _longest_shared_run(t.text, m.text) >= 3, (t.text, m.text)
                    cross += m.about not in (s.partner.name, e.main.name)
    assert n_tags >= 3 * len(episodes)
    assert cross >= len(episodes), "later partners often hear about what other partners said"


def test_round_trip_through_the_episode_format(tmp_path, episodes):
    path = write_episodes(tmp_path / "corpus.json", episodes[:10])
    back = read_episodes(path)
    assert [episode_to_dict(e) for e in back] == [episode_to_dict(e) for e in episodes[:10]]
    for e in episodes:
        assert episode_to_dict(episode_from_dict(episode_to_dict(e))) == episode_to_dict(e)


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = write_episodes(tmp_path / "a.json", generate_episodes(15, seed=5)).read_bytes()
    b = write_episodes(tmp_path / "b.json", generate_episodes(15, seed=5)).read_bytes()
    c = write_episodes(tmp_path / "c.json", generate_episodes(15, seed=6)).read_bytes()
    assert a == b
    assert a != c
    # a longer corpus starts with the same episodes
    assert [episode_to_dict(e) for e in generate_episodes(20, seed=5)[:15]] == json.loads(a)["episodes"]


def test_wording_is_varied():
    eps = generate_episodes(200, seed=0)
    used = set().union(*(e.meta["templates"] for e in eps))
    families = set().union(*(e.meta["families"] for e in eps))
    tpl = load_templates()
    assert len(tpl.families) >= 40
    assert families == {f.id for f in tpl.families}
    assert len(used) >= 600
    bigrams = Counter()
    total = 0
    utterances = Counter()
    for e in eps:
        for _, t in e.turns():
            w = _words(t.text)
            bigrams.update(zip(w, w[1:]))
            total += max(len(w) - 1, 0)
            utterances[t.text] += 1
    assert len(bigrams) >= 5000 and len(bigrams) / total > 0.04
    assert utterances.most_common(1)[0][1] < 0.02 * sum(utterances.values()), "no utterance dominates"


def test_generation_of_200_episodes_finishes_within_a_minute():
    # a guard against accidental quadratic work, not a benchmark: 200 episodes take ~1 s here
    start = time.perf_counter()
    generate_episodes(200, seed=1)
    assert time.perf_counter() - start < 60


def test_person_rendering():
    clause = "{I} {am} training for the marathon and {my} coach push{es} {me}"
    assert render_person(clause, Person("first", "Bob", "he")) == "I am training for the marathon and my coach push me"
    assert render_person(clause, Person("second", "Bob", "he")) == "you are training for the marathon and your coach push you"
    assert render_person(clause, Person("third", "Ann", "she", named=True)) == \
        "Ann is training for the marathon and her coach pushes her"


def test_a_broken_template_names_file_record_and_field(tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(default_root(), root)
    path = root / "topics" / "health_sport.json"
    data = json.loads(path.read_text())
    data["families"][0]["facts"][0]["clause"] = "{I} {am} training for {race}"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError) as err:
        load_templates(str(root))
    e = err.value
    assert e.file == str(path) and e.record == "running.facts[0]" and e.field == "clause"
    assert "{race}" in str(e)


def test_split_is_seeded_disjoint_and_complete():
    eps = generate_episodes(30, seed=2)
    train, valid = split(eps, 0.2, seed=4)
    assert len(valid) == 6 and len(train) == 24
    assert {e.id for e in train} | {e.id for e in valid} == {e.id for e in eps}
    assert not {e.id for e in train} & {e.id for e in valid}
    again = split(eps, 0.2, seed=4)
    assert [e.id for e in again[1]] == [e.id for e in valid]
    assert [e.id for e in split(eps, 0.2, seed=5)[1]] != [e.id for e in valid]
    assert len(split(eps[:2], 0.01, seed=0)[1]) == 1
    with pytest.raises(ValueError):
        split(eps, 1.0, seed=0)


def _cli(argv):
    parser = argparse.ArgumentParser(prog="memlab")
    sub = parser.add_subparsers(dest="command")
    corpus_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_generate_writes_a_valid_file_and_prints_counts(tmp_path, capsys):
    out = tmp_path / "starter.json"
    assert _cli(["corpus", "generate", "--episodes", "5", "--seed", "9", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    eps = read_episodes(out)
    assert len(eps) == 5 and eps[0].source == "starter-corpus"
    assert "episodes: 5" in text and "sessions: 30" in text
    n_mem = sum(len(e.memories) for e in eps)
    assert f"memories: {n_mem}" in text
    assert _cli(["corpus", "generate", "--episodes", "0", "--out", str(out)]) == 2
    assert "--episodes must be at least 1" in capsys.readouterr().err
