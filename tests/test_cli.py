"""The command line runs the same core end to end and fails cleanly on bad input."""

import json

import numpy as np
import pytest

from napari_cofusion.cli import main
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.io import read_cube, write_cube
from napari_cofusion.samples import bundled_reference


@pytest.fixture
def ref_file(tmp_path):
    path = tmp_path / "ref.npz"
    write_cube(bundled_reference(), path)
    return path


def test_simulate_fuse_evaluate(tmp_path, ref_file, capsys):
    out = tmp_path / "pair"
    assert main(["simulate", "--ref", str(ref_file), "--scale", "4", "--psf", "weak", "--srf", "nikon-d700",
                 "--out", str(out)]) == 0
    for name in ("lr.hdr", "lr.img", "msi.hdr", "ref.hdr", "recipe.json"):
        assert (out / name).exists()
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["scale"] == 4 and recipe["psf"]["kind"] == "weak" and len(recipe["srf_matrix"]) == 3
    assert read_cube(out / "lr.hdr").shape == (31, 32, 32)
    assert read_cube(out / "msi.hdr").shape == (3, 128, 128)

    fused = {}
    for method in ("bicubic", "glp-hs"):
        fused[method] = tmp_path / f"{method}.tif"
        assert main(["fuse", "--lr", str(out / "lr.hdr"), "--msi", str(out / "msi.hdr"), "--method", method,
                     "--out", str(fused[method])]) == 0
    capsys.readouterr()
    scores = {}
    for method, path in fused.items():
        assert main(["evaluate", "--fused", str(path), "--ref", str(out / "ref.hdr"), "--scale", "4", "--json"]) == 0
        scores[method] = json.loads(capsys.readouterr().out)
    assert set(scores["glp-hs"]) == {"psnr", "ssim", "sam", "ergas", "rmse", "cc"}
    assert scores["glp-hs"]["psnr"] > scores["bicubic"]["psnr"] + 8
    assert scores["glp-hs"]["sam"] < scores["bicubic"]["sam"]

    assert main(["evaluate", "--fused", str(fused["glp-hs"]), "--lr", str(out / "lr.hdr"), "--msi",
                 str(out / "msi.hdr"), "--json"]) == 0
    nr = json.loads(capsys.readouterr().out)
    assert set(nr) == {"d_lambda", "d_s", "qnr"} and 0 < nr["qnr"] <= 1


def test_simulate_with_noise_is_seeded(tmp_path, ref_file):
    for d in ("a", "b"):
        assert main(["simulate", "--ref", str(ref_file), "--protocol", "cave-x2", "--snr", "30", "--seed", "7",
                     "--format", ".npz", "--out", str(tmp_path / d)]) == 0
    a, b = read_cube(tmp_path / "a" / "lr.npz"), read_cube(tmp_path / "b" / "lr.npz")
    np.testing.assert_array_equal(a.data, b.data)


