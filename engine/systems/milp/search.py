"""Bayesian optimisation of the memory-injection configuration θ = (α, n, r) (MiLP §2.2.2, Fig. 2), with BoTorch.

* Surrogate (Eq. 2-3): one GP per objective with the sparse axis-aligned subspace (SAAS) prior of
  Eriksson & Jankowiak (2021) — by default its MAP estimate (``botorch.models.map_saas.get_map_saas_model``),
  or, when BoTorch's fully-Bayesian extra (JAX + NumPyro) is installed and asked for, the fully Bayesian
  SAAS-GP sampled by NUTS (``SaasFullyBayesianSingleTaskGP`` + ``fit_fully_bayesian_model_nuts``).
* Objectives (§2.2.2 "the performance p(l, rl | x, U, Φ(θ))"): validation cross-entropy l ↓ and ROUGE-L ↑;
  the GP models (−l, rl), both maximised.
* Acquisition (Eq. 4): noisy expected hypervolume improvement, ``qLogNEHVI`` by default (``qNEHVI`` on request),
  maximised over a Sobol candidate set snapped onto the discrete space (α bits, integer n, rank grid) so
  that no θ is tried twice.
* Random initial points (§3.4 "we randomly sample ... initialisation points"), a trial budget and a
  wall-clock budget.  Every trial is one JSON line in a resumable search file (θ, both objectives,
  trainable parameters, times, the replies).  **Random search at the same budget on the same seeds** is the
  reference: its first ``initial`` points *are* BO's initial points (evaluated once, shared), the rest are
  further draws from the same Sobol sequence.
* The Pareto front and the dominated hypervolume after each trial (one reference point for both methods),
  plotted with matplotlib (:func:`plot`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .config import SearchSettings, SearchSpace, Theta

FORMAT = "memlab-milp-search/1"


@dataclass
class Trial:
    method: str            # "init" (shared by BO and random), "bo" or "random"
    index: int             # trial number within its method's sequence (0-based; init trials count for both)
    theta: dict
    x: list[float]
    cross_entropy: float
    rouge_l: float
    trainable_params: int
    train_s: float
    measure_s: float
    wall_s: float
    train_loss: float | None = None
    replies: list[str] = field(default_factory=list)
    surrogate: str = ""

    @property
    def y(self) -> tuple[float, float]:
        return (-self.cross_entropy, self.rouge_l)


class SearchFile:
    """JSON lines: a header ``{"format", "space", "settings", "meta"}`` then one :class:`Trial` per line."""

    def __init__(self, path, space: SearchSpace, settings: SearchSettings, meta: dict):
        self.path = Path(path)
        self.space, self.settings, self.meta = space, settings, meta
        self.trials: list[Trial] = []
        if self.path.is_file() and self.path.stat().st_size:
            lines = self.path.read_text(encoding="utf-8").splitlines()
            try:
                head = json.loads(lines[0])
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path}: line 1 is not JSON ({e.msg})") from None
            if head.get("format") != FORMAT:
                raise ValueError(f"{self.path}: not a MiLP search file (format {head.get('format')!r})")
            if head.get("space") != json.loads(json.dumps(space.to_dict())):
                raise ValueError(f"{self.path}: written for another search space {head.get('space')}; "
                                 "use a new file or the same space")
            for n, line in enumerate(lines[1:], start=2):
                if not line.strip():
                    continue
                try:
                    self.trials.append(Trial(**json.loads(line)))
                except (json.JSONDecodeError, TypeError) as e:
                    raise ValueError(f"{self.path}: line {n} is not a trial ({e})") from None
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"format": FORMAT, "space": space.to_dict(),
                                             "settings": asdict(settings), "meta": meta}) + "\n", encoding="utf-8")

    def add(self, trial: Trial) -> None:
        self.trials.append(trial)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(trial)) + "\n")

    def of(self, method: str) -> list[Trial]:
        """The trial sequence of ``bo`` or ``random`` (the shared initial trials first)."""
        init = sorted((t for t in self.trials if t.method == "init"), key=lambda t: t.index)
        own = sorted((t for t in self.trials if t.method == method), key=lambda t: t.index)
        return init + own


Evaluate = Callable[[Theta], "object"]  # returns memory.Objectives


def sobol_points(space: SearchSpace, n: int, seed: int):
    import torch
    from torch.quasirandom import SobolEngine

    return SobolEngine(space.dims, scramble=True, seed=seed).draw(n).to(torch.double)


def snap(space: SearchSpace, x) -> list[float]:
    return space.encode(space.decode(x))


def _key(theta: Theta) -> tuple:
    return (theta.alpha, theta.n, theta.r)


def random_sequence(space: SearchSpace, n: int, seed: int) -> list[list[float]]:
    """The seed's random configurations, distinct, in order (Sobol draws snapped onto the space)."""
    seen, out = set(), []
    for x in sobol_points(space, max(64, 8 * n), seed).tolist():
        theta = space.decode(x)
        if _key(theta) not in seen:
            seen.add(_key(theta))
            out.append(space.encode(theta))
        if len(out) == n:
            break
    return out


