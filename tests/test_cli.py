"""What a newcomer trips on at the command line (issue 16): one run per save dir, honest epoch
counts, flags and options in any order, config errors before any data is read and in the words
typed, numbers of the key's type, ``--resume auto`` and Ctrl-C, one error style for every tool,
fewer needless warnings, export folders checked first and kept out of the working copy.

Runs that must fail do so on a data root that does not exist: the root is never created, which
shows the failure came before any data was read.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import logging
import os
import os.path as osp
import re
import shutil
import signal
import socket
import subprocess
import sys
import warnings

import pytest
import torch
from train_helpers import REPO, subprocess_env, tiny_config

from tfclip_torchreid import cli, compat, runner
from tfclip_torchreid.config import get_default_config, merge_config_file
from tfclip_torchreid.export import export_model, run_exported
from tfclip_torchreid.models import build_tfclip
from tfclip_torchreid.utils.checkpoint import checkpoint_header, load_checkpoint, save_checkpoint
from tfclip_torchreid.utils.run_lock import LOCK_NAME, FolderInUseError

TRAIN = osp.join(REPO, "tools", "train.py")


def options(root: str, max_epoch: int = 1) -> list[str]:
    """The tiny model on the tests' synthetic MARS, as a command line (flags after options)."""
    return ["model.pretrained", "", "data.height", "64", "data.width", "32", "data.seq_len", "4",
            "data.workers", "0", "train.batch_size", "4", "sampler.num_instances", "2",
            "train.max_epoch", str(max_epoch), "train.lr", "1e-4", "train.warmup_epochs", "1",
            "train.print_freq", "1", "train.memory_cache_dir", "none", "test.batch_size", "8",
            "--arch", "tfclip_tiny", "--sources", "mars", "--root", root]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f"{name}_tool", osp.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A tfclip_tiny checkpoint for 64x32 frames, 8 identities, 6 cameras."""
    torch.manual_seed(3)
    model = build_tfclip("tfclip_tiny", num_classes=8, camera_num=6, image_size=(64, 32))
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pth")
    save_checkpoint({**checkpoint_header(model), "state_dict": model.state_dict(), "epoch": 1},
                    path)
    return path


def _fails_before_data(tmp_path, args: list[str], error: type, message: str) -> str:
    missing_root = str(tmp_path / "no_data_here")
    with pytest.raises(error, match=message) as info:
        runner.main([*args, "--sources", "mars", "--root", missing_root, "--save-dir",
                     str(tmp_path / "log")])
    assert not osp.exists(missing_root)
    return str(info.value)


# ------------------------------------------------------------------------------ 3: lock
def test_a_second_run_into_a_busy_save_dir_is_refused_and_a_dead_holder_is_taken_over(
        mars_root, tmp_path, caplog):
    save = str(tmp_path / "run")
    first = subprocess.Popen([sys.executable, TRAIN, *options(mars_root, max_epoch=500),
                              "--save-dir", save], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=subprocess_env(), cwd=REPO)
    try:
        for line in first.stdout:
            if line.startswith("=> Start training"):
                break
        else:
            pytest.fail("the first run ended before training")
        with pytest.raises(FolderInUseError) as info:
            runner.main([*options(mars_root), "--save-dir", save])
        text = str(info.value)
        assert f"pid {first.pid} on {socket.gethostname()}" in text
        assert "tools/train.py" in text and "train.max_epoch 500" in text
        assert re.search(r"started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text)
        assert "--save-dir" in text
        assert len(glob.glob(osp.join(save, "*-train.log"))) == 1  # the refused run wrote none
    finally:
        first.kill()  # SIGKILL: no chance to give the folder back
        first.wait(timeout=60)
    with open(osp.join(save, LOCK_NAME)) as f:
        assert json.load(f)["pid"] == first.pid  # a stale lock
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    runner.main([*options(mars_root), "--save-dir", save])
    assert f"pid {first.pid} on" in caplog.text and "has ended without releasing it" in caplog.text
    assert not osp.exists(osp.join(save, LOCK_NAME))  # released on exit


# ------------------------------------------------------------------------------ 5: epochs
@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_training_without_epochs_fails_before_any_data(tmp_path, epochs):
    text = _fails_before_data(tmp_path, ["--arch", "tfclip_tiny", "model.pretrained", "",
                                         "train.max_epoch", epochs], ValueError,
                              rf"train\.max_epoch {epochs}")
    assert "--evaluate-only" in text or "negative" in text


def test_evaluate_only_with_zero_epochs_names_only_files_it_wrote(mars_root, tmp_path,
                                                                   checkpoint, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    save = str(tmp_path / "eval")
    out = runner.main(["--evaluate-only", "--weights", checkpoint, "train.max_epoch", "0",
                       "--sources", "mars", "--root", mars_root, "--save-dir", save,
                       "data.workers", "0", "test.batch_size", "8"])
    assert out["after"]["mars"]["mAP"] > 0
    closing = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("=> Wrote"))
    named = dict(part.split(": ", 1) for part in closing[len("=> Wrote "):].split(" | "))
    assert "checkpoints" not in named  # an evaluation writes no checkpoint
    assert all(osp.exists(path) for path in named.values())
    assert named["results"] == osp.join(save, "results.json")


# ------------------------------------------------------------------------------ 6, 10, 11, 15
def test_flags_and_options_in_any_order_also_after_sources(tmp_path):
    args = runner.parse_args(["-s", "mars", "train.batch_size", "8", "-t", "mars", "lsvid",
                              "train.lr", "1", "--arch", "tfclip_tiny", "data.workers", "0"])
    cfg = runner.config_from_args(args)
    assert list(cfg.data.sources) == ["mars"] and list(cfg.data.targets) == ["mars", "lsvid"]
    assert cfg.train.batch_size == 8 and cfg.train.lr == 1.0 and cfg.data.workers == 0
    assert runner.command_line_keys(args) >= {"train.batch_size", "data.sources", "train.lr"}
    for argv in (["-s", "train.batch_size", "8"], ["--arch", "tfclip_tiny", "-t"]):
        with pytest.raises(SystemExit):  # -s / -t still need a name
            runner.parse_args(argv)


def test_a_short_run_with_options_after_sources_pretrained_false_and_resume_auto(
        mars_root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    save = str(tmp_path / "run")
    out = runner.main(["--arch", "tfclip_tiny", "-s", "mars", "train.max_epoch", "1",
                       "model.pretrained", "False", "data.height", "64", "data.width", "32",
                       "data.seq_len", "4", "data.workers", "0", "train.batch_size", "4",
                       "sampler.num_instances", "2", "train.lr", "1", "train.warmup_epochs", "1",
                       "train.print_freq", "1000", "train.memory_cache_dir", "none",
                       "test.batch_size", "8", "--root", mars_root, "--save-dir", save,
                       "--resume", "auto"])
    assert set(out["after"]) == {"mars"}
    latest = osp.join(save, "checkpoints", "latest.pth")
    assert f"=> --resume auto: no {latest}, starting from scratch" in caplog.text
    assert load_checkpoint(latest)["epoch"] == 1


def test_config_errors_come_before_the_data_in_command_line_words(tmp_path, checkpoint):
    text = _fails_before_data(tmp_path, ["--arch", "tfclip_tiny"], ValueError,
                              "has no OpenAI CLIP weights")
    assert text.startswith("--arch tfclip_tiny ") and 'model.pretrained ""' in text
    assert "pretrained=" not in text
    missing = str(tmp_path / "ViT-B-16.pt")
    text = _fails_before_data(tmp_path, ["--arch", "tfclip_vitb16", "model.pretrained", missing],
                              FileNotFoundError, f"model.pretrained {re.escape(missing)}: ")
    assert repr(missing) not in text
    # fine-tuning weights of another frame size
    text = _fails_before_data(tmp_path, ["--weights", checkpoint, "data.height", "128",
                                         "data.width", "64"], ValueError, "64x32 frames")
    assert text.startswith(f"--weights {checkpoint} holds a model for 64x32 frames")
    assert text.endswith("set data.height 64 data.width 32")
    # evaluating them at another size set on the command line
    text = _fails_before_data(tmp_path, ["--evaluate-only", "--weights", checkpoint,
                                         "data.height", "128"], ValueError, "64x32 frames")
    assert "data.height/data.width are 128x32" in text and "drop data.height" in text


@pytest.mark.parametrize("value", ["False", "false", "none", "None", '""', ""])
def test_pretrained_false_or_none_means_random_weights(value):
    args = runner.parse_args(["--arch", "tfclip_tiny", "model.pretrained", value])
    cfg = runner.config_from_args(args)
    assert cfg.model.pretrained == ""
    assert runner.check_config(cfg, explicit=runner.command_line_keys(args)) is None


def test_numbers_take_the_type_of_their_key(tmp_path):
    cfg = runner.config_from_args(runner.parse_args(
        ["train.lr", "1", "train.gamma", "0", "data.flip", "false", "data.root", "2024",
         "data.sources", "mars", "train.milestones", "[20, 40]"]))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.gamma == 0.0 and isinstance(cfg.train.gamma, float)
    assert cfg.data.flip is False and cfg.data.root == "2024"
    assert list(cfg.data.sources) == ["mars"] and list(cfg.train.milestones) == [20, 40]
    for key, value, kind in (("train.max_epoch", "1.5", "a whole number"),
                             ("data.flip", "2", "True or False"),
                             ("train.lr", "fast", "a number")):
        with pytest.raises(ValueError, match=f"^{re.escape(key)} takes {kind} .*got {value}$"):
            runner.config_from_args(runner.parse_args([key, value]))
    with pytest.raises(ValueError, match=r"no such key \(did you mean train\.max_epoch\?\)"):
        runner.config_from_args(runner.parse_args(["train.max_epochs", "3"]))
    # a config file too
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1\nmodel:\n  pretrained: false\n")
    cfg = merge_config_file(get_default_config(), str(path))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.model.pretrained == ""
    path.write_text("train:\n  max_epoch: 2.5\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: train\.max_epoch takes a "):
        merge_config_file(get_default_config(), str(path))


# ------------------------------------------------------------------------------ 15: Ctrl-C
def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_says_how_to_resume_without_a_traceback_and_the_run_resumes(mars_root, tmp_path,
                                                                        caplog):
    save = str(tmp_path / "run")
    # many epochs, so that a busy machine reading the output late still finds the run going;
    # Ctrl-C's default disposition, as a terminal gives it: a suite started in the background
    # (``cmd &`` in a script) ignores SIGINT, and children inherit an ignored signal
    proc = subprocess.Popen([sys.executable, TRAIN, *options(mars_root, max_epoch=40),
                             "--save-dir", save], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=subprocess_env(), cwd=REPO,
                            preexec_fn=_default_sigint)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.match(r"epoch: \[2/40\]\[1/", line):
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 130, out[-3000:]
    latest = osp.join(save, "checkpoints", "latest.pth")
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert (f"interrupted: {latest} holds the last finished epoch: run the same command with "
            f"--resume auto to continue from it") in out
    done = load_checkpoint(latest)["epoch"]  # a whole checkpoint, no temp file left
    assert 1 <= done < 40 and not glob.glob(osp.join(save, "checkpoints", ".tmp-*"))
    assert not osp.exists(osp.join(save, LOCK_NAME))
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    runner.main([*options(mars_root, max_epoch=done + 1), "--save-dir", save, "--resume", "auto"])
    assert f"continuing at epoch {done + 1}" in caplog.text
    assert load_checkpoint(latest)["epoch"] == done + 1


# ------------------------------------------------------------------------------ 19: noise
def test_torchscript_export_shows_no_jit_deprecation_warnings(tmp_path):
    model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, layers=1).eval()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        path = export_model(model, str(tmp_path / "tiny.pt"), "torchscript", frames=2)
        run_exported(path, "torchscript")
        warnings.warn("a warning of ours still shows", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in seen]
    assert not [m for m in messages if "torch.jit" in m], messages
    assert "a warning of ours still shows" in messages


def test_more_workers_than_cpus_are_capped_with_one_line(mars_root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    cpus = len(os.sched_getaffinity(0))
    cfg = tiny_config(mars_root, str(tmp_path / "log"), **{"data.workers": cpus + 6})
    compat.set_random_seed(cfg.train.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "will create N worker processes" included
        engine = runner.build_engine(cfg)
        iter(engine.train_loader)
    assert engine.train_loader.num_workers == cpus
    assert f"=> data.workers {cpus + 6} -> {cpus}: this machine gives the run {cpus} CPUs" \
        in caplog.text


def _main_calls_cli_run(path: str) -> bool:
    tree = ast.parse(open(path).read())
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return bool(re.search(r"sys\.exit\(cli\.run\(main\b", ast.unparse(node)))
    return False


def test_every_tool_runs_through_the_one_error_style():
    tools = [p for p in sorted(glob.glob(osp.join(REPO, "tools", "*.py")))
             if re.search(r"^def main\(", open(p).read(), re.M)]
    assert len(tools) >= 10
    assert [osp.basename(p) for p in tools if not _main_calls_cli_run(p)] == []


def test_a_cli_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    """What tools/train.py's ``__main__`` runs (the script itself: the Ctrl-C test)."""
    argv = ["--arch", "tfclip_tiny", "model.pretrained", "", "train.max_epoch", "0", "--root",
            str(tmp_path / "none")]
    assert cli.run(runner.main, argv) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: train.max_epoch 0: a training run needs 1 epoch or more; to evaluate weights "
        "without training, use --evaluate-only --weights PATH (run with --debug for the "
        "traceback)"]
    with pytest.raises(ValueError, match="train.max_epoch 0"):  # the traceback is Python's
        cli.run(runner.main, [*argv, "--debug"])


