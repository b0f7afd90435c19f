"""Training augmentation with OpenCV and NumPy (no albumentations: it swaps in headless OpenCV).

Besides the geometric and colour changes, the transforms imitate what differs between endoscopy
centres and processors: white balance and gamma, blur and motion blur, JPEG re-compression, sensor
noise, specular highlights, black borders of other shapes and on-screen text, and (as an option)
other processors' rendering: contrast-limited equalisation, structure enhancement and vignetting. The lower-left
scope-guide box is neutralised on frames of both kinds: Kvasir-SEG polyp frames often carry a green
box there while the polyp-free frames had it painted black, so without this a model can learn
"green box means polyp".
"""

from __future__ import annotations

import string

import cv2
import numpy as np

from polyp_live.core.errors import InvalidValue

# Where the scope-guide box sits on Olympus/Kvasir frames, as fractions of the frame (measured on
# Kvasir-SEG images): x 0.06-0.32, y 0.68-0.93, BGR (145, 188, 0). The painted-black area of the
# polyp-free frames covers it with a margin.
GUIDE_BOX = (0.061, 0.682, 0.324, 0.931)
GUIDE_GREEN = (145, 188, 0)


CLOSE_UP_ZOOM = (1.5, 3.0)   # how much nearer a close-up polyp-free view is


def paint_guide_box(image: np.ndarray, kind: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return a copy of ``image`` with the lower-left guide box painted ``"black"`` or a synthetic ``"green"`` box."""
    rng = rng if rng is not None else np.random.default_rng(0)
    out = image.copy()
    h, w = out.shape[:2]
    x0, y0, x1, y1 = GUIDE_BOX
    jitter = rng.uniform(-0.02, 0.02, 4)
    x0, y0, x1, y1 = (np.clip(np.array([x0, y0, x1, y1]) + jitter, 0, 1) * (w, h, w, h)).astype(int)
    if kind == "black":
        # The painted area of the polyp-free frames reaches the frame's corner.
        out[max(0, y0 - int(0.05 * h)):, :x1 + int(0.03 * w)] = 0
    elif kind == "green":
        out[max(0, y0 - int(0.02 * h)):min(h, y1 + int(0.02 * h)), :min(w, x1 + int(0.02 * w))] = 0
        out[y0:y1, x0:x1] = GUIDE_GREEN
        mid = (x0 + x1) // 2
        cv2.line(out, (mid, y0), (mid, y1), (40, 60, 0), max(1, w // 200))
        # A few scope-position strokes, as the real box draws them.
        for _ in range(3):
            p = (int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1)))
            q = (int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1)))
            cv2.line(out, p, q, (int(rng.integers(0, 255)), int(rng.integers(0, 255)), 255), 1)
    else:
        raise InvalidValue(f"unknown guide box kind {kind!r}; use 'black' or 'green'")
    return out


def _random_border(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A bool mask of the visible area: an octagon, a circle or a cropped rectangle, as scopes show."""
    keep = np.zeros((h, w), np.uint8)
    shape = rng.integers(3)
    if shape == 0:
        c = rng.uniform(0.1, 0.25)
        m = rng.uniform(0.0, 0.06, 4)
        pts = np.array([[c + m[0], m[1]], [1 - c - m[2], m[1]], [1 - m[2], c + m[1]], [1 - m[2], 1 - c - m[3]],
                        [1 - c - m[2], 1 - m[3]], [c + m[0], 1 - m[3]], [m[0], 1 - c - m[3]], [m[0], c + m[1]]])
        cv2.fillPoly(keep, [(pts * (w - 1, h - 1)).astype(np.int32)], 1)
    elif shape == 1:
        r = rng.uniform(0.5, 0.75)
        cv2.ellipse(keep, (w // 2, h // 2), (int(r * w), int(r * h)), 0, 0, 360, 1, -1)
    else:
        m = (rng.uniform(0.0, 0.12, 4) * (w, h, w, h)).astype(int)
        keep[m[1]:h - m[3], m[0]:w - m[2]] = 1
    return keep.astype(bool)


def _on_screen_text(image: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a few lines of processor text (dates, IDs, settings) near the left or right edge."""
    h, w = image.shape[:2]
    x = int(rng.uniform(0.0, 0.08) * w) if rng.random() < 0.7 else int(rng.uniform(0.7, 0.85) * w)
    y = int(rng.uniform(0.05, 0.2) * h)
    scale = rng.uniform(0.25, 0.45) * w / 256
    colour = (255, 255, 255) if rng.random() < 0.8 else (0, 255, 255)
    alphabet = string.ascii_uppercase + string.digits + "/:.- "
    for _ in range(int(rng.integers(1, 5))):
        text = "".join(rng.choice(list(alphabet), int(rng.integers(3, 11))))
        cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
        y += int(14 * scale * 2.2)


def _specular(image: np.ndarray, rng: np.random.Generator) -> None:
    """Small saturated highlights, as the scope's light makes on wet mucosa."""
    h, w = image.shape[:2]
    layer = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, 12))):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.uniform(1, 0.03 * w)) + 1, int(rng.uniform(1, 0.02 * h)) + 1)
        cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(layer, (0, 0), 1.0).astype(np.float32)[..., None] / 255
    image[:] = (image * (1 - alpha) + 255 * alpha).astype(np.uint8)


