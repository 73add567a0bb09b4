"""Scale-out on dask (napari_cofusion.fusion.scaleout): a scene's blocks as dask tasks, on the
local threaded scheduler and on a dask.distributed LocalCluster of two workers, with zarr and
ENVI outputs written as blocks complete; many pairs from a folder or a list; the CLI; and the
result opening in napari as a lazy (dask-backed) layer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cofusion import api
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io import read_cube
from napari_cofusion.degrade.simulate import save_pair, simulate_pair
from napari_cofusion.api import find_pairs, fuse_dask, fuse_many


@pytest.fixture(scope="module")
def pair(shared_data):
    ref = read_cube(shared_data / "cave" / "paints_ms")
    ref = ref.with_data(np.ascontiguousarray(ref.data[:, 96:288, 64:256]))  # 192², real CAVE
    return simulate_pair(ref, protocol="cave-x4")


def test_blocks_on_the_threaded_scheduler_equal_the_engine(pair, tmp_path):
    serial = api.fuse(pair.lr, pair.msi, "glp-hs", tile=64, consistency="on")
    assert serial.blocks == 9
    seen = []
    res = fuse_dask(pair.lr, pair.msi, "glp-hs", tile=64, consistency="on", workers=2,
                    progress=lambda d, n: seen.append((d, n)))
    assert res.blocks == 9 and seen[-1] == (9, 9) and len(seen) == 9
    np.testing.assert_array_equal(res.cube.data, serial.cube.data)
    # the consistency report sums the blocks' mismatches as the serial loop does
    for k in ("lr_mismatch_before", "lr_mismatch_after", "msi_mismatch_after"):
        assert res.consistency[k] == pytest.approx(serial.consistency[k], rel=1e-9)
    assert res.meta["blocks"] == 9 and res.meta["method"] == "glp-hs"
    # zarr and ENVI outputs, written block by block, hold the same cube
    z = fuse_dask(pair.lr, pair.msi, "glp-hs", tile=64, consistency="on", out=tmp_path / "f.zarr")
    e = fuse_dask(pair.lr, pair.msi, "glp-hs", tile=64, consistency="on", out=tmp_path / "f.hdr")
    assert z.cube is None and z.paths == [str(tmp_path / "f.zarr")]
    back = read_cube(tmp_path / "f.zarr")
    np.testing.assert_array_equal(back.data, serial.cube.data)
    np.testing.assert_allclose(back.wavelengths, pair.lr.wavelengths)
    assert back.meta["method"] == "glp-hs" and back.meta["blocks"] == 9
    np.testing.assert_array_equal(read_cube(e.paths[0]).data, serial.cube.data)
    # an existing store is refused before any work, and kept
    with pytest.raises(CubeError, match="already exists"):
        fuse_dask(pair.lr, pair.msi, "glp-hs", tile=64, out=tmp_path / "f.zarr")
    np.testing.assert_array_equal(read_cube(tmp_path / "f.zarr").data, serial.cube.data)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_a_failing_block_leaves_no_partial_store(pair, tmp_path, monkeypatch):
    from napari_cofusion.fusion import engine

    calls = []
    real = engine.FusionPlan.block

    def flaky(self, b, *a, **k):
        calls.append(b)
        if len(calls) == 3:
            raise CubeError("block 3 failed")
        return real(self, b, *a, **k)

    monkeypatch.setattr(engine.FusionPlan, "block", flaky)
    with pytest.raises(CubeError, match="block 3 failed"):
        fuse_dask(pair.lr, pair.msi, "bicubic", tile=64, out=tmp_path / "x.zarr", scheduler="synchronous")
    assert list(tmp_path.iterdir()) == []


def test_bad_scheduler_names_the_choices(pair):
    with pytest.raises(CubeError, match="tcp://HOST:8786"):
        fuse_dask(pair.lr, pair.msi, "bicubic", scheduler="gpu-cluster")
    with pytest.raises(CubeError, match="cannot reach the dask scheduler"):
        fuse_dask(pair.lr, pair.msi, "bicubic", scheduler="tcp://127.0.0.1:9")


@pytest.mark.slow
def test_local_cluster_of_two_workers_equals_one_process(pair, tmp_path):
    """The network's blocks on a dask.distributed LocalCluster (two worker processes) equal the
    single-process fusion to 1e-5, in memory and written to zarr by the workers; many pairs go
    to the same cluster."""
    distributed = pytest.importorskip("distributed")
    single = api.fuse(pair.lr, pair.msi, "cofusion", tile=96)
    assert single.blocks == 4
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        addr = cl.scheduler_address
        res = fuse_dask(pair.lr, pair.msi, "cofusion", tile=96, scheduler=addr)
        stored = fuse_dask(pair.lr, pair.msi, "cofusion", tile=96, scheduler=addr, out=tmp_path / "c.zarr")
        with distributed.Client(addr) as client:
            assert len(client.scheduler_info()["workers"]) == 2
        save_pair(pair, tmp_path / "pairs" / "p1")
        save_pair(simulate_pair(pair.reference.with_data(np.ascontiguousarray(pair.reference.data[:, :96, :96])),
                                protocol="cave-x4"), tmp_path / "pairs" / "p2")
        (tmp_path / "many").mkdir()
        rows = fuse_many(find_pairs(tmp_path / "pairs"), tmp_path / "many", "csakd", scheduler=addr)
        assert [(r["name"], r["error"], r["weights"]) for r in rows] == [
            ("p1", None, "csakd_cave_x4.safetensors"), ("p2", None, "csakd_cave_x4.safetensors")]
        np.testing.assert_allclose(read_cube(tmp_path / "many" / "p1.hdr").data,
                                   api.fuse(pair.lr, pair.msi, "csakd").cube.data, atol=1e-5)
    assert float(np.abs(res.cube.data - single.cube.data).max()) < 1e-5
    assert float(np.abs(read_cube(stored.paths[0]).data - single.cube.data).max()) < 1e-5
    assert res.meta["weights"] == single.meta["weights"]
    assert res.consistency["lr_mismatch_after"] == pytest.approx(single.consistency["lr_mismatch_after"], rel=1e-3)


@pytest.fixture
def pair_folder(pair, tmp_path):
    root = tmp_path / "pairs"
    root.mkdir()
    crop = pair.reference.with_data(np.ascontiguousarray(pair.reference.data[:, :96, :96]))
    for name, ref in (("a", pair.reference), ("b", crop)):
        save_pair(simulate_pair(ref, protocol="cave-x4"), root / name)
    return root


def test_many_pairs_from_a_folder_and_a_list(pair_folder, tmp_path):
    jobs = find_pairs(pair_folder)
    assert [j.name for j in jobs] == ["a", "b"]
    out = tmp_path / "out"
    out.mkdir()
    rows = fuse_many(jobs, out, "glp-hs", workers=2, scheduler="processes")
    assert [r["error"] for r in rows] == [None, None]
    for j in jobs:  # each equals the single-process fusion of its pair (its recipe beside lr)
        from napari_cofusion.degrade.simulate import read_pair

        lr, msi = read_pair(j.lr, j.msi, None)
        np.testing.assert_allclose(read_cube(out / f"{j.name}.hdr").data, api.fuse(lr, msi, "glp-hs").cube.data,
                                   atol=1e-6)
    with pytest.raises(CubeError, match="already exists"):
        fuse_many(jobs, out, "glp-hs")
    # a list file; a broken pair is reported in its row and the others still fused
    (tmp_path / "bad.hdr").write_text("not a header")
    lst = tmp_path / "pairs.txt"
    lst.write_text(f"# pairs\n{jobs[1].lr} {jobs[1].msi} good\n{tmp_path / 'bad.hdr'}, {jobs[1].msi}, broken\n")
    out2 = tmp_path / "out2"
    out2.mkdir()
    rows = fuse_many(find_pairs(lst), out2, "bicubic", fmt=".zarr")
    assert rows[0]["error"] is None and (out2 / "good.zarr").is_dir()
    assert rows[1]["name"] == "broken" and "bad.hdr" in rows[1]["error"]
    lst.write_text("only-one-path\n")
    with pytest.raises(CubeError, match="line 1: expected 'LRHSI HRMSI"):
        find_pairs(lst)
    with pytest.raises(CubeError, match="no pairs found"):
        find_pairs(out)


def test_cli_fuse_many_and_zarr(pair_folder, tmp_path, capsys):
    from napari_cofusion.cli import main

    out = tmp_path / "o"
    out.mkdir()
    assert main(["fuse", "--pairs", str(pair_folder), "--out", str(out), "--method", "glp-hs", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rep["pairs"]] == ["a", "b"] and rep["failed"] == 0
    assert (out / "a.hdr").is_file() and (out / "b.img").is_file()
    z = tmp_path / "one.zarr"
    assert main(["fuse", "--lr", str(pair_folder / "a" / "lr.hdr"), "--msi", str(pair_folder / "a" / "msi.hdr"),
                 "--out", str(z), "--tile", "64", "--workers", "2"]) == 0
    assert "fused with glp-hs" in capsys.readouterr().out
    np.testing.assert_allclose(read_cube(z).data, read_cube(out / "a.hdr").data, atol=1e-5)  # blocks vs whole
    assert main(["fuse", "--pairs", str(pair_folder), "--lr", "x", "--out", str(out)]) == 2
    assert "leave out --lr" in capsys.readouterr().err


@pytest.mark.gui
def test_fused_store_opens_as_a_lazy_layer(make_napari_viewer, pair, tmp_path, monkeypatch):
    """napari shows a fused zarr store through a dask array and reads only the bands it needs."""
    import dask.array as da
    import zarr

    fuse_dask(pair.lr, pair.msi, "glp-hs", tile=64, out=tmp_path / "big.zarr")
    read_bands: set[int] = set()
    real_open = zarr.open_array

    class Counting:  # the log is held by the instance (dask may copy the class's globals)
        def __init__(self, arr, log):
            self._a, self.log = arr, log
            self.shape, self.dtype, self.chunks, self.ndim, self.attrs = arr.shape, arr.dtype, arr.chunks, arr.ndim, arr.attrs

        def __getitem__(self, key):
            b = key[0] if isinstance(key, tuple) else key
            self.log.update(range(*b.indices(self.shape[0])) if isinstance(b, slice) else [int(b)])
            return self._a[key]

    monkeypatch.setattr(zarr, "open_array", lambda *a, **k: Counting(real_open(*a, **k), read_bands))
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "big.zarr"), plugin="napari-cofusion")
    assert len(layers) == 1
    layer = layers[0]
    assert isinstance(layer.data, da.Array) and layer.data.shape == (31, 192, 192)
    assert layer.rgb is False and layer.metadata["lazy"] and len(layer.metadata["wavelengths"]) == 31
    viewer.dims.set_current_step(0, 20)
    assert np.isfinite(viewer.screenshot(canvas_only=True)).all()
    assert read_bands and len(read_bands) < 31 // 2  # the bands shown and sampled, not the cube
