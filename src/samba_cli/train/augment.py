"""Augmentation: speed perturbation, added noise and reverberation of the waveform; frequency warping, a random
spectral envelope and SpecAugment masks on the log-mel features.

Every function draws from an explicit ``torch.Generator`` so a batch is augmented the same way whenever it is
rebuilt (DataLoader workers, exact resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samba_cli.features import FEATURE_UNITS_PER_DB, SAMPLE_RATE


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
class NoiseAugment:
    """Noise and reverberation drawn afresh for every utterance each time it is loaded.

    Noise is white, pink or brown (one of the three, equally likely), added at an SNR drawn uniformly in
    ``snr`` dB against the utterance's mean power. Reverberation convolves the utterance with a synthetic room
    impulse: Gaussian noise under an exponential decay that loses 60 dB in RT60 seconds (drawn uniformly in
    ``rt60``), mixed with the dry signal at a wet share drawn uniformly in ``wet``. Reverberation comes first, as
    in a room with a noisy microphone. The result keeps the input's peak level, so the features' level range does
    not change.
    """

    noise_prob: float = 0.0  # share of utterances that get noise
    snr: tuple[float, float] = (5.0, 25.0)  # dB, drawn uniformly
    reverb_prob: float = 0.0  # share of utterances that get reverberation
    rt60: tuple[float, float] = (0.15, 0.8)  # seconds, drawn uniformly
    wet: tuple[float, float] = (0.2, 0.7)  # share of the reverberant signal in the mix

    @property
    def enabled(self) -> bool:
        return self.noise_prob > 0 or self.reverb_prob > 0

    def __call__(
        self, samples: torch.Tensor, generator: torch.Generator, sample_rate: int = SAMPLE_RATE
    ) -> torch.Tensor:
        """samples: (N,) float32 -> an augmented copy of the same length (or ``samples`` itself, untouched)."""
        peak = samples.abs().max()
        out = samples
        # the choices are drawn up front, so whether reverberation happens does not change the noise's choices
        draws = torch.rand(6, generator=generator, dtype=torch.float64).tolist()
        if draws[0] < self.reverb_prob:
            rt60 = _uniform(self.rt60, draws[1])
            impulse = room_impulse(rt60, sample_rate, generator)
            wet = _uniform(self.wet, draws[2])
            reverberant = convolve(out, impulse)
            scale = out.square().mean().sqrt() / reverberant.square().mean().sqrt().clamp(min=1e-12)
            out = (1.0 - wet) * out + wet * scale * reverberant
        if draws[3] < self.noise_prob:
            color = ("white", "pink", "brown")[min(2, int(3 * draws[4]))]
            snr = _uniform(self.snr, draws[5])
            noise = colored_noise(out.shape[0], color, generator)
            power = out.square().mean()
            out = out + noise * (power / 10 ** (snr / 10)).sqrt()
        if out is samples:
            return samples
        return out * (peak / out.abs().max().clamp(min=1e-12))


def _uniform(bounds: tuple[float, float], draw: float) -> float:
    low, high = bounds
    return low + (high - low) * draw


def colored_noise(length: int, color: str, generator: torch.Generator) -> torch.Tensor:
    """(length,) float32 noise of unit power: ``white`` (flat), ``pink`` (power ~ 1/f) or ``brown`` (1/f^2)."""
    white = torch.randn(length, generator=generator)
    if color != "white":
        exponent = {"pink": 0.5, "brown": 1.0}[color]  # amplitude ~ f^-exponent
        spectrum = torch.fft.rfft(white)
        freqs = torch.arange(spectrum.shape[0], dtype=torch.float32).clamp(min=1.0)
        white = torch.fft.irfft(spectrum / freqs.pow(exponent), n=length)
        white = white - white.mean()
    return white / white.square().mean().sqrt().clamp(min=1e-12)


def room_impulse(rt60: float, sample_rate: int, generator: torch.Generator) -> torch.Tensor:
    """A synthetic room impulse response of ``rt60`` seconds: a unit direct path, then decaying Gaussian noise."""
    length = max(2, int(rt60 * sample_rate))
    t = torch.arange(length, dtype=torch.float32) / sample_rate
    decay = torch.exp(-6.9078 * t / rt60)  # amplitude: -60 dB (ln 1000) at t = rt60
    impulse = torch.randn(length, generator=generator) * decay
    impulse[0] = 1.0
    return impulse / impulse.norm()


def convolve(samples: torch.Tensor, impulse: torch.Tensor) -> torch.Tensor:
    """Linear convolution by FFT, cut to the length of ``samples`` (the tail past the end is dropped)."""
    n = samples.shape[0] + impulse.shape[0] - 1
    size = 1 << (n - 1).bit_length()
    product = torch.fft.rfft(samples, n=size) * torch.fft.rfft(impulse, n=size)
    return torch.fft.irfft(product, n=size)[: samples.shape[0]]


@dataclass(frozen=True)
class SpecAugment:
    freq_masks: int = 2  # frequency masks per utterance
    freq_mask_width: int = 27  # widest frequency mask, in mel bins
    time_masks: int = 2  # time masks per utterance
    time_mask_width: int = 40  # widest time mask, in frames
    time_mask_ratio: float = 0.2  # a time mask covers at most this fraction of the frames
    freq_warp: float = 0.0  # vocal-tract-length warp: factor drawn uniformly in 1 +- freq_warp (0: off)
    envelope_db: float = 0.0  # random smooth spectral envelope of up to +- this many dB (0: off)

    def __call__(self, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """features: (n_mels, T) -> a warped, coloured and masked copy; masked cells take the utterance's mean."""
        n_mels, frames = features.shape
        if self.freq_warp > 0:
            draw = float(torch.rand((), generator=generator))
            features = warp_frequency(features, 1.0 + self.freq_warp * (2.0 * draw - 1.0))
        if self.envelope_db > 0:
            features = features + random_envelope(n_mels, self.envelope_db, generator).unsqueeze(1)
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


ENVELOPE_TERMS = 4  # cosines of the mel axis in a random envelope: broad tilts and bumps, no fine detail


def random_envelope(n_mels: int, max_db: float, generator: torch.Generator) -> torch.Tensor:
    """A smooth random gain over the mel bins, (n_mels,) in feature units, peaking at a level drawn uniformly in
    [0, max_db] dB: the sum of the first ENVELOPE_TERMS cosines of the mel axis with uniform random weights in
    [-1, 1], scaled to that peak. Added to every frame, it recolours the voice (tilt, formant-region emphasis), as
    another vocoder, microphone or channel would."""
    draws = torch.rand(ENVELOPE_TERMS + 1, generator=generator, dtype=torch.float64)
    position = torch.linspace(0.0, torch.pi, n_mels, dtype=torch.float64)
    terms = torch.stack([torch.cos(k * position) for k in range(1, ENVELOPE_TERMS + 1)])
    curve = ((2.0 * draws[1:] - 1.0) @ terms).float()
    peak = curve.abs().max().clamp(min=1e-6)
    return curve / peak * (float(draws[0]) * max_db * FEATURE_UNITS_PER_DB)


def _draw_span(size: int, widest: int, generator: torch.Generator) -> tuple[int, int]:
    """A span [start, start + width) inside [0, size) with width uniform in [0, widest]."""
    if widest <= 0:
        return 0, 0
    width = int(torch.randint(0, widest + 1, (1,), generator=generator))
    start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
    return start, width