def _motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    length = int(rng.integers(3, 12))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))


def fourier_style(image: np.ndarray, style: np.ndarray, beta: float, weight: float = 1.0) -> np.ndarray:
    """``image`` with the low-frequency Fourier amplitude of ``style`` mixed in (FDA, Yang & Soatto, CVPR 2020).

    The centred ``2 * beta * side`` square of each channel's amplitude spectrum (overall colour,
    illumination fall-off, haze) is moved ``weight`` of the way to ``style``'s; the phase, which
    carries edges and shapes (the polyp), is kept. Both images share one size.
    """
    if image.shape != style.shape:
        raise ValueError(f"style {style.shape} and image {image.shape} differ in shape")
    h, w = image.shape[:2]
    src = np.fft.fft2(image.astype(np.float32), axes=(0, 1))
    ref = np.fft.fft2(style.astype(np.float32), axes=(0, 1))
    amp, phase = np.abs(src), np.angle(src)
    amp_ref = np.abs(ref)
    amp, amp_ref = np.fft.fftshift(amp, axes=(0, 1)), np.fft.fftshift(amp_ref, axes=(0, 1))
    bh, bw = max(1, int(beta * h)), max(1, int(beta * w))
    cy, cx = h // 2, w // 2
    window = (slice(cy - bh, cy + bh + 1), slice(cx - bw, cx + bw + 1))
    amp[window] = (1 - weight) * amp[window] + weight * amp_ref[window]
    amp = np.fft.ifftshift(amp, axes=(0, 1))
    out = np.real(np.fft.ifft2(amp * np.exp(1j * phase), axes=(0, 1)))
    return np.clip(out, 0, 255).astype(np.uint8)


