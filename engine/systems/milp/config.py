"""MiLP settings as validated dataclasses (torch-free).

* :class:`Theta` — one memory-injection configuration θ = (α, n, r) of §2.2.1: a per-layer on/off mask α
  ("a binary parameter α at each layer l_i that controls whether LoRA in the layer is active"), the number of
  LoRA modules n and their rank r.
* :class:`SearchSpace` — Table 6's ranges as defaults (α ∈ {0,1} per layer, n ∈ [0, 32],
  r ∈ {8, 16, 32, 64, 96}); :meth:`SearchSpace.narrowed` gives the smaller space used for small backbones.
* :class:`TrainSettings` — §3.4: AdamW, learning rate 5e-4, linear warm-up over 10% of the steps, weight
  decay 1e-4, batch size 8.
* :class:`SearchSettings` — the BO budget (§2.2.2): trials, random initial points (the paper samples 100;
  a CPU run uses a few), a wall-clock budget, the seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

TABLE6_N = (0, 32)
TABLE6_RANKS = (8, 16, 32, 64, 96)


@dataclass(frozen=True)
class Theta:
    """θ = (α, n, r).  ``alpha[l]`` is 1 when layer l gets LoRA on its feed-forward projections.

    n = 0 or an all-zero α means *no injection* (the base model)."""

    alpha: tuple[int, ...]
    n: int
    r: int

    def __post_init__(self):
        if not self.alpha or any(a not in (0, 1) for a in self.alpha):
            raise ValueError(f"alpha must be a non-empty tuple of 0/1 per layer, got {self.alpha!r}")
        if self.n < 0:
            raise ValueError(f"n (number of LoRA modules) must be >= 0, got {self.n}")
        if self.r < 1:
            raise ValueError(f"r (LoRA rank) must be >= 1, got {self.r}")

    @property
    def layers(self) -> list[int]:
        return [i for i, a in enumerate(self.alpha) if a]

    @property
    def injects(self) -> bool:
        return self.n > 0 and any(self.alpha)

    @property
    def total_rank(self) -> int:
        """n parallel rank-r modules = one rank n·r module (see :mod:`engine.systems.milp.model`)."""
        return self.n * self.r

    def describe(self) -> str:
        if not self.injects:
            return "no injection"
        return f"n={self.n} r={self.r} on {len(self.layers)}/{len(self.alpha)} layers {_ranges(self.layers)}"

    def to_dict(self) -> dict:
        return {"alpha": list(self.alpha), "n": self.n, "r": self.r}

    @classmethod
    def from_dict(cls, d: dict) -> "Theta":
        try:
            return cls(tuple(int(a) for a in d["alpha"]), int(d["n"]), int(d["r"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a MiLP configuration (need alpha, n, r): {d!r}") from e

    @classmethod
    def all_layers(cls, num_layers: int, n: int = 1, r: int = 8) -> "Theta":
        """The "no search" ablation (§4.4): LoRA on every feed-forward layer."""
        return cls((1,) * num_layers, n, r)


def _ranges(ix: list[int]) -> str:
    out, start = [], None
    for i, v in enumerate(ix):
        if start is None:
            start = v
        if i + 1 == len(ix) or ix[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ",".join(out)


@dataclass(frozen=True)
class SearchSpace:
    """Θ of §2.2.1.  ``num_layers`` comes from the backbone.  ``search_layers=False`` fixes α to all ones."""

    num_layers: int
    n_range: tuple[int, int] = TABLE6_N
    ranks: tuple[int, ...] = TABLE6_RANKS
    search_layers: bool = True

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        lo, hi = self.n_range
        if not 0 <= lo <= hi:
            raise ValueError(f"n_range must be 0 <= lo <= hi, got {self.n_range}")
        if not self.ranks or any(r < 1 for r in self.ranks) or list(self.ranks) != sorted(set(self.ranks)):
            raise ValueError(f"ranks must be increasing positive integers, got {self.ranks}")

    @classmethod
    def narrowed(cls, num_layers: int, n_range=(1, 4), ranks=(4, 8, 16)) -> "SearchSpace":
        """A smaller space for small backbones on a CPU (the issue allows narrowing Table 6)."""
        return cls(num_layers, tuple(n_range), tuple(ranks))

    @property
    def dims(self) -> int:
        """Dimensions of the unit cube the BO works in: one per layer bit (when searched), n, r."""
        return (self.num_layers if self.search_layers else 0) + 2

    def decode(self, x) -> Theta:
        """A point of [0, 1]^dims → θ (layer bits thresholded at 0.5; n and r rounded onto their grids)."""
        x = [min(1.0, max(0.0, float(v))) for v in x]
        if len(x) != self.dims:
            raise ValueError(f"expected {self.dims} coordinates, got {len(x)}")
        if self.search_layers:
            alpha = tuple(int(v >= 0.5) for v in x[:self.num_layers])
            rest = x[self.num_layers:]
        else:
            alpha, rest = (1,) * self.num_layers, x
        lo, hi = self.n_range
        n = lo + min(hi - lo, int(rest[0] * (hi - lo + 1)))
        r = self.ranks[min(len(self.ranks) - 1, int(rest[1] * len(self.ranks)))]
        return Theta(alpha, n, r)

    def encode(self, theta: Theta) -> list[float]:
        """θ → the centre of its cell in [0, 1]^dims (inverse of :meth:`decode`)."""
        self.check(theta)
        lo, hi = self.n_range
        x = [0.25 + 0.5 * a for a in theta.alpha] if self.search_layers else []
        x.append((theta.n - lo + 0.5) / (hi - lo + 1))
        x.append((self.ranks.index(theta.r) + 0.5) / len(self.ranks))
        return x

    def check(self, theta: Theta) -> None:
        if len(theta.alpha) != self.num_layers:
            raise ValueError(f"θ has {len(theta.alpha)} layer bits; the backbone has {self.num_layers} layers")
        if not self.n_range[0] <= theta.n <= self.n_range[1]:
            raise ValueError(f"n={theta.n} outside the search range {self.n_range}")
        if theta.r not in self.ranks:
            raise ValueError(f"r={theta.r} not one of the ranks {self.ranks}")
        if not self.search_layers and not all(theta.alpha):
            raise ValueError("this space does not search layers: α must be all ones")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainSettings:
    """Memory-injection / instruction-tuning training (§3.4 defaults)."""

    lr: float = 5e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 1e-4
    batch_size: int = 8
    epochs: int = 3
    max_steps: int | None = None
    max_seconds: float | None = None
    dropout: float = 0.0
    max_input_tokens: int = 384
    max_target_tokens: int = 96
    seed: int = 0

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("batch_size", "epochs", "max_input_tokens", "max_target_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class SearchSettings:
    """The BO loop (§2.2.2).  ``surrogate``: ``map-saas`` (default; MAP estimate under the SAAS prior) or
    ``nuts`` (fully Bayesian SAAS-GP by NUTS; needs BoTorch's fully-Bayesian extra, JAX + NumPyro)."""

    trials: int = 12
    initial: int = 4
    max_seconds: float | None = None
    seed: int = 0
    surrogate: str = "map-saas"
    acquisition: str = "qLogNEHVI"
    valid_generations: int = 2
    max_new_tokens: int = 40

    def __post_init__(self):
        if self.trials < 1 or self.initial < 1:
            raise ValueError("trials and initial must be >= 1")
        if self.surrogate not in ("map-saas", "nuts"):
            raise ValueError(f"surrogate must be map-saas or nuts, got {self.surrogate!r}")
        if self.acquisition not in ("qLogNEHVI", "qNEHVI"):
            raise ValueError(f"acquisition must be qLogNEHVI or qNEHVI, got {self.acquisition!r}")


@dataclass
class MilpConfig:
    """Everything a MiLP run needs."""

    train: TrainSettings = field(default_factory=TrainSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    n_range: tuple[int, int] = TABLE6_N
    ranks: tuple[int, ...] = TABLE6_RANKS
