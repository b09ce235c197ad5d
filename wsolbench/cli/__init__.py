"""The command line: one module per command family (``wsolbench run``, ``compare``, ...).
Parsing and printing only; the work is done by the packages below.
"""
