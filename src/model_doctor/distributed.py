"""Everything torchrun / DistributedDataParallel in one place.

Launch any command as ``torchrun --nproc-per-node N -m model_doctor COMMAND ...`` (multi-node:
add torchrun's ``--nnodes``/``--rdzv-*`` options). Without torchrun every helper here is a no-op
for a single process, so the library code calls them unconditionally.

- Diagnosis: samples are sharded by position (``rank::world``, no duplicates); selection sees the
  gathered softmax of every sample; per-class float64 sums and counts are all-reduced. With the
  per-sample noise keys the matrices equal a single-process run.
- Training: each global batch of B samples (same permutation as one process) is split
  ``rank::world`` across ranks, DDP averages the gradients, so weights match a single process with
  batch B when BatchNorm is frozen (``--freeze-bn``) or synchronised (``--sync-bn``, CUDA only).
  Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["init_from_env", "rank_world", "is_main", "barrier", "all_reduce_sum", "all_gather_objects",
           "shard", "GlobalBatchSampler", "wrap_ddp", "shutdown", "resolve_device", "cores_per_process"]


def init_from_env() -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); returns whether distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        # gloo for CPU tensors, NCCL for CUDA ones: --device cpu stays possible on a GPU machine
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return True


def resolve_device(spec: str | None) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` -> a device; under torchrun,
    ``auto``/``cuda`` mean this rank's ``cuda:LOCAL_RANK``. Never falls back silently.

    Raises:
        ValueError: CUDA asked for but not available, or a GPU index that does not exist.
    """
    spec = (spec or "auto").strip().lower()
    local = int(os.environ.get("LOCAL_RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: this machine has no usable CUDA device (torch {torch.__version__}, "
                             f"cuda build {torch.version.cuda}); use --device cpu or auto")
        index = int(spec.split(":", 1)[1]) if ":" in spec and spec.split(":", 1)[1].isdigit() else local or 0
        if ":" in spec and not spec.split(":", 1)[1].isdigit():
            raise ValueError(f"--device {spec!r}; use auto, cpu, cuda or cuda:N")
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0 .. "
                             f"cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    raise ValueError(f"--device {spec!r}; use auto, cpu, cuda or cuda:N")


def cores_per_process() -> int:
    """This process's share of the cores it may run on: under torchrun the machine's cores split
    between its ``LOCAL_WORLD_SIZE`` processes (sizes loader workers and noise threads)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def barrier() -> None:
    if rank_world()[1] > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (float64 sums stay float64; gloo works on CPU tensors)."""
    if rank_world()[1] > 1:
        if dist.get_backend() == "nccl" and not t.is_cuda:
            moved = t.cuda()
            dist.all_reduce(moved)
            t.copy_(moved.cpu())
        else:
            dist.all_reduce(t)
    return t


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order."""
    world = rank_world()[1]
    if world == 1:
        return [obj]
    out: list[object] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def shard(items: Sequence[int]) -> list[int]:
    """This rank's share of ``items`` (``rank::world``): disjoint and covering, no padding."""
    rank, world = rank_world()
    return list(items)[rank::world]


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of a seeded permutation; in a group, each rank takes ``rank::world`` of each batch.

    One process yields exactly the batches of ``RandomSampler(generator=seeded)`` + batch B. With
    ``world`` ranks the union of the ranks' batches is that same global batch. A final batch
    smaller than ``world`` is dropped in a group so that no rank is left without data.
    """

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world = rank_world()

    def _batches(self) -> list[list[int]]:
        order = (torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist()
                 if self.shuffle else list(range(self.n)))
        out = [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if self.world > 1 and out and len(out[-1]) < self.world:
            out = out[:-1]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for b in self._batches():
            yield b[self.rank::self.world]

    def __len__(self) -> int:
        return len(self._batches())


def wrap_ddp(model: torch.nn.Module, sync_bn: bool = False) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` in a group (optionally with SyncBatchNorm), else ``model``."""
    if rank_world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        if not torch.cuda.is_available():
            raise ValueError("--sync-bn needs CUDA (SyncBatchNorm has no CPU kernels); use --freeze-bn on CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    p = next(model.parameters())
    return DistributedDataParallel(model, device_ids=[p.device.index] if p.is_cuda else None)
