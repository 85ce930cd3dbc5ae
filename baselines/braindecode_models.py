"""Standard EEG classifiers from braindecode (used as shipped, not re-implemented): EEGNet, ShallowConvNet.

- ``eegnet``: ``braindecode.models.EEGNet`` (EEGNet-v4 of Lawhern et al., J. Neural Eng. 2018).
- ``shallowconvnet``: ``braindecode.models.ShallowFBCSPNet`` (Schirrmeister et al., Hum. Brain Mapp. 2017).

Both are built with ``n_chans=128, n_outputs=40, n_times=440`` plus the profile's keyword arguments
(any constructor argument of the braindecode class may appear in the profile section). braindecode
is imported only when a model is built (importing it costs seconds), so registering these methods is
cheap. Trained like the other classification baselines (dataset authors' protocol, best validation
accuracy kept), then the predicted class prompt is drawn.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from baselines.common import ClassifyThenDraw, resolve_config
from bench.methods.signal import Decimate, decimated_length
from bench.methods.base import register_method


class BraindecodeBaseline(ClassifyThenDraw):
    cost = 2.0
    """A braindecode model class named ``model_class``. Any constructor argument of that class may
    appear in the profile section (or the trial options) and is passed on; arguments not given keep
    braindecode's defaults (the fit report records only the given ones)."""

    model_class: ClassVar[str]
    FIXED: ClassVar[tuple[str, ...]] = ("n_chans", "n_outputs", "n_times", "chs_info", "input_window_seconds", "sfreq")

    @classmethod
    def model_cls(cls):
        import braindecode.models

        return getattr(braindecode.models, cls.model_class)

    @classmethod
    def model_keys(cls) -> list[str]:
        import inspect

        params = inspect.signature(cls.model_cls()).parameters.values()
        return [p.name for p in params if p.name not in cls.FIXED and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The training protocol plus every constructor argument of the braindecode class at
        braindecode's own default."""
        import inspect

        params = inspect.signature(cls.model_cls()).parameters
        return {**cls.train_defaults, **{k: params[k].default for k in cls.model_keys() if params[k].default is not inspect.Parameter.empty}}

    @classmethod
    def config(cls, section: dict, options: dict | None = None) -> dict[str, Any]:
        unset = object()
        cfg = resolve_config({**cls.train_defaults, **dict.fromkeys(cls.model_keys(), unset)}, section, options, cls.name)
        return {k: v for k, v in cfg.items() if v is not unset}

    @classmethod
    def make_network(cls, cfg: dict[str, Any], n_chans: int, n_outputs: int, n_times: int) -> nn.Module:
        k = int(cfg.get("decimate", 1))
        kwargs = {key: value for key, value in cfg.items() if key not in cls.train_defaults}
        model = cls.build_model(n_chans, n_outputs, decimated_length(n_times, k), **kwargs)
        return nn.Sequential(Decimate(k), model) if k > 1 else model

    @classmethod
    def build_model(cls, n_chans: int, n_outputs: int, n_times: int, **kwargs) -> nn.Module:
        return cls.model_cls()(n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, **kwargs)


@register_method
class EEGNetBaseline(BraindecodeBaseline):
    name = "eegnet"
    description = "braindecode EEGNet (v4: temporal conv, depthwise spatial conv, separable conv) -> 40-way classifier; draws the predicted class prompt."
    source = "Lawhern et al., EEGNet, J. Neural Eng. 2018 (braindecode.models.EEGNet)"
    model_class = "EEGNet"


@register_method
class ShallowConvNetBaseline(BraindecodeBaseline):
    name = "shallowconvnet"
    description = "braindecode ShallowFBCSPNet (temporal conv, spatial conv, square, mean-pool, log) -> 40-way classifier; draws the predicted class prompt."
    source = "Schirrmeister et al., Deep learning with convolutional neural networks for EEG decoding, Hum. Brain Mapp. 2017 (braindecode.models.ShallowFBCSPNet)"
    model_class = "ShallowFBCSPNet"