def fit_surrogate(X, Y, surrogate: str = "map-saas", reasons: list[str] | None = None):
    """One SAAS GP per objective (columns of Y), as a ``ModelListGP``."""
    from botorch.models import ModelListGP
    from botorch.models.transforms.outcome import Standardize

    models = []
    if surrogate == "nuts":
        from botorch.fit import fit_fully_bayesian_model_nuts
        from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

        for i in range(Y.shape[-1]):
            m = SaasFullyBayesianSingleTaskGP(X, Y[:, i:i + 1], outcome_transform=Standardize(m=1))
            fit_fully_bayesian_model_nuts(m, warmup_steps=128, num_samples=64, thinning=16, disable_progbar=True)
            models.append(m)
    else:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models.map_saas import get_map_saas_model
        from gpytorch.mlls import ExactMarginalLogLikelihood

        for i in range(Y.shape[-1]):
            m = get_map_saas_model(X, Y[:, i:i + 1], outcome_transform=Standardize(m=1))
            fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
            models.append(m)
    return ModelListGP(*models)


def nuts_available() -> tuple[bool, str]:
    try:
        from botorch.models.fully_bayesian import _HAS_JAX  # BoTorch >= 0.15: NUTS through NumPyro/JAX
    except ImportError:
        _HAS_JAX = False
    if _HAS_JAX:
        return True, "fully Bayesian SAAS-GP (NUTS) available"
    return False, "fully Bayesian SAAS-GP needs BoTorch's fully-Bayesian extra (JAX + NumPyro), not installed"


def reference_point(Y) -> list[float]:
    """Slightly worse than the worst observation of each objective (a standard hypervolume reference)."""
    lo, hi = Y.min(0).values, Y.max(0).values
    return (lo - 0.1 * (hi - lo).clamp(min=1e-6)).tolist()


def suggest(space: SearchSpace, trials: list[Trial], settings: SearchSettings, step: int,
            reasons: list[str] | None = None) -> list[float]:
    """The next θ (as a snapped point) by maximising qLogNEHVI / qNEHVI over unseen configurations."""
    import torch

    X = torch.tensor([t.x for t in trials], dtype=torch.double)
    Y = torch.tensor([t.y for t in trials], dtype=torch.double)
    model = fit_surrogate(X, Y, settings.surrogate, reasons)
    ref = torch.tensor(reference_point(Y), dtype=torch.double)
    from botorch.sampling import SobolQMCNormalSampler

    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([32]), seed=settings.seed + step)
    if settings.acquisition == "qNEHVI":
        from botorch.acquisition.multi_objective.monte_carlo import qNoisyExpectedHypervolumeImprovement as Acq
    else:
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement as Acq
    acq = Acq(model=model, ref_point=ref, X_baseline=X, sampler=sampler, prune_baseline=True)
    seen = {_key(space.decode(t.x)) for t in trials}
    cands, keys = [], set()
    for x in sobol_points(space, 512, settings.seed + 7919 * (step + 1)).tolist():
        theta = space.decode(x)
        if _key(theta) in seen or _key(theta) in keys:
            continue
        keys.add(_key(theta))
        cands.append(space.encode(theta))
    if not cands:
        raise RuntimeError("every configuration of the candidate set was already tried")
    C = torch.tensor(cands, dtype=torch.double)
    with torch.no_grad():
        values = torch.cat([acq(C[i:i + 128].unsqueeze(1)) for i in range(0, len(C), 128)])
    return cands[int(values.argmax())]


