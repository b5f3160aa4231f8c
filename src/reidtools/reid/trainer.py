"""The training loop, through accelerate (one process per GPU, each reading its own shard split).

Determinism: the model is initialised from `seed`; batches are a pure function of (seed, rank,
epoch) (PK sampler, progressive pairing, augmentation all derive their generators from those and
the sample keys); the learning rate is a function of the epoch; optimizer and torch RNG states are
checkpointed every epoch. So `--epochs 2` equals `--epochs 1` then `--epochs 2 --resume`, bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass

import torch

from reidtools.errors import ReidError
from reidtools.reid import run as runio
from reidtools.reid import start
from reidtools.reid.config import TrainConfig, dcac_dataset_defaults, lr_at
from reidtools.reid.data import (AugmentConfig, BatchLoader, Record, apply_labels, assign_variants,
                                 build_label_maps, key_by_dataset, read_records)
from reidtools.reid.losses import (batch_hard_triplet, clothes_adversarial_loss, cross_entropy_ls,
                                   hard_sample_matrices, hsal_triplet, pairwise_distance)
from reidtools.reid.pairs import hard_pair_counts
from reidtools.reid.progressive import eligible_count, eligible_fraction, pair_variants
from reidtools.seeding import derive_seed

log = logging.getLogger("reidtools")



@dataclass
class Row:
    """Metadata of one sample, gathered from every process (labels, counts, checks)."""
    key: str
    pid: int
    clothes: str
    camid: int
    generated: bool
    source: str | None
    variant: int


def _rows(records: list[Record]) -> list[Row]:
    return [Row(r.key, r.pid, r.clothes, r.camid, r.generated, r.source, r.variant) for r in records]


def run_train(cfg: TrainConfig, sources: dict, train_inputs, run_dir: str, *, generated_inputs=(),
              resume: bool = False, progress: bool = True) -> dict:
    """`reid train`: fill the method-dependent defaults of `cfg` (`sources` names the options the user
    set), then train. Returns the summary of `train`."""
    from reidtools.reid.config import resolve

    cfg, sources = resolve(cfg, sources)
    return train(cfg, sources, train_inputs, run_dir, generated_inputs=generated_inputs, resume=resume,
                 progress=progress)


def train(cfg: TrainConfig, sources: dict, train_inputs, run_dir: str, *, generated_inputs=(),
          resume: bool = False, progress: bool = True) -> dict:
    """Train a resolved config; returns a summary dict. Writes the run folder described in reid.run."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, gather_object

    from reidtools.reid.backbones import build_backbone
    from reidtools.reid.heads import NormalizedClassifier, ReidModel
    from reidtools.reid.sampler import pk_batches
    from reidtools.shards import expand_inputs, split_shards

    from reidtools.reid.validate import (Validator, resumed_best, save_best, tracker_init, tracker_setup,
                                         tracker_values)

    kwargs = [DistributedDataParallelKwargs(find_unused_parameters=False)]
    trackers = tracker_setup(cfg.report_to, run_dir)
    validator = Validator(cfg) if cfg.eval_every else None   # resolves the query/gallery shards up front
    try:
        acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.cpu, kwargs_handlers=kwargs, **trackers)
    except (ValueError, RuntimeError) as exc:
        raise ReidError(f"--mixed-precision {cfg.mixed_precision}: accelerate cannot set up this machine ({exc})") from None
    rank, world = acc.process_index, acc.num_processes
    main = acc.is_main_process

    # ------------------------------------------------------------------ the run folder
    ckpt = runio.latest_checkpoint(run_dir)
    if os.path.exists(os.path.join(run_dir, runio.CONFIG)) and not resume:
        raise ReidError(f"-o {run_dir}: a run already exists there; pass --resume to continue it or choose another folder")
    saved = runio.read_config(run_dir) if resume and os.path.exists(os.path.join(run_dir, runio.CONFIG)) else None
    if saved is not None and ckpt is None:
        log.info("--resume: no complete checkpoint in %s yet; starting from epoch 1", run_dir)

    # ------------------------------------------------------------------ data
    train_shards = expand_inputs(list(train_inputs))
    gen_shards = expand_inputs(list(generated_inputs)) if generated_inputs else []
    real = read_records(split_shards(train_shards, rank, world), generated=False)
    if not real:
        raise ReidError(f"process {rank}: no training samples in {len(train_shards)} shard(s)")
    datasets = {r.dataset for r in real}
    if world > 1:
        datasets = set().union(*gather_object([sorted(datasets)]))
    multi_source = len(datasets) > 1
    dcac_dataset_defaults(cfg, sources, datasets)
    if saved is not None:
        changed = start.check_resume(saved["options"], cfg)
    if multi_source:
        key_by_dataset(real)
    progressive = bool(gen_shards) and cfg.mix == "progressive"
    gen_rows: list[Row] = []
    gen: list[Record] = []
    if gen_shards:
        if progressive:   # variants of this process's real images may sit in any generated shard
            local = {r.key for r in real}
            every = read_records(gen_shards, generated=True, need_source=True, keep=lambda m, k: m.get("source") in local)
            if multi_source:
                key_by_dataset(every)
            assign_variants(every)
            gen = [g for g in every if g.data is not None]
            gen_rows = _rows(every) if rank == 0 else []
        else:
            gen = read_records(split_shards(gen_shards, rank, world), generated=True)
            if multi_source:
                key_by_dataset(gen)
            assign_variants(gen)
            gen_rows = _rows(gen)
    rows_real: list[Row] = gather_object(_rows(real)) if world > 1 else _rows(real)
    rows_gen: list[Row] = gather_object(gen_rows) if world > 1 else gen_rows
    maps = build_label_maps([r.pid for r in rows_real], [r.clothes for r in rows_real],
                            [r.clothes for r in rows_gen])
    apply_labels(rows_real, maps, "training")
    apply_labels(rows_gen, maps, "generated")
    if progressive:
        real_keys = {r.key for r in rows_real}
        orphan = next((g for g in rows_gen if g.source not in real_keys), None)
        if orphan is not None:
            raise ReidError(f"generated sample {orphan.key!r}: its source {orphan.source!r} is not in the training shards")
    if saved is not None and os.path.exists(os.path.join(run_dir, runio.LABELS)):
        with open(os.path.join(run_dir, runio.LABELS), encoding="utf-8") as fh:
            if json.load(fh) != json.loads(json.dumps(maps.to_json())):
                raise ReidError(f"--resume: the identities or clothes ids of the input shards differ from {run_dir}/labels.json")
    label_of = {r.pid: maps.pids[r.pid] for r in rows_real}
    for r in real + gen:
        r.label = label_of[r.pid]
        r.clothes_label = maps.clothes[r.clothes]
    n_ids = len(maps.pids)
    n_real_clothes = len({r.clothes for r in rows_real})
    # the clothes classifier sees only real samples in progressive mode (DLCR), everything in concat
    n_cc = n_real_clothes if (progressive or not gen_shards) else len(maps.clothes)
    pos_mask = torch.zeros(n_ids, max(n_cc, 1))
    for r in rows_real + ([] if progressive else rows_gen):
        if maps.clothes[r.clothes] < n_cc:
            pos_mask[maps.pids[r.pid], maps.clothes[r.clothes]] = 1.0
    if progressive and saved is None and not gen:
        log.warning("process %d: no generated variant belongs to its training images", rank)

    # ------------------------------------------------------------------ model
    torch.manual_seed(cfg.seed)
    init = None
    if saved is not None and ckpt is not None:   # weights come from the checkpoint: no hub access
        backbone = build_backbone(cfg.backbone, config_dict=saved["backbone_config"])
    elif cfg.init:
        init = runio.read_init(cfg.init, cfg.backbone)
        backbone = build_backbone(cfg.backbone, config_dict=init["config"]["backbone_config"])
    else:
        backbone = build_backbone(cfg.backbone, cfg.pretrained)
    model = ReidModel(backbone, n_ids, pooling=cfg.pooling)
    if init is not None:
        init_record = start.apply_init(model, init)
    cc = NormalizedClassifier(model.dim, n_cc) if cfg.uses_cal() else None
    if cfg.method == "dcac":
        from reidtools.reid.dcac import freeze_patch_projection

        freeze_patch_projection(backbone)
    # --dif-weight 0 is DCAC's ReID baseline (CLIP + L_id + L_pcl): no diffusion branch at all
    dcac = _dcac_head(cfg, backbone, n_ids, model.dim) if cfg.method == "dcac" and cfg.dif_weight else None
    if cfg.gradient_checkpointing:
        if not getattr(backbone.net, "supports_gradient_checkpointing", False):
            raise ReidError(f"--gradient-checkpointing: backbone {cfg.backbone} does not support it")
        enable = getattr(backbone.net, "activation_checkpointing_enable", None)   # transformers >= 5 name
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            backbone.net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    if cc is not None:
        params += list(cc.parameters())
    if dcac is not None:   # LoRA adapters and ID prompts; the VAE and the U-Net's base weights stay frozen
        params += [p for p in dcac.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, global_step = 0, 0
    if saved is not None and ckpt is not None:
        state = runio.load_weights(os.path.join(ckpt, runio.WEIGHTS))
        cc_state = {k.split(".", 1)[1]: state.pop(k) for k in list(state) if k.startswith("clothes_classifier.")}
        dcac_state = {k.split(".", 1)[1]: state.pop(k) for k in list(state) if k.startswith("dcac.")}
        model.load_state_dict(state)
        if dcac is not None:
            if set(dcac_state) != set(dcac.trainable_state()):
                raise ReidError(f"--resume: {ckpt} does not hold this run's DCAC LoRA/prompt weights")
            dcac.load_state_dict(dcac_state, strict=False)
        if cc is not None:
            cc.load_state_dict(cc_state)
        opt_state = runio.load_optimizer(ckpt)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        st = runio.read_state(ckpt)
        start_epoch, global_step = st["epoch"], st["global_step"]
        runio.load_rng(ckpt, rank)
        log.info("resuming %s from epoch %d (step %d)", run_dir, start_epoch + 1, global_step)
        if main:
            dropped = runio.truncate_log(run_dir, start_epoch, global_step)
            if dropped:
                log.info("log.jsonl: dropped %d record(s) written after the checkpoint", dropped)
            if changed:
                start.record_resume_changes(run_dir, changed, start_epoch)

    if n_ids < 2:   # every loss is 0 with one identity: the run would "train" and learn nothing
        only = next(iter(maps.pids), "?")
        raise ReidError(f"the training shards hold a single identity (pid {only}); identity and metric losses "
                        "need at least two")
    if n_ids < cfg.batch_p:  # checked before the run folder exists, so a retry needs no clean-up
        raise ReidError(f"--batch {cfg.batch_p}x{cfg.batch_k}: only {n_ids} identities in the training data; lower P")
    if main and (saved is None or ckpt is None):
        if saved is not None:   # resumed before the first checkpoint: the run starts over
            runio.truncate_log(run_dir, None)
        runio.write_config(run_dir, {
            "options": cfg.to_dict(),
            "sources": sources,
            "backbone_config": json.loads(backbone.net.config.to_json_string()),
            "num_ids": n_ids, "num_clothes": len(maps.clothes), "num_clothes_classes": n_cc,
            "inputs": {"train": train_shards, "generated": gen_shards},
            "processes": world,
            **({"init": init_record} if init is not None else {}),
        })
        runio.write_json(os.path.join(run_dir, runio.LABELS), maps.to_json())
        runio.append_log(run_dir, {"type": "dataset", "processes": world, "real": len(rows_real),
                                   "generated": len(rows_gen), "ids": n_ids, "clothes": len(maps.clothes),
                                   **hard_pair_counts(rows_real + rows_gen)})
    acc.wait_for_everyone()
    if validator is not None and saved is not None and ckpt is not None:
        validator.best = resumed_best(run_dir, cfg, start_epoch)
    tracker_init(acc, cfg.report_to, run_dir, cfg.to_dict())

    extras = [m for m in (cc, dcac) if m is not None]
    model, *extras, optimizer = acc.prepare(model, *extras, optimizer)
    if cc is not None:
        cc = extras.pop(0)
    if dcac is not None:
        dcac = extras.pop(0)
    pos_mask = pos_mask.to(acc.device)

    records = real + gen
    variants: dict[str, list[int]] = {}
    for i, g in enumerate(records[len(real):], start=len(real)):
        variants.setdefault(g.source, []).append(i)
    for key in variants:
        variants[key].sort(key=lambda i: records[i].variant)
    labels_all = [r.label for r in records]
    pk_pool = list(range(len(real))) if (progressive or not gen) else list(range(len(records)))
    aug = AugmentConfig(flip=cfg.flip, pad=cfg.pad, erasing=cfg.erasing)
    rank_seed = derive_seed(cfg.seed, "rank", rank)

    # ------------------------------------------------------------------ epochs
    summary = {"epochs": []}
    for epoch in range(start_epoch, cfg.epochs):
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = pk_batches(labels_all, cfg.batch_p, cfg.batch_k, seed=rank_seed, epoch=epoch, indices=pk_pool)
        if progressive:
            frac = eligible_fraction(epoch, cfg.progressive_epochs, cfg.progressive_fractions)
            batches = [b + pair_variants([records[i].key for i in b], variants, epoch, seed=rank_seed, batch_index=bi,
                                         thresholds=cfg.progressive_epochs, fractions=cfg.progressive_fractions)
                       for bi, b in enumerate(batches)]
        n_steps = len(batches)
        if world > 1:
            n_steps = int(acc.gather(torch.tensor([n_steps], device=acc.device)).min().item())
        if n_steps == 0:
            raise ReidError(f"--batch {cfg.batch_p}x{cfg.batch_k}: no complete batch in epoch {epoch + 1}")
        memory = _pcl_memory(acc, model, records, pk_pool, cfg, n_ids, cfg.workers) if cfg.method == "dcac" else None
        loader = torch.utils.data.DataLoader(
            BatchLoader(records, batches[:n_steps], size=tuple(cfg.size), seed=rank_seed, epoch=epoch, augment_cfg=aug,
                        diffusion_size=cfg.diffusion_size if dcac is not None else None),
            batch_size=None, shuffle=False, num_workers=cfg.workers)
        model.train()
        if cc is not None:
            cc.train()
        if dcac is not None:
            dcac.train()
        sums: dict[str, float] = {}
        images, batch_hp, batch_hn = 0, 0, 0
        t0 = time.perf_counter()
        bar = _bar(progress and main, n_steps, f"epoch {epoch + 1}/{cfg.epochs}")
        for step, batch in enumerate(loader):
            sync = (step + 1) % cfg.grad_accum == 0 or step + 1 == n_steps
            ctx = contextlib.nullcontext() if sync or world == 1 else acc.no_sync(model)
            with ctx:
                terms, hp, hn = _losses(cfg, model, cc, batch, acc.device, epoch, pos_mask, progressive,
                                        dcac=dcac, memory=memory, acc=acc)
                total = sum(terms.values())
                _check_finite(acc, terms, global_step + 1, epoch, run_dir, world)
                acc.backward(total / cfg.grad_accum)
            if sync:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            global_step += 1
            images += int(batch["images"].shape[0])
            batch_hp, batch_hn = batch_hp + hp, batch_hn + hn
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
            if main and cfg.log_every and global_step % cfg.log_every == 0:
                runio.append_log(run_dir, {"type": "step", "epoch": epoch + 1, "step": global_step, "lr": lr,
                                           **{k: float(v.detach()) for k, v in terms.items()},
                                           "loss": float(total.detach())})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(total.detach()):.3f}")
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        counts = torch.tensor([images, batch_hp, batch_hn], device=acc.device)
        if world > 1:
            counts = acc.reduce(counts, "sum")
        images_all, batch_hp, batch_hn = (int(v) for v in counts.tolist())

        # evaluation before the checkpoint: a run killed in between redoes the epoch and its evaluation
        eval_record = None
        if validator is not None and validator.due(epoch + 1):
            if main:
                eval_record = validator.record(validator.evaluate(acc.unwrap_model(model), acc.device),
                                               epoch + 1, global_step)
                if eval_record["best"]:
                    save_best(run_dir, _state(acc, model, cc), validator.best)
                log.info("epoch %d/%d: %s mAP %.4f, rank-1 %.4f%s", epoch + 1, cfg.epochs, cfg.protocol,
                         eval_record.get("mAP", float("nan")), eval_record.get("rank1", float("nan")),
                         " (best so far)" if eval_record["best"] else "")
            acc.wait_for_everyone()

        # checkpoint: every process writes its RNG state, then the main one the rest (state.json last)
        path = runio.checkpoint_dir(run_dir, epoch + 1)
        os.makedirs(path, exist_ok=True)
        runio.save_rng(path, rank)
        acc.wait_for_everyone()
        if main:
            runio.save_checkpoint(run_dir, epoch + 1, model_state=_state(acc, model, cc, dcac),
                                  optimizer_state=optimizer.state_dict(),
                                  state={"epoch": epoch + 1, "global_step": global_step}, keep=cfg.keep_checkpoints,
                                  ranks=world)
            pool = rows_real + _eligible(rows_gen, epoch, cfg, progressive)
            record = {"type": "epoch", "epoch": epoch + 1, "step": global_step, "lr": lr,
                      **{k: v / n_steps for k, v in sums.items()}, "steps": n_steps, "images": images_all,
                      "seconds": round(seconds, 3), "images_per_s": round(images_all / max(seconds, 1e-9), 2),
                      "batch_n_hp": batch_hp, "batch_n_hn": batch_hn, **hard_pair_counts(pool)}
            if progressive:
                record["variant_fraction"] = eligible_fraction(epoch, cfg.progressive_epochs, cfg.progressive_fractions)
            runio.append_log(run_dir, record)
            acc.log(tracker_values(record), step=global_step)
            if eval_record is not None:
                runio.append_log(run_dir, eval_record)
                acc.log(tracker_values(eval_record), step=global_step)
                summary.setdefault("evals", []).append(eval_record)
            log.info("epoch %d/%d: loss %.4f, %.1f images/s", epoch + 1, cfg.epochs, record["loss"], record["images_per_s"])
            summary["epochs"].append(record)
        acc.wait_for_everyone()

    if main:
        digest = runio.save_weights(os.path.join(run_dir, runio.WEIGHTS), _state(acc, model, cc))
        data = runio.read_config(run_dir)
        data["options"].update({k: v for k, v in cfg.to_dict().items() if k in start.RESUMABLE})
        data["trained_epochs"] = cfg.epochs
        data.setdefault(runio.DIGESTS, {})[runio.WEIGHTS] = digest
        runio.write_config(run_dir, data)
    acc.wait_for_everyone()
    if cfg.report_to != "none":
        acc.end_training()
    summary["run_dir"] = run_dir
    if validator is not None:
        summary["best"] = validator.best
    return summary


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def _eligible(rows_gen: list[Row], epoch: int, cfg: TrainConfig, progressive: bool) -> list[Row]:
    if not progressive:
        return list(rows_gen)
    frac = eligible_fraction(epoch, cfg.progressive_epochs, cfg.progressive_fractions)
    per_source: dict[str, int] = {}
    for r in rows_gen:
        per_source[r.source] = per_source.get(r.source, 0) + 1
    return [r for r in rows_gen if r.variant < eligible_count(per_source[r.source], frac)]


