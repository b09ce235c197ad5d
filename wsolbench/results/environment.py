"""What besides the record's method, config, protocol, data and seed made a result's numbers: the
code (commits), the libraries, the threads, the determinism settings and the hardware.

Every result carries it as ``env`` (:func:`environment`); ``wsolbench reproduce`` compares it
between the recorded run and its rerun to name what differs.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from wsolbench.util.names import FIRST_PARTY_PACKAGE

logger = logging.getLogger(__name__)


def _version_of(module: str, distribution: str) -> str | None:
    # An imported module knows its exact build (e.g. torch "2.13.0+cpu"); otherwise read the
    # installed distribution's metadata, which is cheap, instead of importing a heavy library.
    mod = sys.modules.get(module)
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _code_of(module_name: str) -> dict:
    """The code a module belongs to: its top-level package's commit or files digest
    (:func:`wsolbench.util.code_version.code_version`) and, when installed as a distribution,
    the distribution's name and version."""
    from wsolbench.util.code_version import code_version

    top = module_name.partition(".")[0]
    module = sys.modules.get(top)
    if module is None or getattr(module, "__file__", None) is None:
        return {}
    folder = Path(module.__file__).parent
    code = dict(code_version(folder))
    distributions = importlib_metadata.packages_distributions().get(top, [])
    if distributions:
        code["distribution"] = distributions[0]
        code["version"] = importlib_metadata.version(distributions[0])
    return code


def code_versions(method_module: str | None = None) -> dict:
    """``{package: {"commit", "dirty"} | {"files_sha256"}, ...}`` of wsolbench and of the
    package of ``method_module`` (a plugin's): the code a result's ``env["code"]`` names."""
    packages = ["wsolbench"] + ([method_module.partition(".")[0]] if method_module else [])
    return {top: _code_of(top) for top in dict.fromkeys(packages)}


#: wsolbench's own packages (the harness and its built-in methods) and their distribution: a
#: package of ``env["code"]`` that is none of them, nor from that distribution, is a plugin's
OWN_PACKAGES = ("wsolbench", FIRST_PARTY_PACKAGE)
OWN_DISTRIBUTION = "wsolbench"


def plugin_code(code: dict | None) -> dict[str, dict]:
    """The packages of an ``env["code"]`` record that are a plugin method's, not wsolbench's own
    (:data:`OWN_PACKAGES`, installed or run from a checkout), by package name."""
    return {
        package: entry or {}
        for package, entry in sorted((code or {}).items())
        if package not in OWN_PACKAGES and (entry or {}).get("distribution") != OWN_DISTRIBUTION
    }


def plugin_release(code: dict | None) -> str:
    """``wsolbench-has 0.2.0``: the distribution and version of each plugin package an
    ``env["code"]`` record names (:func:`plugin_code`); ``""`` for a built-in method, a plugin
    not installed as a distribution, or a record made before ``env["code"]``."""
    return ", ".join(
        f"{entry['distribution']} {entry['version']}"
        for entry in plugin_code(code).values()
        if entry.get("distribution") and entry.get("version")
    )


def _package_label(entry: dict) -> str:
    if "commit" in entry:
        return entry["commit"][:12] + (" with uncommitted changes" if entry.get("dirty") else "")
    return f"files {entry['files_sha256'][:12]}" if "files_sha256" in entry else "not recorded"


def code_label(code: dict | None) -> str:
    """The code in an ``env["code"]`` record, as notes show it: wsolbench's commit (12 digits,
    ``with uncommitted changes`` when the files differed from it) or its files' digest, then each
    plugin package's (:func:`plugin_code`) after its distribution and version
    (``… + wsolbench-has 0.1.0 0123456789ab``): an edited plugin is other code too."""
    labels = [_package_label((code or {}).get("wsolbench") or {})]
    for package, entry in plugin_code(code).items():
        name = " ".join(filter(None, (entry.get("distribution") or package, entry.get("version"))))
        labels.append(f"{name} {_package_label(entry)}")
    return " + ".join(labels)


