"""Augmentation: speed perturbation of the waveform; frequency warping and SpecAugment masks on the log-mel features.

Every function draws from an explicit ``torch.Generator`` so a batch is augmented the same way whenever it is
rebuilt (DataLoader workers, exact resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def speed_perturb(samples: torch.Tensor, factor: float) -> torch.Tensor:
    """Play ``samples`` (N,) ``factor`` times faster (tempo and pitch, like sox ``speed``): (round(N / factor),).

    Linear interpolation: cheap, and the little aliasing it adds above 8 kHz / factor is harmless for log-mel
    features.
    """
    if factor == 1.0:
        return samples
    length = max(1, round(samples.shape[0] / factor))
    return F.interpolate(samples.view(1, 1, -1), size=length, mode="linear", align_corners=False).view(-1)


@dataclass(frozen=True)
class SpecAugment:
    freq_masks: int = 2  # frequency masks per utterance
    freq_mask_width: int = 27  # widest frequency mask, in mel bins
    time_masks: int = 2  # time masks per utterance
    time_mask_width: int = 40  # widest time mask, in frames
    time_mask_ratio: float = 0.2  # a time mask covers at most this fraction of the frames
    freq_warp: float = 0.0  # vocal-tract-length warp: factor drawn uniformly in 1 +- freq_warp (0: off)

    def __call__(self, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """features: (n_mels, T) -> a warped and masked copy; masked cells take the utterance's mean value."""
        n_mels, frames = features.shape
        if self.freq_warp > 0:
            draw = float(torch.rand((), generator=generator))
            features = warp_frequency(features, 1.0 + self.freq_warp * (2.0 * draw - 1.0))
        out = features.clone()
        fill = features.mean()
        for _ in range(self.freq_masks):
            start, width = _draw_span(n_mels, min(self.freq_mask_width, n_mels), generator)
            out[start : start + width, :] = fill
        widest = min(self.time_mask_width, int(self.time_mask_ratio * frames))
        for _ in range(self.time_masks):
            start, width = _draw_span(frames, widest, generator)
            out[:, start : start + width] = fill
        return out


def warp_frequency(features: torch.Tensor, alpha: float, boundary: float = 0.8) -> torch.Tensor:
    """Vocal-tract-length perturbation on log-mel features (n_mels, T): move spectral content at mel bin s to
    bin ``alpha`` x s, a speaker with a shorter (alpha > 1) or longer (alpha < 1) vocal tract.

    The warp is piecewise linear in mel bins, as in VTLN: ``alpha`` x s up to a knee at ``boundary`` of the range
    (for alpha > 1: of the range / alpha), then a straight line to the top bin, so the first and the last bin stay
    in place and nothing is pushed out of the range. Each output bin linearly interpolates the two input bins
    around its source position.
    """
    if alpha == 1.0:
        return features
    top = features.shape[0] - 1
    knee = boundary * top / max(alpha, 1.0)  # source position of the knee; it lands at alpha x knee
    target = torch.arange(top + 1, dtype=torch.float64)
    source = torch.where(
        target <= alpha * knee,
        target / alpha,
        knee + (target - alpha * knee) * (top - knee) / (top - alpha * knee),
    ).clamp(0, top)
    low = source.floor().long().clamp(max=top - 1)
    weight = (source - low).to(features.dtype).unsqueeze(1)
    return features[low] * (1 - weight) + features[low + 1] * weight


def _draw_span(size: int, widest: int, generator: torch.Generator) -> tuple[int, int]:
    """A span [start, start + width) inside [0, size) with width uniform in [0, widest]."""
    if widest <= 0:
        return 0, 0
    width = int(torch.randint(0, widest + 1, (1,), generator=generator))
    start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
    return start, width
