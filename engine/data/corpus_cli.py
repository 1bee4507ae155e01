"""``memlab corpus generate``: write the MiSC-shaped starter corpus (EMMA paper §3) to a file."""

from __future__ import annotations

import sys
import time
from collections import Counter


def register(sub) -> None:
    corpus = sub.add_parser("corpus", help="the MiSC-shaped starter corpus")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    gen = csub.add_parser(
        "generate",
        help="generate starter episodes (memlab-episode/1)",
        description="Generate MiSC-shaped episodes from the templates in assets/corpus: a main "
        "speaker and three partners, six sessions, egocentric memories, links and memory tags. "
        "The same --episodes and --seed always give a byte-identical file.",
    )
    gen.add_argument("--episodes", type=int, default=1000, help="number of episodes (default 1000)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--out", required=True, help="output file (.json, or .jsonl for JSON Lines)")
    gen.set_defaults(func=_generate)


def corpus_counts(episodes) -> dict:
    """Counts a user checks after generating: sessions, turns, memories, links by kind, tags."""
    links = Counter(l.kind for e in episodes for l in e.links)
    cross = 0
    for e in episodes:
        about = {m.id: m.about for m in e.memories}
        for s in e.sessions:
            cross += sum(1 for t in s.turns for mid in t.memory_ids
                         if about[mid] not in (s.partner.name, e.main.name))
    return {
        "episodes": len(episodes),
        "sessions": sum(len(e.sessions) for e in episodes),
        "turns": sum(len(s.turns) for e in episodes for s in e.sessions),
        "memories": sum(len(e.memories) for e in episodes),
        "links_related": links.get("related", 0),
        "links_update": links.get("update", 0),
        "tags": sum(1 for e in episodes for _ in e.tags()),
        "tags_about_other_partners": cross,
    }


def _generate(args) -> int:
    from . import write_episodes
    from .corpus import generate_episodes
    from .errors import DataFormatError

    if args.episodes < 1:
        print(f"memlab corpus generate: --episodes must be at least 1 (got {args.episodes})", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        episodes = generate_episodes(args.episodes, args.seed)
    except DataFormatError as e:  # a broken template file
        print(f"memlab corpus generate: {e}", file=sys.stderr)
        return 1
    try:
        path = write_episodes(args.out, episodes)
    except OSError as e:
        print(f"memlab corpus generate: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    took = time.perf_counter() - start
    counts = corpus_counts(episodes)
    print(f"wrote {path} (memlab-episode/1, seed {args.seed}) in {took:.1f} s")
    for key, value in counts.items():
        print(f"  {key.replace('_', ' ')}: {value}")
    return 0
