"""A benchmark's grid of runs: methods × datasets × seeds × variants, each cell exactly one
``wsolbench run --resume`` in a deterministic work dir, executed through submitit (in-process,
as local processes a few slots at a time, or as one SLURM job array) and summarised in one table
and ``sweep.json``. wsolbench schedules nothing itself beyond bounding the local slots.
"""
