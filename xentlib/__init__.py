"""xentlib: entropy, cross-entropy and the softmax losses, derived and tested.

The small NumPy library behind the course *Cross-Entropy, Derived*. Every public function takes
NumPy arrays (or anything :func:`numpy.asarray` accepts) or torch tensors and returns the same
kind; errors name the argument that was wrong.
"""

from .information import cross_entropy, entropy, kl_divergence
from .losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)
from .softmax import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax

__all__ = [
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "logsumexp",
    "softmax",
    "log_softmax",
    "sigmoid",
    "log_sigmoid",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
]
__version__ = "0.1.0"

from .focal import sigmoid_focal_loss, softmax_focal_loss  # noqa: E402  (issue 13)

__all__ += ["sigmoid_focal_loss", "softmax_focal_loss"]
from .calibration import expected_calibration_error, fit_temperature  # noqa: E402  (issue 13)

__all__ += ["expected_calibration_error", "fit_temperature"]
