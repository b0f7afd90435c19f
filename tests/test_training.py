"""Model, data checks, training/resume and export parity on tiny generated data (needs torch)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from polyp_live.core.datasets import DatasetError, scan
from polyp_live.training.dataset import load_split  # noqa: E402
from polyp_live.training.encoders import ENCODERS, EfficientNetLiteEncoder, get_spec, load_pretrained  # noqa: E402
from polyp_live.training.mining import mined_schedule  # noqa: E402
from polyp_live.training.trainer import TrainConfig, load_checkpoint, model_spec, train, validate  # noqa: E402
from polyp_live.training.unetplusplus import InputShapeError, ModelConfig, UnetPlusPlus, check_input_size  # noqa: E402

pytestmark = pytest.mark.train


def make_dataset(root: Path, count: int = 10, size: int = 72) -> Path:
    """Discs on noise: an easy task a few steps can start to learn."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image = rng.integers(0, 80, (size, size + 8, 3), dtype=np.uint8)
        mask = np.zeros((size, size + 8), np.uint8)
        centre = tuple(int(v) for v in rng.integers(20, size - 20, 2))
        cv2.circle(image, centre, 14, (40, 90, 230), -1)
        cv2.circle(mask, centre, 14, 255, -1)
        cv2.imwrite(str(root / "images" / f"s{i:02d}.jpg"), image)
        cv2.imwrite(str(root / "masks" / f"s{i:02d}.png"), mask)
    return root


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("deep", [False, True])
def test_forward_shapes(encoder, deep):
    model = UnetPlusPlus(ModelConfig(encoder=encoder, deep_supervision=deep, aspp=deep))
    x = torch.zeros(2, 3, 64, 96)
    model.train()
    out = model(x)
    outs = out if isinstance(out, list) else [out]
    assert len(outs) == (4 if deep else 1)
    assert all(o.shape == (2, 1, 64, 96) for o in outs)
    model.eval()
    assert model(x).shape == (2, 1, 64, 96)  # export and inference keep the final head only


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_pretrained_tensor_lands(name):
    pytest.importorskip(get_spec(name).package)
    encoder = EfficientNetLiteEncoder(name)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    unused = load_pretrained(encoder, name)
    assert all(k.startswith(("_conv_head", "_bn1.", "_fc")) for k in unused) and unused
    changed = [k for k, v in encoder.state_dict().items() if not k.endswith("num_batches_tracked")
               and not torch.equal(v, before[k])]
    weights = [k for k in before if not k.endswith("num_batches_tracked")]
    assert len(changed) == len(weights)


def test_unknown_encoder_lists_the_valid_ones():
    with pytest.raises(KeyError, match="efficientnet-lite0"):
        get_spec("resnet9000")


def test_input_sides_must_be_multiples_of_32():
    with pytest.raises(InputShapeError, match="use 256x320"):
        check_input_size(250, 330)
    with pytest.raises(InputShapeError):
        UnetPlusPlus(ModelConfig())(torch.zeros(1, 3, 100, 64))


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    """A one-epoch, one-step run of a small model: for tests that need a checkpoint, not learning."""
    settings = dict(size=64, epochs=1, batch_size=4, pretrained=False, max_steps_per_epoch=1, threads=1,
                    model=ModelConfig(decoder_channels=(32, 24, 16, 16, 8)))
    return TrainConfig(data=str(data), out=str(out), **{**settings, **overrides})


def test_two_epochs_lower_the_loss_and_resume_continues(tmp_path):
    data = make_dataset(tmp_path / "data")
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), size=64, epochs=3, batch_size=4,
                         lr=3e-3, warmup_epochs=0.5, pretrained=False, max_steps_per_epoch=3, threads=1,
                         model=ModelConfig(decoder_channels=(32, 24, 16, 16, 8), deep_supervision=True))
    first = train(config)
    losses = [row["loss"] for row in first["history"]]
    assert losses[-1] < losses[0]
    run = tmp_path / "run"
    for name in ("last.pt", "best.pt", "log.csv"):
        assert (run / name).is_file()
    assert not list(run.glob("*.tmp"))
    # Resume: asking for more epochs continues at epoch 4 and keeps the earlier history.
    more = TrainConfig(**{**config.__dict__, "epochs": 4})
    resumed = train(more, resume=True)
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3, 4]
    with open(run / "log.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]
    model, cfg = load_checkpoint(run / "best.pt")
    assert cfg.size == 64 and not model.training


def test_resume_without_a_checkpoint_says_so(tmp_path):
    data = make_dataset(tmp_path / "data", count=4)
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), size=64, epochs=1, pretrained=False)
    with pytest.raises(FileNotFoundError, match="drop --resume"):
        train(config, resume=True)


