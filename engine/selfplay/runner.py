"""Play self-play episodes (EMMA paper §5.3) with four agent instances and write ``memlab-episode/1``.

Each instance is a separate :class:`engine.agent.Agent` with its own speaker (name and
job/relationship) and its own memory: the main speaker's agent meets one partner per session, and
each partner's agent keeps its own egocentric memory of the main speaker (Appendix J: "each
individual instance summarizes its memory of the others from its own perspective"). Any registry
system can play any seat: the caller passes a factory that builds the agent for a seat.

Per session (protocol in :mod:`.protocol`): both instances start the session, the opener speaks
first (the seed's first utterance in the first session, a generated opening afterwards), then the
two reply to each other until the session has ``max_turns`` turns, then both end the session
(each summarises and links its own memories).

The written episode is the main speaker's view — its memories, links and the memories each of its
turns was given (tags) — with every instance's memory snapshot (``memory_view``) and the run's
timings under ``meta["selfplay"]``. Runs are resumable: episodes are appended to the output file
one at a time (atomic rewrite) and a re-run skips the episodes already there. Torch-free.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.agent import Agent, Cancelled
from engine.data.episode_format import episode_from_dict, read_episodes, write_episodes
from engine.data.model import Episode, Speaker

from .protocol import SelfPlayPlan

SELFPLAY_SOURCE = "selfplay"

#: ``make_agent(role, speaker)`` → a fresh agent for one seat; role is ``"main"`` or ``"partner"``.
AgentFactory = Callable[[str, Speaker], Agent]
#: ``progress(stage, done, total)``
Progress = Callable[[str, int, int], None]


class CannotOpen(TypeError):
    """The system of a seat cannot speak first in a session."""


def speak_first(agent: Agent, text: str | None, cancel: threading.Event | None) -> str:
    """The opener's first utterance: ``text`` (a seeded utterance the agent logs as its own) or,
    with ``None``, an utterance the agent generates with no partner utterance before it."""
    fn = getattr(agent, "speak_first", None)
    if fn is None:
        raise CannotOpen(f"system {getattr(agent, 'name', type(agent).__name__)!r} cannot open a session "
                         "(its agent has no speak_first); self-play needs every seat to be able to speak first")
    return "".join(fn(text, cancel)).strip()


def _reply(agent: Agent, utterance: str, cancel: threading.Event | None) -> str:
    text = "".join(agent.respond(utterance, cancel)).strip()
    if cancel is not None and cancel.is_set():
        raise Cancelled("self-play cancelled")
    return text


def _memory_view(agent: Agent) -> dict:
    view = getattr(agent, "memory_view", None)
    if view is None:
        return {"memories": [], "links": []}
    return view()


def _given_ids(agent: Agent) -> list[str]:
    rec = agent.last_turn
    if rec is None:
        return []
    given = getattr(rec, "given", None)
    if given:
        return [g["id"] for g in given if g.get("kind") == "memory" and g.get("id") is not None]
    return list(getattr(rec, "memory_ids", []) or [])


@dataclass
class Timings:
    turns: list[float] = field(default_factory=list)
    session_ends: list[float] = field(default_factory=list)

    def summary(self, total: float) -> dict:
        mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None  # noqa: E731
        return {"episode_s": round(total, 2), "turns": len(self.turns), "turn_mean_s": mean(self.turns),
                "session_ends": len(self.session_ends), "session_end_mean_s": mean(self.session_ends)}


def play_episode(plan: SelfPlayPlan, make_agent: AgentFactory, *, episode_id: str, seats: dict[str, str],
                 seed: int, reseed: Callable[[int], None] | None = None, progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> Episode:
    """Play one episode; ``seats`` maps each speaker's name to the system name playing it (for the record)."""
    t_start = time.perf_counter()
    if reseed:
        reseed(seed)
    agents: dict[str, Agent] = {plan.main.name: make_agent("main", plan.main)}
    for p in plan.partners:
        agents[p.name] = make_agent("partner", p)
    own_sessions = dict.fromkeys(agents, 0)  # each instance's own session count (its "[NOW] n-th session")
    timings = Timings()
    sessions, partner_tags, stopped = [], {}, []
    total_turns = len(plan.sessions) * plan.max_turns
    done_turns = 0
    for sp in plan.sessions:
        main, partner = plan.main, plan.speaker(sp.partner)
        a_main, a_partner = agents[main.name], agents[partner.name]
        a_main.start_session(main, partner, own_sessions[main.name])
        a_partner.start_session(partner, main, own_sessions[partner.name])
        speaker = main if sp.opener == main.name else partner
        listener = partner if speaker is main else main
        turns = []

        def record(who: Speaker, text: str, agent: Agent):
            tid = f"s{sp.index}t{len(turns)}"
            tags = _given_ids(agent)
            turns.append({"id": tid, "speaker": who.name, "text": text,
                          "memory_ids": tags if who is main else []})
            if who is partner and tags:
                partner_tags[tid] = tags

        t0 = time.perf_counter()
        text = speak_first(agents[speaker.name], sp.first_utterance, cancel)
        if cancel is not None and cancel.is_set():
            raise Cancelled("self-play cancelled")
        if sp.first_utterance is None:  # a generated opening (the seeded one costs nothing)
            timings.turns.append(time.perf_counter() - t0)
        if text:
            record(speaker, text, agents[speaker.name])
        done_turns += 1
        while text and len(turns) < plan.max_turns:
            speaker, listener = listener, speaker
            t0 = time.perf_counter()
            text = _reply(agents[speaker.name], turns[-1]["text"], cancel)
            timings.turns.append(time.perf_counter() - t0)
            if text:
                record(speaker, text, agents[speaker.name])
            done_turns += 1
            if progress:
                progress(f"session {sp.index + 1}/{len(plan.sessions)} turn {len(turns)}", done_turns, total_turns)
        done_turns = (sp.index + 1) * plan.max_turns
        if not text:
            stopped.append({"session": sp.index, "after_turns": len(turns), "why": f"{speaker.name} produced an empty utterance"})
        for who in (main, partner):
            if progress:
                progress(f"session {sp.index + 1}: {who.name} stores memories", done_turns, total_turns)
            t0 = time.perf_counter()
            agents[who.name].end_session()
            timings.session_ends.append(time.perf_counter() - t0)
            own_sessions[who.name] += 1
        sessions.append({"index": sp.index, "partner": partner.name, "event": sp.event, "date": None, "turns": turns})
    views = {name: _memory_view(a) for name, a in agents.items()}
    main_view = views[plan.main.name]
    turn_ids = {t["id"] for s in sessions for t in s["turns"]}
    memories = [{"id": m["id"], "owner": plan.main.name, "about": m["about"], "text": m["text"],
                 "session": m["session"],
                 "source_turns": [t for t in m.get("source_turns", []) if t in turn_ids]}
                for m in main_view.get("memories", []) if not m.get("deleted")]
    known = {m["id"] for m in memories}
    for s in sessions:
        for t in s["turns"]:
            t["memory_ids"] = [i for i in t["memory_ids"] if i in known]
    links = [{"src": l["src"], "dst": l["dst"], "kind": l.get("kind", "related")}
             for l in main_view.get("links", []) if l["src"] in known and l["dst"] in known]
    meta = {"selfplay": {
        "seed_episode": plan.seed_id, "seed": seed, "sessions": len(plan.sessions), "max_turns": plan.max_turns,
        "seats": dict(seats), "stopped_early": stopped, "partner_tags": partner_tags,
        "instances": {name: {"system": seats.get(name), "role": "main" if name == plan.main.name else "partner",
                             "memory": views[name]} for name in agents},
        "models": agents[plan.main.name].describe(),
        "timings": timings.summary(time.perf_counter() - t_start),
    }}
    obj = {"id": episode_id, "main": {"name": plan.main.name, "job": plan.main.job},
           "partners": [{"name": p.name, "job": p.job} for p in plan.partners],
           "sessions": sessions, "memories": memories, "links": links, "source": SELFPLAY_SOURCE, "meta": meta}
    return episode_from_dict(obj, record=episode_id)  # the writer's own validation: never a malformed file


