"""Building blocks shared by methods: backbones (:mod:`wsolbench.blocks.backbones`), CLIP models and
their weights, prompts and towers (``clip_*``, :mod:`~wsolbench.blocks.open_clip_configs`), and
synthclip-v1, wsolbench's own CLIP of the synthetic world (:mod:`~wsolbench.blocks.synthclip`).

wsolbench's own methods (``methods/``) and third-party plugins import them alike; importing a block
imports no method.
"""
