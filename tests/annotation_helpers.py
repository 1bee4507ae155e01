"""Shared builders for the annotation tests (not a test module)."""

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
