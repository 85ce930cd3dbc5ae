"""Simulated EEG of the synthetic world: 128 channels at 1 kHz, with a planted, known signal.

Generative model of one trial of subject ``s`` viewing image ``i`` of class ``c``::

    x(t) = A_s @ (amp_s * e_{s,i}(t)) + g_s(t_i) * (N_s @ pink(t) + alpha(t) + white(t))  [+ drift_s(t_i)]

- ``e_{s,i}``: evoked source waveforms, a sum of three ERP components (about 110, 180 and 320 ms;
  Gaussian bumps, all energy below ~30 Hz), whose per-source amplitudes are a class code
  (partly subject-specific), plus attribute codes of the image (colour, background, size
  scaling, left/right lateralisation) and an image-specific code shared by all subjects. Each
  trial's evoked waveform is zero-mean, so trial means carry no stimulus information.
- ``A_s``: subject-specific source-to-channel mixing (Gaussian topographies around jittered
  source positions on a 128-channel hemispherical montage). ``amp_s``: subject SNR.
- Background: spatially correlated 1/f^1.7 noise, a posterior alpha rhythm (subject-specific
  frequency, trial-varying power) and sensor noise, scaled by a slowly drifting state ``g_s``.
- The session: 0.5 s per trial; either randomized order (default) or class blocks with 10 s
  blanks (``block_drift``). A slow DC drift and electrode offsets enter the raw file only.
  With ``block_drift`` every block also gets its own DC offsets and band-power gains: the
  block-design confound of the real set (offsets vanish under a 5 Hz high-pass, gains do not).

The 5-95 Hz file is the zero-phase band-passed signal, standardised per channel and subject
(``eeg_5_95_std``); the raw file keeps the slow content (``eeg_signals_raw_with_mean_std``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.world.images import ATTRIBUTES, POSITIONS, ImageSpec

FS = 1000
N_CHANNELS = 128
GEN_LEN = 640  # every trial is simulated at this length, then cut to its own length L
TRIAL_S = 0.5  # stimulus duration (and trial spacing) in seconds
BLANK_S = 10.0  # blank between blocks / breaks in seconds
N_SOURCES = 24
N_NOISE_SOURCES = 40
COMPONENTS = ((0.110, 0.025), (0.180, 0.030), (0.320, 0.060))  # (latency s, width s) of the ERP bumps
CHUNK = 96  # trials simulated per vectorised chunk (fixed: part of the RNG stream)

# Subject SNR multipliers (subjects differ; subject 4 is the strongest, as in the paper's showcase).
SUBJECT_SNR = {1: 0.85, 2: 0.6, 3: 0.7, 4: 1.0, 5: 0.75, 6: 0.5}


@dataclass(frozen=True)
class SignalParams:
    """Strength of each planted effect (dimensionless, relative to unit background noise)."""

    evoked_amp: float = 0.55
    class_weight: float = 1.0
    subject_specific: float = 0.35  # subject-specific part of the class code
    colour_weight: float = 0.5
    background_weight: float = 0.4
    lateral_weight: float = 0.8
    size_gain: tuple[float, float] = (0.8, 1.2)  # small, large
    image_weight: float = 0.35
    drift_uv: float = 3.0  # raw slow drift amplitude (units of the noise std)
    offset_uv: float = 5.0  # raw electrode offsets
    block_offset_uv: float = 4.0  # raw per-block DC offset (block_drift only)
    block_gain_log_sd: float = 0.35  # per-block log band-power gain (block_drift only)
    state_gain_log_sd: float = 0.1  # slow drift of the log gain (both designs)


def montage() -> np.ndarray:
    """128 channel positions on the upper unit hemisphere (Fibonacci lattice), ``[128, 3]``."""
    k = np.arange(N_CHANNELS) + 0.5
    z = 1 - k / N_CHANNELS  # heights in (0, 1): upper hemisphere
    r = np.sqrt(1 - z**2)
    phi = k * math.pi * (3 - math.sqrt(5))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _topographies(chan: np.ndarray, centres: np.ndarray, width: float, signs: np.ndarray) -> np.ndarray:
    d2 = ((chan[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    topo = np.exp(-d2 / (2 * width**2)) * signs[None, :]
    return topo / np.linalg.norm(topo, axis=0, keepdims=True) * math.sqrt(N_CHANNELS / centres.shape[0])


def _random_unit_points(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.standard_normal((n, 3))
    p[:, 2] = np.abs(p[:, 2])
    return p / np.linalg.norm(p, axis=1, keepdims=True)


@dataclass(frozen=True)
class WorldCodes:
    """World-level latent codes shared by all subjects."""

    source_pos: np.ndarray  # [S, 3]
    class_code: np.ndarray  # [40, S, 3]
    attr_code: dict[str, np.ndarray]  # colour/background: [n_values, S, 3]
    image_code: np.ndarray  # [n_images, S, 3]


def world_codes(rng: np.random.Generator, n_images: int) -> WorldCodes:
    shape = (N_SOURCES, len(COMPONENTS))
    return WorldCodes(
        source_pos=_random_unit_points(rng, N_SOURCES),
        class_code=rng.standard_normal((40, *shape)),
        attr_code={k: rng.standard_normal((len(ATTRIBUTES[k]), *shape)) for k in ("colour", "background")},
        image_code=rng.standard_normal((n_images, *shape)),
    )


def _bumps(t: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """ERP component waveforms ``[n, n_comp, T]`` for per-trial latency shifts ``[n]`` (seconds)."""
    out = np.empty((shift.size, len(COMPONENTS), t.size))
    for j, (lat, width) in enumerate(COMPONENTS):
        out[:, j] = np.exp(-((t[None, :] - lat - shift[:, None]) ** 2) / (2 * width**2))
    return out


def _pink(rng: np.random.Generator, shape: tuple[int, ...], exponent: float = 1.7) -> np.ndarray:
    """Unit-variance noise with power spectrum ~ 1/f^exponent (flat below 1 Hz)."""
    n = shape[-1]
    spec = rng.standard_normal((*shape[:-1], n // 2 + 1)) + 1j * rng.standard_normal((*shape[:-1], n // 2 + 1))
    f = np.fft.rfftfreq(n, 1 / FS)
    spec *= np.maximum(f, 1.0) ** (-exponent / 2)
    x = np.fft.irfft(spec, n=n)
    return x / x.std(axis=-1, keepdims=True)


def _alpha(rng: np.random.Generator, n: int, freq: float) -> np.ndarray:
    """Narrow-band (alpha) oscillation with random phase, ``[n, T]``, unit variance."""
    spec = rng.standard_normal((n, GEN_LEN // 2 + 1)) + 1j * rng.standard_normal((n, GEN_LEN // 2 + 1))
    f = np.fft.rfftfreq(GEN_LEN, 1 / FS)
    spec *= np.exp(-((f - freq) ** 2) / (2 * 1.0**2))
    x = np.fft.irfft(spec, n=GEN_LEN)
    return x / x.std(axis=-1, keepdims=True)


def bandpass(x: np.ndarray, low: float = 5.0, high: float = 95.0, pad: int = 200) -> np.ndarray:
    """Zero-phase FFT band-pass over the last axis, raised-cosine edges (+-1 Hz low, +-3 Hz high)."""
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    n = xp.shape[-1]
    f = np.fft.rfftfreq(n, 1 / FS)
    gain = np.clip((f - (low - 1)) / 2, 0, 1) * np.clip(((high + 3) - f) / 6, 0, 1)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    y = np.fft.irfft(np.fft.rfft(xp, axis=-1) * gain, n=n, axis=-1)
    return y[..., pad:-pad]


def presentation_times(
    labels: np.ndarray, rng: np.random.Generator, *, block_design: bool, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Onset time (s) and block id of each trial (trials indexed like ``labels``).

    Block design: the classes in random order, each block all images of one class in random
    order, 10 s blank between blocks. Otherwise: one random order over all trials, with a 10 s
    break every ``block_size`` trials; "block" then means that break-delimited run.
    """
    n = labels.size
    if block_design:
        order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in rng.permutation(np.unique(labels))])
        block_of_pos = np.repeat(np.arange(np.unique(labels).size), np.bincount(labels)[np.unique(labels)])
    else:
        order = rng.permutation(n)
        block_of_pos = np.arange(n) // block_size
    onset_of_pos = np.arange(n) * TRIAL_S + block_of_pos * BLANK_S
    onset = np.empty(n)
    block = np.empty(n, dtype=np.int64)
    onset[order] = onset_of_pos
    block[order] = block_of_pos
    return onset, block


