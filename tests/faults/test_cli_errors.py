"""User mistakes end in one line naming the setting (and file); failures keep a traceback."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.cli_helpers import ROOT

pytestmark = pytest.mark.faults

DEMO = str(ROOT / "configs" / "demo.yaml")


def _main(monkeypatch, tmp_path, args: list[str]) -> int:
    from mvf_lightning.cli.commands import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MVF_LIGHTNING_DEMO_ROOT", str(tmp_path / "demo_root"))
    monkeypatch.delenv("MVF_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        return main(args)
    except SystemExit as e:
        return e.code


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_yaml_typo_names_the_closest_key_and_the_file(monkeypatch, tmp_path, capsys):
    typo = tmp_path / "mine.yaml"
    typo.write_text("model:\n  embeder:\n    num_tokens: 4\n")
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO, "--config", str(typo)])
    assert code not in (0, None)
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert 'did you mean "model.embedder.num_tokens"' in lines[0]
    assert str(typo.resolve()) in lines[0]


def test_yaml_typo_in_an_inheriting_file_names_that_file(monkeypatch, tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(f"inherit: {DEMO}\n")
    child = tmp_path / "child.yaml"
    child.write_text("inherit: base.yaml\ntrainer:\n  max_epoch: 3\n")
    code = _main(monkeypatch, tmp_path, ["fit", "--config", str(child)])
    assert code not in (0, None)
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert 'did you mean "trainer.max_epochs"' in lines[0] and str(child.resolve()) in lines[0]


def test_command_line_typo_is_one_line(monkeypatch, tmp_path, capsys):
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO, "--model.embeder.num_tokens=4"])
    assert code not in (0, None)
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and 'did you mean "model.embedder.num_tokens"' in lines[0], lines


def test_abbreviated_option_is_rejected(monkeypatch, tmp_path, capsys):
    code = _main(
        monkeypatch, tmp_path, ["fit", "--config", DEMO, "--trainer.max_epoch=3", "--print_config"]
    )
    captured = capsys.readouterr()
    assert code not in (0, None), captured.out[-500:]
    assert "max_epochs: 3" not in captured.out
    assert 'did you mean "trainer.max_epochs"' in captured.err


def test_missing_checkpoint_is_one_line(monkeypatch, tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO, "--ckpt_path", str(missing)])
    assert code == 1
    lines = _error_lines(capsys.readouterr().err)
    assert lines == [f"error: --ckpt_path: checkpoint not found: {missing}"]


def test_truncated_checkpoint_names_the_file(monkeypatch, tmp_path, capsys):
    import torch

    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {}}, good)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code = _main(monkeypatch, tmp_path, ["validate", "--config", DEMO, "--ckpt_path", str(bad)])
    assert code == 1
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(bad) in lines[0] and "not a readable checkpoint" in lines[0]


def test_random_bytes_npy_does_not_suggest_allow_pickle(tmp_path):
    from mvf_lightning.errors import DataError
    from mvf_lightning.evaluation.export import EmbeddingExportError, _load
    from mvf_lightning.utils.npy import load_npy

    junk = tmp_path / "junk.npy"
    junk.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(DataError) as info:
        load_npy(junk, "label array")
    assert str(junk) in str(info.value) and "not a .npy file" in str(info.value)
    assert "allow_pickle" not in str(info.value)
    with pytest.raises(EmbeddingExportError) as info:
        _load(junk)
    assert "allow_pickle" not in str(info.value) and str(junk) in str(info.value)
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects") as info:
        load_npy(objects)
    assert "allow_pickle" not in str(info.value)


def test_penn_action_labels_of_random_bytes_do_not_suggest_allow_pickle(tmp_path):
    from mvf_lightning.prepare.common import PrepareError
    from mvf_lightning.prepare.penn_action import _read_labels

    junk = tmp_path / "0001.npy"
    junk.write_bytes(b"\x00garbage" * 40)
    with pytest.raises(PrepareError) as info:
        _read_labels(junk)
    assert "allow_pickle" not in str(info.value) and str(junk) in str(info.value)


def _raise_in(module_file: str, error: BaseException) -> BaseException:
    code = compile("raise error", module_file, "exec")
    try:
        exec(code, {"error": error})
    except BaseException as e:
        return e
    raise AssertionError("did not raise")


def test_user_errors_and_failures_are_told_apart_by_type_alone():
    """Not by where the traceback ends: a built-in error keeps its traceback even when this
    package raised it, and one of ours is one line even when torch's frames are innermost."""
    import torch
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    import mvf_lightning.data.index as ours
    from mvf_lightning.cli.commands import is_user_error
    from mvf_lightning.data.decode import VideoDecodeError
    from mvf_lightning.errors import CheckpointError, ConfigError
    from mvf_lightning.prepare.common import PrepareError

    assert is_user_error(ConfigError("model.x: bad"))
    assert is_user_error(MisconfigurationException("max_epochs"))
    assert is_user_error(VideoDecodeError("a.mp4", "no frames"))  # re-based on DataError
    assert is_user_error(PrepareError("--size must be a positive even number, got 3"))
    for where in (ours.__file__, torch_file()):
        assert not is_user_error(_raise_in(where, ValueError("bad index")))
        assert not is_user_error(_raise_in(where, FileNotFoundError("missing")))
        assert not is_user_error(_raise_in(where, RuntimeError("NCCL error: unhandled")))
        assert not is_user_error(_raise_in(where, torch.OutOfMemoryError("CUDA out of memory")))
        assert is_user_error(_raise_in(where, CheckpointError("x.ckpt: does not fit")))


