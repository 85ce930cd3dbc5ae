"""BrainVis (arXiv 2312.14871): EEG -> image reconstruction, and the EEG-CVPR40 data layer."""

__version__ = "0.1.0"
