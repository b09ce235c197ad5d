"""The protocol file of a generated synthetic set: synthetic-v1's rules pinned to its data."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from wsolbench.data.synthetic.config import SPLITS, SyntheticConfig

PROTOCOL_FILE = "protocol.yaml"


def write_protocol(root: str | Path, config: SyntheticConfig) -> Path:
    """Write ``<root>/protocol.yaml``: the protocol of a synthetic set made with ``config``
    (:func:`generate` calls it).

    ``synthetic-v1`` pins the data of its own generator settings, so a set generated with other
    settings is run under this file instead (``--protocol <root>/protocol.yaml``): synthetic-v1's
    rules at this set's image size and class count, its own class names, and the fingerprint of
    exactly this data pinned, so results of the two are never mixed up.

    Returns:
        The protocol file's path.
    """
    import yaml

    from wsolbench.data.fingerprint import data_fingerprint
    from wsolbench.data.metadata import read_split
    from wsolbench.protocol import load_protocol

    root = Path(root)
    splits = {s: read_split(root / "metadata" / s, num_classes=config.num_classes) for s in SPLITS}
    content = dict(load_protocol("synthetic-v1").content)
    content.update(
        id=f"synthetic-custom-{config.digest()[:8]}",
        description=f"synthetic-v1's rules on a set generated with {asdict(config)}",
        num_classes=config.num_classes,
        classnames="classnames.txt",  # written by the generator beside the protocol
        generator=asdict(config),
        eval_size=[config.image_size, config.image_size],
        data_fingerprint={
            split: info["sha256"] for split, info in data_fingerprint(splits)["splits"].items()
        },
    )
    path = root / PROTOCOL_FILE
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path
