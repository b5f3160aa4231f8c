"""DiVE (seed 002): one textual-inversion token per identity plus a U-Net LoRA whose camera/modality
codes carry the style of each camera; then sampling new images of any identity under any camera.

Checkpoint folder (usable outside reid with diffusers' own loaders):
- `learned_embeds.safetensors`: one key per identity token (`<id_17>`), value (1, D): diffusers'
  textual-inversion layout (a single-key file of this kind loads with `pipe.load_textual_inversion`).
- `pytorch_lora_weights.safetensors`: the U-Net LoRA in diffusers' format (`pipe.load_lora_weights`).
- `manifest.json`: id -> token, camera -> code, base model, training options, step.
- `train_state.safetensors` + `train_state.json`: optimizer moments and step, for `--resume`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import string
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from reidtools.errors import ReidError, SampleError
from reidtools.fileio import atomic_write, write_json_atomic
from reidtools.generate.training import batch_indices, mixed_precision, optimizer_state_from, optimizer_state_tensors
from reidtools.seeding import derive_seed, rng

log = logging.getLogger("reidtools")

EMBEDS = "learned_embeds.safetensors"
LORA = "pytorch_lora_weights.safetensors"
MANIFEST = "manifest.json"
STATE = "train_state.safetensors"
STATE_JSON = "train_state.json"
CODE_ALPHABET = string.ascii_letters + string.digits
PAPER_TEMPLATE = "a {camera} photo of a {id} person"


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
    id_caption_prob: float = 0.5         # released code: the id caption with p=0.5, else the code alone
    template: str = PAPER_TEMPLATE
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v")  # paper: query, key, value
    init_token: str = "person"
    flip: bool = True
    mixed_precision: str = "auto"        # auto: fp16 on CUDA, none on CPU
    weight_decay: float = 1e-2           # diffusers' training scripts' AdamW default
    save_every: int = 1000
    seed: int = 0

    def check(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1 or self.code_length < 1:
            raise ReidError("--rank, --steps, --batch-size and --code-length must be positive")
        if not 0.0 <= self.id_caption_prob <= 1.0:
            raise ReidError("--id-caption-prob must be in [0, 1]")
        if self.codes_per not in ("camera", "modality"):
            raise ReidError(f"--codes-per {self.codes_per!r} is not camera or modality")
        try:
            self.template.format(camera="x", id="y")
        except (KeyError, IndexError, ValueError) as exc:
            raise ReidError(f"--template {self.template!r} may only use {{camera}} and {{id}} ({exc})") from None


# ----------------------------------------------------------------------------- data
@dataclass
class TrainSet:
    """Training images with identity and camera keys.

    With one dataset an identity key is its pid ("17") and a camera key is modality+camid ("ir3");
    with several (DiVE trains on Market-1501 RGB + SYSU-MM01 RGB/IR together) both are prefixed with
    the dataset ("market/17", "sysu-ir3"), so equal pids of different datasets stay different people.
    """
    images: list = field(default_factory=list)      # encoded image bytes (decoded per step)
    ids: list = field(default_factory=list)         # identity key per image
    cameras: list = field(default_factory=list)     # camera key per image
    id_info: dict = field(default_factory=dict)     # identity key -> {"pid", "dataset"}
    cam_info: dict = field(default_factory=dict)    # camera key -> {"modality", "camid", "dataset"}
    skipped: dict = field(default_factory=dict)     # identity key -> number of images (too few)
    multi: bool = False                             # several datasets


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower()) or "d"


def read_train_set(shards: list[str], opts: FitOptions) -> TrainSet:
    """Images grouped by identity; identities with fewer than `min_images_per_id` images dropped."""
    from reidtools.shards import image_field, iter_samples, require

    rows: list[tuple] = []
    for sample in iter_samples(shards):
        m = require(sample, "pid", "camid", hint="`reid invert fit` learns one token per pid and one code per camera")
        field_name = image_field(sample)
        if field_name is None:
            raise SampleError(sample["__shard__"], sample["__key__"], "no image field")
        data = sample[field_name]
        if not isinstance(data, (bytes, bytearray)):
            buf = io.BytesIO()
            data.convert("RGB").save(buf, format="PNG")
            data = buf.getvalue()
        rows.append((m.get("dataset"), int(m["pid"]), m.get("modality") or "rgb", int(m["camid"]), bytes(data)))
    multi = len({r[0] for r in rows}) > 1
    per_id: dict[str, list] = defaultdict(list)
    ts = TrainSet(multi=multi)
    for ds, pid, modality, camid, data in rows:
        ikey = f"{ds}/{pid}" if multi else str(pid)
        cam = modality if opts.codes_per == "modality" else f"{modality}{camid}"
        ckey = f"{_slug(str(ds))}-{cam}" if multi else cam
        ts.id_info[ikey] = {"pid": pid, "dataset": ds}
        ts.cam_info[ckey] = {"modality": modality, "camid": None if opts.codes_per == "modality" else camid,
                             "dataset": ds}
        per_id[ikey].append((data, ckey))
    for ikey in sorted(per_id, key=lambda k: (str(ts.id_info[k]["dataset"]), ts.id_info[k]["pid"])):
        items = per_id[ikey]
        if len(items) < opts.min_images_per_id:
            ts.skipped[ikey] = len(items)
            del ts.id_info[ikey]
            continue
        for data, ckey in items:
            ts.images.append(data)
            ts.ids.append(ikey)
            ts.cameras.append(ckey)
    if ts.skipped:
        log.info("skipped %d identities with fewer than %d images (--min-images-per-id)",
                 len(ts.skipped), opts.min_images_per_id)
    if not ts.images:
        raise ReidError(f"no identity has at least {opts.min_images_per_id} images (--min-images-per-id)")
    return ts


def id_token(info: dict, multi: bool) -> str:
    """`<id_17>`, or `<id_market1501_17>` when several datasets are trained together."""
    return f"<id_{_slug(str(info['dataset']))}_{info['pid']}>" if multi else f"<id_{info['pid']}>"


def camera_codes(keys, length: int, seed: int) -> dict[str, str]:
    """A random, fixed code of `length` letters/digits per camera key (paper: 8, e.g. "b8zBXKoH").

    Drawn from (seed, key), so a camera's code does not depend on which other cameras exist. CLIP's
    tokenizer lowercases text, so codes are kept distinct after lowercasing.
    """
    codes: dict[str, str] = {}
    seen: set[str] = set()
    for key in sorted(keys):
        attempt = 0
        while True:
            r = rng(seed, "camera-code", key, attempt)
            code = "".join(CODE_ALPHABET[i] for i in r.integers(0, len(CODE_ALPHABET), length))
            if code.lower() not in seen:
                break
            attempt += 1
        seen.add(code.lower())
        codes[key] = code
    return codes


def caption(template: str, code: str, token: str, with_id: bool) -> str:
    return template.format(camera=code, id=token) if with_id else code


# ----------------------------------------------------------------------------- checkpoint files
def read_manifest(ckpt_dir: str) -> dict:
    path = os.path.join(ckpt_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ReidError(f"{ckpt_dir}: no {MANIFEST} (not a `reid invert fit` checkpoint)") from None
    except json.JSONDecodeError as exc:
        raise ReidError(f"{path}: not valid JSON ({exc})") from None


# ----------------------------------------------------------------------------- models
class PlaceholderRows:
    """The trainable rows of the new identity tokens.

    The text encoder's embedding matrix stays frozen; a forward hook on it substitutes these rows
    wherever a new token id appears, so only they receive gradients (and optimizer state): the
    other rows cannot change. `write_into` copies them into the matrix for saving and sampling.
    """

    def __init__(self, embedding, first_id: int, init):
        import torch

        self.first_id = first_id
        self.weight = torch.nn.Parameter(init.detach().clone().float())
        self.handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        ids = args[0]
        sel = ids >= self.first_id
        if not bool(sel.any()):
            return output
        out = output.clone()
        out[sel] = self.weight[ids[sel] - self.first_id].to(out.dtype)
        return out

    def write_into(self, embedding) -> None:
        import torch

        with torch.no_grad():
            embedding.weight[self.first_id:self.first_id + len(self.weight)] = self.weight.to(embedding.weight.dtype)


def load_base(base: str):
    """Tokenizer, text encoder, VAE, U-Net and the training noise scheduler of a SD-1.x folder/id."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from reidtools.hub import resolve_model

    path = resolve_model(base, subfolder="unet")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder")
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet")
        noise = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise ReidError(f"--base {base}: not a Stable Diffusion folder ({str(exc).splitlines()[0]})") from None
    return tokenizer, text_encoder, vae, unet, noise