class _RefusingModule(__import__("torch").nn.Module):
    """A module whose forward raises one of our errors, called through torch's own frames."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def forward(self, x):
        raise self.error


def test_our_error_from_deep_inside_torch_is_one_line(monkeypatch, tmp_path, capsys):
    import torch

    import mvf_lightning.cli.commands as cli
    from mvf_lightning.errors import ConfigError

    def fail(command, rest):
        model = torch.nn.Sequential(torch.nn.Identity(), _RefusingModule(
            ConfigError("model.embedder.num_tokens must be >= 1, got 0")))
        torch.func.functional_call(model, dict(model.named_parameters()), (torch.zeros(1),))

    monkeypatch.setattr(cli, "_run_lightning", fail)
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO])
    assert code == 1
    lines = _error_lines(capsys.readouterr().err)
    assert lines == ["error: model.embedder.num_tokens must be >= 1, got 0"]


def test_a_builtin_error_raised_in_the_package_keeps_its_traceback(monkeypatch, tmp_path, capsys):
    import mvf_lightning.cli.commands as cli
    import mvf_lightning.data.index as ours

    def fail(command, rest):
        raise _raise_in(ours.__file__, ValueError("cannot resample 0 labels to 3 frames"))

    monkeypatch.setattr(cli, "_run_lightning", fail)
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO])
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert _error_lines(err)[-1] == (
        "error: fit failed with ValueError: cannot resample 0 labels to 3 frames (a failure, "
        "not a setting; the traceback above shows where)"
    )


class _Base:
    pass


class _Refuses(_Base):
    def __init__(self, root: str = "x") -> None:
        from mvf_lightning.errors import MissingFileError

        raise MissingFileError(f"dataset root {root} does not exist")


def test_our_error_wrapped_by_the_config_parser_is_one_line(monkeypatch, tmp_path, capsys):
    """jsonargparse wraps an error raised while it builds an ``Optional[...]`` class in its
    own ``ValueError`` (as LightningCLI's ``data`` is): the cause is found and printed."""
    from jsonargparse import ArgumentParser

    import mvf_lightning.cli.commands as cli
    from mvf_lightning.cli.commands import _user_error_in, is_user_error
    from mvf_lightning.errors import MissingFileError

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=_Base | None)
    config = parser.parse_args(["--data", f"{__name__}._Refuses", "--data.root=/nowhere"])
    with pytest.raises(ValueError) as info:
        parser.instantiate(config)
    assert not is_user_error(info.value)  # jsonargparse's own ValueError ...
    assert isinstance(_user_error_in(info.value), MissingFileError)  # ... caused by ours

    def fail(command, rest):
        parser.instantiate(config)

    monkeypatch.setattr(cli, "_run_lightning", fail)
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO])
    assert code == 1
    assert _error_lines(capsys.readouterr().err) == [
        "error: dataset root /nowhere does not exist"
    ]


