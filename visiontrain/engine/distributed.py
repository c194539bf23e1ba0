"""torchrun / DDP: the same code on one process or many. No home-made launcher: torchrun sets the environment.

Each rank takes every world_size-th index of the epoch's permutation (data/loader.py), gradients are averaged by
DistributedDataParallel, running sums are all-reduced so every rank reports the same metrics, and only rank 0
writes files or prints.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import CheckpointError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistEnv:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_*)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        # a dead peer must end the job within a minute, not after the 30-minute default
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=60))
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def launcher(world_size: int) -> str:
    """The command that starts visiontrain with `world_size` processes (on this machine's share of them, from the
    torchrun environment), e.g. for the hint after a stop: a resume must use as many processes as the run."""
    if world_size <= 1:
        return "visiontrain"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0")) or world_size  # processes per machine
    if local >= world_size:
        return f"torchrun --nproc_per_node={world_size} -m visiontrain"
    return f"torchrun --nnodes={world_size // local} --nproc_per_node={local} -m visiontrain"


def all_reduce_sum(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    if not env.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every rank if it is True on any: keeps decisions (checkpoint now, stop now) collective."""
    if not env.enabled:
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def broadcast_buffers(model: torch.nn.Module, env: DistEnv, also: dict[str, torch.Tensor] | None = None) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), in place, and the same-named tensors of
    `also` (the EMA's state). DDP broadcasts the buffers before each forward, but each rank then updates them on its
    own batch: at an epoch's end the ranks would otherwise evaluate slightly different models (and could disagree
    on the best epoch or on early stopping). Rank 0's are the ones its checkpoint holds."""
    if not env.enabled:
        return
    for name, buffer in model.named_buffers():
        dist.broadcast(buffer.data, src=0)
        if also is not None and name in also:
            dist.broadcast(also[name], src=0)


def broadcast_string(text: str | None, env: DistEnv) -> str:
    if not env.enabled:
        return text or ""
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def check_world_size(saved: int | None, env: DistEnv, config: Any, run: Any) -> None:
    """Refuse to resume a run (RunDir) with another number of processes than its checkpoint was written with (older
    checkpoints, without the field: not checked): the global batch, the shards and the schedule depend on it."""
    if saved is None or saved == env.world_size:
        return
    batch = config.batch_size * config.accumulate
    raise CheckpointError(
        f"cannot resume {run.path} with world_size {env.world_size}: it was trained with world_size {saved}, and the "
        f"global batch (batch_size x accumulate x world_size: {batch * saved}, here {batch * env.world_size}), the "
        f"data shards and the schedule's steps per epoch all depend on it; resume with {launcher(saved)} train "
        f"--resume {run.path}, or start a new run from its weights (--weights {run.last})")
