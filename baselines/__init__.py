"""Baselines and reference rows of the benchmark; importing this package registers them all.

One model per module, braindecode-style constructors ``Model(n_chans, n_outputs, n_times, **hp)``:

- ``lstm`` (:mod:`baselines.lstm`): Spampinato et al. 2017 / Brain2Image LSTM encoder;
- ``channelnet`` (:mod:`baselines.channelnet`): EEG-ChannelNet (Palazzo et al. 2020);
- ``eegnet``, ``shallowconvnet`` (:mod:`baselines.braindecode_models`): braindecode's models as shipped;
- ``dreamdiffusion`` (:mod:`baselines.dreamdiffusion`): MAE-pretrained EEG conditioning, single stage;
- reference rows (:mod:`baselines.reference`): ``oracle_caption``, ``oracle_label``,
  ``brainvis_stage2_true``, ``brainvis_stage2_random``.

Hyperparameters live in ``bench/profiles/{paper,mini}.toml`` (one section per method).
"""

from baselines import braindecode_models, channelnet, dreamdiffusion, lstm, reference  # noqa: F401

CLASSIFY_THEN_DRAW = ("lstm", "channelnet", "eegnet", "shallowconvnet")
REFERENCE_ROWS = ("oracle_caption", "oracle_label", "brainvis_stage2_true", "brainvis_stage2_random")