class _RefusingDataset(__import__("torch").utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        from mvf_lightning.errors import ConfigError

        raise ConfigError("videos in one batch have different frame sizes: set\n"
                          "data.decode_size: [H, W]")


def test_our_error_from_a_dataloader_worker_is_its_own_line(monkeypatch, tmp_path, capsys):
    """torch re-raises a worker's error with the worker's traceback in its message: the line
    printed is the original message."""
    import torch

    import mvf_lightning.cli.commands as cli

    def fail(command, rest):
        next(iter(torch.utils.data.DataLoader(_RefusingDataset(), num_workers=1)))

    monkeypatch.setattr(cli, "_run_lightning", fail)
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO])
    assert code == 1
    assert _error_lines(capsys.readouterr().err) == [
        "error: videos in one batch have different frame sizes: set data.decode_size: [H, W]"
    ]


def test_a_bad_model_setting_is_one_line(monkeypatch, tmp_path, capsys):
    code = _main(monkeypatch, tmp_path,
                 ["summary", "--config", DEMO, "--model.embedder.num_tokens=0"])
    assert code == 1
    err = capsys.readouterr().err  # Lightning's log lines aside (its seed message)
    lines = [line for line in _error_lines(err) if line.startswith("error")]
    assert lines == ["error: model.embedder.num_tokens must be >= 1, got 0"]
    assert "mvf_lightning/models/" not in err  # no traceback of ours


def test_every_error_class_of_the_package_derives_from_mvf_error():
    """Parsed, not imported: every class named ``...Error`` / ``...Exception`` defined in the
    package derives (through classes of the package) from ``MVFError``."""
    import ast

    package = ROOT / "mvf_lightning"
    classes: list[tuple[str, list[str], str]] = []  # name, base names, file
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                names = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                classes.append((node.name, names, str(path.relative_to(ROOT))))
    bases: dict[str, list[str]] = {}
    for name, names, _ in classes:
        bases.setdefault(name, []).extend(names)

    def derives(name: str, seen: frozenset = frozenset()) -> bool:
        if name == "MVFError":
            return True
        return name not in seen and any(derives(b, seen | {name}) for b in bases.get(name, ()))

    errors = [c for c in classes if c[0].endswith(("Error", "Exception"))]
    names = {name for name, _, _ in errors}
    assert {"MVFError", "RunError", "PrepareError", "VideoDecodeError",
            "EmbeddingExportError"} <= names
    outside = sorted(f"{name} ({file})" for name, own, file in errors
                     if name != "MVFError" and not any(derives(b) for b in own))
    assert not outside, f"error classes not derived from mvf_lightning.errors.MVFError: {outside}"


def torch_file() -> str:
    import torch.nn.functional

    return torch.nn.functional.__file__


def test_runtime_failure_keeps_its_traceback_and_a_summary(monkeypatch, tmp_path, capsys):
    import mvf_lightning.cli.commands as cli

    def fail(command, rest):
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli, "_run_lightning", fail)
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO])
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    last = _error_lines(err)[-1]
    assert last.startswith("error: fit failed with OutOfMemoryError: CUDA out of memory")


def test_misconfiguration_is_one_line(monkeypatch, tmp_path, capsys):
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    import mvf_lightning.cli.commands as cli

    def fail(command, rest):
        raise MisconfigurationException(
            "Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger."
        )

    monkeypatch.setattr(cli, "_run_lightning", fail)
    code = _main(monkeypatch, tmp_path, ["fit", "--config", DEMO])
    assert code == 1
    lines = _error_lines(capsys.readouterr().err)
    assert lines == [
        "error: Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger."
    ]


if sys.platform == "win32":  # pragma: no cover
    pytest.skip("POSIX only", allow_module_level=True)


def _tiny_args(tmp_path) -> list[str]:
    from tests.cli_helpers import tiny_override

    override = tiny_override(tmp_path, tmp_path / "demo", tmp_path / "ckpt", tmp_path / "logs")
    return ["--config", DEMO, "--config", str(override)]