def test_export_parity_on_a_small_model(tmp_path):
    from polyp_live.training.export import check_parity, export_onnx
    data = make_dataset(tmp_path / "data", count=6)
    train(tiny_config(data, tmp_path / "run"))
    onnx_path = tmp_path / "m.onnx"
    spec = export_onnx(tmp_path / "run" / "best.pt", onnx_path, threshold=0.45)
    assert spec.input_height == 64 and spec.threshold == 0.45 and onnx_path.with_suffix(".json").is_file()
    assert spec.info["training_data"] == "data train split"  # folder names, not this machine's paths
    images = [cv2.imread(str(p)) for p in sorted((data / "images").glob("*.jpg"))[:3]]
    parity = check_parity(tmp_path / "run" / "best.pt", onnx_path, images)
    assert parity.max_abs_diff < 1e-4 and parity.min_dice >= 0.99 and parity.images == len(images)


def test_validation_and_cache_use_model_size_images(tmp_path):
    data = make_dataset(tmp_path / "data", count=5)
    spec = model_spec(64)
    stems, images, masks = load_split(data, "train", spec, tmp_path / "cache")
    assert images.shape == (len(stems), 64, 64, 3) and set(np.unique(masks)) <= {0, 1}
    assert list((tmp_path / "cache").glob("*.npz"))
    stems2, images2, _ = load_split(data, "train", spec, tmp_path / "cache")
    assert stems2 == stems and np.array_equal(images, images2)
    model = UnetPlusPlus(ModelConfig(decoder_channels=(32, 24, 16, 16, 8)))
    assert 0.0 <= validate(model, images, masks, spec)["dice"] <= 1.0


def test_the_cache_holds_the_field_of_view_the_live_path_crops(tmp_path):
    """Training sees the crop ``polyp-live`` serves: no black side bars, the mask cropped alike."""
    from polyp_live.core.preprocess import resize_for_model
    from polyp_live.core.config import PipelineConfig
    from polyp_live.core.segmenter import Segmenter
    from conftest import FakeBackend

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    image = np.zeros((120, 200, 3), np.uint8)
    ramp = np.linspace(60, 180, 100, dtype=np.uint8)  # smooth, so JPEG in the cache keeps it close
    image[:, 50:150] = np.stack([np.tile(ramp, (120, 1))] * 3, -1)  # 50-pixel black bars either side
    cv2.putText(image, "12", (4, 110), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)  # text in a margin
    mask = np.zeros((120, 200), np.uint8)
    cv2.circle(mask, (100, 60), 20, 255, -1)
    cv2.imwrite(str(data / "images" / "a.png"), image)
    cv2.imwrite(str(data / "masks" / "a.png"), mask)
    (data / "splits").mkdir()
    (data / "splits" / "train.txt").write_text("a\n")
    spec = model_spec(64)

    _, cached, masks = load_split(data, "train", spec, tmp_path / "cache")
    roi = Segmenter(FakeBackend(spec=spec), PipelineConfig()).prepare(image).roi
    x, y, w, h = roi
    assert abs(w - 100) <= 4  # the live path crops the bars off (to its quarter-size grid), ignores the text
    expected = resize_for_model(image[y:y + h, x:x + w], spec)
    assert np.abs(cached[0].astype(int) - expected.astype(int)).mean() < 3  # JPEG 95 in the cache
    assert (cached[0].max(-1) < 20).mean() < 0.05  # the whole frame would be half black bar
    # The disc fills 1257 of the crop's 12,000 pixels (10.5 %), not of the frame's 24,000.
    assert masks[0].mean() == pytest.approx(np.pi * 20 ** 2 / (100 * 120), abs=0.01)


# --- bad data: each named before training starts ------------------------------------------------

def write_splits(data: Path) -> None:
    (data / "splits").mkdir()
    (data / "splits" / "train.txt").write_text("s00\ns01\ns02\n")
    (data / "splits" / "val.txt").write_text("s01\n")


def test_image_without_mask(tmp_path):
    data = make_dataset(tmp_path / "d", count=3)
    (data / "masks" / "s01.png").unlink()
    with pytest.raises(DatasetError, match=r"s01.jpg has no mask"):
        scan(data)


