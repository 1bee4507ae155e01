"""Metric parity against the libraries on fixed vectors, the bootstrap, and the response-record reader."""

import json
import math

import numpy as np
import pytest

from engine.metrics import (METRIC_KEYS, RecordError, bleu1, bleu1_scored, c_dist, c_dist_scored, interval,
                            mean_ci, persona_f1, read_records, resample_weights, rouge1, rougeL, s_dist,
                            score_records)
from engine.metrics.bootstrap import MeanScore
from engine.metrics.text import content_tokens, stop_words

HYPS = ["i have two dogs and a cat", "my favourite food is pizza !", "i work as a nurse at night",
        "hello , how are you today ?", "", "yes"]
REFS = ["i have a dog", "i love pizza , it is my favourite", "i am a nurse", "hi ! how are you ?",
        "i like to read books", "no"]


def test_bleu1_matches_sacrebleu_corpus_bleu():
    import sacrebleu

    want = sacrebleu.BLEU(max_ngram_order=1).corpus_score(HYPS, [REFS]).score / 100
    assert bleu1(HYPS, REFS) == pytest.approx(want, abs=1e-12)
    assert 0 < bleu1(HYPS, REFS) < 1
    assert bleu1(REFS, REFS) == pytest.approx(1.0)


def test_rouge_matches_rouge_score_mean_f():
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    scores = [sc.score(r, h) for h, r in zip(HYPS, REFS)]
    assert rouge1(HYPS, REFS) == pytest.approx(np.mean([s["rouge1"].fmeasure for s in scores]))
    assert rougeL(HYPS, REFS) == pytest.approx(np.mean([s["rougeL"].fmeasure for s in scores]))
    # no stemming: "dogs" does not match "dog"
    assert rouge1(["dogs"], ["dog"]) == 0.0


def test_distinct_by_hand():
    resp = ["I like dogs", "i like cats", "dogs dogs"]
    # unigrams: i like dogs i like cats dogs dogs -> 8 tokens, distinct {i, like, dogs, cats} = 4
    assert c_dist(resp, 1) == pytest.approx(4 / 8)
    # bigrams: (i like)(like dogs)(i like)(like cats)(dogs dogs) -> 5, distinct 4
    assert c_dist(resp, 2) == pytest.approx(4 / 5)
    assert c_dist(["a", "b"], 2) == 0.0  # no bigram at all
    groups = [["a b", "a c"], ["x"], ["y y"]]
    # S-Dist-1: (3/4 + 1/1 + 1/2) / 3;  S-Dist-2: group 2 has no bigram and does not count -> (2/2 + 1/1) / 2
    assert s_dist(groups, 1) == pytest.approx((0.75 + 1 + 0.5) / 3)
    assert s_dist(groups, 2) == pytest.approx(1.0)


def test_persona_f1_by_hand():
    assert "the" in stop_words() and "dogs" not in stop_words()
    assert content_tokens("I have two DOGS, and a cat!") == ["dogs", "cat"]
    content = ["i have two dogs.", "i love to cook pasta."]
    # response content tokens: love, dogs, pasta (3); user content tokens: dogs, love, cook, pasta (4)
    p, r = 3 / 3, 3 / 4
    assert persona_f1("I love my dogs and pasta", content) == pytest.approx(2 * p * r / (p + r))
    assert persona_f1("hello there", content) == 0.0
    assert persona_f1("", content) == 0.0
    assert persona_f1("dogs", []) == 0.0


def test_bootstrap_of_corpus_metrics_equals_recomputing_on_the_resample():
    w = resample_weights(len(HYPS), 5, seed=3)
    b = bleu1_scored(HYPS, REFS)
    d = c_dist_scored(HYPS, 2)
    assert b.resampled(np.ones((1, len(HYPS))))[0] == pytest.approx(b.value())
    assert d.resampled(np.ones((1, len(HYPS))))[0] == pytest.approx(d.value())
    for row, vb, vd in zip(w, b.resampled(w), d.resampled(w)):
        idx = [i for i, k in enumerate(row) for _ in range(int(k))]
        assert vb == pytest.approx(bleu1([HYPS[i] for i in idx], [REFS[i] for i in idx]))
        assert vd == pytest.approx(c_dist([HYPS[i] for i in idx], 2))


def test_mean_ci_is_seeded_and_brackets_the_mean():
    vals = list(np.linspace(0, 1, 50))
    m, (lo, hi) = mean_ci(vals, seed=1)
    assert m == pytest.approx(0.5) and lo < m < hi and 0 <= lo and hi <= 1
    assert mean_ci(vals, seed=1) == (m, (lo, hi))
    assert mean_ci(vals, seed=2)[1] != (lo, hi)
    s = MeanScore([1.0, float("nan"), 0.0])
    assert s.value() == 0.5
    assert 0 <= interval(s, n_resamples=200)[0] <= interval(s, n_resamples=200)[1] <= 1