def test_integer_batch_limits_stay_numbers_of_batches(monkeypatch, tmp_path):
    """``1`` is one batch, ``1.0`` the whole epoch (Lightning's meaning), from the command line
    and from YAML alike."""
    from mvf_lightning.cli.lightning_cli import MVFLightningCLI

    monkeypatch.setenv("MVF_LIGHTNING_DEMO_ROOT", str(tmp_path / "demo"))
    limits = tmp_path / "limits.yaml"
    limits.write_text("trainer:\n  limit_val_batches: 3\n  limit_test_batches: 0.25\n")
    cli = MVFLightningCLI(args=[*_tiny_args(tmp_path), "--config", str(limits),
                                "--trainer.limit_train_batches=1",
                                "--trainer.limit_predict_batches=1.0"], run=False)
    trainer = cli.trainer
    assert trainer.limit_train_batches == 1 and isinstance(trainer.limit_train_batches, int)
    assert trainer.limit_val_batches == 3 and isinstance(trainer.limit_val_batches, int)
    assert trainer.limit_test_batches == 0.25
    assert trainer.limit_predict_batches == 1.0
    assert isinstance(trainer.limit_predict_batches, float)
    assert cli.config.trainer.limit_train_batches == 1  # what --print_config shows


def test_a_limit_that_cuts_the_evaluation_short_is_refused():
    from types import SimpleNamespace

    from mvf_lightning.errors import ConfigError
    from mvf_lightning.evaluation.callback import check_whole_evaluation

    sets = {"a": SimpleNamespace(train_ids=("1", "2", "3"), val_ids=("4", "5")),
            "b": SimpleNamespace(train_ids=("6",), val_ids=("7",))}

    class Data:  # the evaluation side of a DataModule (data.contract.EvaluationData)
        eval_name, eval_protocol = "x", None

        def eval_sets(self):
            return sets

        def eval_fingerprint(self):
            return ""

        def eval_frames(self, set_name, video_id):
            return None

    datamodule = Data()

    def trainer(limit, world_size=1):
        return SimpleNamespace(datamodule=datamodule, world_size=world_size,
                               limit_val_batches=limit, limit_test_batches=limit)

    for limit in (1.0, 0, 0.0, 7, 100, None):
        check_whole_evaluation(trainer(limit), "fit")
    check_whole_evaluation(trainer(4, world_size=2), "validate")  # 4 videos per process
    for limit, kept in ((2, 2), (0.5, 3), (1, 1)):
        with pytest.raises(ConfigError) as info:
            check_whole_evaluation(trainer(limit), "fit")
        assert f"trainer.limit_val_batches={limit} evaluates {kept} of the 7 " in str(info.value)
    with pytest.raises(ConfigError, match="limit_test_batches=3 evaluates 3 of the 4 evaluation"
                                          " videos per process"):
        check_whole_evaluation(trainer(3, world_size=2), "test")


def test_a_missing_dataset_root_is_named_before_the_model_is_built(monkeypatch, tmp_path, capsys):
    """Pretrained weights can take minutes to fail to download: the data root is checked
    first, and its one line says how to create it."""
    import mvf_lightning.training.module

    def built(*args, **kwargs):
        raise AssertionError("the model was built before the data root was checked")

    monkeypatch.setattr(mvf_lightning.training.module, "MVFormer", built)
    missing = tmp_path / "no_penn"
    code = _main(monkeypatch, tmp_path, ["fit", "--config", str(ROOT / "configs" / "penn.yaml"),
                                         f"--data.init_args.root={missing}"])
    assert code == 1
    lines = [line for line in _error_lines(capsys.readouterr().err) if line.startswith("error")]
    assert lines == [
        f"error: dataset root {missing} does not exist; create it with: python -m mvf_lightning "
        "prepare penn-action --source <Penn_Action> --labels <penn_action_labels> --out "
        f"{missing} (from CARL's release: --carl <CARL penn_action> --trust-pickle instead of "
        "--source and --labels)"
    ], lines