def _losses(cfg: TrainConfig, model, cc, batch: dict, device, epoch: int, pos_mask, progressive: bool, *,
            dcac=None, memory=None, acc=None):
    images = batch["images"].to(device, non_blocking=True)
    labels, clothes, cams = (batch[k].to(device) for k in ("labels", "clothes", "cams"))
    generated = batch["generated"].to(device)
    out = model(images)
    feat, bn, logits = out["feat"].float(), out["bn"].float(), out["logits"].float()
    terms = {"id": cross_entropy_ls(logits, labels, cfg.label_smooth)}
    dist = pairwise_distance(feat, cfg.distance)
    is_hp, is_hn = hard_sample_matrices(labels, clothes, cams)
    if cfg.uses_hsal():
        # HSGL leaves the feature (Alg. 1 line 27: F = M(B)) and the margin value (eq. 11) open; the
        # released code uses the BNNeck output and margin 0 (--hsal-features post-bn --hsal-margin 0)
        hdist = dist if cfg.hsal_features == "pre-bn" else pairwise_distance(bn, cfg.distance)
        terms["hatrip"] = cfg.hsal_lambda * hsal_triplet(hdist, labels, clothes, cams, alpha=cfg.hsal_alpha,
                                                         margin=cfg.hsal_margin)
    elif cfg.triplet_weight:
        terms["triplet"] = cfg.triplet_weight * batch_hard_triplet(dist, labels, cfg.margin)
    if cc is not None and epoch >= cfg.cal_start_epoch:
        keep = ~generated if progressive else torch.ones_like(generated)
        f, c, y = bn[keep], clothes[keep], labels[keep]
        # the clothes classifier learns on detached features; the adversarial term trains the
        # backbone against it with its weights held fixed (Simple-CCReID's two-optimizer scheme)
        terms["clothes"] = torch.nn.functional.cross_entropy(cfg.cal_scale * cc(f.detach()), c)
        inner = cc.module if hasattr(cc, "module") else cc
        terms["adversarial"] = clothes_adversarial_loss(inner(f, detach_weight=True), c, pos_mask[y],
                                                        scale=cfg.cal_scale, epsilon=cfg.cal_epsilon)
    if memory is not None:   # DCAC eqs. 8 and 13: L_id + L_pcl + lambda L_dif
        from reidtools.reid.dcac import diffusion_input

        terms["pcl"] = cfg.pcl_weight * memory.loss(bn, labels)
        if dcac is not None:
            terms["dif"] = cfg.dif_weight * dcac(diffusion_input(batch["diffusion"].to(device)), logits, bn, labels)
        # eq. 7 after the loss (as the released code's backward hook), with every process's batch so
        # that all processes keep the same memory
        memory.update(*((acc.gather(bn.detach()), acc.gather(labels)) if acc.num_processes > 1 else (bn, labels)))
    return terms, int(is_hp.sum()), int(is_hn.sum())


