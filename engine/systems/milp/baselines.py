"""MiLP's two baselines (§3.2), on the same backbone, the same prompt layout and the same generation code:

* :class:`TplpAgent` — *text-prompt* personalisation: the user's historical content (that partner's earlier
  turns) in the prompt, the oldest dropped first when the window is full.
* :class:`MalpAgent` — *MaLP-style* memory (Zhang et al. 2023, "memory-augmented LLM personalization with
  short- and long-term memory"): short-term memory = the current session's turns (in the prompt, as for
  every system); long-term memory = that partner's earlier turns, embedded with the sentence encoder, of
  which the ``k`` most similar to the current context are retrieved into the prompt.  (MaLP's learned
  coordination of the two memories is not reproduced: retrieval is plain cosine similarity.)
"""

from __future__ import annotations

from engine.data.model import MemoryUpdate
from engine.systems.session_agent import SessionLogAgent, recent_context


class _PartnerHistory(SessionLogAgent):
    def partner_turns(self) -> list[tuple[str, dict]]:
        name = getattr(self.partner, "name", None)
        return [(f"s{s['index']}{t['id']}", t) for s in self.sessions if s["partner"]["name"] == name
                for t in s["turns"]]

    def given_items(self, ids):
        by_id = dict(self.partner_turns())
        return [{"kind": "turn", "id": i, "text": by_id[i]["text"], "speaker": by_id[i]["speaker"]}
                for i in ids if i in by_id]

    def store_session(self, turns, progress=None):
        return MemoryUpdate(notes=[f"kept {len(turns)} turns with {self.partner.name} for later prompts"])


class TplpAgent(_PartnerHistory):
    name = "tplp"

    def turn_memories(self, history):
        turns = self.partner_turns()
        return [(f"{t['speaker']}: {t['text']}", []) for _, t in turns], [i for i, _ in turns]


class MalpAgent(_PartnerHistory):
    name = "malp-rag"

    def __init__(self, responder, encoder, *, k: int = 3):
        super().__init__(responder)
        self.encoder = encoder
        self.k = k
        self._vectors: dict[str, object] = {}

    def _embed(self, texts: list[str]):
        from engine.backbones.encoding import encode

        return encode(self.encoder, texts)

    def turn_memories(self, history):
        turns = self.partner_turns()
        if not turns:
            return [], []
        todo = [(i, t["text"]) for i, t in turns if i not in self._vectors]
        if todo:
            for (i, _), v in zip(todo, self._embed([text for _, text in todo])):
                self._vectors[i] = v
        import torch

        q = self._embed([recent_context(history, 2)])[0]
        ids = [i for i, _ in turns]
        mat = torch.stack([torch.as_tensor(self._vectors[i]) for i in ids])
        q = torch.as_tensor(q)
        sims = torch.nn.functional.cosine_similarity(mat, q.unsqueeze(0), dim=-1)
        top = sorted(torch.topk(sims, min(self.k, len(ids))).indices.tolist())  # in conversation order
        chosen = [ids[j] for j in top]
        by_id = dict(turns)
        return [(f"{by_id[i]['speaker']}: {by_id[i]['text']}", []) for i in chosen], chosen
