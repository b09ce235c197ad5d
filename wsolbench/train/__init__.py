"""Training, the only package that knows mmengine's Runner: the engine, checkpoints,
weights (load and export) and the ``train`` section of a config.
"""
