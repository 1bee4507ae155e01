"""Shared-prefix KV caching in batched label scoring (EMMA §4.1 memory linker at session end):
same log-probs as the uncached path, the shared instruction run once and reused, never stale."""

import numpy as np
import pytest
import torch

from engine.systems import generation as gen
from engine.systems import prefix_cache
from engine.systems.emma import formats
from tiny import tiny_lm

PAIRS = [("Bob adopted a kitten named Tom. (about Bob, from second session)", "Bob likes dogs."),
         ("x y", "z"),
         ("I am preparing a history exam for my class.", "a much longer memory sentence about a trip to Rome "
                                                         "with three friends and a very old car"),
         ("Carol started a new job at the hospital.", "Carol is a nurse."),
         ("short", "also short")]
LABEL_SETS = [formats.LINK_LABELS, ("positive link here", "negative")]  # one-token and multi-token labels


@pytest.fixture()
def lm():
    """A tiny random Llama-style model with sharpened weights, so outputs depend strongly on the context."""
    lm = tiny_lm("llama", tokenizer_kind="wordpiece", seed=3)
    with torch.no_grad():
        for p in lm.model.parameters():
            p.mul_(6)
    prefix_cache.clear(lm.model)
    return lm


def _prompts(lm, pairs=PAIRS):
    return [gen.render_prompt(lm, formats.link_input(a, b), formats.chat_messages("link", m1=a, m2=b))
            for a, b in pairs]


def _count_forwards(monkeypatch, model):
    widths = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: widths.append(k["input_ids"].shape[1]) or real(*a, **k))
    return widths


@pytest.mark.parametrize("labels", LABEL_SETS)
@pytest.mark.parametrize("batch_size", [2, 8])
def test_cached_prefix_gives_the_uncached_log_probs(lm, labels, batch_size):
    prompts = _prompts(lm)
    stats = {}
    cached = gen.score_labels(lm, prompts, labels, batch_size=batch_size, stats=stats)
    plain = gen.score_labels(lm, prompts, labels, batch_size=batch_size, share_prefix=False)
    one_by_one = np.concatenate([gen.score_labels(lm, [p], labels, share_prefix=False) for p in prompts])
    assert stats["fallback"] is None and stats["prefix_tokens"] >= gen.MIN_SHARED_PREFIX
    assert np.abs(cached - plain).max() < 1e-4 and np.abs(cached - one_by_one).max() < 1e-4
    assert np.ptp(cached[:, 0]) > 0.1  # the scores really depend on the pair (not a constant model)


def test_prefix_runs_once_and_is_reused_across_calls(lm, monkeypatch):
    prompts = _prompts(lm)
    full = len(lm.tokenizer(prompts[0], add_special_tokens=False)["input_ids"])
    widths = _count_forwards(monkeypatch, lm.model)
    first, second = {}, {}
    a = gen.score_labels(lm, prompts, formats.LINK_LABELS, batch_size=2, stats=first)
    n_first = len(widths)
    b = gen.score_labels(lm, prompts[::-1], formats.LINK_LABELS, batch_size=2, stats=second)
    assert not first["prefix_cached"] and second["prefix_cached"]
    assert n_first == 1 + 3  # the shared prefix once, then one forward per batch of suffixes
    assert len(widths) - n_first == 3  # second call: suffix batches only
    assert max(widths[n_first:]) < full  # the batches no longer re-read the shared instruction
    np.testing.assert_allclose(a[::-1], b, atol=1e-4)


def test_changing_the_weights_never_serves_a_stale_prefix(lm):
    prompts = _prompts(lm)
    gen.score_labels(lm, prompts, formats.LINK_LABELS)  # caches the prefix
    opt = torch.optim.SGD(lm.model.parameters(), lr=0.5)
    lm.model.train()
    ids = torch.tensor([lm.tokenizer("some training text")["input_ids"]])
    lm.model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    lm.model.eval()
    stats = {}
    after = gen.score_labels(lm, prompts, formats.LINK_LABELS, stats=stats)
    assert not stats["prefix_cached"]
    np.testing.assert_allclose(after, gen.score_labels(lm, prompts, formats.LINK_LABELS, share_prefix=False),
                               atol=1e-4)


def test_a_batch_sharing_the_newer_memory_extends_the_prefix(lm, monkeypatch):
    newer = "Bob adopted a kitten named Tom and took him to the vet on Monday. (about Bob, from third session)"
    pairs = [(newer, f"older memory number {i} about a {w}") for i, w in enumerate(["cat", "dog", "trip", "exam"])]
    prompts = _prompts(lm, pairs + PAIRS[:2])
    widths = _count_forwards(monkeypatch, lm.model)
    cached = gen.score_labels(lm, prompts, formats.LINK_LABELS, batch_size=4)
    # prefix, extension by the newer memory (first batch only), two suffix batches
    assert len(widths) == 4 and widths[1] >= gen.MIN_BATCH_EXTENSION
    plain = gen.score_labels(lm, prompts, formats.LINK_LABELS, batch_size=4, share_prefix=False)
    assert np.abs(cached - plain).max() < 1e-4


def test_fallbacks_say_why():
    s2s = tiny_lm("t5", tokenizer_kind="wordpiece")
    stats = {}
    out = gen.score_labels(s2s, [formats.link_input(a, b) for a, b in PAIRS], formats.LINK_LABELS, stats=stats)
    assert out.shape == (len(PAIRS), 2) and "seq2seq" in stats["fallback"] and stats["prefix_tokens"] == 0
    causal = tiny_lm("llama", tokenizer_kind="wordpiece")
    stats = {}
    gen.score_labels(causal, ["alpha beta", "gamma delta"], formats.LINK_LABELS, stats=stats)
    assert "shared prefix" in stats["fallback"] and stats["prefix_tokens"] == 0


def test_link_prompt_puts_the_pair_last():
    lm = tiny_lm("llama", tokenizer_kind="wordpiece")
    a, b = _prompts(lm, PAIRS[:2])
    n = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    assert a[:n].endswith("memory sentence1: ") and "positive" in a[:n] and "related?" in a[:n]
    assert a.split(PAIRS[0][1], 1)[1] == "<|im_end|>\n<|im_start|>assistant\n"  # only the template after the pair
    msgs = formats.chat_messages("link", m1="a.", m2="b.")
    assert msgs[-1]["content"].endswith(formats.link_input("a.", "b."))
