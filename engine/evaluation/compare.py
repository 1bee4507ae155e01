"""``memlab eval compare``: every system answers the same held-out turns (:mod:`.heldout`).

For each query and each system, a fresh agent (one user = one episode) is given, through the agent
contract only:

1. the episode's given memories (e.g. ConvAI2 persona lines) through ``ingest_memories`` where the system
   keeps memories (the others raise ``Unsupported``, answer from the dialogue alone, and the report says so);
2. the true earlier sessions through ``ingest_session`` (the system's own session-end step runs: EMMA
   summarises and links, the summary baseline summarises, a per-user-training system trains — within
   ``budget_s`` seconds per user when its record has a ``budget_s`` option);
3. the held-out session's true turns before the utterance (``restore``);

then ``sample_replies(utterance, samples)`` (S-Dist, MDR §5: five sampled responses per query) and one
``respond(utterance)``: the response scored against the reference. Queries run one after another with every
system, so an interrupted run still compares all systems on the same turns; records are appended to a
JSON Lines file as they are made and a re-run continues after them.

Torch-free: the systems load their models inside the caller's ``build``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.agent import Cancelled, Unsupported

from .heldout import Query

DEFAULT_SAMPLES = 5  # MDR §5: S-Dist over five sampled responses per query

#: ``progress(stage, done, total)``
Progress = Callable[[str, int, int], None]


@dataclass
class SystemResult:
    """One system's answers: response records (``engine.metrics`` shape) and what it cost."""

    name: str
    records: list[dict] = field(default_factory=list)
    ingest_s: list[float] = field(default_factory=list)   # per user: given memories + earlier sessions
    answer_s: list[float] = field(default_factory=list)   # per query: samples + the response
    given_counts: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: str | None = None


def _turns(session) -> list[dict]:
    return [{"speaker": t.speaker, "text": t.text} for t in session.turns]


def prepare_agent(agent, q: Query, progress: Progress | None = None) -> tuple[bool, int]:
    """Steps 1–3 of the module docstring. Returns (given memories taken, earlier sessions ingested)."""
    ep = q.episode
    agent.main = ep.main  # the contract's main speaker, set before ingesting (Agent.main)
    took_given = False
    given = q.given_memories()
    if given:
        try:
            agent.ingest_memories([{"about": m.about, "text": m.text, "session": m.session} for m in given])
            took_given = True
        except Unsupported:
            pass  # a system without memory answers from the dialogue alone (the report says so)
    earlier = q.earlier_sessions()
    for k, s in enumerate(earlier):
        if progress:
            progress(f"{q.id}: ingesting session {k + 1}/{len(earlier)}", k, len(earlier))
        agent.ingest_session(s.partner, s.index, _turns(s))
    held = q.session
    agent.start_session(ep.main, held.partner, held.index)
    prefix = q.prefix()
    if prefix:
        agent.restore(prefix)
    return took_given, len(earlier)


def answer(agent, q: Query, samples: int, cancel: threading.Event | None = None) -> dict:
    """The response record for ``q`` from a prepared agent."""
    responses = agent.sample_replies(q.utterance, samples, cancel) if samples > 0 else None
    reply = "".join(agent.respond(q.utterance, cancel)).strip()
    if cancel is not None and cancel.is_set():
        raise Cancelled("evaluation cancelled")
    rec = agent.last_turn
    given = list(getattr(rec, "given", []) or []) if rec is not None else []
    out = {"id": q.id, "response": reply, "reference": q.reference, "persona": q.persona(), "query": q.utterance,
           "given": [{k: g.get(k) for k in ("kind", "id", "text") if k in g} for g in given]}
    if responses is not None:
        out["responses"] = [r.strip() for r in responses]
    return out


def _load_done(path: Path | None) -> dict[tuple[str, str], dict]:
    done = {}
    if path is None or not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash: that answer is redone
        if isinstance(row, dict) and "system" in row and "record" in row:
            done[(row["system"], row["record"]["id"])] = row
    return done


