"""A recorded run's command rebuilt from its record: the method to run, its protocol, its config
as ``-o`` overrides (this machine's folders in place of the recording machine's), the device.
``reproduce`` reruns a result with them, and the runs whose weights it loaded
(:mod:`wsolbench.runs.input_runs`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from wsolbench.config import dotted_leaves
from wsolbench.protocol import Protocol, ProtocolError, load_protocol, protocol_from_snapshot
from wsolbench.results.grouping import is_local_key
from wsolbench.results.workdir import RECORD_FILE
from wsolbench.runs.context import RunError

logger = logging.getLogger(__name__)


def config_overrides(config: dict) -> list[str]:
    """A resolved config as ``-o KEY=VALUE`` overrides, one per top-level key (values in YAML
    flow form, as ``-o`` parses them). A section given whole is applied key by key as the
    method's defaults type it, an open mapping (``backbone.kwargs``, ``{}`` by default) and a
    section of another ``type`` taken whole: dotted leaves would name keys those lack."""
    return [
        f"{key}={yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()}".removesuffix(
            "\n..."
        )
        for key, value in config.items()
    ]


def record_protocol(record: dict, where: Path) -> Protocol | str:
    """The protocol a run was made under: the shipped one of its id when the hash agrees, else
    the copy its record (``config.yaml``) holds.

    Args:
        record: ``protocol``, ``protocol_hash`` and ``protocol_spec`` (absent or None when it
            holds no copy).
        where: the result or record named in an error.
    """
    protocol_id, protocol_hash = record["protocol"], record["protocol_hash"]
    try:
        if load_protocol(protocol_id).hash == protocol_hash:
            return protocol_id
    except ProtocolError:
        pass
    if record.get("protocol_spec") is None:
        raise RunError(
            f"{where}: protocol {protocol_id} (hash {protocol_hash[:12]}) is not shipped with "
            f"this wsolbench, and neither the result (made before it held its protocol) nor a "
            f"{RECORD_FILE} beside it holds it; reproduce from the run's work dir"
        )
    protocol = protocol_from_snapshot(record["protocol_spec"], where)
    if protocol.hash != protocol_hash:
        raise RunError(f"{where}: the protocol in {RECORD_FILE} is not the result's (hash differs)")
    return protocol


def record_method(name: str, source: str | None, env: dict | None = None) -> str:
    """The method to rerun: its registered name, else where the run's record says its class
    lives (``source``: a method run as ``--method pkg.module:Class``).

    Raises:
        KeyError / PluginError: neither is here; the message names the plugin code the run's
            ``env["code"]`` recorded (distribution and version, or package and files digest), so
            that the user knows what to install.
    """
    from wsolbench.registry import get_method

    try:
        get_method(name)
        return name
    except KeyError as exc:
        if source is None:
            raise type(exc)(f"{exc.args[0]}{_recorded_plugins(env)}") from None
    try:
        get_method(source)
    except (KeyError, ImportError) as exc:
        raise type(exc)(f"{exc.args[0]}{_recorded_plugins(env)}") from None
    return source


def _recorded_plugins(env: dict | None) -> str:
    """``"; the run was made with the plugin wsolbench-gapmax 0.2.0: install it here"``, from a
    record's ``env["code"]`` (empty when it names no plugin)."""
    plugins = []
    for package, code in sorted(((env or {}).get("code") or {}).items()):
        if package == "wsolbench":
            continue
        if code.get("distribution"):
            plugins.append(f"{code['distribution']} {code.get('version', '')}".strip())
        else:
            digest = code.get("commit") or code.get("files_sha256") or ""
            plugins.append(f"the package {package!r} ({digest[:12]})")
    if not plugins:
        return ""
    return (
        f"; the run was made with the plugin {', '.join(plugins)}: install it here (or put its "
        "folder on PYTHONPATH) and reproduce again"
    )


def record_device(env: dict, where: Path) -> str:
    """The recorded device, or ``cpu`` when it was a GPU this machine lacks."""
    device = str(env.get("device", "cpu"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            logger.warning(
                "%s was made on %s; this machine has no GPU: rerun on the CPU", where, device
            )
            return "cpu"
    return device


def with_leaf(config: dict, key: str, value) -> dict:
    """A copy of a nested config with the dotted leaf ``key`` set to ``value``."""
    head, _, rest = key.partition(".")
    return {**config, head: with_leaf(config[head], rest, value) if rest else value}


def local_defaults(config: dict, method: str, dataset: str) -> dict:
    """``config`` with each folder of the recording machine (``text.cache_dir``:
    :func:`~wsolbench.results.grouping.is_local_key`) set to the method's preset value: this
    machine's own place, which does not change the numbers.

    Args:
        method: a registered name or ``module:Class`` (:func:`record_method`).
    """
    from wsolbench.config import resolve_config
    from wsolbench.registry import get_method

    local = [key for key in dotted_leaves(config) if is_local_key(key)]
    if not local:
        return config
    preset = dotted_leaves(resolve_config(get_method(method), dataset))
    for key in local:
        if key in preset:  # (one under an open mapping has no default to take)
            config = with_leaf(config, key, preset[key])
    return config