def hypervolumes(trials: list[Trial], ref: list[float]) -> list[float]:
    """Dominated hypervolume of the first k trials, for k = 1..len(trials) (the best-so-far curve of a
    two-objective search)."""
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume
    from botorch.utils.multi_objective.pareto import is_non_dominated

    hv = Hypervolume(torch.tensor(ref, dtype=torch.double))
    out = []
    for k in range(1, len(trials) + 1):
        Y = torch.tensor([t.y for t in trials[:k]], dtype=torch.double)
        front = Y[is_non_dominated(Y)]
        out.append(float(hv.compute(front)))
    return out


def pareto(trials: list[Trial]) -> list[Trial]:
    import torch
    from botorch.utils.multi_objective.pareto import is_non_dominated

    if not trials:
        return []
    mask = is_non_dominated(torch.tensor([t.y for t in trials], dtype=torch.double)).tolist()
    return sorted((t for t, m in zip(trials, mask) if m), key=lambda t: t.cross_entropy)


def run(space: SearchSpace, settings: SearchSettings, evaluate: Evaluate, search_file: SearchFile, *,
        methods=("bo", "random"), progress: Callable[[str], None] | None = None,
        cancel=None) -> SearchFile:
    """BO and random search, each ``settings.trials`` long, sharing the first ``settings.initial`` trials.
    Resumes from what ``search_file`` already holds; stops at ``settings.max_seconds`` (no new trial starts)."""
    say = progress or (lambda m: None)
    t0 = time.monotonic()
    init_n = min(settings.initial, settings.trials)
    sequence = random_sequence(space, settings.trials, settings.seed)

    def over_budget() -> bool:
        return (settings.max_seconds is not None and time.monotonic() - t0 >= settings.max_seconds) or \
               bool(cancel is not None and cancel.is_set())

    def do(method: str, index: int, x: list[float], surrogate: str = "") -> bool:
        if over_budget():
            say(f"stopped: budget of {settings.max_seconds} s reached" if not (cancel and cancel.is_set())
                else "cancelled")
            return False
        theta = space.decode(x)
        t = time.monotonic()
        o = evaluate(theta)
        trial = Trial(method, index, theta.to_dict(), list(x), o.cross_entropy, o.rouge_l, o.trainable_params,
                      o.train_s, o.measure_s, time.monotonic() - t, o.train_loss, list(o.replies), surrogate)
        search_file.add(trial)
        say(f"{method} trial {index + 1}: {theta.describe()} -> CE {o.cross_entropy:.4f}, ROUGE-L "
            f"{o.rouge_l:.4f}, {o.trainable_params:,} params, {trial.wall_s:.0f} s")
        return True

    done_init = {t.index for t in search_file.trials if t.method == "init"}
    for i in range(init_n):
        if i not in done_init and not do("init", i, sequence[i]):
            return search_file
    surrogate = settings.surrogate
    if "bo" in methods and surrogate == "nuts" and not nuts_available()[0]:
        say(nuts_available()[1] + ": using MAP-SAAS")
        surrogate = "map-saas"
    eff = SearchSettings(**(asdict(settings) | {"surrogate": surrogate}))
    done_random = {t.index for t in search_file.trials if t.method == "random"}
    done_bo = {t.index for t in search_file.trials if t.method == "bo"}
    for i in range(init_n, settings.trials):  # interleaved, so a time budget cuts both alike
        if "random" in methods and i not in done_random and not do("random", i, sequence[i]):
            return search_file
        if "bo" in methods and i not in done_bo:
            x = suggest(space, search_file.of("bo"), eff, i)
            if not do("bo", i, x, surrogate):
                return search_file
    return search_file


