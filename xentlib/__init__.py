"""xentlib: entropy, cross-entropy and the softmax losses, derived and tested.

The small NumPy library behind the course *Cross-Entropy, Derived*. Every public function takes
NumPy arrays (or anything :func:`numpy.asarray` accepts) or torch tensors and returns the same
kind (``chunked_linear_cross_entropy``, for language-model-sized vocabularies, takes torch tensors
only); errors name the argument that was wrong.
"""

from . import reference
from .calibration import expected_calibration_error, fit_temperature
from .chunked import chunked_linear_cross_entropy
from .focal import sigmoid_focal_loss, softmax_focal_loss
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
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "expected_calibration_error",
    "fit_temperature",
    "chunked_linear_cross_entropy",
]
__version__ = "0.2.0"