def _slow_process(rng: np.random.Generator, times: np.ndarray, n: int, periods: tuple[float, float] = (30.0, 400.0)) -> np.ndarray:
    """Smooth random processes ``[len(times), n]`` (sums of slow sinusoids), unit variance."""
    n_waves = 6
    per = np.exp(rng.uniform(np.log(periods[0]), np.log(periods[1]), (n_waves, n)))
    phase = rng.uniform(0, 2 * np.pi, (n_waves, n))
    amp = rng.standard_normal((n_waves, n))
    out = (amp[None] * np.sin(2 * np.pi * times[:, None, None] / per[None] + phase[None])).sum(1)
    return out / math.sqrt(n_waves / 2)


@dataclass
class SubjectEEG:
    """Simulated trials of one subject, ordered like ``specs``; each array is ``[128, L]`` float32."""

    filtered: list[np.ndarray]
    raw: list[np.ndarray]
    block: np.ndarray
    onset: np.ndarray


def simulate_subject(
    subject: int,
    specs: list[ImageSpec],
    lengths: np.ndarray,
    codes: WorldCodes,
    rng: np.random.Generator,
    *,
    block_drift: bool,
    params: SignalParams = SignalParams(),
) -> SubjectEEG:
    """All trials of one subject (one per image), in the order of ``specs``."""
    n = len(specs)
    chan = montage()
    labels = np.array([s.label for s in specs])
    n_classes = int(labels.max()) + 1
    images_per_class = max(1, n // n_classes)

    # Subject: mixing, SNR, latency, alpha frequency, its own part of the class code.
    src = codes.source_pos + 0.12 * rng.standard_normal(codes.source_pos.shape)
    src[:, 2] = np.abs(src[:, 2])
    src /= np.linalg.norm(src, axis=1, keepdims=True)
    mix = _topographies(chan, src, 0.45, rng.choice([-1.0, 1.0], N_SOURCES))
    noise_mix = _topographies(chan, _random_unit_points(rng, N_NOISE_SOURCES), 0.5, rng.choice([-1.0, 1.0], N_NOISE_SOURCES))
    noise_mix /= math.sqrt(N_NOISE_SOURCES / 4)
    alpha_topo = _topographies(chan, np.array([[0.0, -0.8, 0.6], [0.3, -0.85, 0.45], [-0.3, -0.85, 0.45]]), 0.4, np.ones(3))
    alpha_freq = float(rng.uniform(9.0, 11.5))
    latency = float(rng.uniform(-0.015, 0.015))
    amp = params.evoked_amp * SUBJECT_SNR.get(subject, 0.7)
    class_code = params.class_weight * (codes.class_code + params.subject_specific * rng.standard_normal(codes.class_code.shape))
    right_hemi = (src[:, 0] > 0).astype(float)  # sources over the right hemisphere

    # Session: presentation order, slow state, block state.
    onset, block = presentation_times(labels, rng, block_design=block_drift, block_size=images_per_class)
    log_gain = params.state_gain_log_sd * (_slow_process(rng, onset, 8) @ rng.standard_normal((8, N_CHANNELS)) / math.sqrt(8))
    drift = params.drift_uv * _slow_process(rng, onset, N_CHANNELS)
    drift_slope = params.drift_uv * _slow_process(rng, onset, N_CHANNELS) / 60.0  # per second within a trial
    offsets = params.offset_uv * rng.standard_normal(N_CHANNELS)
    if block_drift:
        n_blocks = int(block.max()) + 1
        smooth = _topographies(chan, _random_unit_points(rng, 6), 0.6, rng.choice([-1.0, 1.0], 6))  # [128, 6]
        block_gain = params.block_gain_log_sd * (rng.standard_normal((n_blocks, 6)) @ smooth.T) / math.sqrt(N_CHANNELS / 6)
        block_gain /= max(block_gain.std(), 1e-9) / params.block_gain_log_sd
        log_gain = log_gain + block_gain[block]
        drift = drift + params.block_offset_uv * rng.standard_normal((n_blocks, N_CHANNELS))[block]

    t = np.arange(GEN_LEN) / FS
    filtered: list[np.ndarray] = []
    raw: list[np.ndarray] = []
    for start in range(0, n, CHUNK):
        sl = slice(start, min(n, start + CHUNK))
        chunk = specs[sl]
        m = len(chunk)
        # Evoked source amplitudes [m, S, comp].
        code = class_code[labels[sl]].copy()
        code += params.colour_weight * codes.attr_code["colour"][[ATTRIBUTES["colour"].index(s.colour) for s in chunk]]
        code += params.background_weight * codes.attr_code["background"][[ATTRIBUTES["background"].index(s.background) for s in chunk]]
        side = np.array([np.sign(POSITIONS[s.position]) for s in chunk])  # -1 left, 0 centre, +1 right
        contra = np.where(side[:, None] < 0, right_hemi[None, :], np.where(side[:, None] > 0, 1 - right_hemi[None, :], 0.0))
        code[:, :, :2] += params.lateral_weight * contra[:, :, None]
        code += params.image_weight * codes.image_code[sl]  # specs are in image order
        code *= np.array([params.size_gain[ATTRIBUTES["size"].index(s.size)] for s in chunk])[:, None, None]
        bumps = _bumps(t, latency + 0.01 * rng.standard_normal(m))  # [m, comp, T], per-trial jitter
        sources = np.einsum("msc,mct->mst", code, bumps)
        evoked = amp * np.einsum("ks,mst->mkt", mix, sources)
        evoked -= evoked.mean(-1, keepdims=True)
        # Background.
        pink = np.einsum("kq,mqt->mkt", noise_mix, _pink(rng, (m, N_NOISE_SOURCES, GEN_LEN)))
        alpha_power = np.exp(0.4 * rng.standard_normal((m, 3)))
        alpha = np.einsum("kq,mqt->mkt", alpha_topo * 0.5, _alpha(rng, m * 3, alpha_freq).reshape(m, 3, GEN_LEN) * alpha_power[..., None])
        white = 0.3 * rng.standard_normal((m, N_CHANNELS, GEN_LEN))
        background = np.exp(log_gain[sl])[:, :, None] * (pink + alpha + white)
        clean = evoked + background
        slow = offsets[None, :, None] + drift[sl][:, :, None] + drift_slope[sl][:, :, None] * t[None, None, :]
        filt = bandpass(clean)
        for j, L in enumerate(lengths[sl]):
            filtered.append(filt[j, :, :L].astype(np.float32))
            raw.append((clean[j, :, :L] + slow[j, :, :L]).astype(np.float32))

    # Standardise the band-passed file per channel over the subject's session ("std").
    cat = np.concatenate(filtered, axis=1)
    mean, std = cat.mean(1, keepdims=True), cat.std(1, keepdims=True)
    filtered = [((x - mean) / std).astype(np.float32) for x in filtered]
    return SubjectEEG(filtered=filtered, raw=raw, block=block, onset=onset)