def _dcac_head(cfg: TrainConfig, backbone, n_ids: int, feat_dim: int):
    from reidtools.reid.dcac import DcacHead, load_diffusion_branch

    branch = load_diffusion_branch(cfg.diffusion_model, lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                   lora_targets=cfg.lora_targets)
    if cfg.gradient_checkpointing:
        branch.enable_gradient_checkpointing()
    return DcacHead(branch, n_ids, feat_dim, condition=cfg.condition, tau=cfg.condition_tau)


@torch.no_grad()
def _pcl_memory(acc, model, records: list[Record], indices: list[int], cfg: TrainConfig, n_ids: int, workers: int):
    """DCAC's memory bank at the start of an epoch: each identity's centroid of (L2-normalised) BNNeck
    features of its un-augmented training images, summed over every process."""
    from reidtools.reid.dcac import PrototypeMemory, centroid_sums

    chunks = [indices[i:i + 128] for i in range(0, len(indices), 128)]
    loader = torch.utils.data.DataLoader(
        BatchLoader(records, chunks, size=tuple(cfg.size), seed=0, epoch=0, augment_cfg=None),
        batch_size=None, shuffle=False, num_workers=workers)
    model.eval()
    sums = counts = None
    for batch in loader:
        with acc.autocast():
            bn = model(batch["images"].to(acc.device))["bn"].float()
        s, c = centroid_sums(bn, batch["labels"].to(acc.device), n_ids)
        sums, counts = (s, c) if sums is None else (sums + s, counts + c)
    if acc.num_processes > 1:
        sums, counts = acc.reduce(sums, "sum"), acc.reduce(counts, "sum")
    return PrototypeMemory.from_sums(sums, counts, momentum=cfg.pcl_momentum, temperature=cfg.pcl_temperature)


