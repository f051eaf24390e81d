"""funcsim: does the compressed model still compute the same function as the original?"""

from __future__ import annotations

__version__ = "0.1.0"
