"""MiLP in live chat: one parameterised memory per partner (MiLP §2, Appendix D "when a new user is
introduced, the corresponding parameterized module can be loaded into the base model").

* The prompt holds only the current session's recent turns — what the bot knows about a partner from
  earlier sessions lives only in that partner's adapter (FFN LoRA, Eq. 1, placed by θ).
* At session end the partner's adapter is trained (first meeting) or updated (return) on that partner's
  turns within ``train_budget_s`` seconds, with progress; :meth:`MilpAgent.stop_session_end` (the
  contract's way, used by the worker's Cancel) stops it early and keeps what was trained.
* The adapter is stored in the agent's state as a small adapter directory (config + fp16 safetensors), and
  loaded again when that partner returns (also after the chat is reopened).
* With a shipped instruction adapter (§2.3) it is active together with the partner's memory.
"""

from __future__ import annotations

import contextlib
import threading
import time

from engine.data.model import MemoryUpdate
from engine.systems.session_agent import SessionLogAgent

from .config import Theta, TrainSettings
from .model import AdapterBank, adapter_key


class MilpAgent(SessionLogAgent):
    name = "milp"

    def __init__(self, responder, bank: AdapterBank, theta: Theta, *, train_settings: TrainSettings | None = None,
                 theta_source: str = "", served=None):
        super().__init__(responder)
        self.bank = bank
        self.served = served  # engine.systems.milp.served.ServedMemories when replies come from a generator server
        self.theta = theta
        self.theta_source = theta_source
        self.train_settings = train_settings or TrainSettings()
        self.memories: dict[str, dict] = {}  # partner → {"theta", "packed", "trained_turns", "loss", ...}
        self.cancel_training = threading.Event()

    # ------------------------------------------------------------------ generation with the partner's memory
    def _key(self) -> str | None:
        name = getattr(self.partner, "name", None)
        return adapter_key(name) if name and name in self.memories else None

    def start_session(self, main, partner, session_index):
        super().start_session(main, partner, session_index)
        rec = self.memories.get(partner.name)
        if rec is not None and not self.bank.has(adapter_key(partner.name)):
            self.bank.load_packed(adapter_key(partner.name), rec["packed"])
            if self.served is not None:
                self.served.refresh(adapter_key(partner.name))

    @contextlib.contextmanager
    def _generating(self):
        """The partner's memory active for a reply: on the generator server by the adapters' served name
        (:mod:`.served`), else — in process, or where the server cannot have them — in the bank."""
        key = self._key()
        remote = self.served.lm_for(key) if self.served is not None else None
        if remote is not None:
            self.responder.lm = remote
            try:
                yield
            finally:
                self.responder.lm = self.served.remote
            return
        with self.bank.active(key):
            if self.served is not None:
                self.responder.lm = self.bank.lm
            try:
                yield
            finally:
                if self.served is not None:
                    self.responder.lm = self.served.remote

    def respond(self, utterance, cancel=None):
        with self._generating():
            yield from super().respond(utterance, cancel)

    def sample_replies(self, utterance, n, cancel=None):
        with self._generating():
            return super().sample_replies(utterance, n, cancel)

    def given_items(self, ids):
        rec = self.memories.get(getattr(self.partner, "name", ""), None)
        if rec is None:
            return []
        where = ""
        if self.served is not None:  # say, on the turn, where this memory ran
            name = self.served.served_name(adapter_key(self.partner.name))
            where = (", generated in this process: the generator server cannot load it" if name in self.served.fallback
                     else f", served as {name}")
        return [{"kind": "memory", "id": adapter_key(self.partner.name), "adapter": True,
                 "text": f"parameterised memory of {self.partner.name}: {Theta.from_dict(rec['theta']).describe()}, "
                         f"trained on {rec['trained_turns']} turns{where}"}]

    def turn_memories(self, history):
        key = self._key()
        return [], ([key] if key else [])

    # ------------------------------------------------------------------ session end: train the partner's memory
    def partner_turns(self, partner: str, extra=()) -> list[tuple[str, str]]:
        past = [(t["speaker"], t["text"]) for s in self.sessions if s["partner"]["name"] == partner for t in s["turns"]]
        return past + [(t.speaker, t.text) for t in extra]

    def store_session(self, turns, progress=None) -> MemoryUpdate:
        from .train_memory import train_partner

        partner = self.partner.name
        history = self.partner_turns(partner, turns)
        rec = self.memories.get(partner)
        theta = Theta.from_dict(rec["theta"]) if rec else self.theta
        if not theta.injects:
            return MemoryUpdate(notes=[f"θ injects nothing ({theta.describe()}): no memory kept for {partner}"])
        key = adapter_key(partner)
        if progress:
            progress(f"{'updating' if rec else 'training'} {partner}'s memory", 0, 1)
        t0 = time.monotonic()
        try:
            out = train_partner(self.bank, key, theta, history, self.train_settings, progress=progress,
                                cancel=self.cancel_training)
        finally:
            self.cancel_training.clear()  # a stop ends this session end only, never the next one
        if self.served is not None:
            self.served.refresh(key)  # retrained: a new served name at the next reply
        packed = self.bank.pack(key)
        self.memories[partner] = {
            "theta": theta.to_dict(), "packed": packed, "trained_turns": len(history),
            "loss": out["loss"], "steps": (rec or {}).get("steps", 0) + out["steps"],
            "sessions": (rec or {}).get("sessions", 0) + 1, "seconds": round(time.monotonic() - t0, 1),
            "status": out["status"], "updated_session": self.session_index}
        verb = "trained a new" if out["first"] else "updated the"
        note = (f"{verb} memory adapter for {partner} ({theta.describe()}, {packed['parameters']:,} parameters, "
                f"{packed['bytes'] / 1e6:.1f} MB) on {len(history)} turns: {out['steps']} steps, loss "
                f"{out['loss']:.3f}, {out['seconds']} s ({out['status']})" if out["loss"] is not None else
                f"{verb} memory adapter for {partner}: no step finished ({out['status']})")
        return MemoryUpdate(notes=[note], adapters=[key])

    def stop_session_end(self) -> None:
        """Stop the partner's adapter training at the next step, keeping the steps already made."""
        self.cancel_training.set()

    # ------------------------------------------------------------------ capability "adapters"
    def adapters(self) -> list[dict]:
        out = []
        for partner, rec in self.memories.items():
            theta = Theta.from_dict(rec["theta"])
            out.append({"partner": partner, "name": adapter_key(partner), "theta": rec["theta"],
                        "theta_text": theta.describe(), "parameters": rec["packed"]["parameters"],
                        "size_bytes": rec["packed"]["bytes"], "trained_turns": rec["trained_turns"],
                        "loss": rec["loss"], "steps": rec["steps"], "sessions": rec["sessions"],
                        "seconds": rec["seconds"], "status": rec["status"],
                        "active": partner == getattr(self.partner, "name", None)})
        return out

    def memory_view(self) -> dict:
        return {"owner": getattr(self.main, "name", "") or "", "memories": [], "links": [],
                "adapters": self.adapters()}

    def extra_state(self) -> dict:
        return {"milp": {"theta": self.theta.to_dict(), "memories": self.memories}}

    def load_extra_state(self, state: dict) -> None:
        milp = state.get("milp") or {}
        self.memories = dict(milp.get("memories") or {})
        for partner, rec in self.memories.items():
            for field in ("theta", "packed", "trained_turns"):
                if field not in rec:
                    raise ValueError(f"MiLP state: the memory of {partner!r} has no {field!r} (field milp.memories)")

    def describe(self) -> dict:
        return {**super().describe(), "theta": self.theta.describe(), "theta_source": self.theta_source,
                "instruction_adapter": bool(self.bank.instruct), "partners_with_memory": sorted(self.memories),
                "train_budget_s": self.train_settings.max_seconds,
                **({"served": {"where": self.served.remote.where, "notes": list(self.served.notes)}}
                   if self.served is not None else {})}