def test_mask_size_mismatch(tmp_path):
    data = make_dataset(tmp_path / "d", count=3)
    write_splits(data)
    cv2.imwrite(str(data / "masks" / "s02.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match=r"s02.png is 10x10 but its image is 80x72"):
        load_split(data, "train", model_spec(64), None)
    with pytest.raises(DatasetError, match="s02.png"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "run"), size=64, pretrained=False))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_unreadable_image(tmp_path):
    data = make_dataset(tmp_path / "d", count=3)
    write_splits(data)
    (data / "images" / "s00.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"cannot decode image .*s00.jpg"):
        load_split(data, "train", model_spec(64), None)
    # A JPEG cut short decodes in libjpeg with grey rows: refused too, not learnt from.
    whole = (data / "images" / "s01.jpg").read_bytes()
    (data / "images" / "s00.jpg").write_bytes(whole)
    (data / "images" / "s01.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(DatasetError, match=r"cannot decode image .*s01.jpg \(damaged or cut short\)"):
        load_split(data, "train", model_spec(64), None)


def test_empty_folder(tmp_path):
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        scan(tmp_path / "e")
    with pytest.raises(DatasetError, match="needs images/ and masks/"):
        scan(tmp_path / "missing")


def test_split_file_naming_an_unknown_image(tmp_path):
    data = make_dataset(tmp_path / "d", count=3)
    (data / "splits").mkdir()
    (data / "splits" / "train.txt").write_text("s00\nghost\n")
    with pytest.raises(DatasetError, match="'ghost'"):
        load_split(data, "train", model_spec(64), None)


# --- polyp-free frames, losses, checkpoints that cannot run code, warm start --------------------

def make_negatives(root: Path, count: int = 8, size: int = 72) -> Path:
    """Polyp-free frames: noise with a dark 'lumen' and no disc. images/ only, with a splits/ folder."""
    rng = np.random.default_rng(2)
    (root / "images").mkdir(parents=True)
    for i in range(count):
        image = rng.integers(0, 80, (size, size + 8, 3), dtype=np.uint8)
        cv2.circle(image, (size // 2, size // 2), 8, (0, 0, 0), -1)
        cv2.imwrite(str(root / "images" / f"n{i:02d}.0.jpg"), image)  # dotted stems as in the real set
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("".join(f"n{i:02d}.0\n" for i in range(count - 3)))
    (root / "splits" / "val.txt").write_text("".join(f"n{i:02d}.0\n" for i in range(count - 3, count)))
    return root


def test_negatives_load_with_empty_masks_and_a_compact_cache(tmp_path):
    negatives = make_negatives(tmp_path / "neg")
    stems, images, masks = load_split(negatives, "val", model_spec(64), tmp_path / "cache", negatives=True)
    assert stems == ["n05.0", "n06.0", "n07.0"] and images.shape == (3, 64, 64, 3)
    assert masks.shape == (3, 64, 64) and not masks.any()
    with pytest.raises(DatasetError, match="needs images/ and masks/"):
        load_split(negatives, "val", model_spec(64), None)  # a polyp-free set is not a segmentation set


def test_training_with_negatives_scores_false_alarms_and_keeps_the_best_on_both(tmp_path):
    data, negatives = make_dataset(tmp_path / "data"), make_negatives(tmp_path / "neg")
    config = TrainConfig(data=str(data), out=str(tmp_path / "run"), size=64, epochs=3, batch_size=4,
                         negatives=str(negatives), negatives_per_batch=2, lr=3e-3, warmup_epochs=0.5,
                         pretrained=False, max_steps_per_epoch=2, threads=1,
                         model=ModelConfig(decoder_channels=(32, 24, 16, 16, 8), deep_supervision=True))
    result = train(config)
    rows = result["history"]
    assert all(0.0 <= r["val_false_alarm"] <= 1.0 and r["val_score"] == pytest.approx(r["val_dice"] - r["val_false_alarm"])
               for r in rows)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["val_score"] == pytest.approx(max(r["val_score"] for r in rows))
    assert best["epoch"] + 1 == max(rows, key=lambda r: r["val_score"])["epoch"]
    with open(tmp_path / "run" / "log.csv") as fh:
        assert "val_false_alarm" in next(csv.DictReader(fh))


def test_validation_counts_a_frame_with_an_outline_as_a_false_alarm():
    class Constant(torch.nn.Module):
        def __init__(self, value: float):
            super().__init__()
            self.value = value

        def forward(self, x):
            out = torch.full((x.shape[0], 1, x.shape[2], x.shape[3]), -10.0)
            out[:, :, 8:24, 8:24] = self.value  # a 16x16 region: 6 % of a 64x64 frame
            return out

    spec = model_spec(64)
    images = np.zeros((4, 64, 64, 3), np.uint8)
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[:, 8:24, 8:24] = 1
    assert validate(Constant(10.0), images, masks, spec, negatives=images)["false_alarm"] == 1.0
    quiet = validate(Constant(-10.0), images, masks, spec, negatives=images)
    assert quiet["false_alarm"] == 0.0 and quiet["dice"] == 0.0


def test_batch_dice_still_pushes_down_a_false_outline_on_an_empty_mask():
    from polyp_live.training.losses import batch_dice_loss, soft_dice_loss
    target = torch.zeros(2, 1, 16, 16)
    target[0, :, 4:12, 4:12] = 1  # one polyp image, one polyp-free frame
    logits = torch.full((2, 1, 16, 16), -2.0)
    logits[0, :, 4:12, 4:12] = 3.0   # the polyp found
    logits[1, :, 1:15, 1:15] = 3.0   # a large confident false outline on the polyp-free frame
    pooled = logits[1:].clone().requires_grad_(True)
    batch_dice_loss(torch.cat([logits[:1], pooled]), target).backward()
    assert pooled.grad[0, 0, 3, 3] > 0  # gradient descent lowers that logit
    # A per-image Dice of the empty frame has saturated there: its push is over 10x weaker.
    per_image = logits[1:].clone().requires_grad_(True)
    soft_dice_loss(per_image, torch.zeros(1, 1, 16, 16)).backward()
    assert 0 <= per_image.grad[0, 0, 3, 3] < pooled.grad[0, 0, 3, 3] / 10


def test_negative_peak_loss_targets_the_confident_pixels_of_empty_frames_only():
    """A small confident false region barely moves a mean BCE; the peak term is driven by it alone."""
    import torch.nn.functional as F

    from polyp_live.training.losses import negative_peak_loss
    logits = torch.full((2, 1, 64, 64), -6.0)
    logits[1, :, 10:15, 10:15] = 4.0   # a 25-pixel false region on the polyp-free frame
    logits[0, :, 30:40, 30:40] = 4.0   # a polyp found on the polyp image
    target = torch.zeros(2, 1, 64, 64)
    target[0, :, 30:40, 30:40] = 1
    mean_bce = F.binary_cross_entropy_with_logits(logits[1:], target[1:])
    peak = negative_peak_loss(logits, target)  # top 1 % = 41 pixels of the empty frame
    assert mean_bce < 0.03 and peak > 2.0
    leaf = logits.clone().requires_grad_(True)
    negative_peak_loss(leaf, target).backward()
    assert leaf.grad[0].abs().sum() == 0          # the polyp image is untouched
    assert (leaf.grad[1, 0, 10:15, 10:15] > 0.02).all()  # the false region is pushed down
    quiet = torch.full((1, 1, 64, 64), -6.0, requires_grad=True)
    assert negative_peak_loss(quiet, torch.zeros(1, 1, 64, 64)) < 0.01
    assert negative_peak_loss(logits[:1], target[:1]).item() == 0.0  # no empty frame: no term


def test_polyp_core_loss_lifts_a_silenced_small_polyp_beside_a_found_large_one():
    """Each polyp region has its own term: a confident large polyp does not hide a silenced small one."""
    from polyp_live.training.losses import polyp_core_loss
    logits = torch.full((2, 1, 64, 64), -6.0)
    target = torch.zeros(2, 1, 64, 64)
    target[0, :, 5:35, 5:35] = 1       # a large polyp (900 px), found
    logits[0, :, 5:35, 5:35] = 6.0
    target[0, :, 50:56, 50:56] = 1     # a small one (36 px), silenced
    found_only = target.clone()
    found_only[0, :, 50:56, 50:56] = 0
    assert polyp_core_loss(logits, found_only) < 0.01
    both = polyp_core_loss(logits, target)
    assert both > 2.5                  # mean over two regions: (~0 + softplus(6)) / 2
    leaf = logits.clone().requires_grad_(True)
    polyp_core_loss(leaf, target).backward()
    # The small polyp's core is pushed up: its top k = 0.4 % of 64x64 = 16 pixels, each by 1 / (2 x 16).
    assert int((leaf.grad[0, 0, 50:56, 50:56] < -0.03).sum()) == 16
    outside = leaf.grad[0, 0].clone()
    outside[5:35, 5:35] = 0
    outside[50:56, 50:56] = 0
    assert outside.abs().sum() == 0 and leaf.grad[1].abs().sum() == 0  # background, empty frame: untouched
    sliver = torch.zeros(1, 1, 64, 64)
    sliver[0, :, 0:2, 0:3] = 1         # 6 px at the border: ignored
    assert polyp_core_loss(torch.full((1, 1, 64, 64), -6.0), sliver).item() == 0.0
    assert polyp_core_loss(logits[1:], target[1:]).item() == 0.0  # no polyp in the batch: no term


def test_a_polyp_core_weight_below_zero_is_refused(tmp_path):
    data = make_dataset(tmp_path / "data", count=4)
    with pytest.raises(ValueError, match="polyp core weight must be >= 0"):
        train(tiny_config(data, tmp_path / "run", polyp_core_weight=-1.0))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_negative_peak_weight_below_zero_is_refused(tmp_path):
    data = make_dataset(tmp_path / "data", count=4)
    with pytest.raises(ValueError, match="negative peak weight must be >= 0"):
        train(tiny_config(data, tmp_path / "run", negative_peak_weight=-1.0))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_checkpoint_carrying_a_pickled_object_is_refused(tmp_path):
    from polyp_live.training.trainer import CheckpointError
    data = make_dataset(tmp_path / "data", count=4)
    config = tiny_config(data, tmp_path / "run", batch_size=2)
    train(config)
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)  # what we write loads safely
    state["payload"] = Path("/tmp")  # any object that needs unpickling code
    evil = tmp_path / "evil.pt"
    torch.save(state, evil)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(evil)
    # An exported model given where a checkpoint is wanted is named for what it is, not as a threat.
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    with pytest.raises(CheckpointError, match="is an exported ONNX model, not a training checkpoint"):
        load_checkpoint(onnx_file)
    torch.save(state, tmp_path / "run" / "last.pt")
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        train(TrainConfig(**{**config.__dict__, "epochs": 2}), resume=True)


def test_warm_start_from_an_exported_model_reproduces_it(tmp_path):
    from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
    from polyp_live.training.export import export_onnx
    from polyp_live.training.warm_start import load_folded_onnx
    data = make_dataset(tmp_path / "data", count=6)
    mcfg = ModelConfig(decoder_channels=(32, 24, 16, 16, 8), deep_supervision=True)
    train(tiny_config(data, tmp_path / "run", batch_size=3, max_steps_per_epoch=2, model=mcfg))
    onnx_path = tmp_path / "m.onnx"
    export_onnx(tmp_path / "run" / "best.pt", onnx_path)
    _, images, _ = load_split(data, "train", model_spec(64))
    from polyp_live.core.preprocess import normalize
    x = np.stack([normalize(im, model_spec(64)) for im in images])
    fresh = UnetPlusPlus(mcfg, pretrained=False)
    assert load_folded_onnx(fresh, onnx_path, x) > 0
    fresh.eval()
    backend = OnnxRuntimeBackend(onnx_path)
    with torch.no_grad():
        ours = torch.sigmoid(fresh(torch.from_numpy(x[:2]))).numpy()[:, 0]
    ref = np.stack([backend.infer(x[i:i + 1]) for i in range(2)])
    assert np.abs(ours - ref).max() < 1e-4


def test_mining_draws_hard_polyp_free_frames_more_often_and_zero_keeps_the_uniform_pass():
    hardness = np.full(100, 0.01)
    hardness[:4] = 0.99  # four frames the model still calls polyps
    mined = mined_schedule(100, 480, hardness, 0.5, np.random.default_rng(0))
    assert mined.shape == (480,) and mined.min() >= 0 and mined.max() < 100
    hard_share = np.isin(mined, [0, 1, 2, 3]).mean()
    # Uniform: 4 % of picks. Mined half: 0.5 x 3.96 / (3.96 + 96 x 0.02) = 34 % more.
    assert 0.30 < hard_share < 0.46
    assert len(np.unique(mined)) > 80  # easy frames are still shown
    # Share 0 is the order training always used: one permutation, cycled.
    plain = mined_schedule(100, 150, hardness, 0.0, np.random.default_rng(7))
    expected = np.random.default_rng(7).permutation(100)[np.arange(150) % 100]
    assert (plain == expected).all()
    with pytest.raises(ValueError, match="negative mining share must lie in"):
        mined_schedule(100, 10, hardness, 1.5, np.random.default_rng(0))


def test_polyp_hardness_is_set_by_the_weakest_polyp_and_ignores_border_slivers():
    from polyp_live.training.mining import polyp_hardness
    mask = np.zeros((64, 64), np.uint8)
    mask[5:25, 5:25] = 1      # a large polyp, found
    mask[40:48, 40:48] = 1    # a small one, nearly lost
    mask[0:2, 60:64] = 1      # an 8-pixel sliver at the border: ignored
    prob = np.full((64, 64), 0.01, np.float32)
    prob[10:20, 10:20] = 0.98
    prob[43, 44] = 0.3
    prob[0:2, 60:64] = 0.0
    assert polyp_hardness(prob, mask) == pytest.approx(0.7)
    prob[43, 44] = 0.9        # both found: the weaker one still sets it
    assert polyp_hardness(prob, mask) == pytest.approx(0.1)
    assert polyp_hardness(prob, np.zeros_like(mask)) == 0.0


def test_polyp_mining_shows_the_polyps_being_lost_more_often():
    hardness = np.full(50, 0.01)
    hardness[7] = 0.9  # one polyp image whose polyp the model is losing
    mined = mined_schedule(50, 500, hardness, 0.5, np.random.default_rng(3), "polyp")
    # Uniform: 2 % of picks. Mined half: 0.5 x 0.9 / (0.9 + 49 x 0.02) = 24 % more.
    assert 0.20 < (mined == 7).mean() < 0.31
    with pytest.raises(ValueError, match="polyp mining share must lie in"):
        mined_schedule(50, 10, hardness, -0.2, np.random.default_rng(0), "polyp")


def assert_resumed_run_matches(data: Path, tmp_path: Path, settings: dict) -> None:
    """One epoch, then a resume for the second, ends on the weights of the 2-epoch run in ``whole/``.

    The mined schedules are drawn from a per-epoch stream and scored on the restored weights, so a
    resumed run must repeat them exactly.
    """
    train(tiny_config(data, tmp_path / "split", **{**settings, "epochs": 1}))
    state = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    state["config"]["epochs"] = 2
    torch.save(state, tmp_path / "split" / "last.pt")
    train(tiny_config(data, tmp_path / "split", **settings), resume=True)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float()) for k in a)


def test_training_with_polyp_mining_logs_the_weak_polyps_and_resumes_to_the_same_weights(tmp_path):
    data = make_dataset(tmp_path / "data")
    settings = dict(polyp_mining=0.5, epochs=2, max_steps_per_epoch=2, lr=3e-3)
    whole = train(tiny_config(data, tmp_path / "whole", **settings))
    # The run starts from random weights: every polyp is below 0.5 at first; 8 training images.
    assert [r["train_polyps_below_half"] for r in whole["history"]][0] == 8
    assert all(0 <= r["train_polyps_below_half"] <= 8 for r in whole["history"])
    assert_resumed_run_matches(data, tmp_path, settings)
    with pytest.raises(ValueError, match="polyp mining share must lie in"):
        train(tiny_config(data, tmp_path / "bad", polyp_mining=1.5))


def test_training_with_mining_logs_the_hard_negatives_and_resumes_to_the_same_weights(tmp_path):
    data, negatives = make_dataset(tmp_path / "data"), make_negatives(tmp_path / "neg")
    settings = dict(negatives=str(negatives), negatives_per_batch=2, negative_mining=0.5, epochs=2,
                    max_steps_per_epoch=2, lr=3e-3)
    whole = train(tiny_config(data, tmp_path / "whole", **settings))
    assert all(0 <= r["train_negatives_above_half"] <= 5 for r in whole["history"])  # 5 training negatives
    with open(tmp_path / "whole" / "log.csv") as fh:
        assert "train_negatives_above_half" in next(csv.DictReader(fh))
    assert_resumed_run_matches(data, tmp_path, settings)
    with pytest.raises(ValueError, match="negative mining share must lie in"):
        train(tiny_config(data, tmp_path / "bad", negatives=str(negatives), negative_mining=-0.1))


def test_a_fine_tune_with_frozen_batchnorm_continues_the_exported_function(tmp_path):
    """At learning rate 0 only BatchNorm statistics can move: frozen, the export is reproduced."""
    from polyp_live.engines.onnxruntime_backend import OnnxRuntimeBackend
    from polyp_live.core.preprocess import normalize
    from polyp_live.training.export import export_onnx
    data = make_dataset(tmp_path / "data", count=6)
    mcfg = ModelConfig(decoder_channels=(32, 24, 16, 16, 8))
    train(tiny_config(data, tmp_path / "run", batch_size=3, max_steps_per_epoch=2, model=mcfg, lr=3e-3))
    parent = tmp_path / "parent.onnx"
    export_onnx(tmp_path / "run" / "best.pt", parent)
    _, images, _ = load_split(data, "val", model_spec(64))
    x = np.stack([normalize(im, model_spec(64)) for im in images])
    reference = OnnxRuntimeBackend(parent).infer(x[:1])

    def fine_tune(name: str, freeze: bool) -> np.ndarray:
        train(tiny_config(data, tmp_path / name, batch_size=3, max_steps_per_epoch=3, model=mcfg, lr=0.0,
                          init=str(parent), freeze_batchnorm=freeze))
        export_onnx(tmp_path / name / "last.pt", tmp_path / f"{name}.onnx")
        return OnnxRuntimeBackend(tmp_path / f"{name}.onnx").infer(x[:1])

    assert np.abs(fine_tune("frozen", True) - reference).max() < 1e-5
    fine_tune("free", False)
    # Unfrozen, the batches' statistics replaced the warm start's (frozen: kept, as the export shows).
    frozen = torch.load(tmp_path / "frozen" / "last.pt", weights_only=True)["model"]
    free = torch.load(tmp_path / "free" / "last.pt", weights_only=True)["model"]
    stats = [k for k in frozen if k.endswith("running_var")]
    assert stats and max((frozen[k] - free[k]).abs().max().item() for k in stats) > 1e-3


def test_the_log_keeps_a_column_that_only_later_epochs_have(tmp_path):
    """A run resumed with --negative-mining switched on logs a column its first epochs lack."""
    from polyp_live.training.trainer import write_log
    history = [{"epoch": 1, "loss": 0.9, "val_dice": 0.5},
               {"epoch": 2, "loss": 0.8, "val_dice": 0.6, "train_negatives_above_half": 7}]
    write_log(history, tmp_path)
    with open(tmp_path / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["train_negatives_above_half"] for r in rows] == ["", "7"] and rows[1]["val_dice"] == "0.6"


def test_a_run_refused_for_its_model_data_or_resume_leaves_no_run_folder(tmp_path, capsys):
    from polyp_live.commands import dispatch
    data = make_dataset(tmp_path / "data", count=4)
    (tmp_path / "bad.onnx").write_text("not a model")
    for extra, message in ((["--model", str(tmp_path / "bad.onnx")], "is not a readable ONNX model"),
                           (["--resume"], "--resume given but"),
                           (["--data", str(tmp_path / "none")], "not found")):
        argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--size", "64", *extra]
        try:
            code = dispatch(argv)
        except SystemExit as exc:  # a --data that is no folder is a usage error, refused by the parser
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and not (tmp_path / "run").exists()


def test_zero_epochs_is_refused_in_one_line_before_the_data_is_read(tmp_path, capsys):
    from polyp_live.commands import dispatch
    rc = dispatch(["train", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "run"), "--epochs", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--epochs and --batch-size need at least 1" in err
    assert not (tmp_path / "run").exists()


def test_training_on_cuda_without_a_gpu_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal is for machines without one")
    from polyp_live.commands import dispatch
    data = make_dataset(tmp_path / "data")
    rc = dispatch(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "torch sees no CUDA GPU; use --device cpu" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.gpu
def test_training_on_cuda_with_both_minings_resumes_and_leaves_a_checkpoint_the_cpu_loads(tmp_path):
    """Issue 7: ``train --device cuda`` works unchanged, the recipe of release 6 included."""
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    data, negatives = make_dataset(tmp_path / "data"), make_negatives(tmp_path / "neg")
    settings = dict(negatives=str(negatives), negatives_per_batch=2, negative_peak_weight=0.1,
                    negative_mining=0.5, polyp_mining=0.5, epochs=1, max_steps_per_epoch=2, lr=3e-3,
                    device="cuda")
    train(tiny_config(data, tmp_path / "run", **settings))
    resumed = train(tiny_config(data, tmp_path / "run", **{**settings, "epochs": 2}), resume=True)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert all(0 <= r["train_negatives_above_half"] <= 5 and 0 <= r["train_polyps_below_half"] <= 8
               for r in resumed["history"])
    # The checkpoint holds CPU tensors: it loads and runs on a machine without a GPU.
    model, cfg = load_checkpoint(tmp_path / "run" / "best.pt")
    assert cfg.device == "cuda" and {p.device.type for p in model.parameters()} == {"cpu"}
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape[-2:] == (64, 64) and torch.isfinite(out).all()


def test_external_sets_are_scored_each_epoch_and_join_the_checkpoint_choice(tmp_path):
    from test_external_validation import write_labelled, write_masked
    from polyp_live.training.trainer import checkpoint_score
    data, negatives = make_dataset(tmp_path / "data"), make_negatives(tmp_path / "neg")
    external = tmp_path / "external"
    write_masked(external / "db", [[245, 245], [245]])
    write_labelled(external / "c9", [245, 245], [None, 245, None])
    settings = dict(negatives=str(negatives), negatives_per_batch=2, epochs=2, max_steps_per_epoch=2, lr=3e-3,
                    external=str(external), external_every=1, keep_epochs=True, style_mix=0.5)
    rows = train(tiny_config(data, tmp_path / "whole", **settings))["history"]
    for row in rows:
        assert 0.0 <= row["ext_db_dice"] <= 1.0 and 0.0 <= row["ext_c9_area"] <= 1.0
        mine = row["val_dice"] - row["val_false_alarm"]
        assert row["val_score"] == pytest.approx((mine + row["ext_db_dice"] + row["ext_c9_area"]) / 3)
    assert checkpoint_score({"score": 0.4}, {}) == 0.4
    # Every epoch's weights are kept, and best.pt is the epoch with the highest combined score.
    kept = sorted(p.name for p in (tmp_path / "whole").glob("epoch_*.pt"))
    assert kept == ["epoch_001.pt", "epoch_002.pt"]
    best = torch.load(tmp_path / "whole" / "best.pt", weights_only=True)
    assert best["epoch"] + 1 == max(rows, key=lambda r: r["val_score"])["epoch"]
    with open(tmp_path / "whole" / "log.csv") as fh:
        assert {"ext_db_dice", "ext_c9_area"} <= set(next(csv.DictReader(fh)))
    # Restyling draws from its own share of the per-epoch stream, so a resumed run still matches.
    assert_resumed_run_matches(data, tmp_path, settings)
    with pytest.raises(ValueError, match="style mix share must lie in"):
        train(tiny_config(data, tmp_path / "bad", style_mix=2.0))
    with pytest.raises(ValueError, match=r"processor-look share must lie in \[0, 1\], got -0.1"):
        train(tiny_config(data, tmp_path / "bad", processor_look=-0.1))
    with pytest.raises(ValueError, match="close-up zoom must be MIN,MAX with 1 <= MIN <= MAX, got 2,1.5"):
        train(tiny_config(data, tmp_path / "bad", close_up=0.5, close_up_zoom=(2.0, 1.5)))


def test_a_run_without_a_terminal_prints_progress_lines_and_keeps_a_log(tmp_path, capsys):
    from polyp_live.tools import train as train_command
    data = make_dataset(tmp_path / "data")
    out = tmp_path / "run"
    code = train_command.main(["--data", str(data), "--out", str(out), "--size", "64", "--epochs", "2",
                               "--batch-size", "4", "--no-pretrained", "--max-steps-per-epoch", "2", "--threads", "1",
                               "--decoder-channels", "32,24,16,16,8"])
    err = capsys.readouterr().err
    assert code == 0
    lines = [line for line in err.splitlines() if "epoch" in line]
    assert any("epoch 1/2: started (2 steps)" in line for line in lines)
    assert any("epoch 2/2 loss" in line and "val Dice" in line for line in lines)  # each epoch's closing line
    # The last step of an epoch: step count, loss and the time left.
    assert any("epoch 1/2 loss" in line and "step 2/2" in line and "min left in this epoch" in line for line in lines)
    assert "learning rate 0.001 (the default from the ImageNet encoder)" in err.splitlines()[0]
    log = (out / "train.log").read_text()
    assert "learning rate 0.001" in log and "epoch 1/2: started" in log and "epoch 2/2 loss" in log
    # Without --model the run starts at the from-scratch rate; a fine-tune of an exported model at 1e-4.
    assert torch.load(out / "best.pt", weights_only=True)["config"]["lr"] == 1e-3
    from polyp_live.training.export import export_onnx
    export_onnx(out / "best.pt", tmp_path / "m.onnx")
    assert train_command.main(["--data", str(data), "--out", str(tmp_path / "ft"), "--size", "64", "--epochs", "1",
                               "--batch-size", "4", "--max-steps-per-epoch", "1", "--threads", "1",
                               "--decoder-channels", "32,24,16,16,8", "--model", str(tmp_path / "m.onnx")]) == 0
    assert torch.load(tmp_path / "ft" / "best.pt", weights_only=True)["config"]["lr"] == 1e-4
    assert "learning rate 0.0001 (the fine-tuning default" in capsys.readouterr().err


def test_a_run_on_a_terminal_keeps_the_same_log_beside_its_checkpoints(tmp_path):
    """Under a terminal (a pseudo-terminal here) the rich bar shows the run and OUT/train.log keeps it."""
    import os
    import subprocess
    import sys
    data, out = make_dataset(tmp_path / "data"), tmp_path / "run"
    code = "import sys; from polyp_live.commands import dispatch; sys.exit(dispatch(sys.argv[1:]))"
    import threading
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code, "train", "--data", str(data), "--out", str(out), "--size",
                             "64", "--epochs", "1", "--batch-size", "4", "--no-pretrained", "--max-steps-per-epoch",
                             "2", "--threads", "1", "--decoder-channels", "32,24,16,16,8"],
                            stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm"})
    os.close(slave)

    def drain():  # the bar redraws often: a full terminal buffer would block the run
        try:
            while os.read(master, 65536):
                pass
        except OSError:  # the child closed the terminal
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert proc.wait(timeout=300) == 0
    finally:
        reader.join(timeout=10)
        os.close(master)
    log = (out / "train.log").read_text().splitlines()
    assert log[0].endswith("learning rate 0.001 (the default from the ImageNet encoder)")
    assert any(line.endswith("epoch 1/1: started (2 steps)") for line in log)
    assert any("epoch 1/1 loss" in line and "val Dice" in line for line in log) and (out / "best.pt").is_file()
