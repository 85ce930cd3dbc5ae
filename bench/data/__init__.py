"""The data stage: dataset files on disk -> one subject's train / val / test trials.

:mod:`bench.data.eegcvpr40` reads the EEG-CVPR40 release format (the real dataset and the synthetic
worlds share it), :mod:`bench.data.classes` holds its 40 classes, :mod:`bench.data.check` validates a
dataset folder, :mod:`bench.data.captions` caches caption-model output per image.
"""
