"""Hide-and-Seek (Singh & Lee, ICCV 2017) as a wsolbench method plugin (``has``).

wsolbench finds it through the entry point this package declares in its ``pyproject.toml``
(group ``wsolbench.methods``); importing :mod:`wsolbench_has.method` registers it.
"""
