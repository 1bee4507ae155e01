"""Can a researcher trust EMMA's memory? Scripted mixed-session chats judged automatically.

Each chat in ``bench/memory_quality_chats/*.json`` (format ``memlab-memory-chat/1``) is run through
``memlab chat --script FILE --json`` (the real CLI, a fresh process, the embedded default unless other
``memlab chat`` options are passed after ``--``), then judged against what the chat file declares:

* ``facts``: what each partner told, with key phrases: a list of groups, each a list of alternatives
  (case-insensitive substrings); a memory *carries* a fact when every group has an alternative in its text
  (the provenance suffix ``(about X, from ... session)`` is removed first, so it cannot count).
* ``questions``: a user line of a return session that needs an earlier fact (``session``, ``line`` index,
  ``needs`` = fact id).
* ``topics``: a topic the partner returns to (``keys``: any of them marks a memory as on the topic,
  ``sessions`` where it comes up).

The five figures, per chat and in total:

* **fact recall** — facts stored in a memory *about the person who told them* / facts told;
* **misattribution rate** — stored memories that carry a fact of person P but are filed about someone else,
  or that are filed about a partner P yet name another participant and not P / stored memories;
* **junk rate** — stored memories that are a fragment (fewer than 4 words), a duplicate of an earlier stored
  memory (same words), or share no content word with the session they came from / stored memories;
* **retrieval hit rate** — return-session questions whose bot turn was given a memory carrying the needed fact
  / questions (a fact never stored is a miss);
* **topical cross-session links** — chats with a link between memories of two different sessions that are
  both on one of the chat's topics / chats with topics; beside it ``link_precision``: links whose two ends
  share a topic / all links (links between unrelated memories are noise).

Rejected candidates (EMMA's grounding check, shown in ``stored.rejected``) are counted, never judged as stored.

    python bench/memory_quality.py [--chats DIR] [--only NAME ...] [--out DIR] [-- memlab chat options]
    e.g.  python bench/memory_quality.py -- --adapter none

Prints one JSON line per chat and a ``"chat": "TOTAL"`` line; goals (issue 10): fact recall >= 0.8,
misattribution <= 0.05, junk 0, retrieval hit >= 0.8, a topical link in >= 75% of chats with topics.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHATS = Path(__file__).resolve().parent / "memory_quality_chats"
FORMAT = "memlab-memory-chat/1"
_PROVENANCE = re.compile(r"\s*\(about [^()]*, from [^()]* session\)\s*$")
_WORD = re.compile(r"[a-z0-9']+")
# Words too common to show that a memory came from the session (the judge's own list, not EMMA's).
_COMMON = {"that", "this", "with", "about", "told", "said", "shared", "mentioned", "learned", "they", "their",
           "them", "have", "will", "from", "what", "when", "been", "were", "would", "could", "also", "just",
           "really", "very", "session", "first", "second", "third", "fourth", "know", "think"}


class ChatFileError(ValueError):
    pass


def load_chat(path: Path) -> dict:
    """A chat file, validated: errors name the file and the field."""
    try:
        chat = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ChatFileError(f"{path}: cannot read ({e})") from None
    if chat.get("format") != FORMAT:
        raise ChatFileError(f"{path}: field 'format' must be {FORMAT!r}")
    for key in ("name", "main", "sessions", "facts"):
        if key not in chat:
            raise ChatFileError(f"{path}: missing field {key!r}")
    facts = {f["id"]: f for f in chat["facts"]}
    for i, q in enumerate(chat.get("questions", [])):
        if q["needs"] not in facts:
            raise ChatFileError(f"{path}: questions[{i}].needs = {q['needs']!r} is not a fact id")
        if q["line"] >= len(chat["sessions"][q["session"]]["lines"]):
            raise ChatFileError(f"{path}: questions[{i}].line out of range")
    return chat


def script_text(chat: dict) -> str:
    out = []
    for s in chat["sessions"]:
        out.append(f"/partner {s['partner']}")
        out.extend(s["lines"])
    return "\n".join(out) + "\n"


def run_chat(chat: dict, extra: list[str], log_dir: Path | None) -> tuple[dict, float]:
    """Run ``memlab chat --script --json``; returns (its JSON document, wall seconds)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(script_text(chat))
        script = f.name
    cmd = [sys.executable, "-m", "desktop.cli", "chat", "--agent", "emma", "--main", chat["main"],
           "--script", script, "--json", "--greedy", "--max-new-tokens", "32", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    os.unlink(script)
    if log_dir is not None:
        (log_dir / f"{chat['name']}.stderr.txt").write_text(proc.stderr)
        (log_dir / f"{chat['name']}.json").write_text(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"chat {chat['name']}: memlab chat exited {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout), wall


class InProcess:
    """The same path as ``memlab chat --script FILE --json`` (engine.chat.cli: models and agent built from the
    same arguments, the lines run by the same handler, the same JSON document), with the models loaded once
    for all chats — a fresh agent per chat.  For a loaded machine, where starting one process per chat costs
    more than the chat."""

    def __init__(self, extra: list[str]):
        import argparse as _ap

        from engine.chat import cli

        parser = _ap.ArgumentParser()
        sub = parser.add_subparsers()
        cli.register(sub)
        self.cli = cli
        self.args = parser.parse_args(["chat", "--agent", "emma", "--greedy", "--max-new-tokens", "32", *extra])
        self.agent = cli.build_agent(self.args)  # loads the models once; describe() names them
        self.models = None

    def run(self, chat: dict) -> tuple[dict, float]:
        import io

        from engine.chat.session import ChatSession
        from engine.data.model import Speaker
        from engine.systems import registry

        t0 = time.perf_counter()
        fresh = registry.build_agent("emma", self._models(), **self._options())
        session = ChatSession(fresh, Speaker.parse(chat["main"]))
        sink = io.StringIO()
        for line in script_text(chat).splitlines():
            self.cli._handle(session, line, sink, stream=False)
        session.end_session(lambda *a, **k: None)
        doc = {k: v for k, v in session.doc.to_dict().items() if k != "agent_state"}
        doc["models"] = fresh.describe()
        return json.loads(json.dumps(doc, default=str)), time.perf_counter() - t0

    def _models(self):
        from engine.systems import registry

        a = self.agent
        m = registry.Models(settings=a.dialogue.settings)
        m.generator = a.dialogue.lm
        m.encoder = a.retriever.context_encoder if a.retriever.memory_encoder is a.retriever.context_encoder else None
        m.components["retriever"] = a.retriever
        return m

    def _options(self) -> dict:
        from engine.systems import registry

        return registry.get("emma").validate(self.cli.parse_options(self.args.set) |
                                             {"preset": self.args.preset})


def bare(text: str) -> str:
    return _PROVENANCE.sub("", text or "").strip()


def carries(text: str, fact: dict) -> bool:
    low = bare(text).lower()
    return all(any(alt.lower() in low for alt in group) for group in fact["keys"])


def on_topic(text: str, topic: dict) -> bool:
    low = bare(text).lower()
    return any(k.lower() in low for k in topic["keys"])


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def judge(chat: dict, doc: dict) -> dict:
    """The five figures for one chat run (see the module docstring for every rule)."""
    main = doc["main"]["name"]
    names = {main.lower()} | {s["partner"].split(":")[0].strip().lower() for s in chat["sessions"]}
    facts = chat["facts"]
    memories = doc["memory"]["memories"]
    by_id = {m["id"]: m for m in memories}
    session_words = {}
    for s in doc["sessions"]:
        session_words[s["index"]] = {w for t in s["turns"] for w in _words(t["text"])}

    recalled = [f["id"] for f in facts
                if any(m["about"] == f["person"] and carries(m["text"], f) for m in memories)]
    misattributed, junk, seen = [], [], set()
    for m in memories:
        text = bare(m["text"])
        wrong = [f["id"] for f in facts if f["person"] != m["about"] and carries(text, f)]
        named = {w for w in _words(text) if w in names}
        if m["about"] != main and named and m["about"].lower() not in named:
            wrong.append("names-another-participant")
        if wrong:
            misattributed.append({"id": m["id"], "about": m["about"], "text": text, "why": wrong})
        words = _words(text)
        key = " ".join(words)
        content = {w for w in words if len(w) >= 4 and w not in _COMMON and w not in names}
        why = None
        if len([w for w in words if re.search("[a-z]", w)]) < 4:
            why = "fragment"
        elif key in seen:
            why = "duplicate"
        elif not content & session_words.get(m["session"], set()):
            why = "shares no content word with its session"
        seen.add(key)
        if why:
            junk.append({"id": m["id"], "text": text, "why": why})

    hits, missed = 0, []
    for q in chat.get("questions", []):
        fact = next(f for f in facts if f["id"] == q["needs"])
        turns = doc["sessions"][q["session"]]["turns"]
        bot = turns[2 * q["line"] + 1] if 2 * q["line"] + 1 < len(turns) else {"memories": []}
        given = [g.get("text", "") for g in bot.get("memories", [])]
        if any(carries(t, fact) for t in given):
            hits += 1
        else:
            missed.append({"needs": q["needs"], "given": [bare(t) for t in given]})

    links = doc["memory"]["links"]
    topical_links = []
    related = 0
    for link in links:
        a, b = by_id.get(link["src"]), by_id.get(link["dst"])
        if a is None or b is None:
            continue
        shared = [t["id"] for t in chat.get("topics", []) if on_topic(a["text"], t) and on_topic(b["text"], t)]
        if shared:
            related += 1
            if a["session"] != b["session"]:
                topical_links.append({"src": link["src"], "dst": link["dst"], "topic": shared[0]})
    rejected = [r for s in doc["sessions"] for r in ((s.get("stored") or {}).get("rejected") or [])]
    n = len(memories)
    return {
        "chat": chat["name"], "facts": len(facts), "recalled": len(recalled),
        "fact_recall": len(recalled) / len(facts) if facts else None,
        "memories": n, "misattributed": len(misattributed),
        "misattribution_rate": len(misattributed) / n if n else 0.0,
        "junk": len(junk), "junk_rate": len(junk) / n if n else 0.0,
        "questions": len(chat.get("questions", [])), "retrieval_hits": hits,
        "retrieval_hit_rate": hits / len(chat["questions"]) if chat.get("questions") else None,
        "has_topics": bool(chat.get("topics")), "topical_cross_session_links": len(topical_links),
        "links": len(links), "link_precision": related / len(links) if links else None,
        "rejected": len(rejected),
        "detail": {"not_recalled": [f["id"] for f in facts if f["id"] not in recalled],
                   "misattributed": misattributed, "junk": junk, "retrieval_missed": missed,
                   "rejected": rejected[:20]},
    }


def total(rows: list[dict]) -> dict:
    s = lambda k: sum(r[k] for r in rows)  # noqa: E731
    topical = [r for r in rows if r["has_topics"]]
    links = s("links")
    related = sum((r["link_precision"] or 0) * r["links"] for r in rows)
    return {
        "chat": "TOTAL", "chats": len(rows),
        "fact_recall": s("recalled") / s("facts") if s("facts") else None,
        "misattribution_rate": s("misattributed") / s("memories") if s("memories") else 0.0,
        "junk_rate": s("junk") / s("memories") if s("memories") else 0.0,
        "retrieval_hit_rate": s("retrieval_hits") / s("questions") if s("questions") else None,
        "topical_link_chats": (sum(r["topical_cross_session_links"] > 0 for r in topical) / len(topical)
                               if topical else None),
        "memories": s("memories"), "rejected": s("rejected"), "links": links,
        "link_precision": related / links if links else None,
        "goals": {"fact_recall": ">= 0.8", "misattribution_rate": "<= 0.05", "junk_rate": "0",
                  "retrieval_hit_rate": ">= 0.8", "topical_link_chats": ">= 0.75"},
    }


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chats", default=str(CHATS), help="folder of memlab-memory-chat/1 files")
    p.add_argument("--only", nargs="*", help="chat names to run")
    p.add_argument("--out", help="folder for each chat's JSON document and stderr")
    p.add_argument("--no-detail", action="store_true", help="omit the per-chat 'detail' field")
    p.add_argument("--in-process", action="store_true",
                   help="load the models once and run every chat through the CLI's own code in this process")
    p.add_argument("--combine", nargs="+", metavar="LOG",
                   help="print the TOTAL line of the per-chat lines in these earlier outputs (runs split into parts)")
    args = p.parse_args(argv)
    if args.combine:
        rows = [json.loads(line) for f in args.combine for line in Path(f).read_text().splitlines()
                if line.startswith("{") and '"chat": "TOTAL"' not in line and '"fact_recall"' in line]
        print(json.dumps(total(rows) | {"combined_from": args.combine}), flush=True)
        return 0
    try:
        chats = [load_chat(f) for f in sorted(Path(args.chats).glob("*.json"))]
    except ChatFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.only:
        chats = [c for c in chats if c["name"] in args.only]
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    runner = InProcess(extra) if args.in_process else None
    for chat in chats:
        if runner is not None:
            doc, wall = runner.run(chat)
            if out:
                (out / f"{chat['name']}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1))
        else:
            doc, wall = run_chat(chat, extra, out)
        row = judge(chat, doc)
        row["wall_s"] = round(wall, 1)
        row["models"] = {k: doc["models"].get(k) for k in ("label", "preset", "lm", "adapter") if k in doc["models"]}
        rows.append(row)
        shown = {k: v for k, v in row.items() if not (args.no_detail and k == "detail")}
        print(json.dumps(shown, ensure_ascii=False), flush=True)
    print(json.dumps(total(rows) | {"options": extra}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
