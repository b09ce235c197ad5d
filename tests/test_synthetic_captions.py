"""Image–caption pairs for synthclip (wsolbench/data/synthetic/captions.py): a pure function of
(seed, index), a vocabulary that contains the benchmark's, captions about attributes only, and no
benchmark image among them."""

import hashlib
import re
from collections import Counter

import numpy as np

from wsolbench.data import synthetic
from wsolbench.data.synthetic import SyntheticConfig, class_names, draw, head_style, render_sample
from wsolbench.data.synthetic import captions as synthetic_captions
from wsolbench.data.synthetic.captions import (
    BACKGROUND_CAPTIONS,
    BACKGROUND_TEMPLATE,
    BACKGROUND_WORDS,
    BODY_COLOURS,
    BODY_SHAPES,
    BODY_TEXTURES,
    CAPTION_TEMPLATES,
    HEAD_COLOURS,
    HEAD_PATTERNS,
    draw_attributes,
    render_pair,
)

# Words that would say where the object is, how large it is or which way it points.
LOCATION_WORDS = {
    "left", "right", "top", "bottom", "centre", "center", "centered", "middle", "corner",
    "upper", "lower", "edge", "near", "far", "above", "below", "large", "small", "big",
    "tiny", "up", "down", "side", "border",
}  # fmt: skip


def test_a_pair_is_a_pure_function_of_its_arguments():
    a, b = render_pair(3, 17), render_pair(3, 17)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption
    assert a.image.shape == (96, 96, 3) and a.image.dtype == np.uint8
    other = render_pair(4, 17)
    assert not np.array_equal(a.image, other.image)


def test_the_vocabulary_contains_the_benchmarks():
    assert HEAD_COLOURS[: len(synthetic.HEAD_COLOURS)] == synthetic.HEAD_COLOURS
    assert HEAD_PATTERNS[: len(synthetic.HEAD_PATTERNS)] == synthetic.HEAD_PATTERNS
    assert len(HEAD_COLOURS) > len(synthetic.HEAD_COLOURS)
    assert len(HEAD_PATTERNS) > len(synthetic.HEAD_PATTERNS)
    # the benchmark's body: ellipse or polygon, striped, its brown palette
    assert {"oval", "angular"} <= set(BODY_SHAPES) and "striped" in BODY_TEXTURES
    assert BODY_COLOURS["brown"][0] == synthetic.BODY_HUE_RANGE
    # every benchmark class is one head combination, named by the first template
    for label, name in enumerate(class_names(synthetic.MAX_CLASSES)):
        colour, pattern = head_style(label)
        attributes = {
            "colour": synthetic.HEAD_COLOURS[colour][0],
            "pattern": synthetic.HEAD_PATTERNS[pattern],
        }
        assert CAPTION_TEMPLATES[0].format(**attributes) == f"a photo of a {name}."


def test_attributes_are_drawn_independently_over_every_combination():
    rng = np.random.default_rng(0)
    draws = [draw_attributes(rng, 0.0) for _ in range(4000)]
    heads = Counter((d["colour"], d["pattern"]) for d in draws)
    assert len(heads) == len(HEAD_COLOURS) * len(HEAD_PATTERNS)
    for key, values in (
        ("shape", BODY_SHAPES),
        ("texture", BODY_TEXTURES),
        ("body", tuple(BODY_COLOURS)),
    ):
        counts = Counter(d[key] for d in draws)
        assert set(counts) == set(values)
        assert max(counts.values()) < 1.3 * min(counts.values())
    assert all(d == {} for d in (draw_attributes(rng, 1.0) for _ in range(5)))


def test_captions_name_the_attributes_and_never_the_location():
    seen_templates = set()
    for index in range(400):
        pair = render_pair(0, index)
        words = set(re.findall(r"[a-z]+", pair.caption))
        assert not words & LOCATION_WORDS, pair.caption
        if not pair.attributes:
            assert pair.caption in BACKGROUND_CAPTIONS
            continue
        # the head is always described; its words never go to the body and vice versa
        assert pair.attributes["colour"] in words and pair.attributes["pattern"] in words
        assert "head" in pair.caption
        assert not re.search(r"\ba [aeiou]", pair.caption), pair.caption  # "an orange"
        seen_templates.add(
            next(
                t
                for t in CAPTION_TEMPLATES
                if re.sub(r"\ban ", "a ", pair.caption)
                == re.sub(r"\ban ", "a ", t.format(**pair.attributes))
            )
        )
    assert len(seen_templates) == len(CAPTION_TEMPLATES)
    # the background words and template reproduce two of the background captions
    assert {BACKGROUND_TEMPLATE.format(w) for w in BACKGROUND_WORDS} <= set(BACKGROUND_CAPTIONS)


def test_heads_are_drawn_in_their_colour_and_pattern():
    # a solid head keeps its colour; a patterned head of the same colour has ink in it
    found = {}
    for index in range(300):
        pair = render_pair(1, index)
        if pair.attributes and pair.attributes["colour"] == "red":
            found.setdefault(pair.attributes["pattern"], pair.image)
        if {"solid", "crossed"} <= set(found):
            break
    red = np.array(dict(HEAD_COLOURS)["red"])
    reds = (np.abs(found["solid"].astype(int) - red).sum(axis=-1) <= 6).sum()
    assert reds >= 45  # a disc of radius >= 4 px, all of it red
    ink = np.array([25, 25, 25])
    assert (np.abs(found["crossed"].astype(int) - ink).sum(axis=-1) <= 20).sum() > 0


def test_a_wider_head_radius_range_draws_larger_heads(monkeypatch):
    def mean_radius(radius):
        seen = []
        original = draw.head_pattern

        def recording(pattern, u, v, r):
            seen.append(r)
            return original(pattern, u, v, r)

        monkeypatch.setattr(synthetic_captions, "head_pattern", recording)
        for index in range(80):
            render_pair(2, index, head_radius=radius)
        monkeypatch.undo()
        assert min(seen) >= synthetic.MIN_HEAD_RADIUS_PX
        return float(np.mean(seen))

    # the same pairs (same streams): only the radius draw's range differs
    assert mean_radius((0.15, 0.2)) > 1.5 * mean_radius(synthetic.HEAD_RADIUS)


def test_no_pair_is_a_benchmark_image():
    """The pairs come from other random streams: none equals an image of synthetic-v1's splits."""
    config = SyntheticConfig()
    benchmark = set()
    for split, per_class in (("val", 20), ("test", 10)):
        for label in range(config.num_classes):
            for index in range(per_class):
                image = render_sample(config, split, label, index).image
                benchmark.add(hashlib.sha256(image.tobytes()).hexdigest())
    for index in range(300):
        image = render_pair(0, index).image
        assert hashlib.sha256(image.tobytes()).hexdigest() not in benchmark
