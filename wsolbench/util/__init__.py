"""Small helpers every layer may use: torchvision compatibility, atomic writes, progress,
names, device resolution. They import nothing else of wsolbench.
"""
