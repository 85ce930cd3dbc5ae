"""BrainVis networks (arXiv 2312.14871): time and frequency encoders, fusion classifier, alignment.

EEG enters every encoder as ``[B, 128, 440]`` (channels x time), on any device.
"""

from brainvis.models.alignment import AlignmentNet, alignment_loss
from brainvis.models.freq_encoder import FreqEncoder
from brainvis.models.fusion import BrainVisEncoder, FusionClassifier
from brainvis.models.time_encoder import CrossAttentionBlock, TimeEncoder

__all__ = [
    "AlignmentNet",
    "BrainVisEncoder",
    "CrossAttentionBlock",
    "FreqEncoder",
    "FusionClassifier",
    "TimeEncoder",
    "alignment_loss",
]