def run_compare(queries: list[Query], systems: list[str], build: Callable[[str], object], *,
                samples: int = DEFAULT_SAMPLES, budget_s: float | None = None, records_path: str | Path | None = None,
                reseed: Callable[[int], None] | None = None, progress: Progress | None = None,
                cancel: threading.Event | None = None, only_recorded: bool = False,
                workers: int = 1) -> dict[str, SystemResult]:
    """Answer every query with every system (query-major). ``build(name)`` makes a fresh agent.

    ``records_path``: JSON Lines of ``{"system", "record", "ingest_s", "answer_s"}`` appended as answers are
    made; answers already there are reused (resume). ``reseed(i)`` runs before each system answers query
    ``i`` (every system samples from the same seed per query, whatever the order or a resume). A system that fails (e.g. lacks a contract method) is
    reported with the reason and dropped from the remaining queries; the others go on. ``only_recorded``
    collects what ``records_path`` holds without answering anything (the table of a cancelled run).

    ``workers`` > 1 (a generator server, whose requests are batched on the server): blocks of ``workers``
    queries are answered concurrently, one agent per query in its own thread, system after system; the
    records are kept in query order. ``reseed`` is then not called: a process-wide torch seed means nothing to
    concurrent requests (the server samples; its replies are reproducible only with ``GenerationSettings.seed``)."""
    from concurrent.futures import ThreadPoolExecutor

    results = {name: SystemResult(name) for name in systems}
    path = Path(records_path) if records_path else None
    done = _load_done(path)
    sink = path.open("a", encoding="utf-8") if path and not only_recorded else None
    total = len(queries) * len(systems)
    workers = max(1, int(workers))
    step = 0

    def attempt(name: str, qi: int, q: Query):
        """The new row, or the exception that stopped it (handled in the caller's thread)."""
        try:
            if reseed and workers == 1:
                reseed(qi)
            agent = build(name)
            t0 = time.perf_counter()
            took_given, n_earlier = prepare_agent(agent, q)
            t1 = time.perf_counter()
            record = answer(agent, q, samples, cancel)
            t2 = time.perf_counter()
        except BaseException as e:  # noqa: BLE001 — sorted below
            return e
        return {"system": name, "record": record, "ingest_s": t1 - t0, "answer_s": t2 - t1,
                "given_memories": took_given, "earlier_sessions": n_earlier}

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memlab-compare") if workers > 1 else None
    indexed = list(enumerate(queries))
    try:
        for start in range(0, len(indexed), workers):
            block = indexed[start:start + workers]
            for name in systems:
                res = results[name]
                if res.failed:
                    step += len(block)
                    continue
                if cancel is not None and cancel.is_set():
                    raise Cancelled("evaluation cancelled")
                todo = [] if only_recorded else [(qi, q) for qi, q in block if (name, q.id) not in done]
                made: dict[int, object] = {}
                if pool is not None and len(todo) > 1:
                    if progress:
                        progress(f"{name} on {block[0][1].id}… ({len(todo)} queries in flight)", step, total)
                    futures = {qi: pool.submit(attempt, name, qi, q) for qi, q in todo}
                    made = {qi: f.result() for qi, f in futures.items()}
                for qi, q in block:
                    step += 1
                    if res.failed:
                        continue
                    if progress and pool is None:
                        progress(f"{name} on {q.id}", step - 1, total)
                    row = done.get((name, q.id))
                    if row is None and only_recorded:
                        continue
                    if row is None:
                        row = made[qi] if qi in made else attempt(name, qi, q)
                        if isinstance(row, Cancelled) or (isinstance(row, BaseException)
                                                          and not isinstance(row, Exception)):
                            raise row
                        if isinstance(row, Unsupported):
                            res.failed = f"cannot be evaluated this way: {row}"
                            continue
                        if isinstance(row, (RuntimeError, ValueError, TypeError, KeyError, IndexError,
                                            MemoryError, OSError)):
                            res.failed = f"failed on {q.id}: {type(row).__name__}: {row}"
                            continue
                        if isinstance(row, BaseException):
                            raise row
                        if sink:
                            sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                            sink.flush()
                    res.records.append(row["record"])
                    res.ingest_s.append(row["ingest_s"])
                    res.answer_s.append(row["answer_s"])
                    res.given_counts.append(len(row["record"].get("given", [])))
                    if q.given_memories() and not row.get("given_memories"):
                        note = "answered without the given memories (persona): it keeps no memories it could be given"
                        if note not in res.notes:
                            res.notes.append(note)
                    if budget_s is not None and row["ingest_s"] > budget_s:
                        note = f"took more than --budget-s {budget_s:g} s to take in a user's history"
                        if note not in res.notes:
                            res.notes.append(note)
                if progress and pool is not None:
                    progress(f"{name} on {block[-1][1].id}", step, total)
        if progress:
            progress("done", total, total)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if sink:
            sink.close()
    return results


def score(results: dict[str, SystemResult], *, classifier=None, classifier_error: str | None = None,
          n_resamples: int = 1000, seed: int = 0) -> dict:
    """``{"n": N, "systems": {name: {metric: value, "<metric>_ci": [lo, hi]}}}`` over the queries every
    scored system answered (so the systems are compared on the same turns), each with a bootstrap 95%
    interval (:mod:`engine.metrics.bootstrap`), plus ``"meta"`` with timings and notes."""
    from engine.metrics.responses import parse_record, score_records

    ok = {n: r for n, r in results.items() if not r.failed and r.records}
    common = None
    for r in ok.values():
        ids = {rec["id"] for rec in r.records}
        common = ids if common is None else common & ids
    common = common or set()
    out = {"n": len(common), "systems": {}}
    meta = {}
    for name, r in results.items():
        mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None  # noqa: E731
        meta[name] = {"answered": len(r.records), "ingest_s_mean": mean(r.ingest_s),
                      "answer_s_mean": mean(r.answer_s), "given_per_turn": mean(r.given_counts),
                      "notes": list(r.notes)}
        if r.failed:
            meta[name]["failed"] = r.failed
        if name not in ok:
            continue
        records = [parse_record({k: v for k, v in rec.items() if k != "given"}, "<compare>", i)
                   for i, rec in enumerate(r.records) if rec["id"] in common]
        if not records:
            continue
        table = score_records(records, classifier=classifier, classifier_error=classifier_error)
        d = table.to_dict(ci=True, n_resamples=n_resamples, seed=seed)
        meta[name]["notes"].extend(d.pop("notes", []))
        d.pop("n", None)
        d.pop("n_by_metric", None)
        out["systems"][name] = d
    out["meta"] = meta
    return out