# ------------------------------------------------------------------------------ 9, 14: export
def test_export_into_an_unwritable_folder_fails_before_loading(tmp_path, checkpoint,
                                                               monkeypatch):
    tool = _tool("export")
    monkeypatch.setattr(tool, "load_inference_model",
                        lambda *a, **k: pytest.fail("the model was loaded before the check"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # no folder can be made under it, even as root
    with pytest.raises(PermissionError, match=rf"cannot write to {re.escape(str(blocker))}"
                                              r"/sub .*pick another --out"):
        tool.main(["--weights", checkpoint, "--format", "torchscript", "--out",
                   str(blocker / "sub" / "tiny.pt")])


def test_export_without_out_goes_beside_the_weights_not_into_the_current_folder(
        tmp_path, checkpoint, monkeypatch):
    tool = _tool("export")
    weights = tmp_path / "run" / "checkpoints" / "latest.pth"
    weights.parent.mkdir(parents=True)
    shutil.copy(checkpoint, weights)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    fast = ["--format", "torchscript", "--frames", "2", "--no-verify"]
    assert tool.main(["--weights", str(weights), *fast]) == 0
    assert (weights.parent / "tfclip_tiny.pt").is_file()
    assert tool.main(["--arch", "tfclip_tiny", *fast]) == 0  # random weights: log/export
    assert (work / "log" / "export" / "tfclip_tiny.pt").is_file()
    assert sorted(os.listdir(work)) == ["log"]


def test_exported_models_are_ignored_by_git():
    if shutil.which("git") is None or not osp.isdir(osp.join(REPO, ".git")) and not osp.isfile(
            osp.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    for name in ("tfclip_vitb16.onnx", "tfclip_vitb16.onnx.data", "sub/model.onnx"):
        rc = subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=REPO).returncode
        assert rc == 0, f"{name} is not ignored by .gitignore"