def environment(method_module: str | None = None) -> dict:
    """Describe the code, software and hardware that produced a result: everything besides the
    record's method, config, protocol, data and seed that can move its numbers.

    Never imports a heavy library: versions of libraries not yet imported come from the installed
    package metadata. The CUDA device name is read only when torch is already imported.

    Args:
        method_module: the method class's module, whose package's code is recorded beside
            wsolbench's (a plugin's distribution and version, or its commit).

    Returns:
        ``{"python", "platform", "cpu_count", "cpu_model", "wsolbench", "numpy", "cv2", "torch",
        ..., "code": {package: {"commit", "dirty"} | {"files_sha256"}, ...}}``; a library that is
        not installed is absent; once torch is imported ``torch_threads``,
        ``torch_interop_threads`` and ``determinism`` (its deterministic-algorithm, cuDNN and
        TF32 settings); ``cuda_device`` only on a CUDA machine.
    """
    import wsolbench

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "wsolbench": wsolbench.__version__,
    }
    for module, dist in (
        ("numpy", "numpy"),
        ("cv2", "opencv-python"),
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("mmengine", "mmengine"),
        ("timm", "timm"),
        ("open_clip", "open-clip-torch"),
    ):
        version = _version_of(module, dist)
        if version is None and module == "cv2":
            version = _version_of(module, "opencv-python-headless")
        if version is not None:
            env[module] = version
    env["code"] = code_versions(method_module)
    torch = sys.modules.get("torch")
    if torch is not None:
        # the same seed and config with another thread count reduces floats in another order
        # and can end elsewhere: the counts are part of what made the numbers
        env["torch_threads"] = torch.get_num_threads()
        env["torch_interop_threads"] = torch.get_num_interop_threads()
        env["determinism"] = {
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            # TF32: on an Ampere or newer GPU, convolutions (cuDNN's default) and matmuls
            # ("high" precision) may run with 10-bit mantissas while tensors say float32
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "matmul_precision": torch.get_float32_matmul_precision(),
        }
        try:
            if torch.cuda.is_available():
                env["cuda_device"] = torch.cuda.get_device_name(0)
                env["cuda"] = torch.version.cuda
        except Exception as exc:  # a broken driver must not lose the result
            logger.debug("cannot query CUDA device: %s", exc)
    return env


#: the evaluation batch of run, eval and reproduce unless --batch-size says otherwise
DEFAULT_EVAL_BATCH_SIZE = 64
#: what a record made before a field was recorded holds for it: what every run then used
BEFORE_RECORDED = {"eval_batch_size": DEFAULT_EVAL_BATCH_SIZE}


def env_field(env: dict, dotted: str):
    """The value at a dotted path of a recorded ``env`` (``code.wsolbench.commit``); for a field
    recorded only since some version, :data:`BEFORE_RECORDED`'s value when absent; else None."""
    value: object = env
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return BEFORE_RECORDED.get(dotted) if value is None else value


# The env fields a rerun is compared on besides the code (:func:`code_fields`), in the order a
# difference most likely explains another number (reproduce names the first that differs).
ENV_FIELDS = (
    "torch_threads",
    "eval_batch_size",
    "device",
    "torch",
    "numpy",
    "cv2",
    "mmengine",
    "timm",
    "open_clip",
    "cpu_model",
    "cuda_device",
    "python",
    "world_size",
)


#: what names a package's code in ``env["code"]`` (:func:`code_versions`), compared in this order
CODE_KEYS = ("commit", "dirty", "files_sha256", "version")


def code_fields(recorded: dict, here: dict) -> list[str]:
    """``code.<package>.<key>`` of every package either record's code names — wsolbench's, then
    a plugin method's — for each of :data:`CODE_KEYS` either record has: a plugin edited since
    its run is a difference like wsolbench's own commit."""
    code_a, code_b = recorded.get("code") or {}, here.get("code") or {}
    fields = []
    for package in sorted(set(code_a) | set(code_b), key=lambda name: (name != "wsolbench", name)):
        keys = set(code_a.get(package) or {}) | set(code_b.get(package) or {})
        fields += [f"code.{package}.{key}" for key in CODE_KEYS if key in keys]
    return fields


def env_changes(recorded: dict, here: dict) -> list[str]:
    """``"<field>: <recorded> recorded, <value> here"`` for each code field (:func:`code_fields`)
    and each of :data:`ENV_FIELDS` that differs between two ``env`` records."""
    lines = []
    for field in [*code_fields(recorded, here), *ENV_FIELDS]:
        was, now = env_field(recorded, field), env_field(here, field)
        if was != now:
            shown = "not recorded" if was is None else f"{was!r} recorded"
            lines.append(f"{field}: {shown}, {now!r} here")
    return lines
