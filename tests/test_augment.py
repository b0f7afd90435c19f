"""Training augmentation, and the scope-guide box cue it neutralises (checked on the shipped model)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from polyp_live.training.augment import GUIDE_BOX, GUIDE_GREEN, augment, paint_guide_box


def disc_image(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(image, (70, 50), 20, (40, 90, 230), -1)
    cv2.circle(mask, (70, 50), 20, 1, -1)
    return image, mask


def test_mask_follows_the_image_through_every_transform():
    image, mask = disc_image()
    rng = np.random.default_rng(3)
    for _ in range(40):
        out, out_mask = augment(image, mask, rng)
        assert out.shape == image.shape and out.dtype == np.uint8 and out_mask.shape == mask.shape
        if out_mask.sum() > 50:
            # The disc is red (R high, B low) and nothing else in the image is: where the mask is,
            # red dominates blue far more often than where it is not (colour shifts keep the ordering).
            on, off = out_mask.astype(bool), ~out_mask.astype(bool)
            red = out[..., 2].astype(int) - out[..., 0].astype(int)
            assert red[on].mean() > red[off].mean()


def test_a_polyp_free_mask_stays_empty():
    image, _ = disc_image()
    rng = np.random.default_rng(4)
    for _ in range(20):
        _, out_mask = augment(image, np.zeros(image.shape[:2], np.uint8), rng)
        assert not out_mask.any()


def test_the_guide_box_is_painted_both_ways_in_the_lower_left():
    image = np.full((200, 300, 3), 128, np.uint8)
    x0, y0, x1, y1 = GUIDE_BOX
    centre = (int((y0 + y1) / 2 * 200), int((x0 + x1) / 2 * 300))
    black = paint_guide_box(image, "black", np.random.default_rng(0))
    green = paint_guide_box(image, "green", np.random.default_rng(0))
    assert (black[centre] == 0).all() and (green[centre] == GUIDE_GREEN).all()
    assert (black[:100] == 128).all() and (green[:100] == 128).all()  # the upper half is untouched
    assert (image == 128).all()  # the input is not modified
    with pytest.raises(ValueError, match="black' or 'green"):
        paint_guide_box(image, "blue")


def test_training_sees_both_boxes_on_frames_of_both_kinds():
    """Over many draws, positives and negatives each get black and green boxes (so neither means polyp)."""
    image, mask = disc_image(256)
    x0, y0, x1, y1 = GUIDE_BOX
    for m in (mask, np.zeros_like(mask)):
        rng = np.random.default_rng(5)
        kinds = set()
        for _ in range(60):
            # Geometry moves the box; look for the green colour or a black corner block anywhere.
            out, _ = augment(image, m, rng)
            hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
            greenish = ((hsv[..., 0] > 60) & (hsv[..., 0] < 110) & (hsv[..., 1] > 150)).mean() > 0.01
            kinds.add("green" if greenish else "other")
        assert kinds == {"green", "other"}


def _demo_fields(count: int = 7) -> list[np.ndarray]:
    """One field of view (the endoscope image without black margins) per scene of the demo clip
    (five polyp scenes and two polyp-free ones)."""
    from polyp_live.realtime.cli import DEMO_CLIP
    from polyp_live.core.roi import detect_fov
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fields = []
    for i in range(count):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int((i + 0.5) * total / count))
        ok, image = cap.read()
        assert ok
        x, y, w, h = detect_fov(image)
        fields.append(image[y:y + h, x:x + w].copy())
    return fields


def test_the_shipped_model_does_not_depend_on_the_guide_box():
    """Painting the lower-left box black or green leaves the decision and the drawn outline where they were.

    The outline is compared outside the painted corner, and only where the polyp does not reach into
    it: there the box hides part of the polyp, and what is hidden may rightly change the outline.
    """
    from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
    from polyp_live.core.preprocess import preprocess
    from polyp_live.realtime.cli import DEFAULT_MODEL
    from polyp_live.core.decision import DecisionConfig, PresenceDecision
    backend = OnnxRuntimeBackend(DEFAULT_MODEL)
    spec = backend.spec
    point = DecisionConfig.from_spec(spec)
    for field in _demo_fields():
        painted = {kind: paint_guide_box(field, kind, np.random.default_rng(0)) for kind in ("black", "green")}
        changed = np.zeros(field.shape[:2], np.uint8)
        for image in painted.values():
            changed |= (image != field).any(axis=2).astype(np.uint8)
        changed = cv2.dilate(cv2.resize(changed, (spec.input_width, spec.input_height), interpolation=cv2.INTER_NEAREST),
                             np.ones((9, 9), np.uint8)).astype(bool)
        masks, decisions = {}, {}
        for kind, image in painted.items():
            prob = backend.infer(preprocess(image, spec))
            decision = PresenceDecision(replace(point, k=1, n=1))(prob, prob >= spec.threshold)
            decisions[kind] = decision.present
            masks[kind] = decision.mask & ~changed  # what would be drawn
        assert decisions["black"] == decisions["green"]
        plain = backend.infer(preprocess(field, spec)) >= spec.threshold
        if (plain & changed).any():
            continue  # the polyp reaches into the corner: either box hides part of it, differently
        a, b = masks["black"], masks["green"]
        union = (a | b).sum()
        assert union == 0 or (a & b).sum() / union >= 0.9


def test_close_up_enlarges_polyp_free_frames_only_and_costs_nothing_when_off():
    from polyp_live.training.augment import close_up
    image, mask = disc_image()
    near = close_up(image, np.random.default_rng(0))
    assert near.shape == image.shape and near.dtype == np.uint8
    # Seen 1.5-3x nearer, the disc of radius 20 covers 2.25-9 times its area (in this window it stays in view).
    small = (image[..., 2].astype(int) - image[..., 0].astype(int)) > 100
    red_near = (near[..., 2].astype(int) - near[..., 0].astype(int)) > 100
    assert red_near.sum() > 2 * small.sum(), (red_near.sum(), small.sum())
    empty = np.zeros_like(mask)
    # A polyp image is never zoomed by it: its random draws (and so its result) are those of a run without it.
    a, am = augment(image, mask, np.random.default_rng(5), close_up_probability=1.0)
    b, bm = augment(image, mask, np.random.default_rng(5))
    assert np.array_equal(a, b) and np.array_equal(am, bm)
    # Off, a polyp-free frame is transformed exactly as before the option existed.
    c, _ = augment(image, empty, np.random.default_rng(6), close_up_probability=0.0)
    d, _ = augment(image, empty, np.random.default_rng(6))
    assert np.array_equal(c, d)
    # On, it is not.
    e, em = augment(image, empty, np.random.default_rng(6), close_up_probability=1.0)
    assert not np.array_equal(e, d) and not em.any()


def test_close_up_zoom_sets_how_much_nearer():
    from polyp_live.training.augment import close_up
    image, _ = disc_image()
    red = lambda im: int(((im[..., 2].astype(int) - im[..., 0].astype(int)) > 100).sum())
    # A zoom of exactly 1 is the frame itself; a fixed zoom of 2 makes the disc 4 times as large.
    same = close_up(image, np.random.default_rng(0), (1.0, 1.0))
    assert np.array_equal(same, image)
    near = [red(close_up(image, np.random.default_rng(seed), (2.0, 2.0))) for seed in range(20)]
    assert 3.0 * red(image) < max(near) < 5.0 * red(image), (max(near), red(image))


def test_processor_looks_change_contrast_detail_and_light_as_named():
    from polyp_live.training.augment import equalised, structure_enhanced, vignetted
    rng = np.random.default_rng(0)
    # A dim, flat frame with faint texture: equalisation spreads its lightness, keeping it a colour image.
    flat = np.clip(100 + rng.normal(0, 4, (128, 128, 3)), 0, 255).astype(np.uint8)
    flat[..., 2] = np.clip(flat[..., 2].astype(int) + 40, 0, 255)  # reddish, as mucosa
    eq = equalised(flat, 3.0, 8)
    lightness = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2LAB)[..., 0].astype(float)
    assert lightness(eq).std() > 2 * lightness(flat).std()
    assert (eq[..., 2].astype(int) - eq[..., 0].astype(int)).mean() > 20  # still red, not grey
    # Sharpening steepens an edge and leaves flat areas alone.
    edge = np.full((64, 64, 3), 80, np.uint8)
    edge[:, 32:] = 160
    edge = cv2.GaussianBlur(edge, (0, 0), 2.0)
    sharp = structure_enhanced(edge, 2.0, 1.0)
    gradient = lambda im: np.abs(np.diff(im[32, :, 1].astype(int))).max()
    assert gradient(sharp) > 1.2 * gradient(edge)
    assert abs(int(sharp[32, 5, 1]) - int(edge[32, 5, 1])) <= 1 and abs(int(sharp[32, 60, 1]) - int(edge[32, 60, 1])) <= 1
    # A vignette keeps the centre and darkens the corner to 1 - strength.
    grey = np.full((101, 101, 3), 200, np.uint8)
    v = vignetted(grey, 0.5, 2.0)
    assert v[50, 50, 0] == 200 and 95 <= v[0, 0, 0] <= 105 and v[0, 0, 0] < v[25, 25, 0] < v[50, 50, 0]


def test_processor_look_keeps_the_mask_and_costs_nothing_when_off():
    image, mask = disc_image()
    # Off, an image is transformed exactly as before the option existed.
    a, am = augment(image, mask, np.random.default_rng(7), processor_probability=0.0)
    b, bm = augment(image, mask, np.random.default_rng(7))
    assert np.array_equal(a, b) and np.array_equal(am, bm)
    # On, every image changes, and the mask still lies on the (red) disc.
    from polyp_live.training.augment import processor_look
    for seed in range(12):
        looked = processor_look(image, np.random.default_rng(seed))
        assert looked.shape == image.shape and looked.dtype == np.uint8 and not np.array_equal(looked, image)
        out, out_mask = augment(image, mask, np.random.default_rng(seed), processor_probability=1.0)
        if out_mask.sum() > 50:
            red = out[..., 2].astype(int) - out[..., 0].astype(int)
            assert red[out_mask.astype(bool)].mean() > red[~out_mask.astype(bool)].mean()
