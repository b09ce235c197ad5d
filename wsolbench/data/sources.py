"""Dataset sources: where a dataset's prepared root is, registered by name in ``DATASETS``.

A prepared root holds ``metadata/<split>/`` (the reference evaluator's four files per split) and
``images/`` (image ids are paths relative to it); mask datasets add ``masks/``. The real datasets
need ``--data-root`` pointing at a root made by ``wsolbench prepare``; ``synthetic`` is generated
(once, cached) when no root is given.
"""

from __future__ import annotations

from pathlib import Path

from wsolbench.protocol import Protocol
from wsolbench.registry import register_dataset


class DataRootError(ValueError):
    """The data root is missing or not a prepared dataset; the message says how to prepare it."""


class DataSource:
    """Locates a prepared dataset root; subclasses set ``prepare_hint``, the registry ``name``."""

    name: str = ""
    prepare_hint: str = ""

    def resolve(self, data_root: str | Path | None, protocol: Protocol) -> Path:
        """The prepared root to read, checked to hold the protocol's split folders."""
        if data_root is None:
            raise DataRootError(
                f"dataset {self.name!r} needs --data-root DIR, a root prepared with: "
                f"{self.prepare_hint}"
            )
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataRootError(
                f"--data-root {root} does not exist; prepare it with: {self.prepare_hint}"
            )
        check_prepared(root, protocol, self.prepare_hint)
        return root


def check_prepared(root: Path, protocol: Protocol, hint: str) -> None:
    """Raise :class:`DataRootError` unless each evaluated split of the protocol has its metadata."""
    for split in protocol.eval_splits:
        split_dir = root / "metadata" / protocol.splits[split]
        if not split_dir.is_dir():
            raise DataRootError(
                f"{root} is not a prepared {protocol.dataset} root: {split_dir} is missing "
                f"(expected metadata/<split>/ and images/); prepare it with: {hint}"
            )


@register_dataset("cub")
class CUB(DataSource):
    prepare_hint = "wsolbench prepare cub --src CUB_200_2011 --out DIR [--val-per-class 5]"


@register_dataset("ilsvrc")
class ILSVRC(DataSource):
    prepare_hint = "wsolbench prepare ilsvrc --src ILSVRC_DIR --out DIR"


@register_dataset("openimages")
class OpenImages(DataSource):
    prepare_hint = (
        "the reference's OpenImages30k layout: metadata/<split>/ (wsolevaluation format), "
        "images/ and masks/ under one root"
    )


@register_dataset("synthetic")
class Synthetic(DataSource):
    prepare_hint = "wsolbench prepare synthetic --out DIR (or omit --data-root to use the cache)"

    def resolve(self, data_root: str | Path | None, protocol: Protocol) -> Path:
        if data_root is not None:
            return super().resolve(data_root, protocol)
        from wsolbench.data.synthetic import SyntheticConfig, ensure_synthetic

        generator = protocol.extra.get("generator", {})
        return ensure_synthetic(SyntheticConfig(**generator))
