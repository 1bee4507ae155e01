"""Shared builders for the annotation tests (not a test module)."""

import hashlib

from engine.data.episode_format import write_episodes
from engine.data.model import Episode, Link, Memory, Session, Speaker, Turn


def misc_episode(eid="ep1"):
    """A small MiSC-shaped episode: 2 sessions, 2 partners, memories, one link, tags."""
    alice, bob, carol = Speaker("Alice", "teacher"), Speaker("Bob", "student"), Speaker("Carol", "husband")
    s0 = Session(0, bob, "exam results", [Turn("t0", "Bob", "I passed the exam!"),
                                          Turn("t1", "Alice", "Great job, Bob.", ["m0"])])
    s1 = Session(1, carol, "dinner", [Turn("t2", "Carol", "How was school?"),
                                      Turn("t3", "Alice", "Bob passed his exam.", ["m0", "m1"])])
    mems = [Memory("m0", "Alice", "Bob", "Bob passed the exam.", 0, ["t0"]),
            Memory("m1", "Alice", "Carol", "Carol asked about school.", 1, ["t2"])]
    return Episode(eid, alice, [bob, carol], [s0, s1], mems, [Link("m1", "m0", "related")], "test")


def episode_file(tmp_path, n=3, name="eps.json"):
    return write_episodes(tmp_path / name, [misc_episode(f"ep{i}") for i in range(n)])


def value_for(annotator: str, item: str, criterion: str) -> int:
    """A fixed pass/fail answer per (annotator, item, criterion): mostly the item's "truth", sometimes not."""
    h = lambda s: int(hashlib.sha256(s.encode()).hexdigest(), 16)  # noqa: E731
    truth = h(f"{item}/{criterion}") % 2
    return truth if h(f"{annotator}/{item}") % 4 else 1 - truth


def rate_everything(path, annotator: str) -> None:
    """Work through the annotator's queue as the Annotate page does; the first answer is changed once
    (an edit: the later rating counts) and the first item is flagged."""
    from annotation.db import open_study
    from annotation.queue import next_item
    from annotation.ratings import rate
    from annotation.review import flag_item

    with open_study(path) as study:
        first = True
        while (q := next_item(study, "mem", annotator)) is not None:
            for c in q.criteria:
                if first:
                    rate(study, "mem", annotator, q.item_id, c.name, 1 - value_for(annotator, q.key, c.name))
                    flag_item(study, "mem", annotator, q.item_id, "typo in the memory")
                    first = False
                rate(study, "mem", annotator, q.item_id, c.name, value_for(annotator, q.key, c.name), seconds=1.5)
