"""Dataset sources: where a dataset's prepared root is, the registry of them (``DATASETS``), and
reading a root's splits (:func:`read_splits`; :func:`read_data` adds the fingerprint a run
records).

A prepared root holds ``metadata/<split>/`` (the reference evaluator's four files per split) and
``images/`` (image ids are paths relative to it); mask datasets add ``masks/``. The real datasets
need ``--data-root`` pointing at a root made by ``wsolbench prepare``; ``synthetic`` and
``synthetic-histo`` are generated (once, cached) when no root is given.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from mmengine.registry import Registry

from wsolbench.data.fingerprint import data_fingerprint
from wsolbench.data.metadata import SplitMetadata, check_images, read_split
from wsolbench.protocol import Protocol
from wsolbench.util.names import check_name, unknown_name_message

DATASETS = Registry("wsolbench dataset", scope="wsolbench")

#: Images decoded per split before a run starts (every image is still checked to exist).
DECODE_SAMPLE = 8


def register_dataset(name: str):
    """Class decorator: register a dataset source (a :class:`DataSource`) as ``name``."""
    check_name(name, "dataset")

    def decorator(cls):
        cls.name = name
        DATASETS.register_module(name=name, module=cls)
        return cls

    return decorator


def get_dataset(name: str):
    """The dataset source registered as ``name`` (the built-ins are defined below)."""
    cls = DATASETS.get(name)
    if cls is None:
        raise KeyError(unknown_name_message("dataset", name, list_datasets()))
    return cls


def list_datasets() -> list[str]:
    """Names of the registered dataset sources."""
    return sorted(DATASETS.module_dict)


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
        if root.exists() and not root.is_dir():
            raise DataRootError(
                f"--data-root {root} is a file; give the folder a prepare command made "
                f"({self.prepare_hint})"
            )
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
    prepare_hint = (
        "wsolbench prepare cub --src CUB_200_2011 --out DIR --val-per-class 5 (or, for the "
        "official val split, --cubv2 DIR)"
    )


@register_dataset("ilsvrc")
class ILSVRC(DataSource):
    prepare_hint = "wsolbench prepare ilsvrc --src ILSVRC_DIR --out DIR"


@register_dataset("openimages")
class OpenImages(DataSource):
    prepare_hint = (
        "the reference's OpenImages30k layout: metadata/<split>/ (wsolevaluation format), "
        "images/ and masks/ under one root"
    )


@register_dataset("glas")
class GlaS(DataSource):
    prepare_hint = (
        "wsolbench prepare glas --src Warwick_QU_Dataset_(Released_2016_07_08) --out DIR, or "
        "LIVIA's official fold: wsolbench prepare wsol-splits --src SPLITS/GLAS/fold-0 "
        "--images DATA_ROOT --out DIR"
    )


@register_dataset("camelyon512")
class Camelyon512(DataSource):
    prepare_hint = (
        "wsolbench prepare wsol-splits --src SPLITS/CAMELYON512/fold-0 --images DATA_ROOT "
        "--out DIR (LIVIA's patches and splits)"
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


def read_splits(
    root: Path,
    protocol: Protocol,
    *,
    check_files_of: Collection[str] = (),
    optional: Collection[str] = (),
    progress: bool = False,
) -> dict[str, SplitMetadata]:
    """Read and validate every split of a protocol from a prepared root, before any work.

    Args:
        root: the prepared root (``metadata/``, ``images/``, ``masks/``).
        protocol: names the split folders and the class count.
        check_files_of: roles whose files must exist (all of them) and decode (a sample of
            :data:`DECODE_SAMPLE`, sizes compared with ``image_sizes.txt``), masks included:
            the splits the run will read images of.
        optional: roles that may be absent from the root (a training-free method needs no
            ``train`` split); they are then left out of the returned dict.
        progress: show a progress bar while checking a large split's files.

    Returns:
        role → metadata, for every split of the protocol.

    Raises:
        MetadataError: the first split with defects, listing all of them (file, line, fix).
    """
    splits = {}
    for role, folder in protocol.splits.items():
        if role in optional and not (root / "metadata" / folder).is_dir():
            continue
        meta = read_split(root / "metadata" / folder, num_classes=protocol.num_classes)
        if role in check_files_of:
            check_images(
                meta,
                root / "images",
                decode_sample=DECODE_SAMPLE,
                mask_root=root / "masks" if protocol.has_masks else None,
                progress=progress and len(meta) > 20_000,
            )
        splits[role] = meta
    return splits


def read_data(
    dataset: str,
    data_root: str | Path | None,
    protocol: Protocol,
    *,
    trains: bool,
    check_files: bool = True,
    progress: bool = False,
) -> tuple[Path, dict[str, SplitMetadata], dict]:
    """The data a run of a (``trains``: trainable) method reads: its root, every split's records
    (with the image files of the splits it uses checked, unless ``check_files`` is off) and their
    fingerprint (:func:`wsolbench.data.fingerprint.data_fingerprint`), as the record names it.

    Raises:
        ValueError, OSError: a missing root or split, a malformed metadata file (the message
            names the file and line).
    """
    root = get_dataset(dataset)().resolve(data_root, protocol)
    used = set(protocol.eval_splits) | ({"train"} if trains else set())
    splits = read_splits(
        root,
        protocol,
        check_files_of=used if check_files else set(),
        optional=() if trains else ("train",),
        progress=progress,
    )
    mask_root = root / "masks" if protocol.has_masks else None
    return root, splits, data_fingerprint(splits, mask_root)


@register_dataset("synthetic-histo")
class SyntheticHisto(DataSource):
    prepare_hint = (
        "wsolbench prepare synthetic-histo --out DIR (or omit --data-root to use the cache)"
    )

    def resolve(self, data_root: str | Path | None, protocol: Protocol) -> Path:
        if data_root is not None:
            return super().resolve(data_root, protocol)
        from wsolbench.data.synthetic_histo import HistoConfig, ensure_histo

        return ensure_histo(HistoConfig(**protocol.extra.get("generator", {})))