def _check_finite(acc, terms: dict, step: int, epoch: int, run_dir: str, world: int) -> None:
    bad = next((name for name, v in terms.items() if not torch.isfinite(v.detach()).all()), None)
    if world > 1:
        flag = acc.reduce(torch.tensor([1 if bad else 0], device=acc.device), "sum")
        if int(flag.item()) and bad is None:
            bad = "(on another process)"
    if bad is None:
        return
    last = runio.latest_checkpoint(run_dir)
    kept = f"the last checkpoint {last} is kept" if last else "no checkpoint was written yet"
    value = float(terms[bad].detach()) if bad in terms else float("nan")
    how = ("continue from it with the same command plus --resume and a lower --lr (the change is recorded in "
           "config.yaml), or train into a new -o folder" if last else "rerun with a lower --lr into a new -o folder")
    raise ReidError(f"step {step} (epoch {epoch + 1}): loss term {bad!r} is {value}; training stopped and "
                    f"{kept}: {how} (or use --mixed-precision no)")


def _state(acc, model, cc, dcac=None) -> dict:
    """The ReID model (what model.safetensors keeps); checkpoints add DCAC's LoRA and ID prompts."""
    state = dict(acc.unwrap_model(model).state_dict())
    if cc is not None:
        state.update({f"clothes_classifier.{k}": v for k, v in acc.unwrap_model(cc).state_dict().items()})
    if dcac is not None:
        state.update({f"dcac.{k}": v for k, v in acc.unwrap_model(dcac).trainable_state().items()})
    return state
