"""Data parallelism on ``torch.distributed``: process group, ranks, sharding and all-reduce.

    # torchrun --standalone --nproc_per_node 2 my_script.py   (or: probdl train --nproc 2 ...)
    from probdl import distributed
    distributed.init()                         # reads torchrun's RANK, WORLD_SIZE, MASTER_ADDR...
    order = torch.randperm(1000)               # the same permutation on every rank (same seed)
    mine = distributed.shard(order)            # this rank's share, DistributedSampler-style
    ...
    loss.backward()
    distributed.all_reduce_gradients(model)    # mean over ranks: the global batch's gradient
    if distributed.is_writer():
        model.save("model.pt")                 # rank 0 alone writes files and logs

Outside a torchrun job every helper is a no-op for a world of one process, so the same code runs
alone or on N processes. The backend is ``nccl`` when the job trains on CUDA devices and
``gloo`` otherwise; CPU-side sums (EM's expected counts) always travel over a gloo group.

Why the mean is the right reduction: every rank evaluates the per-example loss
``KL / N + mean over its B/W rows of -log p(y | x, w)`` (the likelihood scaled by the full
dataset size N, the KL counted in full on each rank). The mean over W ranks of equal-sized
shards is ``KL / N + mean over all B rows``: the single-process loss of the global batch, the
KL counted once. (A sum all-reduce would need the KL scaled by 1/W on each rank instead.)
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from probdl.errors import ModelError

__all__ = [
    "SumOverRanks",
    "all_reduce_gradients",
    "barrier",
    "broadcast_object",
    "broadcast_parameters",
    "cleanup",
    "init",
    "is_initialized",
    "is_writer",
    "launched_by_torchrun",
    "local_device",
    "local_rank",
    "mean_over_shards",
    "rank",
    "rank_rng",
    "resolve",
    "shard",
    "shard_frame",
    "shard_size",
    "sum_arrays",
    "sum_scalar",
    "world_size",
]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_state: dict[str, Any] = {"owned": False, "cpu_group": None}


def _dist():
    import torch.distributed as dist

    return dist


def launched_by_torchrun() -> bool:
    """Whether torchrun (or an equivalent launcher) set this process's rank variables."""
    return all(name in os.environ for name in _TORCHRUN_VARS)


