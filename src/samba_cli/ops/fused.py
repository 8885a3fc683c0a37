"""The mamba-ssm Triton kernels behind the same signatures as :mod:`samba_cli.ops.ssd`.

Imported only when the fused backend is selected: importing this module imports mamba_ssm.
"""

from __future__ import annotations

import sys
import types

from samba_cli.errors import BackendError


def _import_kernels():
    # mamba-ssm 2.x imports its Mamba-1 CUDA extension unconditionally; the Mamba-2 Triton kernels do not need it.
    if "selective_scan_cuda" not in sys.modules:
        try:
            import selective_scan_cuda  # noqa: F401
        except ImportError:
            sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
    try:
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise BackendError(
            f"the fused backend needs mamba-ssm ({exc}); install it with `pip install 'samba-asr[cuda]'` "
            "or use --backend torch"
        ) from exc
    return mamba_chunk_scan_combined, selective_state_update


_chunk_scan, _state_update = _import_kernels()


def ssd_chunked(x, dt, A, B, C, chunk_size, D=None, dt_bias=None, initial_state=None):
    """Fused chunked scan; see :func:`samba_cli.ops.ssd.ssd_chunked`."""
    y, final = _chunk_scan(
        x.contiguous(),
        dt.contiguous(),
        A.float(),
        B.contiguous(),
        C.contiguous(),
        chunk_size=chunk_size,
        D=D.float() if D is not None else None,
        dt_bias=dt_bias.float() if dt_bias is not None else None,
        dt_softplus=True,
        initial_states=initial_state,
        return_final_states=True,
    )
    return y, final.float()


def ssd_step(state, x, dt, A, B, C, D=None, dt_bias=None):
    """Fused single step (selective_state_update); see :func:`samba_cli.ops.ssd.ssd_step`."""
    _, h, p = x.shape
    n = state.shape[-1]
    y = _state_update(
        state,
        x,
        dt.unsqueeze(-1).expand(-1, h, p),
        A.float().view(h, 1, 1).expand(h, p, n),
        B,
        C,
        D.view(h, 1).expand(h, p) if D is not None else None,
        z=None,
        dt_bias=dt_bias.view(h, 1).expand(h, p) if dt_bias is not None else None,
        dt_softplus=True,
    )
    return y
