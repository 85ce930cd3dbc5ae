"""The planted effects of a synthetic world: one place that names each effect, its default strength,
its off switch, what should find it, and the known answer a correct method gives.

A world's :class:`~bench.world.spec.WorldSpec` holds one strength per effect (``0`` = off). The
*null world* of an effect is the default world with that one strength set to 0; everything else,
random streams included, is the same, so the two worlds differ only in the switched-off term.

The strengths are dimensionless multipliers of the terms in :mod:`bench.world.eeg`:

- ``evoked_class``: the phase-locked class code (ERP source amplitudes per class); what a
  time-domain encoder finds. Off: the ERPs stay, but carry no class.
- ``induced_class``: a non-phase-locked class code: per class, the power of beta bursts (15,
  20 and 25 Hz, random phase every trial) on a few induced sources. It averages out of the
  trial mean and lives in the amplitude spectrum; what an FFT-amplitude branch finds. Off: the
  bursts stay, at a power that does not depend on the class.
- ``attributes``: colour, background, size and left/right position of the image, coded on 8
  attribute sources of their own in an early component (65 ms, like the visual P1), apart from the
  class code's sources and latencies (the captions always state the attributes, the class label never
  does); what the caption half of BrainVis' semantic interpolation can add. Default 3. In generator 2
  they sat in the class code's own components and scaled it (size as a gain): at 3 the time branch
  lost the class code among them (time branch alone 0.045 on the induced null world against 0.525
  at 1), at 1 a class-trained encoder kept none of them. The check reads the stage-1 images: stage 2
  redraws them from the class prompt at strength 0.85, which keeps little of any attribute. Off: the
  EEG says nothing about attributes.
- ``shared``: the share of every code (class, image, induced) and of the source layout common to
  all subjects (the rest is each subject's own); what makes other subjects' labelled trials useful
  for training the branches. Off: subjects share nothing. It is *not* what makes unlabelled EEG
  useful for pretraining: the world's unlabelled-structure probe (a linear reader on the top
  principal components of unlabelled EEG) gains as much from the subject's own EEG as from all
  subjects', and as much on the ``shared = 0`` world (default world, subject 4, full data: raw
  0.460, own 0.705, pooled 0.685; shared off: 0.450, 0.665, 0.655). Every world carries that
  structure (a few sources in many channels); no switch removes it yet, so the pretraining check of
  the ``known_answers`` grid expects the same gain on this effect's null world (``null = "gain"``).
- ``block_drift``: block design (class blocks, 10 s blanks) with block-specific DC offsets and
  band-power gains: the confound of the real set, for the leakage audit. Off (the default):
  randomised presentation order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Effect:
    name: str
    default: float  # strength in the default world (0: off by default)
    description: str
    found_by: str  # what should recover it
    check: str  # the known-answer comparison of the known_answers grid ("" if none)
    expected: str  # the known answer, on the planted world and on its null world


EFFECTS: dict[str, Effect] = {
    e.name: e
    for e in (
        Effect(
            "evoked_class", 1.0, "phase-locked class code in the ERP components (110, 180, 320 ms)",
            "a time-domain encoder (BrainVis' masked-modeling branch, EEGNet, ...)",
            "brainvis [full] - brainvis [no_time], top-1",
            "planted: removing the time branch lowers top-1; null: no change",
        ),
        Effect(
            "induced_class", 1.0, "non-phase-locked beta band power (15, 20, 25 Hz bursts, random phase) coding the class",
            "the FFT-amplitude branch (BrainVis' frequency encoder)",
            "brainvis [full] - brainvis [no_freq], top-1",
            "planted: removing the frequency branch lowers top-1; null: no change",
        ),
        Effect(
            "attributes", 3.0, "colour, background, size and position of the image in an early ERP component on sources of their own (and in the captions)",
            "the caption half of the semantic interpolation (w > 0)",
            "brainvis w=0.5 - brainvis w=0, attribute fidelity of the stage-1 images",
            "planted: w = 0.5 draws the image's attributes more often than w = 0 in the cascade's semantic stage; null: no change",
        ),
        Effect(
            "shared", 0.8, "share of the codes and source layout common to all subjects",
            "branches trained on every subject's trials",
            "brainvis [all_subjects] - brainvis [full], top-1",
            "planted: branches trained on all subjects raise top-1; null (nothing shared): no gain. Not an answer for pretraining: "
            "a pretext on unlabelled EEG can gain from the subject's own EEG alone (the unlabelled-structure probe), shared or not",
        ),
        Effect(
            "block_drift", 0.0, "class-block presentation with block-specific DC offsets and band-power gains",
            "stimulus-blind probes of the leakage audit; block-reading classifiers",
            "",
            "on: the audit flags leakage and block-reading methods gain; off: no flag",
        ),
    )
}


def effect_table() -> list[dict]:
    """The registry as plain rows (world card, `bench world show`)."""
    return [{"effect": e.name, "default": e.default, "description": e.description, "found_by": e.found_by, "check": e.check, "expected": e.expected} for e in EFFECTS.values()]
