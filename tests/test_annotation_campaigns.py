"""Campaigns (MiSC presets), groups, split/full overlap, blind seeded resumable queues, gold items."""

import pytest

from annotation.campaigns import add_annotator, create_campaign, get_campaign, set_gold
from annotation.db import StudyError, init_study
from annotation.importer import import_file
from annotation.queue import next_item, queue_items, queue_status
from annotation.ratings import gold_report, rate

from annotation_helpers import episode_file


@pytest.fixture
def study(tmp_path):
    s = init_study(tmp_path / "s.db")
    import_file(s, episode_file(tmp_path, 4))
    yield s
    s.close()


def test_presets_carry_misc_definitions_anchors_and_item_units(study):
    ds = create_campaign(study, "ds", "dataset")
    assert [c.name for c in ds.criteria] == ["consistency", "coherence"]
    assert ds.n_items == 8 and ds.groups == ["A", "B", "C"]  # one item per session
    assert "no contradiction in dialogue and memory" in ds.criteria[0].definition
    assert ds.criteria[0].anchors["3"].startswith("Some minor issues")
    assert create_campaign(study, "dse", "dataset", unit="episode").n_items == 4
    mem = create_campaign(study, "mem", "memory")
    assert {c.name: c.target for c in mem.criteria} == {
        "memory_summarization": "memory", "memory_linking": "link", "memory_tagging": "tag"}
    assert mem.n_items == 4 * (2 + 1 + 3)  # memories + links + tags
    model = create_campaign(study, "model", "model", groups=2)
    assert [c.name for c in model.criteria] == ["humanness", "engagingness", "memorability"]
    assert model.groups == ["A", "B"] and model.n_items == 4
    with pytest.raises(StudyError, match="already exists"):
        create_campaign(study, "ds", "dataset")


def test_split_overlap_divides_items_and_full_gives_everyone_everything(study):
    create_campaign(study, "split", "dataset", overlap="split")
    create_campaign(study, "full", "dataset", overlap="full")
    for name, g in [("a1", "A"), ("a2", "A"), ("b1", "B")]:
        add_annotator(study, name, g)
    a1, a2, b1 = (queue_items(study, "split", n) for n in ("a1", "a2", "b1"))
    assert len(a1) + len(a2) == 8 and abs(len(a1) - len(a2)) <= 1
    assert not {k for k, _ in a1} & {k for k, _ in a2}
    assert len(b1) == 8  # every group rates every item
    assert len(queue_items(study, "full", "a1")) == len(queue_items(study, "full", "a2")) == 8


def test_queue_is_seeded_per_annotator_and_resumes(study):
    create_campaign(study, "c", "dataset", overlap="full", seed=3)
    for n in ("x", "y"):
        add_annotator(study, n, "A")
    qx, qy = queue_items(study, "c", "x"), queue_items(study, "c", "y")
    assert sorted(qx) == sorted(qy) and qx != qy  # same items, different random order
    first = next_item(study, "c", "x")
    assert first.key == qx[0][0] and first.position == 1
    assert {c.name for c in first.criteria} == {"consistency", "coherence"}
    rate(study, "c", "x", first.item_id, "consistency", 4)
    assert next_item(study, "c", "x").key == first.key  # one criterion still missing
    rate(study, "c", "x", first.item_id, "coherence", "5", seconds=12)
    nxt = next_item(study, "c", "x")
    assert nxt.key == qx[1][0] and queue_status(study, "c", "x").done == 1
    # y never sees x's ratings
    y_view = next(i for i in [next_item(study, "c", "y")] if i)
    if y_view.key == first.key:
        assert all(c.my_value is None for c in y_view.criteria)
    # reopening the study resumes at the same place
    path = study.path
    study.close()
    s2 = init_study(path)
    assert next_item(s2, "c", "x").key == qx[1][0]
    s2.close()


def test_rating_validation(study):
    create_campaign(study, "m", "memory")
    add_annotator(study, "x", "B")
    item = next_item(study, "m", "x")
    crit = item.criteria[0].name
    with pytest.raises(StudyError, match="pass/fail"):
        rate(study, "m", "x", item.item_id, crit, 4)
    assert rate(study, "m", "x", item.item_id, crit, "yes").value == 1
    with pytest.raises(StudyError, match="no annotator"):
        rate(study, "m", "nobody", item.item_id, crit, "pass")
    other = next(c.name for c in get_campaign(study, "m").criteria if c.target != item.target)
    with pytest.raises(StudyError, match="rates"):
        rate(study, "m", "x", item.item_id, other, "pass")


def test_gold_items_reach_every_annotator_and_are_scored(study):
    create_campaign(study, "g", "dataset", overlap="split")
    for n in ("a1", "a2"):
        add_annotator(study, n, "A")
    set_gold(study, "g", "ep0#s0", {"consistency": 5, "coherence": 4})
    for n, (c1, c2) in {"a1": (5, 4), "a2": (2, 4)}.items():
        assert "ep0#s0" in {k for k, _ in queue_items(study, "g", n)}
        rate(study, "g", n, "ep0#s0", "consistency", c1)
        rate(study, "g", n, "ep0#s0", "coherence", c2)
    rep = gold_report(study, "g")
    assert rep["a1"] == {"answered": 2, "correct": 2, "accuracy": 1.0}
    assert rep["a2"]["correct"] == 1
