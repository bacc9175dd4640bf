"""xentlib: entropy, cross-entropy and the softmax losses, derived and tested.

The small NumPy library behind the course *Cross-Entropy, Derived*. Every public function takes
NumPy arrays (or anything :func:`numpy.asarray` accepts) or torch tensors and returns the same
kind; errors name the argument that was wrong.
"""

from .information import cross_entropy, entropy, kl_divergence

__all__ = ["entropy", "cross_entropy", "kl_divergence"]
__version__ = "0.1.0"
