"""AALR: the Automated Adaptive Learning Rate tuner (Algorithm 1 of the ICLR 2020 submission).

``AALR`` binds the decision machine (:mod:`aalr.policy`) to a model and an optimizer.
The Lightning callback lives in :mod:`aalr.lightning` and is imported only when asked for.
"""

from aalr.policy import AALRConfig, AALRPolicy, Decision
from aalr.tuner import AALR

__version__ = "0.1.0"
__all__ = ["AALR", "AALRConfig", "AALRPolicy", "Decision", "__version__"]