def test_bad_input_is_one_line_error(tmp_path, ref_file, capsys):
    out = tmp_path / "pair"
    main(["simulate", "--ref", str(ref_file), "--protocol", "cave-x4", "--out", str(out)])
    capsys.readouterr()
    # swapped inputs
    assert main(["fuse", "--lr", str(out / "msi.hdr"), "--msi", str(out / "lr.hdr"), "--out", str(tmp_path / "f.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "swapped" in err
    # missing file
    assert main(["fuse", "--lr", str(tmp_path / "nope.hdr"), "--msi", str(out / "msi.hdr"), "--out", str(tmp_path / "g.tif")]) == 2
    assert "nope.hdr" in capsys.readouterr().err
    # output exists: refused, old file untouched
    target = tmp_path / "exists.tif"
    target.write_bytes(b"keep me")
    assert main(["fuse", "--lr", str(out / "lr.hdr"), "--msi", str(out / "msi.hdr"), "--out", str(target)]) == 2
    assert target.read_bytes() == b"keep me"
    assert "already exists" in capsys.readouterr().err
    # simulate into a folder that already has a pair: refused before writing anything
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["simulate", "--ref", str(ref_file), "--protocol", "cave-x4", "--out", str(out)]) == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # scale mismatch
    write_cube(Cube(np.zeros((3, 100, 90), np.float32) + 0.5, name="m"), tmp_path / "m.npy")
    assert main(["fuse", "--lr", str(out / "lr.hdr"), "--msi", str(tmp_path / "m.npy"), "--out", str(tmp_path / "h.tif")]) == 2
    assert "integer scale" in capsys.readouterr().err


def test_demo_runs(capsys):
    assert main(["demo"]) == 0
    text = capsys.readouterr().out
    assert "glp-hs" in text and "PSNR" in text


# ------------------------------------------------------------------------------- one meaning per flag
def _subparsers():
    import argparse

    from napari_cofusion.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _options(parser) -> dict[str, object]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_lr_is_the_lrhsi_and_learning_rate_the_learning_rate():
    from napari_cofusion.cli import build_parser

    p = build_parser()
    for cmd in (["fuse", "--out", "f.tif"], ["estimate"], ["finetune", "--out", "w"], ["evaluate", "--fused", "f.tif"]):
        a = p.parse_args([*cmd, "--lr", "lr.hdr", "--msi", "msi.hdr"])
        assert a.lr == "lr.hdr" and a.msi == "msi.hdr", cmd
    a = p.parse_args(["train", "--data", "d", "--learning-rate", "3e-4", "--out", "w"])
    assert a.learning_rate == 3e-4
    a = p.parse_args(["finetune", "--lr", "lr.hdr", "--msi", "msi.hdr", "--learning-rate", "5e-4", "--out", "w"])
    assert a.learning_rate == 5e-4 and a.lr == "lr.hdr"
    with pytest.raises(SystemExit):  # --lr is never a learning rate
        p.parse_args(["train", "--data", "d", "--lr", "1e-4", "--out", "w"])


def test_every_output_flag_is_out_and_json_is_a_flag():
    writes = {"simulate", "fuse", "train", "distill", "estimate", "finetune"}
    seen = set()
    for name, sub in _subparsers().items():
        opts = _options(sub)
        outs = {o for o in opts if o.startswith("--out")}
        assert outs <= {"--out"}, (name, outs)
        if outs:
            seen.add(name)
            assert "--overwrite" in opts, name
        if "--json" in opts:  # "print the result as JSON on stdout", never a file name
            assert opts["--json"].nargs == 0 and name in {"fuse", "evaluate", "estimate"}, name
    assert seen == writes


def test_docstring_and_help_name_every_command():
    from napari_cofusion import cli

    names = set(_subparsers())
    assert len(names) == 9
    for name in names:
        assert f"``{name}``" in cli.__doc__, name
    assert "--list-methods" in _options(_subparsers()["fuse"])


def test_fuse_list_methods(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fuse", "--list-methods"])
    assert stop.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert {line.split()[0] for line in lines} >= {"bicubic", "glp-hs", "cofusion"}
    assert all(len(line.split()) > 1 for line in lines)  # each with its description


def test_json_prints_the_result_on_stdout(tmp_path, ref_file, capsys):
    pair = tmp_path / "pair"
    assert main(["simulate", "--ref", str(ref_file), "--protocol", "cave-x4", "--out", str(pair)]) == 0
    capsys.readouterr()
    lr, msi = str(pair / "lr.hdr"), str(pair / "msi.hdr")
    assert main(["fuse", "--lr", lr, "--msi", msi, "--method", "bicubic", "--out", str(tmp_path / "f.npy"),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["method"] == "bicubic" and res["scale"] == 4 and res["out"] == str(tmp_path / "f.npy")
    assert main(["estimate", "--lr", lr, "--msi", msi, "--json", "--out", str(tmp_path / "deg.json")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["scale"] == 4 and res == json.loads((tmp_path / "deg.json").read_text())


def test_errors_and_interrupts_are_one_line(monkeypatch, capsys):
    from napari_cofusion import cli
    from napari_cofusion.core.errors import DeviceError

    def interrupted(a):
        raise KeyboardInterrupt

    def failing(a):
        raise DeviceError("no such device")

    monkeypatch.setattr(cli, "_cmd_demo", interrupted)
    assert main(["demo"]) == 130
    assert capsys.readouterr().err.strip() == "napari-cofusion demo: interrupted"
    monkeypatch.setattr(cli, "_cmd_demo", failing)  # any CofusionError, not only CubeError
    assert main(["demo"]) == 2
    assert capsys.readouterr().err.strip() == "napari-cofusion demo: error: no such device"


def test_training_loop_stops_on_sigterm_and_restores_the_handler(capsys):
    import os
    import signal

    from napari_cofusion.cli import _train_loop
    from napari_cofusion.learn.train import Progress

    before = signal.getsignal(signal.SIGTERM)
    closed = []

    def loop():
        try:
            yield "preparing"
            for step in (1, 2, 3):
                yield Progress(step, 10, 0.5, 1e-4, 0.1)
                if step == 2:
                    os.kill(os.getpid(), signal.SIGTERM)
        finally:
            closed.append(True)

    last = _train_loop("t", loop(), log_every=1)
    assert last.step == 2 and closed == [True]
    out = capsys.readouterr().out
    assert "[t] preparing" in out and "[t] step 2/10" in out and "[t] stopped at step 2" in out
    assert signal.getsignal(signal.SIGTERM) == before