def episode_id_for(seed_id: str, number: int) -> str:
    return f"selfplay-{number:04d}-{seed_id}"


def run_selfplay(plans: list[SelfPlayPlan], make_agent: AgentFactory, out: str | Path, *, seats: dict[str, str] | Callable,
                 seed: int = 0, reseed: Callable[[int], None] | None = None,
                 on_episode: Callable[[Episode, int, int], None] | None = None, progress: Progress | None = None,
                 cancel: threading.Event | None = None, workers: int = 1) -> list[Episode]:
    """Play one episode per plan into ``out`` (``memlab-episode/1``), resuming after the episodes
    already there; episode ``n`` is seeded with ``seed + n`` whatever was resumed.

    ``seats``: a function ``plan → {speaker name: system name}``. Returns every episode in ``out``.
    ``workers`` > 1 (a generator server, which batches concurrent requests): that many episodes are played
    at once, each in its own thread with its own four instances; each is written when it ends, the file
    in plan order. ``reseed`` is then not called: a process-wide torch seed means nothing to concurrent
    requests (the server samples; reproducible only with a seed in the generation settings).
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    out = Path(out)
    done: list[Episode] = read_episodes(out) if out.exists() else []
    done_ids = {e.id for e in done}
    order = {episode_id_for(p.seed_id, n): n for n, p in enumerate(plans)}
    total = sum(len(p.sessions) * p.max_turns for p in plans)
    counts: dict[int, int] = {}
    lock = threading.Lock()
    workers = max(1, int(workers))

    def play(n: int, plan: SelfPlayPlan, stop: threading.Event | None = None) -> Episode:
        seat_map = seats(plan) if callable(seats) else seats
        per = len(plan.sessions) * plan.max_turns
        ep_progress = None
        if progress is not None:
            def ep_progress(stage, d, _t, n=n, per=per):
                with lock:
                    counts[n] = min(d, per)
                    played = sum(len(p.sessions) * p.max_turns for i, p in enumerate(plans)
                                 if episode_id_for(p.seed_id, i) in done_ids) + sum(counts.values())
                running = f" ({workers} episodes at a time)" if workers > 1 else ""
                progress(f"episode {n + 1}/{len(plans)} {stage}{running}", played, total)
        return play_episode(plan, make_agent, episode_id=episode_id_for(plan.seed_id, n), seats=seat_map,
                            seed=seed + n, reseed=reseed if workers == 1 else None, progress=ep_progress,
                            cancel=stop if stop is not None else cancel)

    def finished(ep: Episode, n: int) -> None:
        with lock:
            counts.pop(n, None)  # now counted as a whole episode
            done.append(ep)
            done_ids.add(ep.id)
        done.sort(key=lambda e: order.get(e.id, -1))
        write_episodes(out, done)
        if on_episode:
            on_episode(ep, n, len(plans))

    todo = [(n, p) for n, p in enumerate(plans) if episode_id_for(p.seed_id, n) not in done_ids]
    if workers == 1:
        for n, plan in todo:
            if cancel is not None and cancel.is_set():
                break
            finished(play(n, plan), n)
        return done
    from engine.agent import Cancelled

    abort = threading.Event()  # set on the first error or on the caller's cancel: the running episodes stop
    stop_with: BaseException | None = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memlab-selfplay") as ex:
        pending: dict = {}
        queue = list(reversed(todo))
        while queue or pending:
            if cancel is not None and cancel.is_set():
                abort.set()
            while queue and len(pending) < workers and not abort.is_set():
                n, plan = queue.pop()
                pending[ex.submit(play, n, plan, abort)] = n
            if not pending:
                break
            ready, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
            for f in ready:
                n = pending.pop(f)
                try:
                    ep = f.result()
                except Cancelled as e:
                    if stop_with is None and cancel is not None and cancel.is_set():
                        stop_with = e
                    continue
                except BaseException as e:  # noqa: BLE001 — re-raised once the finished episodes are written
                    if stop_with is None or isinstance(stop_with, Cancelled):
                        stop_with = e
                    abort.set()
                    continue
                finished(ep, n)  # every episode that ended is written, whatever happens to the others
    if stop_with is not None:
        raise stop_with
    return done
