"""MDR settings as validated dataclasses (paper 000 §3 and §4.2 "Implementation Details").

Torch-free.  Defaults are the paper's where it gives them:

* σ = 0.5 for the adjusted token weights (§4.3 "For MDR, the standard deviation σ is set to 0.5");
* lr 1e-4 with linear warm-up, at most 5 epochs per stage, seed 2022 (§4.2);
* GPT-2 everywhere for the paper's path (768-d, 12 layers), or — the paper's LLM variant (§4.6) — a causal LLM
  decoder with LoRA and BERT-family teacher/student encoders.

Choices the paper leaves open, and ours:

* ``hops`` K = 3: the paper does not give K.  Its Memory Net is Mem2Seq's (Madotto et al. 2018), which — like
  end-to-end memory networks (Sukhbaatar et al. 2015) — uses 3 hops; with Q_E and P_E holding ~2 and ~16 vectors,
  three query→Q_E→P_E rounds already let every persona/history vector be reached from every query vector.
* ``init_std`` = 0.02 for P⁽⁰⁾, R⁽⁰⁾ ~ N(0, init_std² I): the paper says only "initialized according to a
  normal distribution".  R⁽ᴷ⁾ = R⁽⁰⁾ + Σ δR is compared with R_TE by MSE (Eq. 13), so the variance of R⁽⁰⁾ is a
  floor under that loss; with N(0, I) it is ~1 per dimension, far above the per-dimension scale of sentence
  features (~0.1–0.3).  ``--init-std 1`` gives N(0, I) for who wants it literally.
* ``prefix_tokens`` = 4: how the decoder is "fed" R_TE / R⁽ᴷ⁾ (Eq. 2, 14) is not specified; we project the
  feature to ``prefix_tokens`` soft input embeddings placed before the query (prefix conditioning).
* token features for W (Eq. 14): each decoder token of R is encoded *on its own* by the teacher encoder ("we
  apply tokenizer and encode each token of R using the teacher encoder"), which also works when the encoder's
  tokenizer differs from the decoder's (MiniLM WordPiece vs SmolLM2 BPE).
* adjusted weights: w_i = exp(−(W_i − μ)² / 2σ²), μ = max(W) — the normal density with mean max(W) and standard
  deviation σ, scaled to peak 1; a larger σ flattens the weights towards plain cross-entropy (paper §4.5: larger
  σ, more coherence, less diversity).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

STAGES = ("teacher", "sentence", "token")
TRAIN_MODES = ("lora", "full", "frozen")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass
class MdrConfig:
    """The model's shape and the ablation switches (paper Fig. 4)."""

    hops: int = 3                      # K of the P-/R-Update Memory Nets (see module docstring)
    init_std: float = 0.02             # P⁽⁰⁾, R⁽⁰⁾ ~ N(0, init_std² I)
    sigma: float = 0.5                 # σ of the adjusted token weights (paper §4.3)
    p_update: bool = True              # ablation: without P-Update, R-Update reads P_E only
    r_update: bool = True              # ablation: without R-Update, R⁽ᴷ⁾ = P⁽ᴷ⁾
    token_weights: bool = True         # ablation: without, Eq. 14 is plain cross-entropy (w_i = 1)
    prefix_tokens: int = 4             # soft tokens carrying R_TE / R⁽ᴷ⁾ into the decoder
    encoder_mode: str = "lora"         # teacher/student encoders: "lora" (LLM variant) or "full" (GPT-2 path)
    decoder_mode: str = "lora"         # decoder: "lora" (LLM variant, §4.6) or "full" (GPT-2 path)
    encoder_lora_r: int = 8
    decoder_lora_r: int = 16
    lora_alpha_ratio: float = 2.0      # alpha = ratio * r
    lora_dropout: float = 0.05
    student_init: str = "teacher"      # the student starts as a copy of the trained teacher, or "base"
    max_query_tokens: int = 32
    max_response_tokens: int = 24
    max_sentence_tokens: int = 64      # encoder input length for Q, P sentences, history entries
    max_persona: int = 8               # persona sentences kept per example
    seed: int = 2022                   # paper §4.2

    def __post_init__(self):
        _check(1 <= self.hops <= 16, f"hops (K) must be in 1..16, got {self.hops}")
        _check(self.init_std > 0, f"init_std must be > 0, got {self.init_std}")
        _check(self.sigma > 0, f"sigma must be > 0, got {self.sigma}")
        _check(self.p_update or self.r_update, "at least one of P-Update and R-Update must be on")
        _check(1 <= self.prefix_tokens <= 64, f"prefix_tokens must be in 1..64, got {self.prefix_tokens}")
        _check(self.encoder_mode in ("lora", "full"), f"encoder_mode must be lora or full, got {self.encoder_mode!r}")
        _check(self.decoder_mode in ("lora", "full"), f"decoder_mode must be lora or full, got {self.decoder_mode!r}")
        for name in ("encoder_lora_r", "decoder_lora_r", "max_query_tokens", "max_response_tokens",
                     "max_sentence_tokens", "max_persona"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        _check(self.student_init in ("teacher", "base"), f"student_init must be teacher or base, got {self.student_init!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "MdrConfig":
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None

    def ablation_name(self) -> str:
        """A short label of the switches that differ from the full model (for the ablation table)."""
        parts = []
        if not self.p_update:
            parts.append("no-P-Update")
        if not self.r_update:
            parts.append("no-R-Update")
        if not self.token_weights:
            parts.append("no-token-weights")
        if self.sigma != 0.5:
            parts.append(f"sigma={self.sigma:g}")
        return "+".join(parts) or "MDR"


@dataclass
class StageSettings:
    """One training stage's loop settings (paper §4.2: lr 1e-4 with linear warm-up, ≤ 5 epochs per stage)."""

    epochs: int = 5
    lr: float = 1e-4
    warmup_ratio: float = 0.1          # linear warm-up over the first 10% of a stage's steps
    schedule: str = "linear"           # then linear decay (the usual "linear warm-up" schedule)
    batch_size: int = 8
    grad_accum: int = 1
    patience: int = 1
    max_steps: int | None = None
    max_seconds: float | None = None
    max_train_examples: int | None = None
    max_valid_examples: int | None = None

    def __post_init__(self):
        _check(1 <= self.epochs, f"epochs must be >= 1, got {self.epochs}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1")
        _check(self.schedule in ("linear", "constant"), f"schedule must be linear or constant, got {self.schedule!r}")
