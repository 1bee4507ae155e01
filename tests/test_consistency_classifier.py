"""``memlab train consistency`` end to end on a small slice, the classifier API, and Con.S through the CLI."""

import json
from pathlib import Path

import pytest

CONVAI2 = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "convai2" / "personachat_valid.json"


def _small_convai2(tmp_path):
    if CONVAI2.is_file():
        dialogues = json.loads(CONVAI2.read_text(encoding="utf-8"))[:5]
    else:  # a hand-written stand-in with the same shape
        dialogues = [{"persona": ["i have two dogs.", "i work as a nurse.", f"my name is person {i}."],
                      "dialogue": [["__SILENCE__", "hi! i just got home from my nurse shift."],
                                   ["what do you do for fun?", "i walk my two dogs every evening."],
                                   ["nice, what are their names?", "max and bella, they are great."],
                                   ["do you like music?", "not really, i prefer quiet evenings."]]}
                     for i in range(8)]
    p = tmp_path / "convai2_small.json"
    p.write_text(json.dumps(dialogues), encoding="utf-8")
    return p


def test_pairs_are_labelled_by_alignment_and_split_by_dialogue():
    import numpy as np

    from engine.training.consistency_pairs import convai2_pairs, split_indices

    dialogues = [{"persona": ["i have two dogs.", "i love to cook pasta."],
                  "dialogue": [["__SILENCE__", "hello there, how are you today?"],
                               ["any pets?", "yes, i have two dogs at home."]]},
                 {"persona": ["i am a pilot.", "i live in paris."],
                  "dialogue": [["hi", "i am a pilot, i fly to paris."], ["cool", "what is up?"]]}]
    def words(t):
        return t.replace(".", "").replace(",", "").replace("?", "").split()

    vocab = sorted({w for d in dialogues for t in d["persona"] + [x for pair in d["dialogue"] for x in pair]
                    for w in words(t)})

    def embed(xs):  # bag-of-words vectors: enough to tell "dogs" from "hello"
        out = [np.array([float(w in words(t)) for w in vocab]) for t in xs]
        return np.stack([v / (np.linalg.norm(v) or 1) for v in out])

    pairs, counts = convai2_pairs(dialogues, embed, seed=0)
    by = {(p.source, p.second): p.label for p in pairs if p.task == "consistency"}
    assert by[("convai2:aligned", "yes, i have two dogs at home.")] == 1
    assert by[("convai2:aligned", "i am a pilot, i fly to paris.")] == 1
    assert ("convai2:neutral", "hello there, how are you today?") in by
    assert all(p.label == 0 for p in pairs if p.source in ("convai2:neutral", "convai2:other-person"))
    assert {p.source for p in pairs if p.task == "coherence"} >= {"convai2:reply"}
    tr, ho = split_indices(100, 0.15, 0)
    assert len(ho) == 15 and not set(tr) & set(ho) and split_indices(100, 0.15, 0) == (tr, ho)


@pytest.mark.slow
def test_train_load_and_score_through_the_cli(tmp_path, capsys):
    from desktop.cli import main
    from engine.metrics.consistency_model import ClassifierMissingError, ConsistencyClassifier

    out = tmp_path / "clf"
    args = ["train", "consistency", "--out", str(out), "--convai2", str(_small_convai2(tmp_path)),
            "--starter-episodes", "2", "--starter-pairs", "40", "--coherence-pairs", "40", "--epochs", "2",
            "--valid-pairs", "40", "--no-progress", "--json"]
    assert main(args) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["training"]["steps"] > 0 and "starter:consistency" in meta["held_out"]
    assert all(0 <= row["accuracy"] <= 1 for row in meta["held_out"].values())

    from tests.tiny import minilm

    clf = ConsistencyClassifier.load(out, encoder=minilm())
    p = clf.prob(["i have two dogs.", "i am a nurse."], "my dogs are great")
    assert isinstance(p, float) and 0 <= p <= 1
    batch = clf.prob([["i have two dogs."], ["i am a nurse."], []], ["my dogs", "hospital shifts", "anything"])
    assert len(batch) == 3 and all(0 <= x <= 1 for x in batch) and batch[2] == 0.0
    assert batch[0] == pytest.approx(clf.prob(["i have two dogs."], "my dogs"), abs=1e-6)
    coh = clf.coherence(["do you have pets?", "hi"], ["yes, two dogs", "hello"])
    assert len(coh) == 2 and all(0 <= x <= 1 for x in coh)
    with pytest.raises(ClassifierMissingError, match="train one"):
        ConsistencyClassifier.load(tmp_path / "nowhere")

    rec = tmp_path / "r.jsonl"
    rec.write_text("\n".join(json.dumps(r) for r in [
        {"id": 1, "response": "my two dogs love the park", "persona": ["i have two dogs."], "query": "pets?"},
        {"id": 2, "response": "i fly planes", "persona": ["i have two dogs."]}]) + "\n", encoding="utf-8")
    assert main(["eval", "responses", str(rec), "--json", "--classifier", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0 <= res["con_s"] <= 1 and 0 <= res["coh_con_s"] <= 1 and res["n_by_metric"] == {"coh_con_s": 1}
    assert main(["eval", "responses", str(rec), "--json", "--classifier", str(tmp_path / "nowhere")]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert "con_s" not in res and "train one" in res["notes"][0] and "note:" in captured.err