def add_id_tokens(tokenizer, text_encoder, tokens: list[str], init_token: str):
    """Add `tokens` to the tokenizer and embedding matrix, initialised to `init_token`'s embedding
    (the mean over its pieces if the tokenizer splits it). Returns the first new token id."""
    import torch

    added = tokenizer.add_tokens(tokens)
    if added != len(tokens):
        raise ReidError("some identity tokens already exist in the base tokenizer")
    first = tokenizer.convert_tokens_to_ids(tokens[0])
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    emb = text_encoder.get_input_embeddings()
    init_ids = tokenizer.encode(init_token, add_special_tokens=False)
    if not init_ids:
        raise ReidError(f"--init-token {init_token!r} encodes to no token")
    with torch.no_grad():
        emb.weight[first:] = emb.weight[init_ids].mean(0)
    return first


# ----------------------------------------------------------------------------- training
def _pixels(data: bytes, size, flip: bool):
    import torch
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
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
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm import tqdm

    opts.check()
    state_path = os.path.join(ckpt_dir, STATE)
    old = None
    if os.path.exists(os.path.join(ckpt_dir, MANIFEST)):
        if not resume:
            raise ReidError(f"{ckpt_dir} already holds a checkpoint; pass --resume to continue it or choose a new -o")
        old = read_manifest(ckpt_dir)
        if not os.path.exists(state_path):
            raise ReidError(f"{ckpt_dir}: no {STATE} to resume from")
    data = read_train_set(shards, opts)
    id_keys = sorted(data.id_info, key=lambda k: (str(data.id_info[k]["dataset"]), data.id_info[k]["pid"]))
    tokens = {k: id_token(data.id_info[k], data.multi) for k in id_keys}
    codes = camera_codes(data.cam_info, opts.code_length, opts.seed)
    if old is not None:
        _check_resume(old, opts, tokens, codes)

    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    acc = Accelerator(mixed_precision=mixed_precision(opts.mixed_precision), cpu=cpu)
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
        st = load_file(state_path)
        with open(os.path.join(ckpt_dir, STATE_JSON), encoding="utf-8") as fh:
            meta = json.load(fh)
        res = set_peft_model_state_dict(acc.unwrap_model(unet), {k[5:]: v for k, v in st.items() if k.startswith("lora.")})
        if getattr(res, "unexpected_keys", None):
            raise ReidError(f"{state_path}: LoRA keys do not match the model ({res.unexpected_keys[0]}, ...)")
        rows.weight.data.copy_(st["rows"].to(rows.weight.device))
        optimizer.load_state_dict(optimizer_state_from(st, meta))
        for group in optimizer.param_groups:      # the saved groups carry the old --lr
            group["lr"], group["weight_decay"] = opts.lr, opts.weight_decay
        start = int(meta["step"])
        log.info("resuming %s at step %d", ckpt_dir, start)

    manifest = {
        "format": "reid-invert/1", "base": opts.base,
        "ids": {k: {"token": tokens[k], **data.id_info[k], "images": data.ids.count(k)} for k in id_keys},
        "cameras": {k: {"code": codes[k], **data.cam_info[k]} for k in sorted(codes)},
        "skipped_ids": dict(data.skipped),
        "options": {**asdict(opts), "size": list(opts.size), "lora_targets": list(opts.lora_targets)},
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
        if acc.is_main_process and (done % opts.save_every == 0 or done == opts.steps):
            _save(ckpt_dir, manifest, done, loss_val, acc.unwrap_model(unet), rows, token_list, optimizer)
            log.debug("step %d: loss %.4f, checkpoint written", done, loss_val)
        acc.wait_for_everyone()
    bar.close()
    if start >= opts.steps and acc.is_main_process:
        log.info("%s is already at step %d (--steps %d): nothing to do", ckpt_dir, start, opts.steps)
    rows.handle.remove()
    return read_manifest(ckpt_dir)


def _check_resume(old: dict, opts: FitOptions, tokens: dict, codes: dict) -> None:
    if {k: v["token"] for k, v in old.get("ids", {}).items()} != tokens:
        raise ReidError("--resume: the training identities differ from the checkpoint's")
    if {k: v["code"] for k, v in old.get("cameras", {}).items()} != codes:
        raise ReidError("--resume: the cameras or their codes differ from the checkpoint's (same --seed/--code-length?)")
    o = old.get("options", {})
    for name in ("base", "rank", "lora_targets", "codes_per", "template"):
        mine = list(getattr(opts, name)) if name == "lora_targets" else getattr(opts, name)
        if o.get(name) != mine:
            raise ReidError(f"--resume: --{name.replace('_', '-')} {mine!r} differs from the checkpoint's {o.get(name)!r}")


def _save(ckpt_dir, manifest, step, loss, unet, rows, token_list, optimizer) -> None:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    lora = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    w = rows.weight.detach().float().cpu()
    embeds = {tok: w[i:i + 1].clone() for i, tok in enumerate(token_list)}
    atomic_write(os.path.join(ckpt_dir, EMBEDS), lambda p: save_file(embeds, p))
    tmp_dir = os.path.join(ckpt_dir, ".lora.tmp")
    StableDiffusionPipeline.save_lora_weights(tmp_dir, unet_lora_layers=convert_state_dict_to_diffusers(lora),
                                              safe_serialization=True)
    os.replace(os.path.join(tmp_dir, LORA), os.path.join(ckpt_dir, LORA))
    os.rmdir(tmp_dir)
    opt_t, opt_meta = optimizer_state_tensors(optimizer)
    state = {**{f"lora.{k}": v for k, v in lora.items()}, "rows": w.contiguous(),
             **{k: v.detach().cpu().contiguous() for k, v in opt_t.items()}}
    atomic_write(os.path.join(ckpt_dir, STATE), lambda p: save_file(state, p))
    write_json_atomic(os.path.join(ckpt_dir, STATE_JSON), {"step": step, **opt_meta})
    write_json_atomic(os.path.join(ckpt_dir, MANIFEST), {**manifest, "step": step, "last_loss": loss})


# ----------------------------------------------------------------------------- loading and sampling
def load_into_pipeline(pipe, ckpt_dir: str, manifest: dict | None = None) -> None:
    """Add the identity tokens and the LoRA of a checkpoint to a diffusers SD pipeline, through
    diffusers' own loaders."""
    from safetensors.torch import load_file

    manifest = manifest or read_manifest(ckpt_dir)
    path = os.path.join(ckpt_dir, EMBEDS)
    if not os.path.exists(path) or not os.path.exists(os.path.join(ckpt_dir, LORA)):
        raise ReidError(f"{ckpt_dir}: the checkpoint lacks {EMBEDS} or {LORA} (fit not finished?)")
    embeds = load_file(path)
    tokens = list(embeds)
    pipe.load_textual_inversion([{t: embeds[t]} for t in tokens], token=tokens)
    pipe.load_lora_weights(ckpt_dir, weight_name=LORA)


def load_pipeline(ckpt_dir: str, *, base: str | None = None, scheduler: str = "dpm++", device=None,
                  dtype: str = "fp16"):
    """The base StableDiffusionPipeline with the checkpoint loaded and the chosen scheduler."""
    from diffusers import StableDiffusionPipeline

    from reidtools.generate.schedulers import set_scheduler

    from reidtools.hub import resolve_model
    from reidtools.runtime import best_device, torch_dtype

    manifest = read_manifest(ckpt_dir)
    base = base or manifest["base"]
    dev = best_device(device)
    tdtype = torch_dtype(dtype, dev)
    path = resolve_model(base, subfolder="unet")
    try:
        # The safety checker blanks many ordinary pedestrian crops; research data generation turns it off.
        pipe = StableDiffusionPipeline.from_pretrained(path, torch_dtype=tdtype, safety_checker=None,
                                                       requires_safety_checker=False)
    except (OSError, ValueError) as exc:
        raise ReidError(f"base model {base}: cannot load a StableDiffusionPipeline ({str(exc).splitlines()[0]})") from None
    if scheduler == "default":   # DiVE samples with DPM-Solver++ (§4.1), not the base's own
        scheduler = "dpm++"
    set_scheduler(pipe, scheduler)
    load_into_pipeline(pipe, ckpt_dir, manifest)
    pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe, manifest


def select_cameras(manifest: dict, wanted: list[str] | None) -> list[str]:
    """Camera keys to sample: names (`ir3`) or modalities (`ir`); default every IR camera (DiVE
    synthesises infrared images), or every camera when the checkpoint has no IR camera."""
    cams = manifest["cameras"]
    if not wanted:
        ir = [k for k, v in cams.items() if v["modality"] == "ir"]
        return sorted(ir or cams)
    out: list[str] = []
    for w in wanted:
        if w in cams:
            out.append(w)
        elif any(v["modality"] == w for v in cams.values()):
            out.extend(k for k, v in sorted(cams.items()) if v["modality"] == w)
        else:
            raise ReidError(f"--cameras {w!r}: the checkpoint knows cameras {', '.join(sorted(cams))}")
    return list(dict.fromkeys(out))


def select_ids(manifest: dict, wanted: list[str] | None) -> list[str]:
    """Identity keys to sample: keys ("17", "market/17") or bare pids when they are unambiguous."""
    ids = manifest["ids"]
    if not wanted:
        return list(ids)
    out = []
    for w in wanted:
        w = str(w).strip()
        hits = [w] if w in ids else [k for k, v in ids.items() if str(v["pid"]) == w]
        if len(hits) != 1:
            why = "is ambiguous (use DATASET/PID)" if hits else "is not in the checkpoint"
            raise ReidError(f"--ids: {w} {why}; it has {len(ids)} identities, e.g. {next(iter(ids))}")
        out.append(hits[0])
    return list(dict.fromkeys(out))


@dataclass
class Job:
    identity: str    # identity key of the manifest
    camera: str      # camera key of the manifest
    index: int

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", f"dive-{self.identity}-{self.camera}-{self.index:03d}")


def jobs(ids: list[str], cameras: list[str], per_id: int) -> list[Job]:
    return [Job(p, c, i) for p in ids for c in cameras for i in range(per_id)]


def generate(pipe, manifest: dict, batch: list[Job], *, seed: int, steps: int, guidance: float,
             size: tuple[int, int], scheduler: str, ckpt_dir: str, template: str | None = None) -> list[dict]:
    """Samples for `batch`: one image per job, each from its own seed derive_seed(seed, identity,
    camera, index), so an image does not depend on the batch it was made in."""
    import torch

    template = template or manifest["options"].get("template", PAPER_TEMPLATE)
    prompts, gens, seeds = [], [], []
    for j in batch:
        cam = manifest["cameras"][j.camera]
        prompts.append(template.format(camera=cam["code"], id=manifest["ids"][j.identity]["token"]))
        s = derive_seed(seed, j.identity, j.camera, j.index)
        seeds.append(s)
        gens.append(torch.Generator("cpu").manual_seed(s))
    h, w = size
    images = pipe(prompt=prompts, height=h, width=w, num_inference_steps=steps, guidance_scale=guidance,
                  generator=gens, output_type="pil").images
    out = []
    for j, img, prompt, s in zip(batch, images, prompts, seeds):
        cam, ident = manifest["cameras"][j.camera], manifest["ids"][j.identity]
        meta = {"split": "train", "pid": ident["pid"], "modality": cam["modality"],
                "history": [{"tool": "invert", "model": manifest["base"], "seed": s, "prompt": prompt,
                             "parameters": {"checkpoint": os.path.abspath(ckpt_dir), "camera": j.camera,
                                            "index": j.index, "steps": steps, "scheduler": scheduler,
                                            "guidance_scale": guidance, "size": [h, w]}}]}
        if cam.get("camid") is not None:
            meta["camid"] = cam["camid"]
        if ident.get("dataset"):
            meta["dataset"] = ident["dataset"]
        out.append({"__key__": j.key, "__shard__": "<invert>", "json": meta, "jpg": img})
    return out
