"""``wsolbench check NAME``: plugin conformance (:func:`wsolbench.testing.check_method`).

Kept apart from ``cli.py`` so that the command's options live next to the checks; ``cli.py``
registers it with :func:`_add_check`.
"""

from __future__ import annotations

from wsolbench.cli.options import add_batch_size, add_overrides_argument, int_in

MAX_NUM_CLASSES = 100_000  # ILSVRC has 1,000; beyond this a count is a typo
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 2048  # a ViT patch grid at the bottom, memory at the top


def _add_check(commands) -> None:
    parser = commands.add_parser(
        "check",
        help="plugin conformance: run a method's checks on random tensors",
        description="Check that a method plugin honours the WSOLMethod contract (registration, "
        "config, predict shapes and determinism, per-image independence, loss and gradients, "
        "weights round-trip), on random tensors without pretrained weights. Exit status 1 if "
        "any check fails, 2 if the name finds no usable method.",
    )
    parser.add_argument("name", help="method name, or pkg.module:Class of a plugin in development")
    parser.add_argument(
        "--num-classes",
        type=int_in(1, MAX_NUM_CLASSES, "classes of the random labels"),
        default=3,
        help=f"default 3; 1 to {MAX_NUM_CLASSES}",
    )
    parser.add_argument(
        "--image-size",
        type=int_in(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, "side of the random images, in pixels"),
        default=64,
        help=f"default 64; {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}",
    )
    add_batch_size(parser, 2, "images per checked batch")
    parser.add_argument(
        "--dataset", default="synthetic", help="preset to build (default: the small synthetic one)"
    )
    add_overrides_argument(parser, "config override, dotted keys into sections (repeatable)")
    parser.set_defaults(handler=cmd_check)


def cmd_check(args) -> int:
    """Print one line per check; 0 when all pass, 1 otherwise.

    A name that finds no usable method (unknown, a plugin that fails to import, declares the old
    interface, or registers under another name than its entry point) is the user's to fix, not a
    failed check: :func:`~wsolbench.registry.get_method` raises, and ``main`` prints one
    ``error:`` line (exit 2).
    """
    from wsolbench.config import resolve_config
    from wsolbench.data.sources import get_dataset
    from wsolbench.registry import get_method
    from wsolbench.testing import check_method, checked_preset

    cls = get_method(args.name)
    if args.dataset not in cls.config.presets:  # a plugin's own preset name is no data source
        get_dataset(args.dataset)  # a misspelt name: close matches, not the defaults checked
    preset = checked_preset(cls, args.dataset)
    if args.overrides and _resolves(cls, preset):
        # a mistake in the user's overrides is theirs to fix (an error line), not a failed
        # check; a config that fails without them is the plugin's, which check_method reports
        resolve_config(cls, preset, args.overrides)
    results = check_method(
        args.name,
        num_classes=args.num_classes,
        image_size=args.image_size,
        batch_size=args.batch_size,
        dataset=args.dataset,
        overrides=args.overrides,
    )
    width = max(len(r.name) for r in results)
    for result in results:
        mark = "PASS" if result.ok else "FAIL"
        print(f"{mark}  {result.name:<{width}}  {result.detail}")
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"{args.name}: {len(failed)} of {len(results)} checks failed ({', '.join(failed)})")
        return 1
    print(f"{args.name}: all {len(results)} checks passed")
    return 0


def _resolves(cls, preset: str | None) -> bool:
    """Whether the plugin's own config (defaults and preset) resolves."""
    from wsolbench.config import resolve_config

    try:
        resolve_config(cls, preset)
    except Exception:  # a broken plugin config, of any kind: check_method's "config" reports it
        return False
    return True
