"""A full disk while writing a model or a checkpoint: one line, exit 1, nothing half-written left.

/dev/full fails every write with ENOSPC; a symlink to it where a command writes its temporary file
makes that one write hit a full disk while everything else works.
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")


def test_quantize_into_a_full_disk_leaves_no_truncated_prep_model(tmp_path, capsys):
    from test_precision import make_conv_model
    from conftest import write_video
    from polyp_live.tools import quantize
    model = make_conv_model(tmp_path / "conv.onnx")
    calib = write_video(tmp_path / "calib.mp4", 12)
    prep = tmp_path / "conv.int8.prep.onnx"
    prep.symlink_to("/dev/full")
    code = quantize.main(["--model", str(model), "--calib", str(calib), "--calib-count", "8"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "No space left" in err
    assert not prep.exists() and not prep.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.mp4", "conv.json", "conv.onnx"]


torch = pytest.importorskip("torch")


def test_train_onto_a_full_disk_says_so_in_one_line_and_leaves_no_tmp(tmp_path, capsys):
    from test_training import make_dataset
    from polyp_live.tools import train
    data = make_dataset(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt.tmp").symlink_to("/dev/full")
    code = train.main(["--data", str(data), "--out", str(out), "--size", "64", "--epochs", "1", "--batch-size", "4",
                       "--no-pretrained", "--max-steps-per-epoch", "1", "--threads", "1",
                       "--decoder-channels", "32,24,16,16,8"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "disk full writing" in err and "last.pt" in err and "--resume" in err
    assert "Traceback" not in err
    assert not (out / "last.pt.tmp").exists() and not (out / "last.pt.tmp").is_symlink()
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 0  # the checkpoint written before is whole


def test_export_onto_a_full_disk_leaves_nothing_behind(tmp_path, capsys):
    from test_training import make_dataset, tiny_config
    from polyp_live.tools import export_onnx
    from polyp_live.training.trainer import train
    data = make_dataset(tmp_path / "data")
    (data / "splits").mkdir()
    train(tiny_config(data, tmp_path / "run"))
    out = tmp_path / "export" / "model.onnx"
    out.parent.mkdir()
    (out.parent / ".model.partial.onnx.tmp").symlink_to("/dev/full")
    code = export_onnx.main(["--model", str(tmp_path / "run" / "best.pt"), "--out", str(out), "--data", str(data),
                             "--split", "train"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "disk full while writing" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []
