"""AALR: the Automated Adaptive Learning Rate tuner, for PyTorch.

``AALR`` binds the decision machine (:mod:`aalr.policy`) to a model and an optimizer; by default
it runs the recommended rules, AALR+ (``rules="plus"``); ``rules="paper"`` is Algorithm 1 of the
ICLR 2020 submission exactly. ``mean_loss`` measures the initial loss it starts from. The
Lightning callback lives in :mod:`aalr.lightning`, the Hugging Face Trainer callback in
:mod:`aalr.hf`; each is imported only when asked for.
"""

from aalr.loss import mean_loss
from aalr.policy import RULES, AALRConfig, AALRPolicy, Decision
from aalr.tuner import AALR

__version__ = "0.1.0"
__all__ = ["AALR", "RULES", "AALRConfig", "AALRPolicy", "Decision", "__version__", "mean_loss"]