def summary(search_file: SearchFile) -> dict:
    """Per method: trials, best CE, best ROUGE-L, the hypervolume curve (one reference point for both),
    the Pareto front; plus whether BO's curve is at or above random's at every trial count."""
    import torch

    bo, rnd = search_file.of("bo"), search_file.of("random")
    every = bo + [t for t in rnd if t.method == "random"]
    if not every:
        return {"trials": 0}
    ref = reference_point(torch.tensor([t.y for t in every], dtype=torch.double))
    out = {"reference_point": {"neg_cross_entropy": ref[0], "rouge_l": ref[1]}, "methods": {}}
    for name, seq in (("bo", bo), ("random", rnd)):
        if not seq:
            continue
        hv = hypervolumes(seq, ref)
        out["methods"][name] = {
            "trials": len(seq), "hypervolume": hv,
            "best_cross_entropy": min(t.cross_entropy for t in seq), "best_rouge_l": max(t.rouge_l for t in seq),
            "seconds": sum(t.wall_s for t in seq),
            "pareto": [{"theta": Theta.from_dict(t.theta).describe(), "cross_entropy": t.cross_entropy,
                        "rouge_l": t.rouge_l, "trainable_params": t.trainable_params} for t in pareto(seq)]}
    if "bo" in out["methods"] and "random" in out["methods"]:
        a, b = out["methods"]["bo"]["hypervolume"], out["methods"]["random"]["hypervolume"]
        k = min(len(a), len(b))
        out["bo_at_or_above_random_at_every_count"] = all(a[i] >= b[i] - 1e-12 for i in range(k))
        out["compared_counts"] = k
    return out


def best_theta(search_file: SearchFile, method: str = "bo", weight_ce: float = 0.5) -> Theta:
    """One configuration from the Pareto front: the knee — best equal-weight sum of the min-max normalised
    objectives."""
    front = pareto(search_file.of(method))
    if not front:
        raise ValueError(f"{search_file.path}: no {method} trials yet")
    ces = [t.cross_entropy for t in front]
    rls = [t.rouge_l for t in front]

    def norm(v, lo, hi):
        return 0.0 if hi == lo else (v - lo) / (hi - lo)

    best = max(front, key=lambda t: weight_ce * (1 - norm(t.cross_entropy, min(ces), max(ces)))
               + (1 - weight_ce) * norm(t.rouge_l, min(rls), max(rls)))
    return Theta.from_dict(best.theta)


def plot(search_file: SearchFile, path, title: str = "") -> Path:
    """Best-so-far hypervolume per trial count (BO vs random) and the objective space with the Pareto fronts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(search_file)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"bo": "tab:blue", "random": "tab:orange"}
    labels = {"bo": "BO (SAAS-GP + qLogNEHVI)", "random": "random search"}
    for name, m in s.get("methods", {}).items():
        ax1.plot(range(1, len(m["hypervolume"]) + 1), m["hypervolume"], marker="o", color=colours[name],
                 label=labels[name])
        seq = search_file.of(name)
        ax2.scatter([t.cross_entropy for t in seq], [t.rouge_l for t in seq], color=colours[name], alpha=0.5,
                    label=f"{name} trials")
        front = pareto(seq)
        ax2.plot([t.cross_entropy for t in front], [t.rouge_l for t in front], color=colours[name], lw=2,
                 drawstyle="steps-post", label=f"{name} Pareto front")
    init = search_file.settings.initial
    ax1.axvline(init + 0.5, color="grey", ls=":", lw=1)
    ax1.text(init + 0.6, ax1.get_ylim()[0], " shared random\n initial points", color="grey", fontsize=8, va="bottom")
    ax1.set_xlabel("trials")
    ax1.set_ylabel("dominated hypervolume so far")
    ax1.set_title("best so far (higher is better)")
    ax1.legend(loc="lower right", fontsize=8)
    ax2.set_xlabel("validation cross-entropy (lower is better)")
    ax2.set_ylabel("ROUGE-L (higher is better)")
    ax2.set_title("objective space")
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
