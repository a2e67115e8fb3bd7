"""ubernet: one network for many vision tasks (UberNet, Kokkinos CVPR 2017), trained on partially labelled
dataset unions with training memory independent of the number of tasks."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
