"""The shipped CoFusion weights load (no unpickling), fuse from the CLI with automatic selection,
and give the validation metrics their card reports on the CAVE validation scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cofusion.learn.weights import list_weights, load_weights, shipped_weights_dir

CARD = shipped_weights_dir() / "cofusion_cave_x4.json"


@pytest.fixture(scope="module")
def shipped():
    if not CARD.is_file():
        pytest.skip("no shipped cave-x4 weights in weights/")
    model, card = load_weights(CARD.with_suffix(".safetensors"))
    return model, card


def test_card_describes_the_weights(shipped):
    model, card = shipped
    assert card["hs_bands"] == 31 and card["ms_bands"] == 3 and card["scale"] == 4
    assert card["protocol"] == "cave-x4" and card["srf"] == "nikon-d700"
    assert card["n_params"] == model.n_params() == 4_968_287
    assert card["training"]["steps_done"] > 0 and card["training"]["seconds"] > 0
    assert {"psnr", "sam", "ergas", "ssim"} <= set(card["validation"]) and card["validation_glp_hs"]
    assert CARD.with_suffix(".safetensors") in list_weights()


def _validate_against_card(model, card, shared_data):
    """The card's validation scenes, validated as the training loop did: checks the card's network
    metrics and returns (scenes, metrics, the classical base's metrics measured here)."""
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.core.metrics import full_reference
    from napari_cofusion.learn.train import make_scene, validate
    from napari_cofusion.learn.device import set_threads

    set_threads(None)
    scenes = [make_scene(read_cube(shared_data / "cave" / name), name, {"protocol": card["protocol"]},
                         with_base=model.cfg.base == "glp-hs") for name in card["training_data"]["val_scenes"]]
    got = validate(model, scenes)
    want = card["validation"]
    assert got["psnr"] == pytest.approx(want["psnr"], abs=0.01)
    assert got["sam"] == pytest.approx(want["sam"], abs=0.005)
    assert got["ergas"] == pytest.approx(want["ergas"], abs=0.005)
    rows = [full_reference(sc.base.numpy(), sc.ref.numpy(), sc.scale) for sc in scenes]
    return scenes, got, {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "sam")}


def test_validation_metrics_match_the_card(shipped, shared_data):
    """Whole validation scenes, as the training loop validated them."""
    from napari_cofusion.learn.train import validate

    model, card = shipped
    scenes, got, base = _validate_against_card(model, card, shared_data)
    # and they improve on their classical base (measured here, not read from the card)
    assert got["psnr"] > base["psnr"] + 0.3
    assert got["sam"] < base["sam"]
    # with fuse()'s default data-consistency step (what a user gets from `fuse --method cofusion`)
    dc = validate(model, scenes, consistency="auto")
    want = card["validation_consistency"]
    assert dc["psnr"] == pytest.approx(want["psnr"], abs=0.01)
    assert dc["sam"] == pytest.approx(want["sam"], abs=0.005)
    assert dc["psnr"] > got["psnr"] and dc["sam"] < got["sam"]
    # the quality bar: at least 1 dB over the classical baseline (glp-hs as published, no
    # step) and a lower SAM, both measured here
    print(f"cofusion {dc['psnr']:.4f} dB / {dc['sam']:.4f}°, glp-hs {base['psnr']:.4f} dB")
    assert dc["psnr"] >= base["psnr"] + 1.0
    assert dc["sam"] < base["sam"]


def test_cli_fuse_picks_the_shipped_weights(shipped, shared_data, tmp_path, capsys):
    from napari_cofusion.cli import main

    ref = shared_data / "cave" / "paints_ms"
    pair = tmp_path / "pair"
    assert main(["simulate", "--ref", str(ref), "--protocol", "cave-x4", "--out", str(pair)]) == 0
    out = tmp_path / "fused.hdr"
    assert main(["fuse", "--lr", str(pair / "lr.hdr"), "--msi", str(pair / "msi.hdr"), "--method", "cofusion",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "data consistency: projected" in printed and "weights: cofusion_cave_x4.safetensors" in printed
    assert main(["evaluate", "--fused", str(out), "--ref", str(pair / "ref.hdr"), "--scale", "4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["psnr"] > 45.0 and np.isfinite(res["sam"])
    # a 48-band pair: the message says what the shipped weights expect
    lr = np.random.default_rng(0).random((48, 16, 16)).astype(np.float32)
    msi = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "lr48.npy", lr)
    np.save(tmp_path / "msi3.npy", msi)
    assert main(["fuse", "--lr", str(tmp_path / "lr48.npy"), "--msi", str(tmp_path / "msi3.npy"), "--method", "cofusion",
                 "--weights", "cofusion_cave_x4", "--out", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "31 HS bands" in err and "48 HS bands" in err


X8 = shipped_weights_dir() / "cofusion_cave_x8.json"


@pytest.mark.skipif(not X8.is_file(), reason="no shipped cave-x8 weights in weights/")
def test_x8_weights_reproduce_their_card_and_are_picked_for_x8_pairs(shared_data, tmp_path, capsys):
    """The ×8 weights (a short CPU run, see their card) give their card's validation metrics, beat
    their classical base, and `fuse` picks them for a ×8 pair."""
    from napari_cofusion.cli import main

    model, card = load_weights(X8.with_suffix(".safetensors"))
    assert (card["hs_bands"], card["ms_bands"], card["scale"], card["protocol"]) == (31, 3, 8, "cave-x8")
    _, got, base = _validate_against_card(model, card, shared_data)
    assert got["psnr"] > base["psnr"] and got["sam"] < base["sam"]
    pair = tmp_path / "pair"
    assert main(["simulate", "--ref", str(shared_data / "cave" / "paints_ms"), "--protocol", "cave-x8",
                 "--out", str(pair)]) == 0
    capsys.readouterr()
    assert main(["fuse", "--lr", str(pair / "lr.hdr"), "--msi", str(pair / "msi.hdr"), "--method", "cofusion",
                 "--out", str(tmp_path / "f.hdr")]) == 0
    assert "weights: cofusion_cave_x8.safetensors" in capsys.readouterr().out
