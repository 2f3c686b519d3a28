"""Data-parallel training across processes: ``torchrun --nproc_per_node N -m hgimb.train ...``.

torchrun starts N copies of the CLI with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in the environment. :func:`init` turns those into a
process group (gloo for CPU training, nccl for CUDA, one GPU per local rank); without them (or
with ``WORLD_SIZE=1``) it does nothing and training is the single-process code path, unchanged.
``run_experiment`` calls it; Python code that builds a ``Trainer`` itself calls ``init(device)``
first (a ``Trainer`` trains data-parallel when a process group is initialised).

How the trainer uses the group (see ``Trainer._train_epoch_sharded``):

- **Same start.** Every rank seeds torch and the epoch generator with ``cfg.seed``, then rank 0's
  parameters and buffers are broadcast (:func:`broadcast_module`), as DDP does on construction.
- **Sharding.** Every rank draws the same epoch items (same generator, same draws), then keeps
  the strided shard ``items[rank::world_size]`` (:func:`shard`). Shards are disjoint, cover the
  epoch (repeats from a sampler included) and differ in length by at most one item; with a
  contiguous batching, step k of all ranks together is the contiguous window k of the epoch.
  A rank that runs out of chunks first takes empty steps (:func:`max_int` agrees on the count),
  so every rank makes the same collective calls; no item is duplicated to pad.
- **Loss over the global batch.** Each rank encodes its own chunk; the embeddings and labels of
  all ranks are gathered (:func:`gather_rows`, in epoch order), and every rank applies the
  remedy's ``synthesize``, the head and the ``loss`` to the whole global batch. The loss is the
  remedy's own normalisation over all items (class-weighted means included), not a mean of
  per-rank means.
- **Gradients.** The head ran on every row on every rank, so its gradient is complete everywhere;
  the encoder's gradient on a rank covers only that rank's rows (the gathered embeddings are a
  leaf; its gradient is pushed back through the local encoder). :func:`scale_gradients` divides
  what the head produced by the world size, the encoder backward adds the local share, and
  :func:`all_reduce_gradients` sums: head + sum of encoder shares = the full-batch gradient
  (correct even for a parameter used by both, since the scaling happens between the two passes).
  ``DistributedDataParallel`` is not used: its reducer only syncs gradients after its own
  ``forward`` ran, and the models are called as ``model.encode`` then ``model.head`` (with
  synthesis in between), which would bypass it silently.
- **Buffers** (BatchNorm running statistics) are averaged after each epoch.
- **Evaluation.** Each rank computes logits for its shard of the items; they are gathered to
  every rank in item order, so validation scores and early stopping are computed from identical
  numbers everywhere; rank 0's improvement flag is broadcast all the same.
- **Output.** Only rank 0 writes the run directory (and loads the dataset first, so a cache is
  filled once: :func:`main_first`).
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Callable, Iterable, List, Mapping, Optional, Tuple, TypeVar

import torch

from ..errors import HgimbError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def _dist():
    import torch.distributed as dist

    return dist


def initialized() -> bool:
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def env_world(environ: Mapping[str, str] = os.environ) -> World:
    """The world torchrun describes in the environment (single process when it describes none)."""
    size_text = environ.get("WORLD_SIZE", "").strip()
    if not size_text:
        return SINGLE
    try:
        size = int(size_text)
        rank = int(environ.get("RANK", "").strip() or -1)
        local_rank = int(environ.get("LOCAL_RANK", "").strip() or rank)
    except ValueError:
        raise HgimbError(f"WORLD_SIZE={environ.get('WORLD_SIZE')!r}, RANK={environ.get('RANK')!r}, "
                         f"LOCAL_RANK={environ.get('LOCAL_RANK')!r}: expected integers (as torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size:
        raise HgimbError(f"WORLD_SIZE={size} with RANK={rank}: RANK must be in 0..WORLD_SIZE-1; "
                         "start the processes with torchrun")
    if size > 1:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(k)]
        if missing:
            raise HgimbError(f"WORLD_SIZE={size} but {' and '.join(missing)} not set; start the processes with "
                             "torchrun (python -m torch.distributed.run), which sets them")
    return World(rank, size, local_rank)


def current() -> World:
    """The world of the initialised process group, else a single process."""
    if not initialized():
        return SINGLE
    dist = _dist()
    rank = dist.get_rank()
    return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


def is_main_process() -> bool:
    """Rank 0 of the group (or of the environment's world once the group is gone)."""
    return current().is_main if initialized() else env_world().is_main


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def local_device(device: torch.device, world: World) -> torch.device:
    """``cuda`` (no index) means this rank's GPU, ``cuda:LOCAL_RANK``; anything else is kept."""
    if world.active and device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


def init(device: torch.device) -> World:
    """Join the process group the environment describes, once per process (a no-op for a single
    process, or when a group is already initialised). The group stays open for the life of the
    process, so that a script may run several experiments under one torchrun (re-creating the
    default group on torchrun's store races with the other ranks' teardown); :func:`teardown`
    runs at exit."""
    if initialized():
        return current()
    world = env_world()
    if not world.active:
        return SINGLE
    dist = _dist()
    if not dist.is_available():
        raise HgimbError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(local_device(device, world))
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size)
    except (RuntimeError, ValueError) as exc:  # DistNetworkError and friends
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HgimbError(f"rank {world.rank} could not join the {backend} process group at "
                         f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}: {first}") from None
    atexit.register(teardown)
    return current()


