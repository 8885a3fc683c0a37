"""Log-mel features: 16 kHz samples -> (n_mels, frames) at a 10 ms hop, computed with torch.stft."""

from __future__ import annotations

import functools

import numpy as np
import torch

from samba_cli.model.config import exact_div

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop
FRAMES_PER_SECOND = exact_div(SAMPLE_RATE, HOP_LENGTH)  # 100
LOG_MEL_OFFSET = 4.0  # features are (log10(mel power) + LOG_MEL_OFFSET) / LOG_MEL_SCALE
LOG_MEL_SCALE = 4.0
FEATURE_UNITS_PER_DB = 0.1 / LOG_MEL_SCALE  # one dB of power, in feature units


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Triangular HTK-mel filters, area-normalised (slaney norm): (n_mels, n_fft // 2 + 1)."""
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2)
    )
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (center - lower)
    down = (upper - freqs[None, :]) / (upper - center)
    filters = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (upper - lower))
    return torch.from_numpy(filters.astype(np.float32))


def num_frames(num_samples: int) -> int:
    """Feature frames produced for ``num_samples`` samples (centred STFT)."""
    return num_samples // HOP_LENGTH + 1


def log_mel(samples: torch.Tensor | np.ndarray, n_mels: int = 80) -> torch.Tensor:
    """samples: (N,) or (B, N) float32 at 16 kHz -> (n_mels, T) or (B, n_mels, T), T = N // 160 + 1.

    Features are log10 mel power floored at 1e-8, scaled as (log + 4) / 4: roughly in [-1, 1.5] for speech.
    No statistics of the input are used, so a frame's features do not depend on the rest of the window.
    """
    x = torch.as_tensor(samples, dtype=torch.float32)
    window = torch.hann_window(N_FFT, device=x.device)
    spec = torch.stft(
        x, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    power = spec.real.square() + spec.imag.square()  # (..., n_fft // 2 + 1, T)
    mel = mel_filterbank(n_mels).to(x.device) @ power
    return (torch.log10(mel.clamp(min=1e-8)) + LOG_MEL_OFFSET) / LOG_MEL_SCALE
