"""Per-task loss weighting: fixed gamma_t (paper Eq. 1) or learned homoscedastic uncertainty.

Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018) learns one log-variance ``s_t`` per task and uses
``gamma_t * exp(-s_t) * L_t + s_t``: a task whose loss stays large is automatically down-weighted, and the
``+ s_t`` term keeps the weights from collapsing to zero. Each ``s_t`` belongs to its task's parameter group,
so it is updated by the asynchronous rule together with that task's head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


class UncertaintyWeighting(nn.Module):
    """Learned log-variances ``s_t`` (initialised to 0, i.e. weight 1), one per task."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in tasks})

    def weigh(self, task: str, gamma: float, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        s = self.log_vars[task]
        return gamma * torch.exp(-s) * sum(losses.values()) + s  # type: ignore[operator]

    def weights(self) -> dict[str, float]:
        """Current effective multipliers ``exp(-s_t)`` (for logging)."""
        return {t: float(torch.exp(-p.detach())) for t, p in self.log_vars.items()}
