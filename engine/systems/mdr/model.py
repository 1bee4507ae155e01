"""The MDR network (paper 000 §3, Fig. 2–3): teacher and student encoders, P-/R-Update Memory Nets, the
feature-conditioned decoder, and the three losses.

One code path for both backbones: the paper's GPT-2 path (GPT-2 encoders + GPT-2 decoder) and its LLM variant
(§4.6: a causal LLM decoder with LoRA, BERT-family encoders; here SmolLM2-135M-Instruct + MiniLM).

* :class:`FeatureEncoder` — a sentence feature = mean of the last hidden states (Eq. 1, 4–6 teacher; 8–10 student).
* :func:`select_history` — H(index) = argmax cos(Q_TE(T), H_TE) (Eq. 7).
* :class:`MemoryNet` — P-Update / R-Update (Fig. 3), one structure, K hops.
* :class:`MdrStudent` — Q_E, P_E (Eq. 11–12) and R⁽ᴷ⁾; :func:`sentence_loss` (Eq. 13).
* :class:`PrefixDecoder` — Decoder(Q, feature) (Eq. 2, 14), :func:`token_weights` and the losses of Eq. 3 and 14.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.backbones.encoding import pool

from .config import MdrConfig


# ---------------------------------------------------------------------------------------- encoders

class FeatureEncoder(nn.Module):
    """Encoder_teacher / Encoder_student: text → sentence feature (mean pooling over real tokens).

    ``model`` is any transformer body returning ``last_hidden_state`` (BERT/MiniLM, or ``GPT2Model`` on the
    paper's path).  ``features(texts)`` returns (n, d); ``cached(texts)`` is the same for a frozen encoder with a
    text → vector cache (the teacher is frozen after stage 1, so its features of Q, P, H and of single response
    tokens are computed once: the paper's "cache the distilled response features", §4.2).
    """

    def __init__(self, model, tokenizer, max_length: int = 64):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def device(self):
        return next(self.model.parameters()).device

    def features(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        if not texts:
            return torch.zeros((0, self.dim), device=self.device())
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device())
            states = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            out.append(pool(states, enc["attention_mask"], "mean").float())
        return torch.cat(out)

    def cached(self, texts: Sequence[str]) -> torch.Tensor:
        """Features of ``texts`` without gradients, each distinct text encoded once per process."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                was = self.model.training
                self.model.eval()
                vecs = self.features(missing)
                self.model.train(was)
            for t, v in zip(missing, vecs):
                self._cache[t] = v.detach()
        if not texts:
            return torch.zeros((0, self.dim), device=self.device())
        return torch.stack([self._cache[t] for t in texts])

    def clear_cache(self) -> None:
        self._cache.clear()


def select_history(query_feature: torch.Tensor, history_features: torch.Tensor) -> int | None:
    """Eq. 7: index = argmax_i cos_sim(Q_TE(T), H_TE(i)); None when there is no history."""
    if history_features.shape[0] == 0:
        return None
    sims = F.cosine_similarity(history_features, query_feature.unsqueeze(0), dim=-1)
    return int(torch.argmax(sims))


def partial_history(history: Sequence[tuple[str, str]], query: str, teacher: FeatureEncoder) -> tuple[list[str], int | None]:
    """H_P = Concat(H(index), Q(T−1), R(T−1)) (Eq. 7) as texts, and the selected index into ``history``.

    ``history`` holds the earlier (query, response) pairs, oldest first.  The last pair is always part of H_P;
    H(index) is chosen among the pairs before it (choosing the last pair again would only repeat it).
    """
    if not history:
        return [], None
    last_q, last_r = history[-1]
    older = [pair_text(q, r) for q, r in history[:-1]]
    index = None
    texts = []
    if older:
        feats = teacher.cached(older + [query])
        index = select_history(feats[-1], feats[:-1])
        texts.append(older[index])
    texts += [last_q, last_r]
    return texts, index


def pair_text(query: str, response: str) -> str:
    """One history entry (Q(i), R(i)) as the text the encoders read."""
    return f"{query} {response}".strip()


# ---------------------------------------------------------------------------------------- Memory Net

class MemoryHop(nn.Module):
    """HOP⁽ᵏ⁾ of Fig. 3: the state queries Q_E, the result queries P_E, giving δ; state + δ.

    Key/value projections per memory as in Mem2Seq's per-hop embedding matrices (Madotto et al. 2018);
    scaled dot-product attention (matmul → softmax → matmul).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.q_key, self.q_value = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.p_key, self.p_value = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    @staticmethod
    def _attend(query, keys, values, mask, scale):
        logits = torch.einsum("bd,bmd->bm", query, keys) * scale
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        attn = torch.softmax(logits, dim=-1) * mask  # an all-masked row reads nothing
        return torch.einsum("bm,bmd->bd", attn, values), attn

    def forward(self, state, q_mem, q_mask, p_mem, p_mask):
        read_q, _ = self._attend(state, self.q_key(q_mem), self.q_value(q_mem), q_mask, self.scale)
        query = state + read_q
        delta, attn = self._attend(query, self.p_key(p_mem), self.p_value(p_mem), p_mask, self.scale)
        return state + delta, attn


class MemoryNet(nn.Module):
    """P-Update / R-Update (Fig. 3; "R-Update and P-Update adopt shared network structure"): K hops from
    X⁽⁰⁾ ~ N(0, init_std² I); X⁽ᵏ⁺¹⁾ = X⁽ᵏ⁾ + δX for k ∈ [0, K−1].

    In training a fresh X⁽⁰⁾ is drawn for every example; in eval mode a fixed draw (a buffer made from the
    config seed and saved with the weights) makes inference deterministic.
    """

    def __init__(self, dim: int, hops: int, init_std: float, seed: int):
        super().__init__()
        self.hops = nn.ModuleList([MemoryHop(dim) for _ in range(hops)])
        self.init_std = init_std
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("eval_init", torch.randn(dim, generator=g) * init_std)

    def initial(self, batch: int, device) -> torch.Tensor:
        if self.training:
            return torch.randn(batch, self.eval_init.shape[0], device=device) * self.init_std
        return self.eval_init.to(device).unsqueeze(0).expand(batch, -1)

    def forward(self, q_mem, q_mask, p_mem, p_mask):
        state = self.initial(q_mem.shape[0], q_mem.device)
        attn = None
        for hop in self.hops:
            state, attn = hop(state, q_mem, q_mask, p_mem, p_mask)
        return state, attn


# ---------------------------------------------------------------------------------------- student side

@dataclass
class StudentInput:
    """One example's texts for the student side: the query Q(T), the persona sentences P and H_P (Eq. 7)."""

    query: str
    persona: list[str]
    partial_history: list[str]


def _pad_sets(sets: list[torch.Tensor], dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    m = max(1, max(s.shape[0] for s in sets))
    mem = torch.zeros((len(sets), m, dim), device=device)
    mask = torch.zeros((len(sets), m), dtype=torch.bool, device=device)
    for i, s in enumerate(sets):
        mem[i, :s.shape[0]] = s
        mask[i, :s.shape[0]] = True
    return mem, mask


class MdrStudent(nn.Module):
    """Student encoder + P-Update + R-Update: R⁽ᴷ⁾ from Q, P and H_P (Eq. 4–12, Fig. 3).

    Q_E = Concat(Q_TE, Q_SE) (Eq. 11) and P_E = Concat(P_TE, P_SE, H_PTE, H_PSE) (Eq. 12) are *sets* of feature
    vectors (one per sentence), the memories the Memory Nets attend over.  P-Update reads Q_E and P_E and gives
    P⁽ᴷ⁾; R-Update reads Q_E and P_E ∪ {P⁽ᴷ⁾} and gives R⁽ᴷ⁾.  Ablations: without P-Update R-Update reads P_E
    only; without R-Update R⁽ᴷ⁾ = P⁽ᴷ⁾.
    """

    def __init__(self, teacher: FeatureEncoder, student: FeatureEncoder, config: MdrConfig):
        super().__init__()
        if teacher.dim != student.dim:
            raise ValueError(f"teacher ({teacher.dim}-d) and student ({student.dim}-d) encoders must match")
        self.teacher, self.student, self.config = teacher, student, config
        d = student.dim
        self.p_update = MemoryNet(d, config.hops, config.init_std, config.seed) if config.p_update else None
        self.r_update = MemoryNet(d, config.hops, config.init_std, config.seed + 1) if config.r_update else None

    def forward(self, items: Sequence[StudentInput]) -> torch.Tensor:
        """R⁽ᴷ⁾ for each item: (B, d)."""
        cfg = self.config
        queries = [it.query for it in items]
        personas = [list(it.persona[:cfg.max_persona]) for it in items]
        hps = [list(it.partial_history) for it in items]
        flat_p = [s for p in personas for s in p]
        flat_h = [s for h in hps for s in h]
        q_te = self.teacher.cached(queries)                      # Eq. 4
        p_te = self.teacher.cached(flat_p)                       # Eq. 5
        h_te = self.teacher.cached(flat_h)                       # Eq. 6 (the entries of H_P)
        student_all = self.student.features(queries + flat_p + flat_h)   # Eq. 8–10 in one pass
        nq, np_ = len(queries), len(flat_p)
        q_se, p_se, h_se = student_all[:nq], student_all[nq:nq + np_], student_all[nq + np_:]
        device, d = q_te.device, self.student.dim
        q_mem = torch.stack([q_te, q_se], dim=1)                 # Eq. 11: Q_E (B, 2, d)
        q_mask = torch.ones(q_mem.shape[:2], dtype=torch.bool, device=device)
        p_sets, pi, hi = [], 0, 0
        for p, h in zip(personas, hps):
            p_sets.append(torch.cat([p_te[pi:pi + len(p)], p_se[pi:pi + len(p)],          # Eq. 12: P_E
                                     h_te[hi:hi + len(h)], h_se[hi:hi + len(h)]]))
            pi += len(p)
            hi += len(h)
        p_mem, p_mask = _pad_sets(p_sets, d, device)
        p_state = None
        if self.p_update is not None:
            p_state, _ = self.p_update(q_mem, q_mask, p_mem, p_mask)
        if self.r_update is None:
            return p_state
        if p_state is not None:
            p_mem = torch.cat([p_mem, p_state.unsqueeze(1)], dim=1)
            p_mask = torch.cat([p_mask, torch.ones((p_mask.shape[0], 1), dtype=torch.bool, device=device)], dim=1)
        r_state, _ = self.r_update(q_mem, q_mask, p_mem, p_mask)
        return r_state


def sentence_loss(r_k: torch.Tensor, r_te: torch.Tensor) -> torch.Tensor:
    """Eq. 13: L_sentence = MSE(R⁽ᴷ⁾, R_TE)."""
    return F.mse_loss(r_k, r_te)


# ---------------------------------------------------------------------------------------- decoder

class PrefixDecoder(nn.Module):
    """Decoder(Q, feature) of Eq. 2 (teacher, fed R_TE) and Eq. 14 (token stage, fed R⁽ᴷ⁾).

    The feature becomes ``prefix_tokens`` soft input embeddings (LayerNorm → Linear) placed before the query;
    the sequence is ``[prefix] Q R <eos>`` and only R's tokens are predicted.  A chat-template LM gets Q as a user
    message (its template up to the assistant's turn); a plain LM (GPT-2) gets ``User: Q\\nAssistant:``.
    """

    def __init__(self, lm, feature_dim: int, prefix_tokens: int, max_query_tokens: int, max_response_tokens: int):
        super().__init__()
        self.lm = lm            # the causal LM (nn.Module, possibly a peft model)
        self.tokenizer = None   # set by attach_tokenizer
        hidden = int(self._base_config().hidden_size if hasattr(self._base_config(), "hidden_size")
                     else self._base_config().n_embd)
        self.prefix_tokens = prefix_tokens
        self.hidden = hidden
        self.project = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, prefix_tokens * hidden))
        self.max_query_tokens = max_query_tokens
        self.max_response_tokens = max_response_tokens
        self.chat_template = False

    def _base_config(self):
        return self.lm.config

    def attach_tokenizer(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self.chat_template = bool(getattr(tokenizer, "chat_template", None))

    # -- token ids -------------------------------------------------------------------------------
    SYSTEM = "Reply to the user."  # a short system turn (a chat template's default one costs ~20 tokens a step)

    def query_ids(self, query: str) -> list[int]:
        """Q's tokens (its last ``max_query_tokens``) in the chat template, up to the assistant's turn."""
        tok = self.tokenizer
        q_ids = tok(query.strip(), add_special_tokens=False)["input_ids"]
        if len(q_ids) > self.max_query_tokens:
            query = tok.decode(q_ids[-self.max_query_tokens:])
        if self.chat_template:
            ids = tok.apply_chat_template([{"role": "system", "content": self.SYSTEM},
                                           {"role": "user", "content": query}], tokenize=True,
                                          add_generation_prompt=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = tok(f"User: {query}\nAssistant:", add_special_tokens=False)["input_ids"]
        return list(ids)

    def response_ids(self, response: str) -> list[int]:
        tok = self.tokenizer
        text = response.strip() if self.chat_template else " " + response.strip()
        ids = tok(text, add_special_tokens=False)["input_ids"][: self.max_response_tokens]
        return list(ids) + [self.end_id()]

    def end_id(self) -> int:
        tok = self.tokenizer
        if self.chat_template:
            im_end = tok.convert_tokens_to_ids("<|im_end|>")
            if isinstance(im_end, int) and im_end != tok.unk_token_id and im_end is not None:
                return im_end
        return int(tok.eos_token_id)

    def embed(self):
        return self.lm.get_input_embeddings()

    def prefix(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(features).view(features.shape[0], self.prefix_tokens, self.hidden)

    # -- training ----------------------------------------------------------------------------------
    def forward_logits(self, features: torch.Tensor, queries: Sequence[str], responses: Sequence[str]):
        """(logits over the response positions (B, L, V), response targets (B, L) with -100 padding)."""
        device = features.device
        q_ids = [self.query_ids(q) for q in queries]
        r_ids = [self.response_ids(r) for r in responses]
        lengths = [len(q) + len(r) for q, r in zip(q_ids, r_ids)]
        n = max(lengths)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(queries), n), pad, dtype=torch.long)
        mask = torch.zeros((len(queries), self.prefix_tokens + n), dtype=torch.long)
        L = max(len(r) for r in r_ids)
        targets = torch.full((len(queries), L), -100, dtype=torch.long)
        starts = []
        for i, (q, r) in enumerate(zip(q_ids, r_ids)):
            ids[i, :len(q) + len(r)] = torch.tensor(q + r)
            mask[i, :self.prefix_tokens + len(q) + len(r)] = 1
            targets[i, :len(r)] = torch.tensor(r)
            starts.append(self.prefix_tokens + len(q))
        ids, mask = ids.to(device), mask.to(device)
        embeds = torch.cat([self.prefix(features).to(self.embed().weight.dtype), self.embed()(ids)], dim=1)
        logits = self.lm(inputs_embeds=embeds, attention_mask=mask).logits
        # the logit at position t predicts token t+1: response token j sits at start+j, predicted from start+j-1
        gather = torch.zeros((len(queries), L), dtype=torch.long)
        for i, s in enumerate(starts):
            gather[i] = torch.clamp(torch.arange(L) + s - 1, max=logits.shape[1] - 1)
        gather = gather.to(device)
        picked = torch.gather(logits, 1, gather.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        return picked.float(), targets.to(device)

    def token_nll(self, features, queries, responses):
        """Per-token −log p(R_Tok(i) | R_Tok(<i), Q, feature) (B, L) and the valid-token mask."""
        logits, targets = self.forward_logits(features, queries, responses)
        valid = targets != -100
        nll = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
        return nll * valid, valid, targets

    # -- inference ---------------------------------------------------------------------------------
    def prompt_embeds(self, feature: torch.Tensor, query: str) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs_embeds (1, n, h) and attention_mask (1, n) for generating a reply to ``query``."""
        device = self.embed().weight.device
        ids = torch.tensor([self.query_ids(query)], dtype=torch.long, device=device)
        embeds = torch.cat([self.prefix(feature.to(device).unsqueeze(0)).to(self.embed().weight.dtype),
                            self.embed()(ids)], dim=1)
        return embeds, torch.ones(embeds.shape[:2], dtype=torch.long, device=device)


def weighted_token_loss(nll: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Eq. 14: L_token = −(1/N) Σᵢ wᵢ log p(R_Tok(i) | ·), averaged over the batch; ``weights`` None gives
    Eq. 3's plain −log p (teacher) and the "no token-level weights" ablation."""
    w = valid.float() if weights is None else weights * valid
    per_example = (nll * w).sum(-1) / valid.sum(-1).clamp(min=1)
    return per_example.mean()


def token_weights(teacher: FeatureEncoder, tokenizer, targets: torch.Tensor, r_te: torch.Tensor,
                  sigma: float) -> torch.Tensor:
    """Eq. 14's adjusted weights for the response tokens ``targets`` (B, L; -100 = padding).

    Each token is decoded to its text and encoded on its own by the (frozen) teacher; W_i = cos(token feature,
    R_TE); then w_i = exp(−(W_i − μ)² / 2σ²) with μ = max_i W_i over the response (the normal with mean
    max(W) and standard deviation σ, scaled to peak 1).
    """
    B, L = targets.shape
    valid = targets != -100
    ids = sorted({int(t) for t in targets[valid].tolist()})
    texts = {i: (tokenizer.decode([i]).strip() or tokenizer.decode([i]) or "<empty>") for i in ids}
    feats = teacher.cached([texts[i] for i in ids]) if ids else None
    row = {i: k for k, i in enumerate(ids)}
    weights = torch.zeros((B, L), device=targets.device)
    for b in range(B):
        pos = valid[b].nonzero().flatten()
        if len(pos) == 0:
            continue
        tok_feats = feats[[row[int(targets[b, p])] for p in pos]].to(r_te.device)
        W = F.cosine_similarity(tok_feats, r_te[b].unsqueeze(0), dim=-1)
        mu = W.max()
        weights[b, pos] = torch.exp(-((W - mu) ** 2) / (2 * sigma ** 2)).to(weights.device)
    return weights


# ---------------------------------------------------------------------------------------- assembly

def base_copy(model):
    """A private copy of a backbone without any peft adapter on it (the generator the app loaded may carry
    EMMA's adapter, and other agents share it: MDR never modifies a shared model)."""
    import copy

    clone = copy.deepcopy(model)
    if hasattr(clone, "peft_config") and hasattr(clone, "unload"):
        clone = clone.unload()
    return clone


def fresh_parts(generator, encoder, config: MdrConfig) -> tuple[FeatureEncoder, FeatureEncoder, PrefixDecoder]:
    """Untrained teacher encoder, student encoder and decoder on private copies of the backbones
    (``generator`` a LoadedLM — causal only —, ``encoder`` a LoadedEncoder)."""
    if generator.kind != "causal":
        raise ValueError(f"MDR needs a causal decoder (GPT-2 family or an LLM, paper §3.2/§4.6); "
                         f"{generator.name!r} is {generator.kind}")
    teacher = FeatureEncoder(base_copy(encoder.model), encoder.tokenizer, config.max_sentence_tokens)
    student = FeatureEncoder(base_copy(encoder.model), encoder.tokenizer, config.max_sentence_tokens)
    decoder = PrefixDecoder(base_copy(generator.model), teacher.dim, config.prefix_tokens,
                            config.max_query_tokens, config.max_response_tokens)
    decoder.attach_tokenizer(generator.tokenizer)
    return teacher, student, decoder


class MdrModel(nn.Module):
    """The trained MDR for inference: R⁽ᴷ⁾ from (Q, P, H) and the decoder fed Q and R⁽ᴷ⁾ (Eq. 14).

    Distilled response features are cached per (query, persona, H_P) (§4.2 "we cache the distilled response
    features"), and the frozen teacher's features of every history entry and persona sentence are cached, so a
    chat turn encodes only the new texts.
    """

    def __init__(self, student_side: MdrStudent, decoder: PrefixDecoder, config: MdrConfig):
        super().__init__()
        self.student_side, self.decoder, self.config = student_side, decoder, config
        self._features: dict[tuple, torch.Tensor] = {}

    @property
    def teacher(self) -> FeatureEncoder:
        return self.student_side.teacher

    @torch.no_grad()
    def response_feature(self, query: str, persona: Sequence[str], history: Sequence[tuple[str, str]]):
        """(R⁽ᴷ⁾ (d,), H_P texts, index of H(index) in ``history`` or None) — Eq. 7 then Eq. 8–12 and Fig. 3."""
        hp, index = partial_history(history, query, self.teacher)
        key = (query, tuple(persona), tuple(hp))
        if key not in self._features:
            self.student_side.eval()
            self._features[key] = self.student_side([StudentInput(query, list(persona), hp)])[0]
            if len(self._features) > 4096:
                self._features.pop(next(iter(self._features)))
        return self._features[key], hp, index


def untrained_model(generator, encoder, config: MdrConfig | None = None):
    """An MDR with random heads on the backbones as loaded (no trained stage): for contract tests only."""
    config = config or MdrConfig()
    teacher, student, decoder = fresh_parts(generator, encoder, config)
    model = MdrModel(MdrStudent(teacher, student, config), decoder, config)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {"config": config.to_dict()}
