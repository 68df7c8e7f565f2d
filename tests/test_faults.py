"""Nothing lost, nothing silent: crashes, resumes, checkpoints, early checks, honest evaluation.

The first test kills real training processes (``tools/train.py``) with SIGKILL in the middle of an
epoch and resumes them with ``--resume auto``: the final checkpoint equals that of an
uninterrupted run bit for bit, with 0 or 2 data-loader workers. The same runs prove checkpoint
retention, self-describing files and what the console shows. The other tests are in-process and
small. The two-process (torchrun) resume is in ``test_distributed.py``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import os.path as osp
import re
import sys
import warnings

import pytest
import torch
from train_helpers import (
    REPO,
    TrainProcess,
    assert_identical,
    count_loads,
    file_hashes,
    tiny_config,
)

from tfclip_torchreid import compat, runner
from tfclip_torchreid.data.datamanager import build_test_loader
from tfclip_torchreid.engine import VideoV2MEngine
from tfclip_torchreid.engine import checkpoint as engine_checkpoint
from tfclip_torchreid.models import build_tfclip, load_model_weights, load_tfclip
from tfclip_torchreid.models.tfclip import TFCLIPOutput
from tfclip_torchreid.utils.checkpoint import checkpoint_header, load_checkpoint, save_checkpoint
from tfclip_torchreid.utils.rng import rng_state

MAX_EPOCH = 3


def make_cfg(root: str, save_dir: str, **overrides):
    return tiny_config(root, save_dir, **{"train.max_epoch": 1, **overrides})


def new_engine(cfg) -> VideoV2MEngine:
    compat.set_random_seed(cfg.train.seed)
    return runner.build_engine(cfg)


def cli_options(root: str, workers: int = 0, max_epoch: int = MAX_EPOCH) -> list[str]:
    """Config options first, flags after them: both are accepted anywhere on the line."""
    return [
        "model.pretrained", "", "data.height", "64", "data.width", "32", "data.seq_len", "4",
        "data.workers", str(workers), "train.batch_size", "4", "sampler.num_instances", "2",
        "train.max_epoch", str(max_epoch), "train.seed", "5", "train.lr", "1e-4",
        "train.warmup_epochs", "1", "train.print_freq", "1", "train.keep_last", "2",
        "train.memory_cache_dir", "none", "test.batch_size", "8",
        "--arch", "tfclip_tiny", "--sources", "mars", "--root", root,
    ]


def train_cmd(root: str, save: str, workers: int = 0) -> list[str]:
    return [sys.executable, osp.join(REPO, "tools", "train.py"), *cli_options(root, workers),
            "--save-dir", save, "--resume", "auto"]


# ------------------------------------------------------------------------------ 1, 2, 3, 7
def test_sigkill_mid_epoch_then_resume_auto_is_exact(mars_root, tmp_path, capsys):
    """SIGKILL during epoch 2 (0 and 2 loader workers), then the same command again: the final
    latest.pth equals the uninterrupted run's in every tensor (model, optimizer, scheduler, RNG).
    The same runs show retention, stale temp files removed, self-describing files, flushed
    console lines without a progress bar on a pipe, the output paths, and that resuming a
    finished run changes no checkpoint."""
    ref_save = str(tmp_path / "reference")
    os.makedirs(osp.join(ref_save, "checkpoints"))
    stale = osp.join(ref_save, "checkpoints", ".tmp-x.pth")
    open(stale, "wb").close()  # a write killed mid-way by an earlier run
    reference = TrainProcess(train_cmd(mars_root, ref_save))
    epoch2 = r"^epoch: \[2/3\]\[1/"  # the first batch line of epoch 2
    killed = {w: TrainProcess(train_cmd(mars_root, str(tmp_path / f"w{w}"), w), kill_on=epoch2)
              for w in (0, 2)}
    for workers, run in killed.items():
        out = run.finish()
        latest = osp.join(str(tmp_path / f"w{workers}"), "checkpoints", "latest.pth")
        # killed in epoch 2; its first batch line reached the pipe before the epoch ended, so
        # the console flushes every line (no PYTHONUNBUFFERED) and shows no bar on a pipe
        assert load_checkpoint(latest)["epoch"] == 1, "the kill came after epoch 2 ended"
        assert "\r" not in out and "it/s" not in out
    resumed = {w: TrainProcess(train_cmd(mars_root, str(tmp_path / f"w{w}"), w))
               for w in (0, 2)}

    out = reference.finish()
    lines = out.splitlines()
    for epoch in (1, 2, 3):  # one line per batch (print_freq 1), no bar: stdout is a pipe
        # (torchreid's RandomIdentitySampler may yield fewer batches than its len() estimate)
        seen = [int(b) for b in re.findall(rf"^epoch: \[{epoch}/3\]\[(\d+)/\d+\]", out, re.M)]
        assert len(seen) >= 4 and seen == list(range(1, len(seen) + 1)), seen
    ckpt_dir = osp.join(ref_save, "checkpoints")
    assert not osp.exists(stale)
    assert sorted(os.listdir(ckpt_dir)) == ["epoch_002.pth", "epoch_003.pth", "latest.pth"]
    for name in os.listdir(ckpt_dir):  # every file describes its model
        state = load_checkpoint(osp.join(ckpt_dir, name))
        assert state["arch"] == "tfclip_tiny" and state["version"] == __import__(
            "tfclip_torchreid").__version__
        assert state["model_cfg"]["image_size"] == [64, 32] and state["model_cfg"]["layers"] == 2
    start = next(i for i, ln in enumerate(lines) if ln.startswith("=> Writing log: "))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("=> Wrote log: "))
    assert start < lines.index("=> Start training") < end == len(lines) - 1
    for line in (lines[start], lines[end]):
        paths = dict(part.split(": ", 1) for part in line[3:].replace("Writing ", "")
                     .replace("Wrote ", "").split(" | "))
        assert osp.isfile(paths["log"]) and osp.dirname(paths["log"]) == ref_save
        assert paths["checkpoints"] == ckpt_dir and paths["results"] == osp.join(ref_save,
                                                                                "results.json")
        assert paths["summary"] == osp.join(ref_save, "summary.json")
    assert osp.isfile(paths["summary"])
    with open(osp.join(ref_save, "results.json")) as f:
        row = json.load(f)
    assert row["num_query"] == row["num_valid_query"] > 0 and not row["evaluate_only"]

    expected = load_checkpoint(osp.join(ckpt_dir, "latest.pth"))
    assert expected["epoch"] == MAX_EPOCH
    for workers, run in resumed.items():
        out = run.finish()
        assert "continuing at epoch 2" in out
        assert not re.search(r"^epoch: \[1/3\]", out, re.M)
        got = load_checkpoint(str(tmp_path / f"w{workers}" / "checkpoints" / "latest.pth"))
        assert_identical(got, expected, f"workers={workers}: latest.pth")
        assert_identical(
            load_checkpoint(str(tmp_path / f"w{workers}" / "checkpoints" / "epoch_003.pth")),
            expected, f"workers={workers}: epoch_003.pth")

    # resuming a finished run: nothing trains, no checkpoint file changes (byte for byte)
    save = str(tmp_path / "w0")
    before = file_hashes(osp.join(save, "checkpoints"))
    capsys.readouterr()
    runner.main(train_cmd(mars_root, save)[2:])
    out = capsys.readouterr().out
    assert "has finished training (3/3 epochs): evaluating only" in out
    assert not re.search(r"^epoch: \[", out, re.M) and "Rank-1" in out
    assert file_hashes(osp.join(save, "checkpoints")) == before


# ------------------------------------------------------------------------------ 1: one write
def test_one_checkpoint_write_per_epoch_and_test_is_rng_neutral(mars_root, tmp_path,
                                                                 monkeypatch):
    writes: list[str] = []
    real_save = engine_checkpoint.save_checkpoint

    def counting_save(state, path):
        writes.append(osp.basename(path))
        return real_save(state, path)

    monkeypatch.setattr(engine_checkpoint, "save_checkpoint", counting_save)
    cfg = make_cfg(mars_root, str(tmp_path / "log"), **{"train.keep_last": 1})
    engine = new_engine(cfg)
    engine.run(save_dir=cfg.data.save_dir, max_epoch=2, eval_freq=1, print_freq=1000,
               normalize_feature=True)
    assert writes == ["latest.pth", "latest.pth"]  # epoch files are hard links, not writes
    assert sorted(os.listdir(osp.join(cfg.data.save_dir, "checkpoints"))) == [
        "epoch_002.pth", "latest.pth"]

    before = rng_state()
    engine.test(normalize_feature=True)
    assert_identical(rng_state(), before, "RNG state after engine.test")


# ------------------------------------------------------------------------------ 2: save dir
def test_unwritable_save_dir_fails_before_any_data_is_read(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # a folder under a regular file cannot exist, even as root
    save = str(blocker / "run")
    missing_root = str(tmp_path / "no_data_here")
    with pytest.raises(PermissionError, match=re.escape(save)):
        runner.main(["--arch", "tfclip_tiny", "--sources", "mars", "--root", missing_root,
                     "--save-dir", save, "model.pretrained", ""])
    assert not osp.exists(missing_root)


# ------------------------------------------------------------------------------ 3: describe
@pytest.fixture(scope="module")
def tap_checkpoint(tmp_path_factory) -> str:
    """A tfclip_tiny checkpoint whose options differ from the arch defaults."""
    torch.manual_seed(3)
    model = build_tfclip("tfclip_tiny", num_classes=8, camera_num=6, image_size=(64, 32),
                         temporal="tap", test_feature="paper", ssp_form="paper")
    path = str(tmp_path_factory.mktemp("ckpt") / "tap.pth")
    save_checkpoint({**checkpoint_header(model), "state_dict": model.state_dict(), "epoch": 1},
                    path)
    return path


def test_checkpoint_rebuilds_its_model_everywhere(tap_checkpoint):
    state = load_checkpoint(tap_checkpoint)
    model = load_tfclip(tap_checkpoint)
    assert model.cfg.to_dict() == state["model_cfg"]
    assert_identical(model.state_dict(), state["state_dict"], "load_tfclip")

    extractor = compat.utils.FeatureExtractor(model_name="tfclip_tiny", model_path=tap_checkpoint,
                                              device="cpu", image_size=(64, 32), verbose=False)
    assert extractor.model.cfg.to_dict() == state["model_cfg"]
    assert_identical(extractor.model.state_dict(), state["state_dict"], "FeatureExtractor")
    assert extractor(torch.rand(2, 3, 64, 32)).shape == (2, 64)  # paper feature: 64 + 0 (tap)

    other = build_tfclip("tfclip_tiny", num_classes=8, camera_num=6, image_size=(64, 32))
    with pytest.raises(ValueError, match=r"temporal 'tap' \(model: 'tmd'\)"):
        load_model_weights(other, state, source=tap_checkpoint)
    # a network of another shape or activation is refused even when skipping is allowed
    gelu = build_tfclip("tfclip_tiny", num_classes=8, camera_num=6, image_size=(64, 32),
                        temporal="tap", test_feature="paper", ssp_form="paper", quick_gelu=False)
    with pytest.raises(ValueError, match=r"another tfclip_tiny network: quick_gelu True"):
        load_model_weights(gelu, state, source=tap_checkpoint, strict=False)


def test_preprocessing_travels_with_the_checkpoint(mars_root, tap_checkpoint, tmp_path, caplog):
    """A training run records its frames' size and normalisation; FeatureExtractor and an
    evaluation take them from the file. A file written before (no entry) gets the arch's
    documented default, and the log says so."""
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    save = str(tmp_path / "run")
    engine = new_engine(make_cfg(mars_root, save, **{"data.norm": "inception"}))
    engine.run(save_dir=save, max_epoch=1, print_freq=1000)
    latest = osp.join(save, "checkpoints", "latest.pth")
    assert load_checkpoint(latest)["preprocess"] == {"image_size": [64, 32], "mean": [0.5] * 3,
                                                     "std": [0.5] * 3}
    extractor = compat.utils.FeatureExtractor(model_name="tfclip_tiny", model_path=latest,
                                              device="cpu", verbose=False)
    resize, _, normalize = extractor.preprocess.transforms
    assert (tuple(resize.size), list(normalize.mean)) == ((64, 32), [0.5] * 3)
    caplog.clear()
    runner.main(["--evaluate-only", "--weights", latest, "--root", mars_root, "--save-dir",
                 str(tmp_path / "eval"), "data.workers", "0", "test.batch_size", "8",
                 "data.seq_len", "4"])
    assert "=> data.norm: the config's 'imagenet' -> 'inception'" in caplog.text
    assert "=> data.height: the config's 256 -> 64" in caplog.text

    caplog.clear()
    old = compat.utils.FeatureExtractor(model_name="tfclip_tiny", model_path=tap_checkpoint,
                                        device="cpu", verbose=False)
    assert list(old.preprocess.transforms[-1].mean) == [0.485, 0.456, 0.406]
    assert f"{tap_checkpoint} records no preprocessing" in caplog.text


def test_feature_extractor_refuses_another_architecture(tap_checkpoint):
    with pytest.raises(ValueError, match=r"tfclip_tiny.*not tfclip_vitb16"):
        compat.utils.FeatureExtractor(model_name="tfclip_vitb16", model_path=tap_checkpoint,
                                      device="cpu", verbose=False)


def test_weights_flag_rebuilds_the_described_model(mars_root, tap_checkpoint, tmp_path):
    save = str(tmp_path / "eval")
    out = runner.main(["--evaluate-only", "--weights", tap_checkpoint, "--sources", "mars",
                       "--root", mars_root, "--save-dir", save, "data.height", "64",
                       "data.width", "32", "data.seq_len", "4", "data.workers", "0",
                       "test.batch_size", "8", "model.pretrained", ""])
    assert "mars" in out["after"]
    log = open(glob.glob(osp.join(save, "*test.log"))[0]).read()
    assert "64-d features" in log  # test_feature paper + tap, as the file says, without flags
    with pytest.raises(ValueError, match=r"tfclip_tiny.*--arch"):
        runner.main(["--evaluate-only", "--weights", tap_checkpoint, "--arch", "tfclip_vitb16",
                     "--root", str(tmp_path / "none"), "--save-dir", str(tmp_path / "x")])


def test_resume_reads_the_checkpoint_once(mars_root, tmp_path, monkeypatch):
    """``--resume`` resolves the checkpoint once: the model built from it and the training state
    restored from it come from one read of the file."""
    save = str(tmp_path / "run")
    args = ["--arch", "tfclip_tiny", "--sources", "mars", "--root", mars_root,
            "model.pretrained", "", "data.height", "64", "data.width", "32", "data.seq_len", "2",
            "data.workers", "0", "train.batch_size", "8", "train.memory_cache_dir", "none",
            "test.batch_size", "8", "--save-dir", save]
    runner.main([*args, "train.max_epoch", "1"])
    loads = count_loads(monkeypatch, osp.join(save, "checkpoints", "latest.pth"))
    out = runner.main([*args, "train.max_epoch", "2", "--resume", "auto"])
    assert len(loads) == 1 and "mars" in out["after"]
    assert load_checkpoint(osp.join(save, "checkpoints", "latest.pth"))["epoch"] == 2


def test_checkpoint_options_win_over_a_config_file(mars_root, tap_checkpoint, tmp_path,
                                                   monkeypatch, caplog):
    """``--evaluate-only --weights CKPT --config-file`` another model's config: the checkpoint's
    own model (arch, temporal fusion, test feature, SSP form) and frame size are evaluated, each
    option the file says otherwise is logged; options typed on the command line win, logged
    too. The weights file is read once per run."""
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    loads = count_loads(monkeypatch, tap_checkpoint)
    base = ["--evaluate-only", "--weights", tap_checkpoint, "--config-file",
            osp.join(REPO, "configs", "tfclip_vitb16_mars.yaml"), "--root", mars_root,
            "data.workers", "0", "test.batch_size", "8", "data.seq_len", "4"]
    out = runner.main([*base, "--save-dir", str(tmp_path / "a")])
    assert "mars" in out["after"] and len(loads) == 1
    log = open(glob.glob(osp.join(str(tmp_path / "a"), "*test.log"))[0]).read()
    assert "64-d features" in log  # paper feature of the tap model: 64 + 0, not 128 + 64 + 128
    for option, file_value, ckpt in (("temporal", "tmd", "tap"), ("test_feature", "released",
                                                                   "paper"),
                                     ("ssp_form", "released", "paper")):
        assert (f"=> model.{option}: {tap_checkpoint} says {ckpt!r}, the config file "
                f"{file_value!r}: the weights' {ckpt!r} is used") in log
    assert "holds a tfclip_tiny model, the config file says 'tfclip_vitb16'" in log
    assert "=> data.height: the config's 256 -> 64" in log and "data.width" in log

    caplog.clear()
    out = runner.main([*base, "model.test_feature", "released", "--save-dir",
                       str(tmp_path / "b")])
    assert len(loads) == 2  # once more for the second run
    log = open(glob.glob(osp.join(str(tmp_path / "b"), "*test.log"))[0]).read()
    assert "192-d features" in log  # released feature of the tap model: 128 + 64
    assert (f"=> model.test_feature: {tap_checkpoint} says 'paper' -> 'released' is used (set "
            f"on the command line)") in log


def test_training_from_weights_sizes_the_heads_for_the_data(mars_root, tmp_path):
    """Fine-tuning from another dataset's weights: heads and memory follow the training data
    (never a silent foreign memory); weights of other sizes are refused unless skipped."""
    other = build_tfclip("tfclip_tiny", num_classes=5, camera_num=6, image_size=(64, 32))
    other.memory.set(torch.randn(5, other.embed_dim))
    path = str(tmp_path / "other.pth")
    save_checkpoint({**checkpoint_header(other), "state_dict": other.state_dict()}, path)
    cfg = make_cfg(mars_root, str(tmp_path / "log"), **{"model.load_weights": path})
    with pytest.raises(ValueError, match=r"num_classes 5 \(model: 8\).*classifier"):
        new_engine(cfg)
    cfg.model.load_strict = False
    model = new_engine(cfg).raw_model
    assert model.num_classes == 8 and not model.memory.initialized  # recomputed for these ids
    assert_identical(model.backbone.state_dict(), other.backbone.state_dict(), "backbone")


def test_evaluate_only_refuses_to_run_without_weights(tmp_path):
    save = str(tmp_path / "log")
    with pytest.raises(ValueError, match=r"--evaluate-only needs weights.*latest\.pth"):
        runner.main(["--arch", "tfclip_tiny", "--evaluate-only", "--resume", "auto",
                     "--root", str(tmp_path / "none"), "--save-dir", save])
    with pytest.raises(ValueError, match=r"--evaluate-only needs weights"):
        runner.main(["--arch", "tfclip_tiny", "--evaluate-only", "--root", str(tmp_path)])


# ------------------------------------------------------------------------------ 4: fail fast
@pytest.mark.parametrize("args, message", [
    (["--arch", "tfclip_nope"], r"unknown architecture 'tfclip_nope'"),
    (["model.temporal", "lstm"], r"temporal must be one of .*'lstm'"),
    (["train.max_epochs", "3"], r"bad config option.*max_epochs"),
    (["test.dist_metric", "cosin"], r"dist_metric.*cosin"),
    (["train.amp", "fp8"], r"amp.*fp8"),
])
def test_bad_options_fail_before_the_data_is_touched(tmp_path, args, message):
    missing_root, save = str(tmp_path / "no_data_here"), str(tmp_path / "log")
    base = ["--arch", "tfclip_tiny"] if args[0] != "--arch" else []
    with pytest.raises(ValueError, match=message):
        runner.main([*base, *args, "--sources", "mars", "--root", missing_root,
                     "--save-dir", save])
    assert not osp.exists(save) and not osp.exists(missing_root)


def test_unknown_flag_fails_before_the_data_is_touched(tmp_path, capsys):
    with pytest.raises(SystemExit):
        runner.main(["--arch", "tfclip_tiny", "--evaluate-onyl", "--root", str(tmp_path / "x")])
    assert "--evaluate-onyl" in capsys.readouterr().err


def test_corrupt_memory_cache_is_recomputed_with_a_warning(mars_root, tmp_path):
    cache = str(tmp_path / "cache")
    engine = new_engine(make_cfg(mars_root, str(tmp_path / "log"),
                                 **{"train.memory_cache_dir": cache}))
    engine.identity_bank.fill()
    bank = engine.raw_model.memory.bank.clone()
    (path,) = glob.glob(osp.join(cache, "*.pth"))
    with open(path, "wb") as f:
        f.write(b"\x00garbage, not a checkpoint" * 10)
    engine.raw_model.memory.reset()
    with pytest.warns(UserWarning, match="unreadable identity-bank cache"):
        engine.identity_bank.fill()
    assert_identical(engine.raw_model.memory.bank, bank, "recomputed bank")
    assert_identical(load_checkpoint(path)["bank"], bank, "rewritten cache")


# ------------------------------------------------------------------------------ 5: honesty
def drop_gallery_identity(dm) -> int:
    """Remove one query identity from the gallery (gallery_includes_query no): its queries have
    no true match any more. Returns how many queries that leaves without one."""
    query, gallery = dm.test_dataset["mars"]["query"], dm.test_dataset["mars"]["gallery"]
    pid = query[0][1]
    kept = [item for item in gallery if item[1] != pid]
    assert not dm.includes_query("mars") and len(kept) < len(gallery)
    dm.test_dataset["mars"]["gallery"] = kept
    dm.test_loader["mars"]["gallery"] = build_test_loader(
        kept, dm.seq_len, dm.test_sample_method, dm.transform_te, 8)
    return sum(item[1] == pid for item in query)


def test_queries_without_a_match_are_counted_and_reported(mars_root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    engine = new_engine(make_cfg(mars_root, str(tmp_path / "log"),
                                 **{"data.gallery_includes_query": "no"}))
    unmatched = drop_gallery_identity(engine.datamanager)
    num_query = len(engine.datamanager.test_dataset["mars"]["query"])
    with pytest.warns(UserWarning, match=rf"{unmatched} of {num_query} queries have no true"):
        engine.test(normalize_feature=True)
    res = engine.results["mars"]
    assert res["num_query"] == num_query and res["num_valid_query"] == num_query - unmatched
    assert f"queries: {num_query - unmatched} evaluated of {num_query}" in caplog.text


def test_results_json_after_every_evaluation_and_evaluate_only(mars_root, tmp_path,
                                                               monkeypatch):
    real_build = runner.build_datamanager
    unmatched = []

    def build_without_one_identity(cfg, distributed=False):
        dm = real_build(cfg, distributed)
        unmatched.append(drop_gallery_identity(dm))
        return dm

    monkeypatch.setattr(runner, "build_datamanager", build_without_one_identity)
    save = str(tmp_path / "run")
    args = ["--arch", "tfclip_tiny", "--sources", "mars", "--root", mars_root, "--save-dir", save,
            "model.pretrained", "", "data.height", "64", "data.width", "32", "data.seq_len", "4",
            "data.workers", "0", "train.batch_size", "8", "train.memory_cache_dir", "none",
            "test.batch_size", "8", "data.gallery_includes_query", "no"]
    results = osp.join(save, "results.json")

    # an evaluation during training writes results.json at once: a crash later loses nothing
    step = VideoV2MEngine.forward_backward

    def crash_in_epoch_2(self, data):
        if self.epoch == 1:
            raise KeyboardInterrupt("killed in epoch 2")
        return step(self, data)

    monkeypatch.setattr(VideoV2MEngine, "forward_backward", crash_in_epoch_2)
    with warnings.catch_warnings(), pytest.raises(KeyboardInterrupt):
        warnings.simplefilter("ignore")
        runner.main([*args, "train.max_epoch", "2", "test.eval_freq", "1"])
    monkeypatch.setattr(VideoV2MEngine, "forward_backward", step)
    with open(results) as f:
        row = json.load(f)
    assert row["epoch"] == 1 and not row["evaluate_only"]
    assert row["num_valid_query"] == row["num_query"] - unmatched[0] < row["num_query"]

    os.remove(results)
    weights = osp.join(save, "checkpoints", "latest.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.main(["--evaluate-only", "--weights", weights, *args])
    with open(results) as f:
        row = json.load(f)
    assert row["evaluate_only"] and row["num_valid_query"] == row["num_query"] - unmatched[1]
    log = open(glob.glob(osp.join(save, "*test.log"))[0]).read()
    assert f"queries: {row['num_valid_query']} evaluated of {row['num_query']}" in log


# ------------------------------------------------------------------------------ 6: torchreid
@pytest.mark.parametrize("loss", ["softmax", "triplet"])
def test_torchreid_video_engines_train_and_evaluate_our_model(mars_root, tmp_path, loss, capsys):
    compat.set_random_seed(0)
    dm = compat.VideoDataManager(
        root=mars_root, sources="mars", height=128, width=64, seq_len=4, sample_method="evenly",
        batch_size_train=8, batch_size_test=8, workers=0, use_gpu=False, num_instances=4,
        train_sampler="RandomIdentitySampler" if loss == "triplet" else "RandomSampler")
    # torchreid's build_model takes no model options: the arch's own 128x64 frames
    model = compat.build_model("tfclip_tiny", num_classes=dm.num_train_pids, loss=loss,
                               pretrained=False, use_gpu=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = compat.build_optimizer(model, optim="adam", lr=1e-3)
    scheduler = compat.build_lr_scheduler(optimizer, lr_scheduler="single_step", stepsize=5)
    engine_cls = compat.VideoTripletEngine if loss == "triplet" else compat.VideoSoftmaxEngine
    engine = engine_cls(dm, model, optimizer=optimizer, scheduler=scheduler, use_gpu=False)
    capsys.readouterr()
    engine.run(save_dir=str(tmp_path / "log"), max_epoch=1, print_freq=1000, ranks=[1, 5])
    assert re.search(r"\*\* Results \*\*\nmAP: [\d.]+%", capsys.readouterr().out)  # it evaluated
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


def test_our_engine_asks_for_the_full_output(mars_root, tmp_path, monkeypatch):
    cfg = make_cfg(mars_root, str(tmp_path / "log"), **{"data.height": 128, "data.width": 64})
    engine = new_engine(cfg)
    softmax_model = compat.build_model("tfclip_tiny", num_classes=engine.raw_model.num_classes,
                                       loss="softmax", pretrained=False)
    engine = VideoV2MEngine(engine.datamanager, softmax_model,
                            torch.optim.Adam(softmax_model.parameters(), lr=1e-4),
                            criterion=engine.criterion, use_gpu=False, memory_cache_dir="")
    outputs = []
    forward = type(softmax_model).forward

    def spy(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if self.training:
            outputs.append((kwargs.get("full_output"), type(out)))
        return out

    monkeypatch.setattr(type(softmax_model), "forward", spy)
    engine.identity_bank.fill()
    engine.epoch, engine.batch_idx = 0, 0
    terms = engine.forward_backward(next(iter(engine.train_loader)))
    assert outputs == [(True, TFCLIPOutput)]
    assert {"loss_id", "loss_tri", "loss_v2m", "loss_frame"} <= set(terms)


# ------------------------------------------------------------------------------ 7: console
def test_progress_bar_when_asked_and_flags_anywhere(mars_root, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    args = runner.build_parser().parse_intermixed_args(
        ["train.max_epoch", "1", "--save-dir", "X", "data.seq_len", "2", "--arch", "tfclip_tiny"])
    cfg = runner.config_from_args(args)
    assert (cfg.train.max_epoch, cfg.data.save_dir, cfg.data.seq_len, cfg.model.name) == (
        1, "X", 2, "tfclip_tiny")

    cfg = make_cfg(mars_root, str(tmp_path / "log"))
    engine = new_engine(cfg)
    engine.progress.enabled = True
    capsys.readouterr()
    engine.run(save_dir=cfg.data.save_dir, max_epoch=1, print_freq=1, normalize_feature=True)
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and "it/s" in captured.err  # tqdm's bar
    assert not re.search(r"^epoch: \[1/1\]", captured.out, re.M)  # the bar replaces the lines
    assert "=> epoch 1/1 done" in caplog.text


def test_demo_like_run_prints_before_and_after(mars_root, tmp_path, capsys):
    save = str(tmp_path / "demo")
    out = runner.main(["--arch", "tfclip_tiny", "--sources", "mars", "--root", mars_root,
                       "model.pretrained", "", "data.height", "64", "data.width", "32",
                       "data.seq_len", "4", "data.workers", "0", "train.batch_size", "8",
                       "train.max_epoch", "1", "train.memory_cache_dir", "none",
                       "test.batch_size", "8", "test.eval_before_train", "True",
                       "train.lr", "1e-3", "--save-dir", save])
    text = capsys.readouterr().out
    table = text[text.index("dataset | metric | before | after"):]
    for key in ("mAP", "R1", "R5"):
        before, after = out["before"]["mars"][key], out["after"]["mars"][key]
        assert f"mars    | {key:<6} | {before:>6.1%} | {after:.1%}" in table
    assert text.rstrip().splitlines()[-1].startswith("=> Wrote log: ")
    # "before" is the untrained model's evaluation, "after" the trained one's (the final
    # evaluation, also in results.json): training changed the ranking
    metrics = ("mAP", "mINP", "R1", "R5")
    before, after = ({k: out[when]["mars"][k] for k in metrics} for when in ("before", "after"))
    assert before != after, before
    with open(osp.join(save, "results.json")) as f:
        final = json.load(f)
    assert {k: final[k] for k in metrics} == after
    summary = json.load(open(osp.join(save, "summary.json")))
    assert {k: summary["before"]["mars"][k] for k in metrics} == before
