"""Pure-PyTorch Mamba-2 SSD (state-space duality) operators: the reference for the fused kernels.

Notation (as in mamba_ssm): batch ``b``, length ``l``, heads ``h``, head dim ``p``, groups ``g``, state size ``n``.
The recurrence per head is::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t B_t^T       # (p, n)
    y_t = h_t C_t + D * x_t                                  # (p,)

with ``dt_t = softplus(dt_raw_t + dt_bias)``. ``ssd_chunked`` evaluates it in chunks (quadratic inside a chunk,
recurrent across chunks); ``ssd_naive`` is the step-by-step loop used to test it; ``ssd_step`` advances one token.
All arithmetic runs in float32 and the output comes back in the dtype of ``x``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand_groups(t: torch.Tensor, nheads: int) -> torch.Tensor:
    """(b, l, g, n) -> (b, l, h, n): each group serves ``h // g`` consecutive heads."""
    groups = t.shape[-2]
    if groups == nheads:
        return t
    return t.repeat_interleave(nheads // groups, dim=-2)


def ssd_chunked(
    x: torch.Tensor,  # (b, l, h, p)
    dt: torch.Tensor,  # (b, l, h), before softplus and bias
    A: torch.Tensor,  # (h,), negative
    B: torch.Tensor,  # (b, l, g, n)
    C: torch.Tensor,  # (b, l, g, n)
    chunk_size: int,
    D: torch.Tensor | None = None,  # (h,)
    dt_bias: torch.Tensor | None = None,  # (h,)
    initial_state: torch.Tensor | None = None,  # (b, h, p, n)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan. Returns ``y`` (b, l, h, p) in x's dtype and the final state (b, h, p, n) in float32.

    Lengths that are not a multiple of ``chunk_size`` are padded with ``dt = 0`` steps, which leave the state
    unchanged, and the padded outputs are dropped. Heads are split as (g, r): group g serves r = h / g heads, so
    the C.B products are computed once per group rather than once per head.
    """
    out_dtype = x.dtype
    b, length, h, p = x.shape
    g, n = B.shape[-2], B.shape[-1]
    r = h // g
    x, dt, A, B, C = (t.float() for t in (x, dt, A, B, C))
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    dt = F.softplus(dt)

    pad = (-length) % chunk_size
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    q = chunk_size
    c = x.shape[1] // q

    xdt = (x * dt.unsqueeze(-1)).view(b, c, q, g, r, p)  # discretised input
    a_cum = torch.cumsum((dt * A).view(b, c, q, g, r), dim=2)  # (b, c, q, g, r) cumulative log-decay
    B = B.view(b, c, q, g, n)
    C = C.view(b, c, q, g, n)

    # 1. Inside each chunk: y_l = sum_{s<=l} (C_l . B_s) exp(a_cum_l - a_cum_s) xdt_s
    a_t = a_cum.permute(0, 3, 4, 1, 2)  # (b, g, r, c, q)
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    decay = torch.exp((a_t.unsqueeze(-1) - a_t.unsqueeze(-2)).masked_fill_(~causal, float("-inf")))
    scores = torch.einsum("bclgn,bcsgn->bgcls", C, B).unsqueeze(2) * decay  # (b, g, r, c, l, s)
    y = torch.einsum("bgrcls,bcsgrp->bclgrp", scores, xdt)

    # 2. State contributed by each chunk at its end.
    decay_to_end = torch.exp(a_cum[:, :, -1:] - a_cum).unsqueeze(-1)  # (b, c, q, g, r, 1)
    chunk_states = torch.einsum("bclgn,bclgrp->bcgrpn", B, xdt * decay_to_end)

    # 3. Recurrence across chunks (c is small: a plain loop is clear and cheap).
    state = (
        initial_state.float().view(b, g, r, p, n) if initial_state is not None else x.new_zeros(b, g, r, p, n)
    )
    chunk_decay = torch.exp(a_cum[:, :, -1])  # (b, c, g, r)
    entering = []
    for i in range(c):
        entering.append(state)
        state = state * chunk_decay[:, i, :, :, None, None] + chunk_states[:, i]
    states_in = torch.stack(entering, dim=1)  # (b, c, g, r, p, n): state entering each chunk

    # 4. Contribution of the entering state to each position.
    y = y + torch.einsum("bclgn,bcgrpn->bclgrp", C, states_in) * torch.exp(a_cum).unsqueeze(-1)

    y = y.reshape(b, c * q, h, p)[:, :length]
    if D is not None:
        y = y + x[:, :length] * D.float().view(1, 1, h, 1)
    return y.to(out_dtype), state.reshape(b, h, p, n)


def ssd_step(
    state: torch.Tensor,  # (b, h, p, n), float32, updated in place
    x: torch.Tensor,  # (b, h, p)
    dt: torch.Tensor,  # (b, h), before softplus and bias
    A: torch.Tensor,  # (h,)
    B: torch.Tensor,  # (b, g, n)
    C: torch.Tensor,  # (b, g, n)
    D: torch.Tensor | None = None,  # (h,)
    dt_bias: torch.Tensor | None = None,  # (h,)
) -> torch.Tensor:
    """One recurrent step. Updates ``state`` in place and returns ``y`` (b, h, p) in x's dtype."""
    out_dtype = x.dtype
    h = x.shape[1]
    x, dt, A = x.float(), dt.float(), A.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    dt = F.softplus(dt)
    B = _expand_groups(B.float().unsqueeze(1), h).squeeze(1)  # (b, h, n)
    C = _expand_groups(C.float().unsqueeze(1), h).squeeze(1)
    decay = torch.exp(dt * A)  # (b, h)
    state.mul_(decay[..., None, None]).add_((dt[..., None] * x).unsqueeze(-1) * B.unsqueeze(-2))
    y = torch.einsum("bhpn,bhn->bhp", state, C)
    if D is not None:
        y = y + x * D.float().view(1, h, 1)
    return y.to(out_dtype)


def ssd_naive(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step-by-step recurrence, the ground truth for tests. Shapes as in :func:`ssd_chunked`."""
    b, length, h, p = x.shape
    n = B.shape[-1]
    state = initial_state.float().clone() if initial_state is not None else x.new_zeros(b, h, p, n).float()
    ys = [
        ssd_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t], D=D, dt_bias=dt_bias) for t in range(length)
    ]
    return torch.stack(ys, dim=1), state
