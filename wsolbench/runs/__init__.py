"""One run of a method: resolve, lock, execute, rebuild a method from a run folder,
visualize it, and the ``profile`` command.
"""
