"""TeD-Loc: text distillation for WSOL (Murtaza et al., arXiv 2501.12632), a reconstruction."""

from methods.tedloc.method import TeDLoc

__all__ = ["TeDLoc"]