def _write(tmp_path, rows, name="r.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return p


def test_records_keys_absent_when_the_input_lacks_them(tmp_path):
    recs = read_records(_write(tmp_path, [{"id": 1, "response": "i like dogs"}, {"id": 2, "response": "me too"}]))
    out = score_records(recs).to_dict()
    assert set(out) == {"n", "c_dist1", "c_dist2"} and out["n"] == 2
    recs = read_records(_write(tmp_path, [
        {"id": "a", "response": "i like dogs", "responses": ["i like dogs", "dogs are fine"],
         "reference": "i love dogs", "persona": ["i have a dog."]},
        {"id": "b", "responses": ["me too", "same here"], "reference": "cool", "persona": ["i cook."]}]))
    out = score_records(recs, classifier_error="no classifier").to_dict(ci=True, n_resamples=100)
    for key in ("bleu1", "rouge1", "rougeL", "c_dist1", "c_dist2", "s_dist1", "s_dist2", "persona_f1"):
        assert 0 <= out[key] <= 1 and len(out[f"{key}_ci"]) == 2
    assert "con_s" not in out and "no classifier" in out["notes"][0]
    # C-Dist uses 'response' where given, else responses[0]: "i like dogs" + "me too"
    assert out["c_dist1"] == pytest.approx(c_dist(["i like dogs", "me too"], 1))


class _FakeClassifier:
    threshold = 0.5

    def prob(self, premises, hyps):
        return [1.0 if any(w in " ".join(p) for w in h.split()) else 0.0 for p, h in zip(premises, hyps)]

    def coherence(self, queries, responses):
        return [0.9 if "?" in q else 0.1 for q in queries]


def test_con_s_and_coh_con_s_from_classifier_decisions(tmp_path):
    recs = read_records(_write(tmp_path, [
        {"id": 1, "response": "dogs", "persona": ["i have dogs"], "query": "pets?"},
        {"id": 2, "response": "dogs", "persona": ["i have dogs"], "query": "hi."},
        {"id": 3, "response": "cars", "persona": ["i have dogs"], "query": "pets?"},
        {"id": 4, "response": "dogs", "persona": ["i have dogs"]}]))
    out = score_records(recs, classifier=_FakeClassifier()).to_dict()
    assert out["con_s"] == pytest.approx(3 / 4)
    assert out["coh_con_s"] == pytest.approx(1 / 3)  # over the 3 records with a query
    assert out["n_by_metric"] == {"coh_con_s": 3}
    assert set(out) <= set(METRIC_KEYS) | {"n", "n_by_metric", "notes"}


@pytest.mark.parametrize("line, field, words", [
    ('{"response": "x"}', "id", "missing"),
    ('{"id": 1}', "response", "needs 'response' or 'responses'"),
    ('{"id": 1, "response": 3}', "response", "must be a string"),
    ('{"id": 1, "responses": ["a", 2]}', "responses[1]", "must be a string"),
    ('{"id": 1, "responses": []}', "responses", "empty"),
    ('{"id": 1, "response": "a", "persona": "i like"}', "persona", "list of strings"),
    ('{"id": 1, "response": "a", "reference": ["x"]}', "reference", "must be a string"),
    ('[1, 2]', None, "JSON object"),
    ('{"id": 1, "response": "a"', None, "malformed JSON"),
])
def test_malformed_records_name_line_and_field(tmp_path, line, field, words):
    p = _write(tmp_path, ['{"id": 0, "response": "fine"}', "", line])
    with pytest.raises(RecordError) as e:
        read_records(p)
    assert e.value.line == 3 and e.value.field == field and words in str(e.value)
    assert "line 3" in str(e.value) and str(p) in str(e.value)


def test_duplicate_ids_and_empty_files(tmp_path):
    with pytest.raises(RecordError, match="duplicate id '1'"):
        read_records(_write(tmp_path, ['{"id": 1, "response": "a"}', '{"id": "1", "response": "b"}']))
    with pytest.raises(RecordError, match="no records"):
        read_records(_write(tmp_path, [""]))


def test_eval_responses_cli_json_and_errors(tmp_path, capsys):
    from desktop.cli import main

    p = _write(tmp_path, [{"id": 1, "response": "i have dogs", "reference": "i have a dog"},
                          {"id": 2, "response": "pizza is great", "reference": "i love pizza"}])
    assert main(["eval", "responses", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"n", "bleu1", "rouge1", "rougeL", "c_dist1", "c_dist2"}
    assert all(0 <= out[k] <= 1 for k in out if k != "n")
    assert main(["eval", "responses", str(p)]) == 0
    assert "BLEU-1" in capsys.readouterr().out
    bad = _write(tmp_path, ['{"id": 1, "response": "a"}', '{"id": 2, "response": null}'], "bad.jsonl")
    assert main(["eval", "responses", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "field response" in err and "Traceback" not in err
    assert not math.isnan(out["bleu1"])


def test_c_dist_interval_is_centred_on_the_estimate():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    resp = [" ".join(rng.choice(words, size=8)) for _ in range(400)]
    d = c_dist_scored(resp, 2)
    raw = d.resampled(resample_weights(len(resp), 200, seed=0))
    assert raw.mean() < d.value() - 0.05  # duplicated draws bias the raw resamples low
    lo, hi = interval(d, n_resamples=200)
    assert lo < d.value() < hi and hi - lo < 0.1


def test_metrics_are_torch_free(tmp_path):
    import subprocess
    import sys

    p = _write(tmp_path, [{"id": 1, "response": "i like dogs", "responses": ["a b", "a c"], "reference": "i love dogs",
                           "persona": ["i have a dog."]}])
    code = ("import sys, engine.metrics as m; "
            f"t = m.score_records(m.read_records({str(p)!r})).to_dict(ci=True, n_resamples=50); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(sorted(t))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "bleu1" in out.stdout and "persona_f1" in out.stdout
