"""An exponential moving average of the model's weights, for evaluation and prediction.

Beyond the paper. Asynchronous per-sample updates make the heads' weights noisy (a head steps on every sample it
receives); the average over the last ``~1 / (1 − decay)`` steps is a cheaper estimate of where they are heading
than the last iterate (Polyak & Juditsky 1992; the "model EMA" of many detection and classification recipes).
Training never reads the average: it is kept beside the model, saved in the checkpoint under ``ema/`` and swapped
in for evaluations (:meth:`WeightAverage.applied`).

Every floating-point parameter and buffer is averaged (BatchNorm's running statistics too, so they match the
averaged weights); integer buffers (BatchNorm's step counters) are copied. The decay warms up as
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early averages are not dominated by the random
initialisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ubernet.errors import DataError


class WeightAverage:
    """Shadow copies of ``model.state_dict()``'s floating tensors, updated by :meth:`update`.

    Args:
        model: the trained model (its state-dict keys and shapes are fixed from here on).
        decay: the per-update decay in ``[0, 1)``; 0 keeps a copy of the last weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"the weight average's decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next :meth:`update` applies (warm-up included)."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``shadow ← d · shadow + (1 − d) · weights`` for floating tensors, a copy for the others."""
        d = self.current_decay()
        floats_s, floats_m = [], []
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                floats_s.append(s)
                floats_m.append(v.detach().to(s.dtype))
            else:
                s.copy_(v)
        if floats_s:
            torch._foreach_lerp_(floats_s, floats_m, 1.0 - d)  # s + (1 - d) (v - s)
        self.updates += 1

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block, ``model`` holds the averaged weights; its own are restored afterwards (also on
        error)."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(saved)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        """Restore from a checkpoint's ``ema/`` tensors (the same model's keys and shapes)."""
        missing = sorted(set(self.shadow) - set(tensors))
        extra = sorted(set(tensors) - set(self.shadow))
        if missing or extra:
            raise DataError(f"the checkpoint's weight average does not fit the model (missing {missing[:3]}, "
                            f"unexpected {extra[:3]})")
        for k, s in self.shadow.items():
            if tuple(tensors[k].shape) != tuple(s.shape):
                raise DataError(f"the checkpoint's weight average has {k} of shape {tuple(tensors[k].shape)}, "
                                f"the model {tuple(s.shape)}")
            s.copy_(tensors[k])
        self.updates = int(updates)
