"""A method's cost: measuring it (needs torch) apart from reading and printing it (does not).

One idea per module, each importing only those above it:

- :mod:`~wsolbench.cost.conditions`: what else ran while timing, and the clean rule (no torch);
- :mod:`~wsolbench.cost.formatting`: the counter's name, the marks and notes, a cost record in
  words (no torch: ``compare``, leaderboards and cost tables read records with it);
- :mod:`~wsolbench.cost.params`: parameter counts and the size of the inference weights;
- :mod:`~wsolbench.cost.macs`: the multiply-accumulate counter;
- :mod:`~wsolbench.cost.timing`: timed calls, latency, throughput and peak memory;
- :mod:`~wsolbench.cost.profile`: one method's whole cost record, every figure above;
- :mod:`~wsolbench.cost.genpromp`: GenPromp's inference graph, counted (cost only).

``wsolbench profile`` builds the method (:mod:`wsolbench.runs.profile`) and calls
:func:`~wsolbench.cost.profile.profile_method`.

This face imports none of them, so reading a record never loads the measuring side.
"""
