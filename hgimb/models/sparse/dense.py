"""Dense helpers with cheaper CPU paths than their plain torch forms: :func:`dropout` (the
mask), :func:`narrow_mm` (the gradient of a narrow right factor) and :func:`first_rows` (the
backward of a whole-tensor slice)."""
from __future__ import annotations

import math
from typing import Optional

import torch

class _NarrowMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m):
        ctx.save_for_backward(x, m)
        return x @ m

    @staticmethod
    def backward(ctx, grad):
        x, m = ctx.saved_tensors
        d_x = grad @ m.t() if ctx.needs_input_grad[0] else None
        d_m = (grad.t() @ x).t() if ctx.needs_input_grad[1] else None
        return d_x, d_m


def narrow_mm(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``x @ m`` for a narrow ``m`` (``[in, k]``, a few columns: attention score vectors).

    Why: autograd forms ``m``'s gradient as ``x^T @ grad``, which MKL runs on a slow path when
    ``grad`` has a few columns (100 ms for 43,854 x 512 x 2 on one core); ``(grad^T @ x)^T`` is
    the same product in ~13 ms.
    """
    device = x.device.type
    if torch.is_autocast_enabled(device):  # --amp: both factors in autocast's type (backward runs outside it)
        dtype = torch.get_autocast_dtype(device)
        x, m = x.to(dtype), m.to(dtype)
    return _NarrowMM.apply(x, m)


def first_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x[:rows]``, or ``x`` itself when that is all of it: a whole-tensor slice still records
    a slice in autograd, whose backward zero-fills and copies a full-size gradient."""
    return x if rows == x.size(0) else x[:rows]


def dropout(x: torch.Tensor, p: float, training: bool = True, rows: Optional[torch.Tensor] = None,
            num_rows: Optional[int] = None) -> torch.Tensor:
    """``F.dropout`` with a faster CPU mask.

    Why: on CPU ``F.dropout`` draws a Bernoulli per element (``bernoulli_``), which costs more
    than a whole RGCN layer on Freebase-size inputs. Here each kept/dropped decision is one
    random byte (eight per 64-bit draw of the global torch generator, so
    ``torch.manual_seed`` still makes it reproducible); ``p`` is rounded to a multiple of
    1/256 and the kept values are scaled by the exact inverse keep rate. CUDA tensors use
    ``F.dropout`` (already fast there).

    ``rows`` / ``num_rows``: ``x`` holds the rows ``rows`` of a ``[num_rows, ...]`` tensor; the
    mask of the whole tensor is drawn (the same random stream as dropout on it) and its ``rows``
    are applied, so a layer that computes only some rows drops exactly what the full layer would.
    """
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, True)
    threshold = int(round(p * 256))
    if threshold == 0:
        return x
    if threshold >= 256:
        return x * 0.0
    shape = x.shape if rows is None else (int(num_rows),) + tuple(x.shape[1:])
    n = math.prod(shape)
    draws = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    keep = draws.view(torch.uint8)[:n].view(shape)
    if rows is not None:
        keep = keep.index_select(0, rows)
    # a float mask with the scale folded in: one vectorised multiply forward and backward
    return x * (keep >= threshold).to(x.dtype).mul_(256.0 / (256 - threshold))
