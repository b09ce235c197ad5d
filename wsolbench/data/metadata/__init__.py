"""Split metadata in the wsolevaluation format: records, reading and checking, writing.

A prepared dataset root looks like this::

    <root>/metadata/<split>/image_ids.txt       path              evaluation order
    <root>/metadata/<split>/class_labels.txt    path,label        0-based class index
    <root>/metadata/<split>/image_sizes.txt     path,w,h          original size, pixels
    <root>/metadata/<split>/localization.txt    path,x0,y0,x1,y1  boxes, one line per box, or
                                 path,mask_path,ignore_path  masks, one line per instance
    <root>/metadata/<split>/mask_localization.txt   optional: masks of a set that also has boxes
    <root>/images/...     image ids are paths relative to this folder
    <root>/masks/...      mask paths are relative to this folder (mask sets)

These are the four files of the reference evaluator (Choe et al., CVPR 2020,
clovaai/wsolevaluation), read with the same field semantics; see ``shared/spec/protocol.md``,
"Data contract".

Decisions the reference leaves open, made here:

* Fields are split on ``,`` and surrounding white space (including a ``\\r`` of CRLF files) is
  stripped; blank lines are skipped. An id therefore cannot contain a comma.
  A UTF-8 byte order mark at the start of any of the files is accepted and dropped (spreadsheets
  write one); the files are otherwise plain UTF-8.
* The localization format is detected per file from its first record: 5 fields are boxes, 3 fields
  are masks; a file mixing both is an error.
* Boxes are pixel-inclusive ``x0, y0, x1, y1`` with ``0 <= x0 <= x1 <= w``, ``0 <= y0 <= y1 <= h``.
  ``x1 == w`` (one past the last pixel column) is accepted, because boxes a user builds from
  ``x + width`` reach it and the evaluator copes (a GT box is only rescaled, never indexed);
  ``x1 > w`` is an error. The reference's own metadata never has ``x1 == w``: its CUB boxes are
  clipped to ``w - 1`` (see :mod:`wsolbench.data.cub`), and wsolbench's converters do the same.
* A mask record's ignore path sits on the first line of an image; later lines of that image leave it
  empty (or repeat it). An empty ignore path means "no ignore region" (``MaskRecord.ignore_path is
  None``); the reference crashes on it.
* An empty mask path (``id,,``) adds no mask: an image whose lines all have one is all background
  (``MaskRecord.mask_paths == []``), as LIVIA's histology splits write a CAMELYON normal patch.
* Every image in ``image_ids.txt`` must have a label and, when ``localization.txt`` has records, at
  least one of them. ``image_sizes.txt`` is required (one line per image) when localization.txt
  holds boxes; otherwise it may be absent or empty (the reference's OpenImages metadata has none,
  its ILSVRC ``train`` ships an empty one), and then ``sizes`` is ``{}``. An absent or empty
  ``localization.txt`` makes a label-only split: ``boxes`` and ``masks`` are both ``None``.

Every defect is reported with the file, the line and the fix; all defects of a split are collected
and raised as one :class:`MetadataError` (the first :data:`MAX_REPORTED` of them), so a user can
fix a split in one pass.

One idea per module: :mod:`~wsolbench.data.metadata.records` (the records and defect reports),
:mod:`~wsolbench.data.metadata.parse` (one file at a time), :mod:`~wsolbench.data.metadata.files`
(the image and mask files a split names), :mod:`~wsolbench.data.metadata.read` (a split folder),
:mod:`~wsolbench.data.metadata.write` (writing one).
"""

from wsolbench.data.metadata.files import check_images, spread
from wsolbench.data.metadata.read import read_split
from wsolbench.data.metadata.records import (
    CLASS_LABELS,
    IMAGE_IDS,
    IMAGE_SIZES,
    LOCALIZATION,
    MASK_LOCALIZATION,
    MAX_REPORTED,
    MaskRecord,
    MetadataError,
    SplitMetadata,
)
from wsolbench.data.metadata.write import check_link, link_dir, write_split

__all__ = [
    "CLASS_LABELS",
    "IMAGE_IDS",
    "IMAGE_SIZES",
    "LOCALIZATION",
    "MASK_LOCALIZATION",
    "MAX_REPORTED",
    "MaskRecord",
    "MetadataError",
    "SplitMetadata",
    "check_images",
    "check_link",
    "link_dir",
    "read_split",
    "spread",
    "write_split",
]
