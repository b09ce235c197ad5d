"""Datasets: the metadata format of the reference evaluator (read, checked, written), converters
from CUB and ILSVRC, the dataset sources and their registry, and the built-in synthetic world.
"""
