"""MiLP in live chat on a tiny random Llama: each partner gets their own FFN adapter at session end, it is
updated when the partner returns, stored in the agent state and loaded back; the adapters are off for
other users of the shared base model; the TpLP and MaLP baselines give the partner's own past turns."""

import pytest
import torch

from tiny import minilm, tiny_lm
from engine.data.model import Speaker
from engine.systems.milp.agent import MilpAgent
from engine.systems.milp.baselines import MalpAgent, TplpAgent
from engine.systems.milp.config import Theta, TrainSettings
from engine.systems.milp.model import AdapterBank, adapter_key
from engine.systems.milp.responder import PersonalResponder
from engine.systems.generation import GenerationSettings

MAIN = Speaker("Doctor", "physician")
ANN, BOB = Speaker("Ann", "patient"), Speaker("Bob", "patient")
GREEDY = GenerationSettings(max_new_tokens=6, do_sample=False)


def _agent(lm):
    layers = lm.model.config.num_hidden_layers
    bank = AdapterBank(lm)
    return MilpAgent(PersonalResponder(lm, GREEDY), bank, Theta((1,) * layers, 2, 4),
                     train_settings=TrainSettings(lr=5e-2, max_steps=3, epochs=3, batch_size=2, max_input_tokens=64))


def _session(agent, partner, index, lines):
    agent.start_session(MAIN, partner, index)
    for line in lines:
        "".join(agent.respond(line))
    return agent.end_session(progress=lambda *a: None)


def _logits(lm, text="my knee hurts"):
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


@pytest.mark.slow
def test_one_memory_per_partner_across_a_switch_and_a_return(tmp_path):
    lm = tiny_lm("llama")
    base_logits = _logits(lm)
    agent = _agent(lm)
    up = _session(agent, ANN, 0, ["I have asthma and a cat.", "My inhaler is blue."])
    assert up.adapters == [adapter_key("Ann")] and "trained a new memory adapter for Ann" in up.notes[0]
    _session(agent, BOB, 1, ["I broke my left wrist skiing."])
    ad = {a["partner"]: a for a in agent.adapters()}
    assert set(ad) == {"Ann", "Bob"}
    assert ad["Ann"]["trained_turns"] == 4 and ad["Ann"]["parameters"] > 0 and ad["Ann"]["size_bytes"] > 0
    assert ad["Ann"]["theta"]["n"] == 2 and ad["Ann"]["loss"] is not None
    # outside a turn the adapters are off: the shared base model is unchanged
    assert torch.allclose(_logits(lm), base_logits, atol=1e-5)
    # the two partners' memories differ, and each differs from the base model
    bank = agent.bank
    with bank.active(adapter_key("Ann")):
        ann = _logits(lm)
    with bank.active(adapter_key("Bob")):
        bob = _logits(lm)
    assert not torch.allclose(ann, base_logits) and not torch.allclose(ann, bob)
    # Ann returns: her adapter is updated, not replaced; the turn says which memory it used
    agent.start_session(MAIN, ANN, 2)
    "".join(agent.respond("Is it the cat again?"))
    assert agent.last_turn.given[0]["adapter"] and "Ann" in agent.last_turn.given[0]["text"]
    up = agent.end_session()
    assert "updated the memory adapter for Ann" in up.notes[0]
    ad = {a["partner"]: a for a in agent.adapters()}
    assert ad["Ann"]["sessions"] == 2 and ad["Ann"]["trained_turns"] == 6
    # the state holds the adapters; a fresh agent on a fresh model loads Ann's when she returns
    state = agent.state()
    lm2 = tiny_lm("llama")
    agent2 = _agent(lm2)
    agent2.load_state(state)
    agent2.start_session(MAIN, ANN, 3)
    with agent2.bank.active(adapter_key("Ann")):
        ann2 = _logits(lm2)
    with bank.active(adapter_key("Ann")):
        ann1 = _logits(lm)
    assert torch.allclose(ann1, ann2, atol=2e-2)  # fp16 storage


def test_damaged_state_is_a_clear_error():
    lm = tiny_lm("llama")
    agent = _agent(lm)
    state = agent.state()
    state["milp"] = {"memories": {"Ann": {"theta": {"alpha": [1], "n": 1, "r": 4}}}}
    with pytest.raises(ValueError, match="memory of 'Ann' has no 'packed'"):
        agent.load_state(state)


def test_tplp_and_malp_give_only_that_partners_past_turns():
    lm = tiny_lm("llama")
    tplp = TplpAgent(PersonalResponder(lm, GREEDY))
    malp = MalpAgent(PersonalResponder(lm, GREEDY), minilm(), k=2)
    for agent in (tplp, malp):
        _session(agent, ANN, 0, ["I have asthma.", "I own a cat."])
        _session(agent, BOB, 1, ["I broke my wrist."])
        agent.start_session(MAIN, ANN, 2)
        "".join(agent.respond("Could the cat cause my asthma?"))
        given = agent.last_turn.given
        assert given and all(g["kind"] == "turn" for g in given)
        assert not any("wrist" in g["text"] for g in given)
    assert len(malp.last_turn.given) == 2
    assert any("cat" in g["text"] or "asthma" in g["text"] for g in malp.last_turn.given)
    assert len(tplp.last_turn.given) == 4


def test_stop_session_end_keeps_what_was_trained():
    """The contract's stop_session_end (the worker's Cancel during a session end) stops the partner's adapter
    training at the next step; the memory is kept and the next session end trains normally again."""
    lm = tiny_lm("llama")
    layers = lm.model.config.num_hidden_layers
    agent = MilpAgent(PersonalResponder(lm, GREEDY), AdapterBank(lm), Theta((1,) * layers, 2, 4),
                      train_settings=TrainSettings(lr=5e-2, max_steps=50, epochs=50, batch_size=1,
                                                   max_input_tokens=64))
    seen = []

    def progress(*args):
        seen.append(args)
        if len(seen) == 3:  # training is under way: stop it, as the Chat page's "Stop early" does
            agent.stop_session_end()

    agent.start_session(MAIN, ANN, 0)
    for line in ["I have asthma and a cat.", "My inhaler is blue.", "I walk my dog at six."]:
        "".join(agent.respond(line))
    up = agent.end_session(progress=progress)
    ann = {a["partner"]: a for a in agent.adapters()}["Ann"]
    assert up.adapters == [adapter_key("Ann")]
    assert ann["status"] != "completed" and ann["steps"] < 50, ann
    # the stop ended that session end only
    _session(agent, BOB, 1, ["I broke my left wrist skiing."])
    assert {a["partner"]: a for a in agent.adapters()}["Bob"]["steps"] > 0
