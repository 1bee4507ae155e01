"""A small MiSC-shaped synthetic episode set (memories tagged on turns, links between memories) for the tests,
and the texts the tiny tokenizers are trained on."""

from __future__ import annotations

from engine.data.model import Episode, Link, Memory, Session, Speaker, Turn

FACTS = [
    ("Bob", "Bob adopted a grey cat named Tom.", "I adopted a grey cat named Tom last week."),
    ("Bob", "Bob is training for a marathon in May.", "I am training for the marathon in May."),
    ("Alice", "Alice moved to a flat near the river.", "I moved to a flat near the river."),
    ("Carol", "Carol started learning the violin.", "I started learning the violin this spring."),
    ("Alice", "Alice is writing a book about birds.", "I am writing a book about birds."),
    ("Carol", "Carol broke her arm skiing.", "I broke my arm skiing in the mountains."),
]


def episodes(n: int = 4) -> list[Episode]:
    """``n`` two-session episodes: memories formed in session 0, tagged on main-speaker turns of session 1,
    with a link between the two memories about each partner."""
    out = []
    for e in range(n):
        main, bob, carol = Speaker("Alice", "teacher"), Speaker("Bob", "doctor"), Speaker("Carol", "painter")
        mems, turns0 = [], []
        for i, (about, mem, said) in enumerate(FACTS):
            if about == "Carol":
                continue
            speaker = "Alice" if about == "Alice" else "Bob"
            turns0.append(Turn(f"e{e}s0t{len(turns0)}", speaker, said))
            mems.append(Memory(f"e{e}m{i}", "Alice", about, mem if e % 2 == 0 else mem.replace(".", " again."), 0,
                               [turns0[-1].id]))
        turns0.insert(0, Turn(f"e{e}s0tx", "Bob", "Hello Alice, how are you?"))
        turns1 = [Turn(f"e{e}s1t0", "Carol", "Hi Alice, long time no see!"),
                  Turn(f"e{e}s1t1", "Alice", "Hi Carol! Bob told me he adopted a cat.", [mems[0].id]),
                  Turn(f"e{e}s1t2", "Carol", "Really? I broke my arm skiing."),
                  Turn(f"e{e}s1t3", "Alice", "Oh no. Bob is running a marathon in May, maybe he can help.",
                       [mems[1].id])]
        cmem = Memory(f"e{e}m9", "Alice", "Carol", "Carol broke her arm skiing.", 1, [turns1[2].id])
        links = [Link(mems[1].id, mems[0].id), Link(cmem.id, mems[1].id)]
        out.append(Episode(f"ep{e}", main, [bob, carol],
                           [Session(0, bob, "coffee", turns0), Session(1, carol, "park", turns1)],
                           mems + [cmem], links, source="test"))
    return out


def texts() -> list[str]:
    words = []
    for ep in episodes(2):
        words += [t.text for _, t in ep.turns()] + [m.text for m in ep.memories]
    return words + ["generation: summarize memory sentence1: sentence2: positive negative [MEMORY] [LINK] "
                    "[NOW] [SEP] [NONE] first second third session about from Alice Bob Carol teacher doctor "
                    "painter You are talking with Reply Related? Memory Conversation: Memories (continue)"] * 3