def is_initialized() -> bool:
    """Whether a default process group exists in this process."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank: 0 outside a process group."""
    return _dist().get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the job: 1 outside a process group."""
    return _dist().get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """Rank on this machine (torchrun's LOCAL_RANK): picks the GPU of this process."""
    return int(os.environ.get("LOCAL_RANK", 0)) if is_initialized() else 0


def is_writer() -> bool:
    """True on the one process that writes checkpoints, logs and outputs (rank 0)."""
    return rank() == 0


def _wants_cuda(device: Any) -> bool:
    return device is not None and str(device).startswith("cuda")


def init(device: str | torch.device | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group described by torchrun's environment variables.

    Parameters
    ----------
    device : str or torch.device, optional
        The device this job computes on: ``nccl`` is used for CUDA devices, ``gloo`` otherwise.
    timeout_s : float
        How long a collective waits for the other ranks before failing.

    Returns
    -------
    bool
        True when this process is one of several (a process group is up), False alone.
        Idempotent: a group that already exists (created here or by the caller) is reused.
    """
    if is_initialized():
        return world_size() > 1
    if not launched_by_torchrun():
        return False
    dist = _dist()
    if not dist.is_available():  # pragma: no cover - every supported torch build has it
        raise ModelError("this torch build has no torch.distributed; install a standard build.")
    cuda = _wants_cuda(device) and torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:
        raise ModelError(
            f"cannot join the torch.distributed job (backend {backend}, MASTER_ADDR="
            f"{os.environ.get('MASTER_ADDR')}, MASTER_PORT={os.environ.get('MASTER_PORT')}, "
            f"RANK={os.environ.get('RANK')}, WORLD_SIZE={os.environ.get('WORLD_SIZE')}): {err}. "
            "Launch with torchrun (see docs/scaling.md) and check that the port is free."
        ) from None
    _state["owned"] = True
    atexit.register(cleanup)
    return world_size() > 1


def resolve(distributed: bool | None, device: Any = None) -> bool:
    """Decide whether a ``distributed=`` argument means a multi-process run, joining the group.

    ``None`` (auto): distributed when launched by torchrun with more than one process.
    ``True``: joins the group if torchrun launched this process; alone, a world of one.
    ``False``: this process works alone even inside a torchrun job.
    """
    if distributed is False:
        return False
    if distributed is None and not is_initialized():
        if not launched_by_torchrun() or int(os.environ.get("WORLD_SIZE", 1)) <= 1:
            return False
    return init(device)


def cleanup() -> None:
    """Leave the process group if this module created it (registered with atexit)."""
    if _state["owned"] and is_initialized():
        _dist().destroy_process_group()
    _state["owned"] = False
    _state["cpu_group"] = None


def barrier() -> None:
    """Wait until every rank gets here (no-op alone)."""
    if world_size() > 1:
        _dist().barrier(group=_cpu_group())


def local_device(device: str | torch.device) -> str | torch.device:
    """Map ``"cuda"`` to this rank's GPU, ``cuda:LOCAL_RANK``, inside a job; others unchanged."""
    if is_initialized() and str(device) == "cuda":
        return f"cuda:{local_rank()}"
    return device


def _cpu_group():
    """A gloo group for CPU tensors when the default group is nccl (None: use the default)."""
    dist = _dist()
    if dist.get_backend() == "gloo":
        return None
    if _state["cpu_group"] is None:
        _state["cpu_group"] = dist.new_group(backend="gloo")
    return _state["cpu_group"]


# ---- sharding ------------------------------------------------------------------------------
def shard_size(n: int, world: int | None = None) -> int:
    """Rows each rank holds after :func:`shard`: ``ceil(n / world)``."""
    world = world_size() if world is None else world
    return -(-n // world)


def shard(order: torch.Tensor | np.ndarray | int, rank_: int | None = None,
          world: int | None = None) -> Any:
    """This rank's share of ``order`` (or of ``range(order)``), as DistributedSampler cuts it.

    The order is padded by repeating its head to a multiple of ``world`` and rank ``r`` takes
    elements ``r, r + world, ...``, so every rank gets the same number of rows (collectives stay
    in step). Cut into consecutive local batches of ``b`` rows, local batch ``k`` of all ranks
    together is exactly ``order[k*b*world : (k+1)*b*world]``: the same global batches as one
    process with batch size ``b * world``.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if isinstance(order, int | np.integer):
        order = torch.arange(int(order))
    if world <= 1:
        return order
    n = len(order)
    if n == 0:
        return order
    padded = shard_size(n, world) * world
    if padded > n:
        reps = -(-padded // n)
        if isinstance(order, torch.Tensor):
            order = torch.cat([order] * reps)[:padded]
        else:
            order = np.concatenate([order] * reps)[:padded]
    return order[rank_::world]


def shard_frame(rows: Any, rank_: int | None = None, world: int | None = None) -> Any:
    """A contiguous block of a table's rows (or an array's) for this rank, without padding.

    Blocks differ in size by at most one row; some are empty when there are fewer rows than
    ranks. Use it where rows are summed (EM counts), so no row may be counted twice.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    n = len(rows)
    start, stop = n * rank_ // world, n * (rank_ + 1) // world
    return rows.iloc[start:stop] if hasattr(rows, "iloc") else rows[start:stop]


@contextlib.contextmanager
def rank_rng(stream: int) -> Iterator[None]:
    """Independent random numbers per rank inside, the same state on every rank after.

    Training steps want each rank's dropout masks and weight draws to differ (one seed on
    every rank makes rank r's masks repeat rank 0's, which measurably hurt the fit), while
    validation and stopping decisions after the steps must agree on every rank. Rank 0 draws
    from its own generator unchanged (a one-process run is untouched); rank r > 0 draws from
    a stream seeded by ``(stream, r)``; on exit every rank takes rank 0's generator state.
    """
    if world_size() <= 1:
        yield
        return
    r = rank()
    with torch.random.fork_rng(enabled=r > 0):
        if r > 0:
            torch.manual_seed(int(np.random.SeedSequence([stream, r]).generate_state(1)[0]))
        yield
    for get, put in ((torch.get_rng_state, torch.set_rng_state),
                     (torch.cuda.get_rng_state, torch.cuda.set_rng_state)):
        if get is torch.cuda.get_rng_state and not torch.cuda.is_initialized():
            continue
        state = get()  # a CPU byte tensor, also for the GPU's generator
        _dist().broadcast(state, src=0, group=_cpu_group())
        put(state)


# ---- reductions ----------------------------------------------------------------------------
def _parameters(module_or_params: Any) -> list[torch.nn.Parameter]:
    if isinstance(module_or_params, torch.nn.Module):
        return [p for p in module_or_params.parameters() if p.requires_grad]
    return [p for p in module_or_params if p.requires_grad]


def all_reduce_gradients(module_or_params: torch.nn.Module | Iterable[torch.Tensor],
                         weight: float | None = None) -> None:
    """Replace every gradient by its mean over ranks (or the sum of ``weight * grad``).

    All gradients travel in one flat buffer, one collective per step. A parameter without a
    gradient on some rank counts as zero there; one without a gradient on every rank keeps
    ``grad = None``, so optimizers still skip it.
    """
    world = world_size()
    if world <= 1:
        return
    params = _parameters(module_or_params)
    if not params:
        return
    device = params[0].device
    pieces = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=device,
              dtype=p.dtype) for p in params]
    present = torch.tensor([p.grad is not None for p in params], device=device,
                           dtype=pieces[0].dtype)
    flat = torch.cat([*pieces, present])
    flat.mul_(1.0 / world if weight is None else weight)
    _dist().all_reduce(flat)
    offset = 0
    counts = flat[-len(params):]
    for i, p in enumerate(params):
        chunk = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
        if counts[i] == 0:
            continue
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (identical starting points)."""
    if world_size() <= 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            _dist().broadcast(tensor.data, src=src)


def sum_scalar(value: float) -> float:
    """The sum of a float over ranks, in float64."""
    if world_size() <= 1:
        return float(value)
    buffer = torch.tensor([float(value)], dtype=torch.float64)
    _dist().all_reduce(buffer, group=_cpu_group())
    return float(buffer[0])


def sum_arrays(arrays: Mapping[str, np.ndarray], scalar: float = 0.0
               ) -> tuple[dict[str, np.ndarray], float]:
    """Sum a dict of float64 arrays (and one scalar) over ranks, in one collective.

    EM's E-step uses it: each rank's expected family counts and log-likelihood of its rows
    add up to those of all rows. Returns new arrays; alone, copies of the inputs.
    """
    names = list(arrays)
    if world_size() <= 1:
        return {k: np.array(arrays[k], dtype=np.float64) for k in names}, float(scalar)
    flat = np.concatenate([np.asarray(arrays[k], dtype=np.float64).ravel() for k in names]
                          + [np.array([scalar], dtype=np.float64)])
    buffer = torch.from_numpy(flat)
    _dist().all_reduce(buffer, group=_cpu_group())
    out, offset = {}, 0
    for k in names:
        shape = np.shape(arrays[k])
        size = int(np.prod(shape))
        out[k] = buffer[offset:offset + size].numpy().reshape(shape).copy()
        offset += size
    return out, float(buffer[-1])


def mean_over_shards(metric: Any, model: Any, x: Any, y: Any, *args: Any) -> tuple[float, ...]:
    """Per-example means of ``metric(model, x, y, *args)`` over all rows, each rank doing a block.

    ``metric`` returns a tuple of means over the rows it is given (e.g. validation NLL and
    accuracy); each rank evaluates its contiguous block of ``x`` and ``y`` and the means are
    combined weighted by block size, so W ranks share the work of one evaluation. Alone: a
    plain call.
    """
    if world_size() <= 1 or len(x) < world_size():  # too few rows to give every rank some
        return tuple(metric(model, x, y, *args))
    mine_x, mine_y = shard_frame(x), shard_frame(y)
    means = metric(model, mine_x, mine_y, *args)
    totals, count = sum_arrays({"s": np.array([m * len(mine_x) for m in means])},
                               float(len(mine_x)))
    return tuple(float(t / count) for t in totals["s"])


class SumOverRanks:
    """Wrap a function returning ``(dict of arrays, float)``: its result, summed over ranks.

    EM's E-step on a block of rows returns expected family counts and a log-likelihood;
    wrapped, every rank gets the counts and log-likelihood of all rows. Other attributes are
    those of the wrapped object.
    """

    def __init__(self, function: Any):
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[dict[str, np.ndarray], float]:
        arrays, scalar = self.function(*args, **kwargs)
        return sum_arrays(arrays, scalar)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.function, name)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable object on every rank (decisions that must agree, e.g. stop)."""
    if world_size() <= 1:
        return obj
    holder = [obj]
    _dist().broadcast_object_list(holder, src=src, group=_cpu_group())
    return holder[0]
