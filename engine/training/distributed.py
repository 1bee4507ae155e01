"""Data-parallel training when a trainer runs under ``accelerate launch`` (several processes, one per device).

``memlab train …`` is unchanged: started by ``accelerate launch --multi_gpu --num_processes N $(which memlab) train …``
(on a machine without CUDA the same command runs N CPU processes over gloo; accelerate 1.16's ``--cpu`` starts
several processes only through MPI, otherwise one)
the shared loop (:mod:`engine.training.loop`) finds the processes through accelerate's ``PartialState`` (which
sets up the ``torch.distributed`` process group from the launcher's environment: gloo on CPU, NCCL on GPUs) and
then trains with DDP's semantics:

* every rank starts from rank 0's weights (broadcast once: LoRA's random init differs between processes);
* each global micro-batch of ``batch_size`` examples is split across the ranks (rank r takes examples
  r, r+N, …), so the *global* batch is the same as in a single-process run with the same settings;
* each rank's loss is weighted by its share of the examples, the gradients are averaged across ranks
  (all-reduce) before clipping and the optimizer step — so all ranks take the same step and stay identical,
  and for a per-example mean loss the step equals the single-process one;
* the reported loss is the all-reduced global mean; validation runs on every rank (same weights, same
  numbers), checkpoints, the best copy, the final weights, progress and the bar come from rank 0 only,
  with a barrier after each write so a resume reads a complete checkpoint.

A token-averaged LM loss is weighted per example across ranks, as DDP does, so with unequal answer
lengths the global loss differs slightly from a single process's token average.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class DataParallel:
    world: int
    rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def current() -> "DataParallel | None":
        """The data-parallel group of this process, or None for a single process (the default)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        import torch
        from accelerate import PartialState

        # without CUDA (or asked for the CPU), accelerate's multi-CPU mode: gloo over the launcher's processes
        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
        state = PartialState(cpu=cpu)  # initialises torch.distributed from the launcher's environment
        if state.num_processes <= 1:
            return None
        return DataParallel(state.num_processes, state.process_index)

    def describe(self) -> str:
        import torch.distributed as dist

        return (f"data parallel: {self.world} processes (accelerate, {dist.get_backend()}); each global batch is "
                f"split across them, gradients averaged; checkpoints and progress from rank 0")

    def broadcast_model(self, model) -> None:
        """Rank 0's parameters and buffers on every rank."""
        import torch.distributed as dist

        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)

    def shard(self, examples: list) -> tuple[list, float]:
        """This rank's part of a global micro-batch and its loss weight (share × world size)."""
        mine = examples[self.rank::self.world]
        return mine, len(mine) * self.world / max(1, len(examples))

    def average_gradients(self, params) -> None:
        import torch
        import torch.distributed as dist

        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n

    def mean(self, value: float) -> float:
        import torch
        import torch.distributed as dist

        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([float(value)], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()
