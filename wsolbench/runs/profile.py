"""``wsolbench profile``: build a registered method for a dataset (no training, no pretrained
weights) and measure its cost with :func:`wsolbench.cost.profile.profile_method`."""

from __future__ import annotations

from collections.abc import Callable

from wsolbench.cost.profile import ProfileSettings, profile_method


def build_for_profile(
    method_name: str,
    dataset: str,
    protocol: str | None = None,
    overrides: list[str] | None = None,
):
    """Build a registered method for profiling: its ``dataset`` config, pretrained loading off.

    Returns:
        (method, protocol, config): the method (random initialisation, seed 0), the resolved
        protocol and the resolved config.
    """
    from wsolbench.config import resolve_config, without_pretrained
    from wsolbench.data.sources import get_dataset
    from wsolbench.protocol import protocol_for_dataset as resolve_protocol
    from wsolbench.registry import get_method
    from wsolbench.runs.rebuild import build_with_weights

    method_cls = get_method(method_name)
    get_dataset(dataset)  # a misspelt name: close matches (before "no protocol for dataset")
    resolved = resolve_protocol(dataset, protocol)
    config = without_pretrained(method_cls, resolve_config(method_cls, dataset, overrides))
    return build_with_weights(method_cls, config, resolved, 0, None), resolved, config


def profile(
    method_name: str,
    dataset: str = "cub",
    *,
    protocol: str | None = None,
    overrides: list[str] | None = None,
    device: str = "auto",
    settings: ProfileSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """``wsolbench profile``: build ``method_name`` for ``dataset`` (no training, no pretrained
    weights) and measure its cost at the protocol's evaluation size.

    Returns:
        The cost block (:func:`profile_method`) plus ``method``, ``dataset``, ``protocol``, the
        resolved ``config``, and when and with what it was measured: ``measured`` (UTC, ISO
        8601) and ``env`` (:func:`wsolbench.results.environment.environment`: the code's commit,
        the libraries, the CPU), so that two records of one method can be told apart.
    """
    from datetime import datetime, timezone

    from wsolbench.results.environment import environment
    from wsolbench.util.device import resolve_device

    method, resolved, config = build_for_profile(method_name, dataset, protocol, overrides)
    cost = profile_method(
        method,
        resolved.eval_size,
        resolved.num_classes,
        device=resolve_device(device),
        settings=settings,
        progress=progress,
    )
    return {
        "method": method_name,
        "dataset": dataset,
        "protocol": resolved.id,
        "config": config,
        **cost,
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "env": environment(type(method).__module__),
    }
