"""wsolbench: a benchmark harness for weakly supervised object localization (WSOL).

The harness owns the evaluation protocol (threshold sweeps, MaxBoxAccV2, MaxBoxAcc, GT-known / Top-1
/ Top-5 Loc, PxAP); a method owns only how it learns and what map it predicts.

Importing this package is cheap on purpose: it imports no method, no torch and no model library.
Import the submodules you need (``wsolbench.metrics``, ``wsolbench.registry``, ...).
"""

__version__ = "0.1.0"
