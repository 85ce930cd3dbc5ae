"""Simulated EEG of the synthetic world: 128 channels at 1 kHz, with planted, named, known effects.

Generative model of one trial of subject ``s`` viewing image ``i`` of class ``c`` (the strengths
of :mod:`bench.world.effects` in brackets; each is a multiplier, 0 switches the term's information off)::

    x(t) = A_s @ (amp_s * e_{s,i}(t)) + B_s @ b_{s,i}(t) + g_s(t_i) * (N_s @ pink(t) + alpha(t) + white(t))  [+ drift_s(t_i)]

- ``e_{s,i}`` (phase-locked): three ERP components per source (about 110, 180 and 320 ms; Gaussian
  bumps, all energy below ~30 Hz) whose amplitudes are the class code [evoked_class] and an
  image-specific code; and, on 8 attribute sources of their own, an early component (65 ms, like the
  visual P1 that codes low-level features) whose amplitudes are the image's attribute codes (colour,
  background, size, left/right lateralisation) [attributes]. The attributes add to the EEG where the
  class code is not (other sources, another latency), so a class reader is not made to see past them.
  Each trial's evoked waveform is zero-mean, so trial means carry no stimulus.
- ``b_{s,i}`` (induced, not phase-locked): on 6 induced sources, bursts in three beta bands (15, 20
  and 25 Hz) with a random phase every trial, inside a 80-460 ms window; their amplitude is a class code
  [induced_class] (log-normal, with trial-to-trial variability). They vanish from the trial average
  and show in the amplitude spectrum.
- Sharing [shared]: every code (class, attribute, image, induced) and the source layout is
  ``sqrt(shared)`` common to all subjects plus ``sqrt(1 - shared)`` the subject's own.
- ``A_s``, ``B_s``: source-to-channel mixing (Gaussian topographies on a 128-channel hemispherical
  montage). ``amp_s``: subject SNR (:data:`SUBJECT_SNR`; subject 4 strongest, as in the paper).
- Background: spatially correlated 1/f^1.7 noise, a posterior alpha rhythm (subject-specific
  frequency, trial-varying power) and sensor noise, scaled by a slowly drifting state ``g_s``.
- The session: 0.5 s per trial, randomised order; with [block_drift] class blocks with 10 s blanks,
  each block with its own DC offsets and band-power gains (the block-design confound of the real
  set: offsets vanish under a 5 Hz high-pass, gains do not). A slow DC drift and electrode offsets
  enter the raw file only.

Random streams are keyed by (world seed, purpose, subject) and drawn whatever the strengths, so a
world and its null worlds share every noise realisation: they differ only in the switched-off term.

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
N_ATTR_SOURCES = 8  # the attribute code's own sources
N_NOISE_SOURCES = 40
COMPONENTS = ((0.110, 0.025), (0.180, 0.030), (0.320, 0.060))  # (latency s, width s) of the class code's ERP bumps
ATTR_COMPONENT = (0.065, 0.015)  # (latency s, width s) of the attribute code's bump ("P1")
CHUNK = 96  # trials simulated per vectorised chunk (fixed: part of the RNG stream)

# Subject SNR multipliers (subjects differ; subject 4 is the strongest, as in the paper's showcase).
SUBJECT_SNR = {1: 0.85, 2: 0.6, 3: 0.7, 4: 1.0, 5: 0.75, 6: 0.5}


@dataclass(frozen=True)
class SignalParams:
    """Scale of each term at strength 1 (dimensionless, relative to unit background noise)."""

    evoked_amp: float = 0.55
    subject_specific: float = 0.35  # extra subject-specific part of the class code (on top of `shared`)
    colour_weight: float = 0.5
    background_weight: float = 0.4
    lateral_weight: float = 0.8
    size_weight: float = 0.5
    image_weight: float = 0.35
    induced_amp: float = 0.5  # burst amplitude (units of the background noise std) before the class gain
    induced_log_sd: float = 0.6  # log-amplitude spread of the class code at induced_class = 1
    induced_trial_log_sd: float = 0.25  # trial-to-trial log-amplitude jitter (not class-related)
    layout_jitter: float = 0.12  # subject-specific jitter of the (shared part of the) source layout
    drift_uv: float = 3.0  # raw slow drift amplitude (units of the noise std)
    offset_uv: float = 5.0  # raw electrode offsets
    block_offset_uv: float = 4.0  # raw per-block DC offset (block_drift = 1)
    block_gain_log_sd: float = 0.35  # per-block log band-power gain (block_drift = 1)
    state_gain_log_sd: float = 0.1  # slow drift of the log gain (both designs)


N_INDUCED = 6
# (centre, sd) Hz of the induced bursts: beta, above most evoked energy (the ERP bumps sit below
# ~15 Hz) and below 30 Hz, so the audit's 30-95 Hz band-power probes stay stimulus-blind.
BANDS = ((15.0, 1.5), (20.0, 1.5), (25.0, 1.5))
BURST_WINDOW_S = (0.08, 0.46)


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
    """World-level latent codes (the shared part of every subject's codes)."""

    source_pos: np.ndarray  # [S, 3] evoked sources
    source_sign: np.ndarray  # [S] polarity of each source's topography
    induced_pos: np.ndarray  # [K, 3] induced sources
    attr_pos: np.ndarray  # [A, 3] attribute sources
    class_code: np.ndarray  # [40, S, 3]
    attr_code: dict[str, np.ndarray]  # colour/background/size: [n_values, A]
    image_code: np.ndarray  # [n_images, S, 3]
    induced_code: np.ndarray  # [40, K, B]


def world_codes(rng: np.random.Generator, n_images: int) -> WorldCodes:
    shape = (N_SOURCES, len(COMPONENTS))
    return WorldCodes(
        source_pos=_random_unit_points(rng, N_SOURCES),
        source_sign=rng.choice([-1.0, 1.0], N_SOURCES),
        induced_pos=_random_unit_points(rng, N_INDUCED),
        attr_pos=_random_unit_points(rng, N_ATTR_SOURCES),
        class_code=rng.standard_normal((40, *shape)),
        attr_code={k: rng.standard_normal((len(ATTRIBUTES[k]), N_ATTR_SOURCES)) for k in ("colour", "background", "size")},
        image_code=rng.standard_normal((n_images, *shape)),
        induced_code=rng.standard_normal((40, N_INDUCED, len(BANDS))),
    )


def _mix_shared(shared: float, common: np.ndarray, own: np.ndarray) -> np.ndarray:
    """``sqrt(shared) * common + sqrt(1 - shared) * own``: unit variance for any share."""
    return math.sqrt(shared) * common + math.sqrt(1.0 - shared) * own


def _layout(shared: float, common: np.ndarray, own: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Subject source positions: ``shared`` of the way to the common layout (jittered) from the subject's own."""
    p = shared * (common + jitter) + (1.0 - shared) * own
    p[:, 2] = np.abs(p[:, 2])
    return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-9)


def _bursts(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Band-limited noise, random phase, unit variance: ``[*shape, len(BANDS), GEN_LEN]``."""
    f = np.fft.rfftfreq(GEN_LEN, 1 / FS)
    spec = rng.standard_normal((*shape, len(BANDS), f.size)) + 1j * rng.standard_normal((*shape, len(BANDS), f.size))
    gains = np.stack([np.exp(-((f - c) ** 2) / (2 * sd**2)) for c, sd in BANDS])
    x = np.fft.irfft(spec * gains, n=GEN_LEN)
    return x / x.std(axis=-1, keepdims=True)


def burst_envelope() -> np.ndarray:
    """Hann window over :data:`BURST_WINDOW_S` (zero outside), ``[GEN_LEN]``."""
    t = np.arange(GEN_LEN) / FS
    lo, hi = BURST_WINDOW_S
    inside = (t >= lo) & (t <= hi)
    env = np.zeros(GEN_LEN)
    env[inside] = 0.5 - 0.5 * np.cos(2 * np.pi * (t[inside] - lo) / (hi - lo))
    return env


def _bumps(t: np.ndarray, shift: np.ndarray, components: tuple[tuple[float, float], ...] = COMPONENTS) -> np.ndarray:
    """ERP component waveforms ``[n, n_comp, T]`` for per-trial latency shifts ``[n]`` (seconds)."""
    out = np.empty((shift.size, len(components), t.size))
    for j, (lat, width) in enumerate(components):
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
    """Simulated trials of one subject, ordered like ``specs``, in ``[n, 128, GEN_LEN]`` float32 arrays
    (each trial valid up to its length); the filtered ones already standardised."""

    filtered: np.ndarray
    raw: np.ndarray
    block: np.ndarray
    onset: np.ndarray


def subject_streams(seed: int, subject: int) -> dict[str, np.random.Generator]:
    """Independent random streams of one subject (keyed by purpose, not by draw order)."""
    names = ("layout", "codes", "session", "trials", "block")
    return {n: np.random.default_rng(np.random.SeedSequence([seed, 0x5B, subject, k])) for k, n in enumerate(names)}


def simulate_subject(
    subject: int,
    specs: list[ImageSpec],
    lengths: np.ndarray,
    codes: WorldCodes,
    seed: int,
    *,
    strengths: dict[str, float],
    params: SignalParams = SignalParams(),
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> SubjectEEG:
    """All trials of one subject (one per image), in the order of ``specs``.

    ``strengths``: the world's effect strengths (:mod:`bench.world.effects`). ``out``: optional
    preallocated ``(filtered, raw)`` arrays ``[n, 128, GEN_LEN]`` (e.g. memory maps) to write into.
    """
    rs = subject_streams(seed, subject)
    n = len(specs)
    chan = montage()
    labels = np.array([s.label for s in specs])
    n_classes = int(labels.max()) + 1
    images_per_class = max(1, n // n_classes)
    shared = float(strengths["shared"])
    ev, ind, att, drift_on = (float(strengths[k]) for k in ("evoked_class", "induced_class", "attributes", "block_drift"))

    # Subject: layout, mixing, SNR, latency, alpha frequency; its codes (shared part + own part).
    rl = rs["layout"]
    src = _layout(shared, codes.source_pos, _random_unit_points(rl, N_SOURCES), params.layout_jitter * rl.standard_normal(codes.source_pos.shape))
    ind_src = _layout(shared, codes.induced_pos, _random_unit_points(rl, N_INDUCED), params.layout_jitter * rl.standard_normal(codes.induced_pos.shape))
    own_sign = rl.choice([-1.0, 1.0], N_SOURCES)
    sign = np.where(rl.random(N_SOURCES) < math.sqrt(shared), codes.source_sign, own_sign)  # shared polarity
    mix = _topographies(chan, src, 0.45, sign)
    ind_mix = _topographies(chan, ind_src, 0.4, rl.choice([-1.0, 1.0], N_INDUCED))
    noise_mix = _topographies(chan, _random_unit_points(rl, N_NOISE_SOURCES), 0.5, rl.choice([-1.0, 1.0], N_NOISE_SOURCES))
    noise_mix /= math.sqrt(N_NOISE_SOURCES / 4)
    alpha_topo = _topographies(chan, np.array([[0.0, -0.8, 0.6], [0.3, -0.85, 0.45], [-0.3, -0.85, 0.45]]), 0.4, np.ones(3))
    alpha_freq = float(rl.uniform(9.0, 11.5))
    latency = float(rl.uniform(-0.015, 0.015))
    attr_src = _layout(shared, codes.attr_pos, _random_unit_points(rl, N_ATTR_SOURCES), params.layout_jitter * rl.standard_normal(codes.attr_pos.shape))
    attr_mix = _topographies(chan, attr_src, 0.45, rl.choice([-1.0, 1.0], N_ATTR_SOURCES))
    amp = params.evoked_amp * SUBJECT_SNR.get(subject, 0.7)
    rc = rs["codes"]
    class_code = _mix_shared(shared, codes.class_code, rc.standard_normal(codes.class_code.shape))
    class_code = class_code + params.subject_specific * rc.standard_normal(codes.class_code.shape)
    attr_code = {k: _mix_shared(shared, v, rc.standard_normal(v.shape)) for k, v in codes.attr_code.items()}
    image_code = _mix_shared(shared, codes.image_code, rc.standard_normal(codes.image_code.shape))
    induced_code = _mix_shared(shared, codes.induced_code, rc.standard_normal(codes.induced_code.shape))
    right_hemi = (attr_src[:, 0] > 0).astype(float)  # attribute sources over the right hemisphere

    # Session: presentation order, slow state, block state.
    r_sess, r_block = rs["session"], rs["block"]
    onset, block = presentation_times(labels, r_sess, block_design=drift_on > 0, block_size=images_per_class)
    log_gain = params.state_gain_log_sd * (_slow_process(r_sess, onset, 8) @ r_sess.standard_normal((8, N_CHANNELS)) / math.sqrt(8))
    drift = params.drift_uv * _slow_process(r_sess, onset, N_CHANNELS)
    drift_slope = params.drift_uv * _slow_process(r_sess, onset, N_CHANNELS) / 60.0  # per second within a trial
    offsets = params.offset_uv * r_sess.standard_normal(N_CHANNELS)
    if drift_on > 0:
        n_blocks = int(block.max()) + 1
        smooth = _topographies(chan, _random_unit_points(r_block, 6), 0.6, r_block.choice([-1.0, 1.0], 6))  # [128, 6]
        block_gain = params.block_gain_log_sd * (r_block.standard_normal((n_blocks, 6)) @ smooth.T) / math.sqrt(N_CHANNELS / 6)
        block_gain *= drift_on * params.block_gain_log_sd / max(block_gain.std(), 1e-9)
        log_gain = log_gain + block_gain[block]
        drift = drift + drift_on * params.block_offset_uv * r_block.standard_normal((n_blocks, N_CHANNELS))[block]

    filtered, raw = out if out is not None else (np.zeros((n, N_CHANNELS, GEN_LEN), np.float32), np.zeros((n, N_CHANNELS, GEN_LEN), np.float32))
    t = np.arange(GEN_LEN) / FS
    env = burst_envelope()
    rt = rs["trials"]
    total = np.zeros(N_CHANNELS)
    total_sq = np.zeros(N_CHANNELS)
    count = 0
    for start in range(0, n, CHUNK):
        sl = slice(start, min(n, start + CHUNK))
        chunk = specs[sl]
        m = len(chunk)
        # Evoked source amplitudes: the class and image code [m, S, comp] ...
        code = ev * class_code[labels[sl]] + params.image_weight * image_code[sl]  # specs are in image order
        # ... and the attribute code on the attribute sources [m, A].
        a_code = sum(w * attr_code[k][[ATTRIBUTES[k].index(getattr(s, k)) for s in chunk]]
                     for k, w in (("colour", params.colour_weight), ("background", params.background_weight), ("size", params.size_weight)))
        side = np.array([np.sign(POSITIONS[s.position]) for s in chunk])  # -1 left, 0 centre, +1 right
        contra = np.where(side[:, None] < 0, right_hemi[None, :], np.where(side[:, None] > 0, 1 - right_hemi[None, :], 0.0))
        a_code = att * (a_code + params.lateral_weight * contra)
        shift = latency + 0.01 * rt.standard_normal(m)  # per-trial latency jitter
        sources = np.einsum("msc,mct->mst", code, _bumps(t, shift))
        attr_sources = a_code[:, :, None] * _bumps(t, shift, (ATTR_COMPONENT,))[:, 0][:, None, :]
        evoked = amp * (np.einsum("ks,mst->mkt", mix, sources) + np.einsum("ka,mat->mkt", attr_mix, attr_sources))
        evoked -= evoked.mean(-1, keepdims=True)
        # Induced bursts [m, K, B, T]: random phase, class-coded log-amplitude.
        log_a = ind * params.induced_log_sd * induced_code[labels[sl]] + params.induced_trial_log_sd * rt.standard_normal((m, N_INDUCED, len(BANDS)))
        bursts = _bursts(rt, (m, N_INDUCED)) * (params.induced_amp * np.exp(log_a))[..., None] * env
        induced = np.einsum("kq,mqt->mkt", ind_mix, bursts.sum(2)) * SUBJECT_SNR.get(subject, 0.7)
        # Background.
        pink = np.einsum("kq,mqt->mkt", noise_mix, _pink(rt, (m, N_NOISE_SOURCES, GEN_LEN)))
        alpha_power = np.exp(0.4 * rt.standard_normal((m, 3)))
        alpha = np.einsum("kq,mqt->mkt", alpha_topo * 0.5, _alpha(rt, m * 3, alpha_freq).reshape(m, 3, GEN_LEN) * alpha_power[..., None])
        white = 0.3 * rt.standard_normal((m, N_CHANNELS, GEN_LEN))
        background = np.exp(log_gain[sl])[:, :, None] * (pink + alpha + white)
        clean = evoked + induced + background
        slow = offsets[None, :, None] + drift[sl][:, :, None] + drift_slope[sl][:, :, None] * t[None, None, :]
        filt = bandpass(clean)
        filtered[sl] = filt
        raw[sl] = clean + slow
        for j, L in enumerate(lengths[sl]):
            total += filt[j, :, :L].sum(1)
            total_sq += (filt[j, :, :L] ** 2).sum(1)
            count += int(L)

    # Standardise the band-passed file per channel over the subject's session ("std").
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    for start in range(0, n, CHUNK):
        sl = slice(start, min(n, start + CHUNK))
        filtered[sl] = (filtered[sl] - mean[None, :, None].astype(np.float32)) / std[None, :, None].astype(np.float32)
    return SubjectEEG(filtered=filtered, raw=raw, block=block, onset=onset)