def colour_transfer(image: np.ndarray, style: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """``image`` with its per-channel Lab mean and spread moved ``weight`` of the way to ``style``'s (Reinhard et al. 2001)."""
    src = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    ref = cv2.cvtColor(style, cv2.COLOR_BGR2LAB).astype(np.float32)
    # Statistics of the lit area only: black margins and boxes would drag both means to black.
    lit_src, lit_ref = src[..., 0] > 20, ref[..., 0] > 20
    if lit_src.sum() < 64 or lit_ref.sum() < 64:
        return image
    m_s, s_s = src[lit_src].mean(0), src[lit_src].std(0) + 1e-3
    m_r, s_r = ref[lit_ref].mean(0), ref[lit_ref].std(0) + 1e-3
    target_m, target_s = (1 - weight) * m_s + weight * m_r, (1 - weight) * s_s + weight * s_r
    out = (src - m_s) / s_s * target_s + target_m
    out[~lit_src] = src[~lit_src]
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def restyle(image: np.ndarray, styles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Give ``image`` the look of a random frame of ``styles`` (its Fourier low band or its Lab colour
    statistics), or, one time in five, drain its colour to between none and a third of it.

    With styles drawn from both the polyp set and the polyp-free set, colour and illumination stop
    telling the two apart, so the model cannot learn one hospital's look of "polyp" and "no polyp";
    the drained frames stand for processors that show little or no colour (some archives are grey).
    """
    u = rng.random()
    if u < 0.2:
        grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR).astype(np.float32)
        keep = float(rng.uniform(0.0, 0.33))
        return np.clip(grey + keep * (image.astype(np.float32) - grey), 0, 255).astype(np.uint8)
    style = styles[int(rng.integers(len(styles)))]
    if style.shape != image.shape:
        style = cv2.resize(style, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    if u < 0.6:
        return fourier_style(image, style, float(rng.uniform(0.003, 0.015)), float(rng.uniform(0.5, 1.0)))
    return colour_transfer(image, style, float(rng.uniform(0.5, 1.0)))


def close_up(image: np.ndarray, rng: np.random.Generator, zoom: tuple[float, float] = CLOSE_UP_ZOOM) -> np.ndarray:
    """A random window of ``image`` ``zoom`` (by default 1.5 to 3) times closer, at the same size: the view
    of a fold or of mucosa seen from near, which other hospitals' polyp-free frames show often and ours
    rarely do."""
    h, w = image.shape[:2]
    z = float(rng.uniform(*zoom))
    ch, cw = max(8, int(round(h / z))), max(8, int(round(w / z)))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return cv2.resize(image[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR)


def equalised(image: np.ndarray, clip_limit: float, tiles: int) -> np.ndarray:
    """``image`` with contrast-limited adaptive histogram equalisation (CLAHE) on its lightness only,
    as some processors and video archives enhance contrast; hue and saturation are kept."""
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(
        np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def structure_enhanced(image: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """``image`` sharpened by an unsharp mask (``amount`` times the detail finer than ``sigma``), as a
    processor's structure or edge enhancement draws vessels and mucosal pits harder."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    return cv2.addWeighted(image, 1.0 + amount, blurred, -amount, 0)


def vignetted(image: np.ndarray, strength: float, power: float, centre: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """``image`` darkened towards its edges: brightness falls to ``1 - strength`` at the farthest corner
    from ``centre`` (fractions of the frame) as ``(r / r_max) ** power``, as other optics and light
    guides light the field less evenly."""
    h, w = image.shape[:2]
    cy, cx = centre[0] * (h - 1), centre[1] * (w - 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - cy, xx - cx)
    gain = 1.0 - strength * (r / max(float(r.max()), 1e-6)) ** power
    return np.clip(image * gain[..., None], 0, 255).astype(np.uint8)


def processor_look(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same view as another endoscope processor or scope would render it: one of contrast-limited
    equalisation (:func:`equalised`), structure enhancement (:func:`structure_enhanced`) or a
    vignette (:func:`vignetted`), each with random settings."""
    u = rng.random()
    if u < 1 / 3:
        return equalised(image, float(rng.uniform(1.5, 4.0)), int(rng.integers(4, 9)))
    if u < 2 / 3:
        return structure_enhanced(image, float(rng.uniform(1.0, 3.0)), float(rng.uniform(0.5, 1.5)))
    return vignetted(image, float(rng.uniform(0.3, 0.7)), float(rng.uniform(1.5, 3.0)),
                     (float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))))


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, styles: np.ndarray | None = None,
            style_probability: float = 0.0, close_up_probability: float = 0.0,
            close_up_zoom: tuple[float, float] = CLOSE_UP_ZOOM,
            processor_probability: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Randomly transform a BGR uint8 image and its 0/1 mask together; returns new arrays.

    With ``styles`` (model-size BGR frames), ``style_probability`` of the images first take the look
    of one of them (:func:`restyle`). ``close_up_probability`` of the polyp-free images (empty mask)
    are first seen ``close_up_zoom`` times nearer (:func:`close_up`). ``processor_probability`` of
    the images then take another processor's rendering (:func:`processor_look`). With a share of 0,
    no random number is drawn for it, so runs without it repeat exactly.
    """
    if close_up_probability and not mask.any() and rng.random() < close_up_probability:
        image = close_up(image, rng, close_up_zoom)
    if styles is not None and len(styles) and rng.random() < style_probability:
        image = restyle(image, styles, rng)
    if processor_probability and rng.random() < processor_probability:
        image = processor_look(image, rng)
    # The guide-box cue first, where real frames carry it (before the geometry moves it).
    u = rng.random()
    if u < 0.45:
        image = paint_guide_box(image, "black", rng)
    elif u < 0.75:
        image = paint_guide_box(image, "green", rng)
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    k = int(rng.integers(4))
    if k:
        image, mask = np.rot90(image, k), np.rot90(mask, k)
    image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
    h, w = mask.shape
    if rng.random() < 0.8:
        # Rotation, scale (zoom in = a random crop; zoom out = a smaller view) and shift.
        angle = rng.uniform(-30, 30)
        scale = rng.uniform(0.7, 1.5)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-0.12, 0.12, size=2) * (w, h)
        image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.3:
        keep = _random_border(h, w, rng)
        image = image * keep[..., None].astype(np.uint8)
        mask = mask * keep.astype(mask.dtype)
    if rng.random() < 0.35:
        _on_screen_text(image, rng)
    if rng.random() < 0.25:
        _specular(image, rng)
    image = photometric(image, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour, light and camera changes of one BGR image: hue and saturation, white balance, contrast and
    brightness, gamma, blur (focus or motion), sensor noise and JPEG compression."""
    if rng.random() < 0.9:
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-10, 11))) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.3), 0, 255)
        image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
        # White balance: per-channel gains, as processors and light sources differ.
        gains = rng.uniform(0.8, 1.2, 3)
        alpha, beta = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
        lut = np.clip(np.arange(256)[:, None] * gains[None] * alpha + beta, 0, 255).astype(np.uint8)
        image = np.stack([lut[..., c][image[..., c]] for c in range(3)], axis=-1)
    if rng.random() < 0.3:
        gamma = rng.uniform(0.6, 1.6)
        lut = np.clip(255 * (np.arange(256) / 255) ** gamma, 0, 255).astype(np.uint8)
        image = lut[image]
    blur = rng.random()
    if blur < 0.15:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.0))
    elif blur < 0.3:
        image = _motion_blur(image, rng)
    if rng.random() < 0.25:
        noise = rng.normal(0, rng.uniform(2, 10), image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return image
