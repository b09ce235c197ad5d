"""Device check, inference: every method profiled in fp32 and under AMP, and GenPromp's graph timed.

Step 1: each method of ``--methods`` built for ``--dataset`` (pretrained loading off, random
weights: cost does not depend on them) and measured by
:func:`wsolbench.cost.profile.profile_method` — MACs, batch-1 latency, throughput and peak memory at
the batch, and the timing conditions. Step 4: with ``diffusers`` installed, on CUDA and not
``--quick``, GenPromp's inference graph (:mod:`wsolbench.cost.genpromp`, random weights) timed
per image at batch 1 in float16. Imported by ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from gpu_check_budget import Clock, amp_dtype, sync

from wsolbench.cost.conditions import TimingMonitor
from wsolbench.cost.profile import ProfileSettings, profile_method
from wsolbench.runs.profile import build_for_profile


def profile_all(args, device: torch.device, clock: Clock, say, record: dict, attempt) -> None:
    """Profile every method of ``args.methods`` in fp32 and under AMP into
    ``record["inference"]``, each through ``attempt`` (which records a failure and saves the
    record after each); one over the budget goes to ``record["skipped"]``."""
    runs = (1, 3) if args.quick else (10, 50)
    for name in args.methods:
        for amp in ("none", amp_dtype(device)):
            if not clock.fits(5 if args.quick else 30):
                record["skipped"].append(f"profile {name} amp={amp}: over the time budget")
                continue
            say(f"profile {name} (amp {amp})")

            def one(name=name, amp=amp) -> None:
                method, protocol, _ = build_for_profile(name, args.dataset)
                settings = ProfileSettings(
                    warmup=runs[0],
                    runs=runs[1],
                    batch_size=args.batch_size,
                    throughput_warmup=1 if args.quick else 2,
                    throughput_runs=1 if args.quick else 5,
                    amp=amp,
                    threads=1 if device.type == "cpu" else None,
                )
                try:
                    cost = profile_method(
                        method, protocol.eval_size, protocol.num_classes, device, settings
                    )
                    record["inference"].append({"method": name, "protocol": protocol.id, **cost})
                finally:
                    del method
                    if device.type == "cuda":
                        torch.cuda.empty_cache()

            attempt(f"profile {name} amp={amp}", one)


def time_genpromp(args, device: torch.device, clock: Clock, say) -> dict | None:
    if args.quick or device.type != "cuda":
        return {"skipped": "only on CUDA without --quick (1.1 B parameters, 1.5 TMACs per image)"}
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return {"skipped": "diffusers not installed (pip install -e '.[genpromp-cost]')"}
    if not clock.fits(90):
        return {"skipped": "over the time budget"}
    from wsolbench.cost import genpromp as g

    say("GenPromp graph (random weights, float16)")
    modules = {k: m.to(torch.float16) for k, m in g.build(200, device).items()}
    image = torch.randn(1, 3, g.IMAGE_SIZE, g.IMAGE_SIZE, device=device, dtype=torch.float16)
    crops = torch.randn(1, 3, g.CLASSIFIER_SIZE, g.CLASSIFIER_SIZE, device=device)
    ids = torch.randint(0, 49408, (1, g.CONTEXT), device=device)
    t = torch.tensor([99], device=device)

    @torch.no_grad()
    def one_image():
        latents = modules["vae_encoder"](image)
        text = sum(modules["text_encoder"](ids) for _ in range(g.TEXT_CALLS_PER_ROUND))
        for _ in range(g.UNET_CALLS_PER_ROUND):
            modules["unet"](latents, t, text.to(torch.float16))
        modules["classifier"](crops.to(torch.float16))

    for _ in range(3):
        one_image()
    sync(device)
    times = []
    with TimingMonitor(1) as monitor:
        for _ in range(10):
            start = time.perf_counter()
            one_image()
            sync(device)
            times.append(time.perf_counter() - start)
    return {
        "latency_ms_median": 1e3 * float(np.median(times)),
        "runs": 10,
        "warmup": 3,
        "what": "one round + classifier per image, batch 1, float16, as counted in cost.md",
        "timing_conditions": monitor.conditions,
    }
