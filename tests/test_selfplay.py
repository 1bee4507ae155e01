"""Self-play (EMMA §5.3): the protocol from a seed, four instances with their own memories, a valid resumable
memlab-episode/1 file, reproducible with a seed, any system in any seat, clear CLI errors."""

import json
import threading

import pytest

from engine.data.corpus.generator import generate_episodes
from engine.data.episode_format import read_episodes, write_episodes
from engine.selfplay.protocol import SeedError, plan_from_seed
from engine.selfplay.runner import play_episode, run_selfplay
from engine.systems import registry
from engine.systems.generation import GenerationSettings
from tiny.models import tiny_encoder, tiny_lm


@pytest.fixture(scope="module")
def models():
    return registry.Models(generator=tiny_lm("llama"), encoder=tiny_encoder(),
                           settings=GenerationSettings(max_new_tokens=4))


@pytest.fixture(scope="module")
def seeds():
    return generate_episodes(3, seed=4242)


def _factory(models, main="emma", partner="emma"):
    return lambda role, speaker: registry.build_agent(main if role == "main" else partner, models)


def _seats(plan, main="emma", partner="emma"):
    return {plan.main.name: main, **{p.name: partner for p in plan.partners}}


def _reseed(seed):
    import torch

    torch.manual_seed(seed)


def test_plan_follows_the_seed_and_the_paper(seeds):
    seed = seeds[0]
    plan = plan_from_seed(seed)
    assert len(plan.sessions) == 6 and plan.max_turns == 8
    assert plan.main == seed.main and list(plan.partners) == seed.partners
    assert plan.sessions[0].first_utterance == seed.sessions[0].turns[0].text
    assert all(s.first_utterance is None for s in plan.sessions[1:])  # only the first session's (§5.3)
    assert [s.partner for s in plan.sessions] == [s.partner.name for s in seed.sessions]


def test_a_seed_without_three_partners_is_refused_with_its_id(seeds):
    ep = seeds[0]
    ep2 = type(ep)(ep.id, ep.main, ep.partners[:1], ep.sessions[:1], [], [], "x")
    with pytest.raises(SeedError, match=ep.id):
        plan_from_seed(ep2)


def test_four_instances_play_a_valid_episode_with_their_own_memories(models, seeds, tmp_path):
    plan = plan_from_seed(seeds[0], sessions=2, max_turns=3)
    ep = play_episode(plan, _factory(models), episode_id="sp-1", seats=_seats(plan), seed=7, reseed=_reseed)
    assert [s.partner.name for s in ep.sessions] == [p.partner for p in plan.sessions]
    assert all(1 <= len(s.turns) <= 3 for s in ep.sessions)
    assert ep.sessions[0].turns[0].text == seeds[0].sessions[0].turns[0].text
    speakers = {t.speaker for s in ep.sessions for t in s.turns}
    assert ep.main.name in speakers and speakers <= {ep.main.name, *(p.name for p in ep.partners)}
    inst = ep.meta["selfplay"]["instances"]
    assert set(inst) == {ep.main.name, *(p.name for p in ep.partners)}  # four instances
    assert inst[ep.main.name]["role"] == "main"
    assert [m.text for m in ep.memories] == [m["text"] for m in inst[ep.main.name]["memory"]["memories"]]
    met = {p.partner for p in plan.sessions}
    for name, i in inst.items():  # partners met keep their own memory of the main speaker; the others none
        if name != ep.main.name and name not in met:
            assert i["memory"]["memories"] == []
    write_episodes(tmp_path / "one.json", [ep])  # the file round-trips through the format's validation
    assert read_episodes(tmp_path / "one.json")[0].id == "sp-1"


def test_same_seed_same_episode_and_any_system_in_any_seat(models, seeds):
    plan = plan_from_seed(seeds[1], sessions=2, max_turns=3)
    f = _factory(models, "emma", "no-memory")
    a = play_episode(plan, f, episode_id="a", seats=_seats(plan, "emma", "no-memory"), seed=3, reseed=_reseed)
    b = play_episode(plan, f, episode_id="a", seats=_seats(plan, "emma", "no-memory"), seed=3, reseed=_reseed)
    assert [t.text for _, t in a.turns()] == [t.text for _, t in b.turns()]
    assert a.meta["selfplay"]["seats"][plan.partners[0].name] == "no-memory"


def test_an_interrupted_run_continues_at_the_next_episode(models, seeds, tmp_path):
    plans = [plan_from_seed(s, sessions=1, max_turns=2) for s in seeds[:2]]
    out = tmp_path / "sp.json"
    cancel = threading.Event()
    first = run_selfplay(plans, _factory(models), out, seats=_seats, seed=5, reseed=_reseed,
                         on_episode=lambda ep, n, total: cancel.set(), cancel=cancel)
    assert len(first) == 1 and len(read_episodes(out)) == 1
    before = json.loads(out.read_text())["episodes"][0]
    played = []
    both = run_selfplay(plans, _factory(models), out, seats=_seats, seed=5, reseed=_reseed,
                        on_episode=lambda ep, n, total: played.append(n))
    assert played == [1] and [e.id for e in both] == [first[0].id, both[1].id]
    assert json.loads(out.read_text())["episodes"][0] == before  # the finished episode is untouched


def test_cli_names_the_seed_file_when_it_cannot_seed(tmp_path, capsys):
    from desktop.cli import main

    bad = tmp_path / "seeds.json"
    bad.write_text('{"format": "memlab-episode/1", "episodes": []}')
    rc = main(["selfplay", "--seeds", str(bad), "--episodes", "2", "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "seeds.json" in err and "Traceback" not in err


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_each_turn_once_and_episodes_in_parallel_keep_plan_order(models, seeds, tmp_path, workers):
    """The turn count never exceeds the total (a finished episode is counted once); with workers > 1 (a
    generator server) the episodes are played at once and written in plan order, each with its own seed."""
    plans = [plan_from_seed(s, sessions=2, max_turns=2) for s in seeds[:3]]
    seen = []
    eps = run_selfplay(plans, _factory(models), tmp_path / "sp.json", seats=_seats, seed=5, reseed=_reseed,
                       progress=lambda stage, done, total: seen.append((done, total)), workers=workers)
    total = sum(len(p.sessions) * p.max_turns for p in plans)
    assert seen and all(d <= t == total for d, t in seen)
    from engine.selfplay.runner import episode_id_for

    in_order = [episode_id_for(p.seed_id, n) for n, p in enumerate(plans)]
    assert [e.id for e in eps] == in_order == [e.id for e in read_episodes(tmp_path / "sp.json")]


def test_an_episode_that_fails_in_parallel_stops_the_run_and_keeps_the_finished_ones(models, seeds, tmp_path):
    plans = [plan_from_seed(s, sessions=1, max_turns=2) for s in seeds[:3]]
    bad = plans[1].main.name
    assert bad not in {plans[0].main.name, plans[2].main.name}

    def factory(role, speaker):
        if speaker.name == bad:
            raise RuntimeError(f"cannot seat {speaker.name}")
        return registry.build_agent("emma", models)

    out = tmp_path / "sp.json"
    with pytest.raises(RuntimeError, match=f"cannot seat {bad}"):
        run_selfplay(plans, factory, out, seats=_seats, seed=5, workers=2)
    kept = [e.id for e in read_episodes(out)] if out.exists() else []
    from engine.selfplay.runner import episode_id_for

    assert episode_id_for(plans[1].seed_id, 1) not in kept
    assert set(kept) <= {episode_id_for(plans[0].seed_id, 0), episode_id_for(plans[2].seed_id, 2)}
