"""Multi-process training helpers: `torchrun --nproc_per_node=N -m gpt.train ...` runs DistributedDataParallel.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (plus MASTER_ADDR/MASTER_PORT) in every worker's environment;
without them everything here is a no-op and training runs in one process as usual.

Data: every rank draws the *global* batch (batch_size x world_size windows) from one generator seeded the same
on all ranks and keeps its own slice. So N ranks x batch B see exactly the windows one process with batch N*B
sees, and DDP's gradient average over ranks equals the single process's mean over the global batch: a 2-rank run
reproduces the 1-rank loss curve up to float rounding (tests/test_ddp.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gpt.data import get_batch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0         # global rank: 0 writes the run folder
    local_rank: int = 0   # rank on this machine: picks the GPU
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info(environ=None) -> DistInfo:
    """Read torchrun's variables; a plain `python -m gpt.train` gives rank 0 of 1."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise RuntimeError(f"RANK/LOCAL_RANK/WORLD_SIZE must be whole numbers: {e}") from e
    if world < 1 or not 0 <= rank < world:
        raise RuntimeError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank, local, world)


def init(device_name: str = "auto") -> tuple[DistInfo, str]:
    """Join the process group when launched by torchrun: nccl on CUDA (one GPU per local rank), gloo on CPU.

    Returns (info, device name to train on): 'cuda:LOCAL_RANK' for CUDA, else device_name unchanged."""
    info = env_info()
    if not info.enabled:
        return info, device_name
    use_cuda = torch.cuda.is_available() and (device_name == "auto" or device_name.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
        device_name = f"cuda:{info.local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=info.rank,
                                world_size=info.world_size)
    return info, device_name


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device):
    """DistributedDataParallel around model (None in a single process)."""
    if not info.enabled:
        return None
    from torch.nn.parallel import DistributedDataParallel as DDP
    if device.type == "cuda":
        return DDP(model, device_ids=[device.index])
    return DDP(model)


def rank_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator,
               device, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's batch_size windows out of a global batch of batch_size * world_size drawn from generator."""
    x, y = get_batch(data, block_size, batch_size * world_size, generator, "cpu")  # (B*W, T) each
    part = slice(rank * batch_size, (rank + 1) * batch_size)
    x, y = x[part], y[part]
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (identity in one process); works for gloo (CPU) and nccl (CUDA)."""
    if not info.enabled:
        return values
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    buf = values.detach().to(backend_device, torch.float64).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return (buf / info.world_size).to(values.device)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when flag is set on any rank: a stop request seen by one rank stops all at the same step."""
    if not info.enabled:
        return flag
    return bool(all_reduce_mean(torch.tensor([1.0 if flag else 0.0]), info).item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def device_count() -> int:
    """How many processes `torchrun` should start here: one per CUDA device (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch_command(train_args: list[str], nproc: int = 1, python: str | None = None) -> list[str]:
    """The command that trains with `train_args` in nproc processes on this machine (plain gpt.train for 1).

    For the app's job runner: SIGTERM to the launcher reaches every rank (torchrun forwards it), and a stop
    seen by any rank stops all of them at the same step."""
    import sys
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive whole number (got {nproc!r})")
    python = python or sys.executable
    if nproc == 1:
        return [python, "-m", "gpt.train", *train_args]
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "gpt.train", *train_args]
