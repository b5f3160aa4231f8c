"""`reid invert fit`: DiVE (seed 002): one textual-inversion token per identity plus a U-Net LoRA whose camera/modality
codes carry the style of each camera; then sampling new images of any identity under any camera.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import numpy as np

from reidtools.errors import ReidError
from reidtools.shards.images import decode
from reidtools.generate.inversion.checkpoint import MANIFEST, read_manifest, save_checkpoint
from reidtools.generate.inversion.data import PAPER_TEMPLATE, camera_codes, caption, id_token, read_train_set
from reidtools.generate.inversion.model import LoraPartition, PlaceholderRows, add_id_tokens, load_base
from reidtools.generate.training import batch_indices, mixed_precision, optimizer_state_from
from reidtools.seeding import derive_seed, rng

log = logging.getLogger("reidtools")


@dataclass
class FitOptions:
    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    rank: int = 128                      # paper
    lr: float = 5e-5                     # paper (LoRA and embeddings)
    steps: int = 400_000                 # paper (batch 16)
    batch_size: int = 16                 # paper
    size: tuple[int, int] = (512, 256)   # paper (H, W)
    min_images_per_id: int = 12
    code_length: int = 8                 # paper; the released code uses 4
    codes_per: str = "camera"            # camera: [V_1..V_m, I_1..I_n] (paper, Tab. 3); modality: [V], [I]
    id_caption_prob: float = 1.0         # eq. 6 always conditions on T([p], [k]); released code: 0.5
    template: str = PAPER_TEMPLATE
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v")  # paper: query, key, value
    lora_mode: str = "partition"         # paper §3: a portion of the LoRA per code; released code: shared
    init_token: str = "person"
    flip: bool = True
    mixed_precision: str = "auto"        # auto: fp16 on CUDA, none on CPU
    weight_decay: float = 1e-2           # diffusers' training scripts' AdamW default
    save_every: int = 1000
    keep_checkpoints: int = 1            # newest checkpoint-N/ folders kept for --resume
    validation_every: int = 0            # diffusers' --validation_steps: 0 = none
    validation_images: int = 2           # identities rendered under each camera code at validation
    validation_steps: int = 25           # denoising steps of a validation image (DiVE's sampling)
    seed: int = 0

    def check(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1 or self.code_length < 1 or self.keep_checkpoints < 1:
            raise ReidError("--rank, --steps, --batch-size, --code-length and --keep-checkpoints must be positive")
        if not 0.0 <= self.id_caption_prob <= 1.0:
            raise ReidError("--id-caption-prob must be in [0, 1]")
        if self.lora_mode not in ("partition", "shared"):
            raise ReidError(f"--lora-mode {self.lora_mode!r} is not partition or shared")
        if self.codes_per not in ("camera", "modality"):
            raise ReidError(f"--codes-per {self.codes_per!r} is not camera or modality")
        try:
            self.template.format(camera="x", id="y")
        except (KeyError, IndexError, ValueError) as exc:
            raise ReidError(f"--template {self.template!r} may only use {{camera}} and {{id}} ({exc})") from None


def _pixels(data: bytes, size, flip: bool):
    import torch
    from PIL import Image

    img = decode(data, "RGB")   # the shared decoder: 16-bit and alpha images scaled, not clipped
    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
    return x / 127.5 - 1.0


def fit(shards: list[str], ckpt_dir: str, opts: FitOptions, *, resume: bool = False,
        progress: bool = True, device: str | None = None) -> dict:
    """Train identity tokens and the LoRA; write the checkpoint every `save_every` steps and at the
    end. Returns the manifest."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict
    from tqdm import tqdm

    from reidtools.pretrained import load_train_state, resume_point

    opts.check()
    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    precision = mixed_precision(opts.mixed_precision, cpu=cpu)   # a refusal comes before any data is read
    latest = resume_point(ckpt_dir, resume, MANIFEST)
    old = read_manifest(latest) if latest else None
    data = read_train_set(shards, opts)
    id_keys = sorted(data.id_info, key=lambda k: (str(data.id_info[k]["dataset"]), data.id_info[k]["pid"]))
    tokens = {k: id_token(data.id_info[k], data.multi) for k in id_keys}
    codes = camera_codes(data.cam_info, opts.code_length, opts.seed)
    if old is not None:
        _check_resume(old, opts, tokens, codes)

    acc = Accelerator(mixed_precision=precision, cpu=cpu)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
    tokenizer, text_encoder, vae, unet, noise_sched = load_base(opts.base)
    token_list = [tokens[k] for k in id_keys]
    first_id = add_id_tokens(tokenizer, text_encoder, token_list, opts.init_token)
    token_emb = text_encoder.get_input_embeddings()
    rows = PlaceholderRows(token_emb, first_id, token_emb.weight[first_id:])
    for m in (text_encoder, vae, unet):
        m.requires_grad_(False)
    torch.manual_seed(derive_seed(opts.seed, "lora-init") % 2**63)   # LoRA A is drawn at random
    unet.add_adapter(LoraConfig(r=opts.rank, lora_alpha=opts.rank, init_lora_weights="gaussian",
                                target_modules=list(opts.lora_targets)))
    partition = LoraPartition(unet, list(codes), opts.rank) if opts.lora_mode == "partition" else None
    for m in (text_encoder, vae, unet):
        m.to(acc.device) if weight_dtype == torch.float32 else m.to(acc.device, dtype=weight_dtype)
    for p in unet.parameters():          # trainable LoRA weights stay fp32 under mixed precision
        if p.requires_grad:
            p.data = p.data.float()
    rows.weight.data = rows.weight.data.to(acc.device)
    lora_params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": lora_params}, {"params": [rows.weight]}], lr=opts.lr,
                                  weight_decay=opts.weight_decay)
    unet, optimizer = acc.prepare(unet, optimizer)

    start = 0
    if old is not None:
        st, meta = load_train_state(latest)
        res = set_peft_model_state_dict(acc.unwrap_model(unet), {k[5:]: v for k, v in st.items() if k.startswith("lora.")})
        if getattr(res, "unexpected_keys", None):
            raise ReidError(f"{latest}: LoRA keys do not match the model ({res.unexpected_keys[0]}, ...)")
        rows.weight.data.copy_(st["rows"].to(rows.weight.device))
        optimizer.load_state_dict(optimizer_state_from(st, meta))
        for group in optimizer.param_groups:      # the saved groups carry the old --lr
            group["lr"], group["weight_decay"] = opts.lr, opts.weight_decay
        start = int(meta["step"])
        log.info("resuming %s at step %d", latest, start)

    manifest = {
        "format": "reid-invert/1", "base": opts.base,
        "ids": {k: {"token": tokens[k], **data.id_info[k], "images": data.ids.count(k)} for k in id_keys},
        "cameras": {k: {"code": codes[k], **data.cam_info[k]} for k in sorted(codes)},
        "skipped_ids": dict(data.skipped),
        "options": {**asdict(opts), "size": list(opts.size), "lora_targets": list(opts.lora_targets)},
        "lora_partition": {k: list(v) for k, v in partition.ranges.items()} if partition is not None else None,
    }
    os.makedirs(ckpt_dir, exist_ok=True)
    sf = vae.config.scaling_factor
    n_img, world, rank_ = len(data.images), acc.num_processes, acc.process_index
    bar = tqdm(total=opts.steps, initial=start, desc="fit", unit="step", disable=not (progress and acc.is_main_process),
               dynamic_ncols=True, leave=False)
    unet.train()
    loss_val = float("nan")
    for step in range(start, opts.steps):
        idx = batch_indices(n_img, step, opts.batch_size * world, opts.seed)
        idx = idx[rank_ * opts.batch_size:(rank_ + 1) * opts.batch_size]
        r = rng(opts.seed, "augment", step, rank_)
        if partition is not None:
            partition.select([data.cameras[i] for i in idx])
        pix, caps = [], []
        for i in idx:
            pix.append(_pixels(data.images[i], opts.size, opts.flip and r.random() < 0.5))
            with_id = r.random() < opts.id_caption_prob
            caps.append(caption(opts.template, codes[data.cameras[i]], tokens[data.ids[i]], with_id))
        g = torch.Generator().manual_seed(derive_seed(opts.seed, "noise", step, rank_))
        x = torch.stack(pix).to(acc.device, dtype=weight_dtype)
        ids = tokenizer(caps, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(acc.device)
        with acc.autocast():
            with torch.no_grad():
                dist = vae.encode(x).latent_dist
                eps = torch.randn(dist.mean.shape, generator=g).to(acc.device, dist.mean.dtype)
                latents = (dist.mean + dist.std * eps) * sf
            noise = torch.randn(latents.shape, generator=g).to(acc.device, latents.dtype)
            t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(idx),), generator=g).to(acc.device)
            noisy = noise_sched.add_noise(latents, noise, t)
            cond = text_encoder(ids)[0]
            pred = unet(noisy, t, cond).sample
            target = noise if noise_sched.config.prediction_type == "epsilon" else noise_sched.get_velocity(latents, noise, t)
            loss = F.mse_loss(pred.float(), target.float())   # eq. (6)
        acc.backward(loss)
        if world > 1:   # the rows are not inside a DDP module; every rank must join the all-reduce,
            # also one whose captions held no identity token this step (its gradient is then None)
            grad = rows.weight.grad if rows.weight.grad is not None else torch.zeros_like(rows.weight)
            rows.weight.grad = acc.reduce(grad, reduction="mean")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_val = float(loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{loss_val:.4f}")
        done = step + 1
        if done % 10 == 0 or done == opts.steps:
            log.info("step %d/%d: loss %.4f", done, opts.steps, loss_val)
        if acc.is_main_process and opts.validation_every and done % opts.validation_every == 0:
            validate(ckpt_dir, done, opts, tokenizer, text_encoder, vae, acc.unwrap_model(unet), rows, token_emb,
                     partition, [tokens[k] for k in id_keys[:opts.validation_images]], codes)
            unet.train()
        if acc.is_main_process and (done % opts.save_every == 0 or done == opts.steps):
            save_checkpoint(ckpt_dir, manifest, done, loss_val, acc.unwrap_model(unet), rows, token_list, optimizer,
                            keep=opts.keep_checkpoints, final=done == opts.steps)
            log.debug("step %d: loss %.4f, checkpoint written", done, loss_val)
        acc.wait_for_everyone()
    bar.close()
    if start >= opts.steps and acc.is_main_process:
        log.info("%s is already at step %d (--steps %d): nothing to do", ckpt_dir, start, opts.steps)
    rows.handle.remove()
    if partition is not None:
        partition.remove()
    return read_manifest(ckpt_dir)


def validate(ckpt_dir, step, opts, tokenizer, text_encoder, vae, unet, rows, token_emb, partition, tokens, codes):
    """Validation images, as diffusers' training scripts write them: the first identities under every
    camera code, rendered with the current tokens and LoRA, to ckpt_dir/validation/step-N/.

    Sampling uses DPM-Solver++ (DiVE §4.1) from the same fixed seeds at every step, so images of
    successive validations are comparable."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from reidtools.hub import resolve_model

    folder = os.path.join(ckpt_dir, "validation", f"step-{step}")
    os.makedirs(folder, exist_ok=True)
    rows.write_into(token_emb)         # the hook substitutes the rows anyway; the matrix is only read
    sched = DPMSolverMultistepScheduler.from_pretrained(resolve_model(opts.base, subfolder="unet"),
                                                        subfolder="scheduler", algorithm_type="dpmsolver++")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    unet.eval()
    h, w = opts.size
    half = text_encoder.dtype != torch.float32    # mixed precision: fp16 frozen weights, fp32 LoRA
    for cam, code in sorted(codes.items()):
        if partition is not None:
            partition.select([cam])
        for n, tok in enumerate(tokens):
            prompt = opts.template.format(camera=code, id=tok)
            with torch.no_grad(), torch.autocast(unet.device.type, dtype=text_encoder.dtype, enabled=half):
                img = pipe(prompt, height=h, width=w, num_inference_steps=opts.validation_steps,
                           generator=torch.Generator("cpu").manual_seed(derive_seed(opts.seed, "validation", n, cam)),
                           output_type="pil").images[0]
            img.save(os.path.join(folder, f"{tok.strip('<>')}-{cam}.png"))
    log.info("step %d: validation images in %s", step, folder)


def _check_resume(old: dict, opts: FitOptions, tokens: dict, codes: dict) -> None:
    if {k: v["token"] for k, v in old.get("ids", {}).items()} != tokens:
        raise ReidError("--resume: the training identities differ from the checkpoint's")
    if {k: v["code"] for k, v in old.get("cameras", {}).items()} != codes:
        raise ReidError("--resume: the cameras or their codes differ from the checkpoint's (same --seed/--code-length?)")
    o = old.get("options", {})
    for name in ("base", "rank", "lora_targets", "lora_mode", "codes_per", "template"):
        mine = list(getattr(opts, name)) if name == "lora_targets" else getattr(opts, name)
        if o.get(name) != mine:
            raise ReidError(f"--resume: --{name.replace('_', '-')} {mine!r} differs from the checkpoint's {o.get(name)!r}")
