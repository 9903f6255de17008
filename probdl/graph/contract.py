"""Replaying a compiled plan with torch: rescaled sum-product and log-space max-product.

    from probdl.graph.contract import sum_product, max_product
    log_z, table = sum_product(plan, operands, scalars, batch)   # log P(e) per row (+ table)
    best, assignment = max_product(plan, log_operands, log_scalars, batch, cards)

Sum-product divides every batched intermediate by its per-row maximum and carries the logarithm
of the divisor, so evidence of probability 1e-500 stays exact and finite. The divisor is detached:
``log_z`` stays exactly differentiable, since d log(Z / s) = d log Z for a constant s. Max-product
adds logarithms and records the argmax of each eliminated block; backtracking through the
records yields one consistent optimal assignment, ties included.
"""

from __future__ import annotations

import numpy as np
import torch

from .plan import Plan

__all__ = ["max_product", "sum_product", "sum_product_numpy"]


def _finish_scalars(values: list[torch.Tensor], batch: int, like: torch.Tensor | None,
                    log: bool) -> torch.Tensor | None:
    if not values:
        return None
    total = values[0]
    for v in values[1:]:
        total = total + v if log else total * v
    return total


def sum_product(plan: Plan, operands: list[torch.Tensor], scalars: list[torch.Tensor],
                batch: int, ref: torch.Tensor,
                log_floor: float = -700.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Contract the plan; return (log Z per row, normalized output table per row).

    ``operands`` follow ``plan.terms`` (batched ones have a leading batch axis), ``scalars``
    follow ``plan.scalars`` (each of shape (batch,)); ``ref`` gives dtype and device. The table
    has shape (batch, *output cards) and sums to one per row (it is all ones of shape (batch,)
    when the output is empty); rows of probability zero get ``log_z = -inf`` and a zero table.
    ``log_floor`` is the log of the smallest positive operand entry: an intermediate is rescaled
    once enough factors have multiplied into it to shrink by ``e**-600`` (every step when
    ``log_floor`` is -600 or lower), which keeps the number of extra kernels small.
    """
    every = int(min(64, max(1, 600 // max(-log_floor, 1e-6))))
    work = list(operands)
    counts = [1] * len(work)
    log_scales = []
    for st in plan.steps:
        ops = [work.pop(i) for i in st.operands]
        count = sum(counts.pop(i) for i in st.operands)
        t = torch.einsum(st.equation, *ops)
        if st.batched and count >= every:
            s = t.detach().reshape(batch, -1).amax(1).clamp_min(1e-300)
            t = t / s.reshape((batch,) + (1,) * (t.dim() - 1))
            log_scales.append(s)
            count = 1
        work.append(t)
        counts.append(count)
    log_scale = torch.stack(log_scales).log().sum(0) if log_scales else None
    if work:
        result = work[0]
        if not plan.final_batched:
            result = result.unsqueeze(0).expand((batch, *result.shape))
        if plan.output and plan.final_vars != plan.output:
            perm = [plan.final_vars.index(u) + 1 for u in plan.output]
            result = result.permute(0, *perm)
    else:
        result = torch.ones(batch, dtype=ref.dtype, device=ref.device)
    total = result.reshape(batch, -1).sum(1)
    scal = _finish_scalars(scalars, batch, result, log=False)
    if scal is not None:
        total = total * scal
    with torch.no_grad():
        positive = total > 0
    safe = torch.where(positive, total, torch.ones_like(total))
    log_z = torch.where(positive, safe.log(), torch.full_like(total, -torch.inf))
    if log_scale is not None:
        log_z = log_z + log_scale
    if plan.output:
        norm = result.reshape(batch, -1).sum(1)
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        table = result / norm.reshape((batch,) + (1,) * (result.dim() - 1))
    else:
        table = positive.to(result.dtype)
    return log_z, table


def sum_product_numpy(plan: Plan, operands: list[np.ndarray], scalars: list[np.ndarray],
                      batch: int, log_floor: float = -700.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sum_product` with numpy, for a few rows without gradients.

    A single query's plan is a few dozen contractions of tiny tables; ``numpy.einsum`` runs each
    in microseconds where a torch call costs tens, so small batches take this path.
    """
    every = int(min(64, max(1, 600 // max(-log_floor, 1e-6))))
    work = list(operands)
    counts = [1] * len(work)
    log_scale = np.zeros(batch)
    for st in plan.steps:
        ops = [work.pop(i) for i in st.operands]
        count = sum(counts.pop(i) for i in st.operands)
        t = np.einsum(st.equation, *ops)
        if st.batched and count >= every:
            s = np.maximum(t.reshape(batch, -1).max(1), 1e-300)
            t = t / s.reshape((batch,) + (1,) * (t.ndim - 1))
            log_scale += np.log(s)
            count = 1
        work.append(t)
        counts.append(count)
    if work:
        result = work[0]
        if not plan.final_batched:
            result = np.broadcast_to(result, (batch, *np.shape(result)))
        if plan.output and plan.final_vars != plan.output:
            result = result.transpose(0, *[plan.final_vars.index(u) + 1 for u in plan.output])
    else:
        result = np.ones(batch)
    total = result.reshape(batch, -1).sum(1)
    for x in scalars:
        total = total * x
    with np.errstate(divide="ignore"):
        log_z = np.log(total) + log_scale
    if plan.output:
        norm = result.reshape(batch, -1).sum(1)
        norm = np.where(norm > 0, norm, 1.0)
        table = result / norm.reshape((batch,) + (1,) * (result.ndim - 1))
    else:
        table = (total > 0).astype(np.float64)
    return log_z, table


def _broadcast(x: torch.Tensor, vars_: tuple[int, ...], batched: bool,
               layout: tuple[int, ...], out_batched: bool) -> torch.Tensor:
    """View ``x`` (axes: [batch], vars_) on [batch or 1] + layout, size 1 where absent."""
    present = [u for u in layout if u in vars_]
    off = 1 if batched else 0
    perm = ([0] if batched else []) + [vars_.index(u) + off for u in present]
    if perm:
        x = x.permute(*perm)
    shape = list(x.shape[:off])
    it = iter(x.shape[off:])
    shape += [next(it) if u in vars_ else 1 for u in layout]
    if out_batched and not batched:
        shape = [1, *shape]
    return x.reshape(shape)


def max_product(plan: Plan, operands: list[torch.Tensor], scalars: list[torch.Tensor],
                batch: int, cards: tuple[int, ...],
                ref: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Max-plus contraction of log-space operands with argmax backtracking.

    Returns (max log value per row, dict variable -> LongTensor (batch,) of its optimal state)
    for every variable of the plan's terms (``ref`` gives dtype and device); ``-inf`` marks rows
    with no possible assignment.
    """
    work = list(operands)
    records = []
    for st in plan.steps:
        ops = [work.pop(i) for i in st.operands]
        layout = st.out + st.eliminated
        total = None
        for x, vars_, b in zip(ops, st.inputs, st.batched_in, strict=True):
            y = _broadcast(x, vars_, b, layout, st.batched)
            total = y if total is None else total + y
        lead = (1 if st.batched else 0) + len(st.out)
        flat = total.reshape(*total.shape[:lead], -1)
        flat = flat.expand(*([batch] if st.batched else []),
                           *[cards[u] for u in st.out], flat.shape[-1])
        value, arg = flat.max(-1)
        records.append(arg)
        work.append(value)
    device = ref.device
    if work:
        best = work[0]
        if not plan.final_batched:
            best = best.expand(batch)
    else:
        best = torch.zeros(batch, dtype=ref.dtype, device=device)
    scal = _finish_scalars(scalars, batch, best, log=True)
    if scal is not None:
        best = best + scal
    rows = torch.arange(batch, device=device)
    assign: dict[int, torch.Tensor] = {}
    for st, arg in zip(reversed(plan.steps), reversed(records), strict=True):
        index = ([rows] if st.batched else []) + [assign[u] for u in st.out]
        a = arg[tuple(index)] if index else arg.expand(batch)
        if a.dim() == 0:
            a = a.expand(batch)
        for u in reversed(st.eliminated):
            assign[u] = a % cards[u]
            a = torch.div(a, cards[u], rounding_mode="floor")
    return best, assign