def teardown() -> None:
    """Leave the process group (registered at exit by :func:`init`; safe to call twice)."""
    if initialized():
        _dist().destroy_process_group()


# ------------------------------------------------------------------------------ collectives
def _comm_device() -> torch.device:
    """Where collective buffers live: the current GPU for nccl, the CPU for gloo."""
    if _dist().get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard(items: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's strided share of ``items``: positions rank, rank + size, ..."""
    return items[world.rank::world.size]


def max_int(value: int) -> int:
    dist = _dist()
    tensor = torch.tensor([value], dtype=torch.long, device=_comm_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def broadcast_flags(*flags: bool) -> Tuple[bool, ...]:
    """Rank 0's values of ``flags`` on every rank."""
    tensor = torch.tensor([int(bool(f)) for f in flags], dtype=torch.long, device=_comm_device())
    _dist().broadcast(tensor, src=0)
    return tuple(bool(v) for v in tensor.tolist())


def _all_gather_ints(values: List[int]) -> List[List[int]]:
    dist = _dist()
    mine = torch.tensor(values, dtype=torch.long, device=_comm_device())
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine)
    return [t.tolist() for t in out]


def gather_rows(local: Optional[torch.Tensor], *, dtype: torch.dtype, ndim: int
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows of every rank on every rank, in strided order (row j of rank r sits at key
    ``j * world_size + r``: the order of the items before :func:`shard`).

    ``local`` is ``[n, ...]`` (``None`` for a rank with nothing this step; ``ndim`` and ``dtype``
    then say what the others send). Returns ``(rows, own)``: the gathered rows (no autograd
    history) and the positions of this rank's rows in them, in local order."""
    dist = _dist()
    world = current()
    device = _comm_device()
    n = 0 if local is None else int(local.size(0))
    width = -1 if local is None or ndim == 1 else int(local.size(1))
    meta = _all_gather_ints([n, width])
    sizes = [m[0] for m in meta]
    width = max(m[1] for m in meta)
    shape = (max(sizes),) if ndim == 1 else (max(sizes), max(width, 0))
    buffer = torch.zeros(shape, dtype=dtype, device=device)
    if n:
        buffer[:n] = local.detach().to(device=device, dtype=dtype)
    parts = [torch.empty_like(buffer) for _ in range(world.size)]
    dist.all_gather(parts, buffer)
    rows = torch.cat([part[:size] for part, size in zip(parts, sizes)])
    keys = torch.cat([torch.arange(size, device=device) * world.size + r for r, size in enumerate(sizes)])
    order = torch.argsort(keys)
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel(), device=device)
    start = sum(sizes[: world.rank])
    return rows[order], position[start:start + n]


def main_first(load: Callable[[], T]) -> T:
    """``load()`` on rank 0, then on the other ranks (a dataset cache is written once, by rank 0).
    If rank 0 fails, every rank raises with its message instead of waiting for it forever."""
    if not initialized() or not current().active:
        return load()
    dist = _dist()
    world = current()
    result, message = None, [None]
    if world.is_main:
        try:
            result = load()
        except BaseException as exc:
            message = [f"{type(exc).__name__}: {exc}" if not isinstance(exc, HgimbError) else str(exc)]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    if world.is_main:
        return result
    if message[0] is not None:
        raise HgimbError(f"rank 0 failed: {message[0]}")
    return load()


@torch.no_grad()
def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    dist = _dist()
    device = _comm_device()
    for tensor in list(module.parameters()) + list(module.buffers()):
        buffer = tensor.data.to(device)
        dist.broadcast(buffer, src=0)
        tensor.data.copy_(buffer)


@torch.no_grad()
def average_buffers(module: torch.nn.Module) -> None:
    """Floating buffers (BatchNorm running statistics) averaged over ranks; others from rank 0."""
    dist = _dist()
    device = _comm_device()
    size = dist.get_world_size()
    for tensor in module.buffers():
        buffer = tensor.data.to(device)
        if tensor.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= size
        else:
            dist.broadcast(buffer, src=0)
        tensor.data.copy_(buffer)


@torch.no_grad()
def scale_gradients(params: Iterable[torch.nn.Parameter], factor: float) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.mul_(factor)


@torch.no_grad()
def all_reduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum every gradient over ranks, in one flat all-reduce. A parameter with no gradient on
    some rank counts as zero there; one with no gradient anywhere keeps ``grad = None`` (the
    optimiser then skips it, as a single process would)."""
    dist = _dist()
    device = _comm_device()
    params = [p for p in params if p.requires_grad]
    for p in params:
        if getattr(p, "hgimb_sparse_grad", False):
            _all_reduce_sparse(p)
    params = [p for p in params if not getattr(p, "hgimb_sparse_grad", False)]
    if not params:
        return
    dtype = params[0].dtype if all(p.dtype == params[0].dtype for p in params) else torch.float32
    pieces = []
    for p in params:
        if p.grad is None:
            pieces.append(torch.zeros(p.numel(), dtype=dtype, device=device))
        else:
            grad = p.grad.to_dense() if p.grad.is_sparse else p.grad
            pieces.append(grad.reshape(-1).to(device=device, dtype=dtype))
    pieces.append(torch.tensor([float(p.grad is not None) for p in params], dtype=dtype, device=device))
    flat = torch.cat(pieces)
    dist.all_reduce(flat)
    present = flat[-len(params):].tolist()
    offset = 0
    for p, has_grad in zip(params, present):
        count = p.numel()
        p.grad = flat[offset:offset + count].view_as(p).to(device=p.device, dtype=p.dtype) if has_grad else None
        offset += count


@torch.no_grad()
def _all_reduce_sparse(p: torch.nn.Parameter) -> None:
    """Sum a row-sparse gradient (``--sparse-embeddings``) over ranks as rows: every rank
    gathers all ranks' (row, values) pairs and adds duplicate rows, so the tables' gradients
    never become table-sized. A dense gradient on such a parameter (a full-graph forward) is
    sent as all of its rows."""
    grad = p.grad
    if grad is not None and not grad.is_sparse:
        grad = grad.to_sparse(1)
    if grad is not None:
        grad = grad.coalesce()
    rows = None if grad is None or grad.indices().numel() == 0 else grad.indices()[0]
    values = None if rows is None else grad.values()
    any_grad = max_int(int(grad is not None))
    all_rows, _ = gather_rows(rows, dtype=torch.long, ndim=1)
    all_values, _ = gather_rows(values, dtype=p.dtype, ndim=2)
    if not any_grad:
        p.grad = None
        return
    all_values = all_values.reshape(-1, *p.shape[1:])
    p.grad = torch.sparse_coo_tensor(all_rows.unsqueeze(0).to(p.device), all_values.to(p.device), p.shape).coalesce()
