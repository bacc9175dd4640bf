"""Make tests/reference.py importable as `reference` from every test module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
