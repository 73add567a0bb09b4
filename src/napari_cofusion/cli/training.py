"""The ``train`` and ``distill`` commands: networks trained on a folder of reference scenes."""

from __future__ import annotations

import argparse

from napari_cofusion.cli.common import _weights_out
from napari_cofusion.cli.loop import train_loop as _train_loop
from napari_cofusion.core.errors import CubeError


def _cmd_train(a: argparse.Namespace) -> int:
    """Train a network (CoFusion, HyFusion, S³RNet) on CAVE-style scene folders under a named
    protocol; write weights + card."""
    import json
    import time

    from napari_cofusion.learn import train_folder
    from napari_cofusion.learn.device import device_name, resolve_device, set_threads

    threads = set_threads(a.threads)
    device = resolve_device(a.device)
    tr, va = train_folder.split_scenes(a.data, a.val, a.train_scenes)
    out = _weights_out(a.out, a.overwrite)
    print(f"[train] {len(tr)} training and {len(va)} validation scenes, {a.protocol}, {threads} threads", flush=True)
    t0 = time.perf_counter()
    cfg = train_folder.training_config(steps=a.steps, batch=a.batch, patch=a.patch, lr=a.learning_rate, seed=a.seed,
                                       val_every=a.val_every, ckpt_every=a.ckpt_every, warmup=a.warmup,
                                       select=a.select or ("consistency" if a.init else "network"),
                                       val_start=bool(a.init) if a.val_start is None else a.val_start,
                                       precision=a.precision)
    try:
        options = json.loads(a.config) if a.config else None
    except json.JSONDecodeError as exc:
        raise CubeError(f"--config is not JSON: {exc}") from None
    if options is not None and not isinstance(options, dict):
        raise CubeError(f"--config must be a JSON object of configuration fields, got {a.config!r}")
    run = train_folder.prepare(a.data, tr, va, a.protocol, cfg, crop=a.crop, augment=a.augment, workers=a.workers,
                               base=a.base, depths=a.depths, init=a.init, architecture=a.architecture,
                               options=options)
    print(f"[train] scenes ready in {time.perf_counter() - t0:.0f} s ({len(run.train_scenes)} with augmentation)",
          flush=True)
    print(f"[train] {type(run.model).__name__} {run.model.n_params():,} parameters; {run.config}", flush=True)
    dev_name = device_name(device)
    print(f"[train] device: {dev_name}", flush=True)
    last = _train_loop("train", run.loop(a.ckpt_dir, a.resume, device), a.log_every)
    paths, card = run.save(out, last, threads, dev_name, overwrite=a.overwrite)
    print(f"[train] wrote {paths[0]} and {paths[1]}", flush=True)
    v, b = card["validation"], card["validation_glp_hs"]
    if v:
        print(f"[train] best validation: PSNR {v['psnr']:.3f} SAM {v['sam']:.3f}"
              + (f" (glp-hs: PSNR {b['psnr']:.3f} SAM {b['sam']:.3f})" if b else ""), flush=True)
    return 0


def _cmd_distill(a: argparse.Namespace) -> int:
    """Distil a CoFusion teacher into the CSAKD student on CAVE-style scenes; write weights + card."""
    import json
    import time

    from napari_cofusion.learn import distill, train_folder
    from napari_cofusion.learn.device import device_name, resolve_device, set_threads

    threads = set_threads(a.threads)
    device = resolve_device(a.device)
    tr, va = train_folder.split_scenes(a.data, a.val, a.train_scenes)
    out = _weights_out(a.out, a.overwrite)
    try:
        student = json.loads(a.student) if a.student else None
    except json.JSONDecodeError as exc:
        raise CubeError(f"--student is not a JSON object ({exc})") from None
    print(f"[distill] {len(tr)} training and {len(va)} validation scenes, {a.protocol}, {threads} threads", flush=True)
    t0 = time.perf_counter()
    cfg = train_folder.training_config(steps=a.steps, batch=a.batch, patch=a.patch, lr=a.learning_rate, seed=a.seed,
                                       val_every=a.val_every, ckpt_every=a.ckpt_every, warmup=a.warmup)
    train_only = [t for t in a.train_only.split(",") if t] if a.train_only else None
    variants = distill.VARIANTS[: a.variants] if a.variants <= 4 else train_folder.DIHEDRAL[: a.variants]
    run = distill.prepare_distillation(a.data, tr, va, a.protocol, cfg, a.teacher, student=student, crop=a.crop,
                                       variants=variants, workers=a.workers, kd_weight=a.kd_weight,
                                       sam_weight=a.sam_weight, init=a.init, train_only=train_only,
                                       log=lambda m: print(f"[distill] {m}", flush=True))
    print(f"[distill] ready in {time.perf_counter() - t0:.0f} s; student {run.model.n_params():,} parameters; "
          f"{run.config}", flush=True)
    dev_name = device_name(device)
    run.card_fields["command"] = "napari-cofusion " + " ".join(a.argv)
    last = _train_loop("distill", run.loop(a.ckpt_dir, a.resume, device), a.log_every)
    paths, card = run.save(out, last, threads, dev_name, overwrite=a.overwrite)
    print(f"[distill] wrote {paths[0]} and {paths[1]}", flush=True)
    v, t = card["validation"], card["teacher"]["validation"]
    if v and t:
        print(f"[distill] best validation: PSNR {v['psnr']:.3f} SAM {v['sam']:.3f} "
              f"(teacher: PSNR {t['psnr']:.3f} SAM {t['sam']:.3f})", flush=True)
    return 0
