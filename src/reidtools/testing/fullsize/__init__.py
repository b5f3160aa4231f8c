"""Published-size model configurations (data files beside this module, each naming where its numbers
come from) and builders that save them with random weights in the hub's own layout.

`build(name, folder)` writes what `from_pretrained(folder)` of the real checkpoint reads (same
sub-folders, config files, safetensors key names and shapes), so the real `reid` command loads it
through `--model FOLDER` / `--pretrained FOLDER` exactly as it loads downloaded weights. Tokenizers
are the real CLIP BPE (`testing.clip_bpe`). `shapes(name)` builds under
`accelerate.init_empty_weights()` (meta tensors, no memory) where only key names and shapes matter.
"""

from __future__ import annotations

import contextlib
import json
import os
from importlib import resources

NAMES = ("sd15", "sd15-inpainting", "sd2-inpainting", "resnet50", "clip-vit-base-patch16", "llama-2-7b-chat", "llava-1.5-7b",
         "segformer-b2-clothes", "tryoffanyone", "idm-vton", "clip-vit-large-patch14")


def load_config(name: str) -> dict:
    """The data file `NAME.json`: `model` (hub id), `source`, `not_read`, then the component configs."""
    if name not in NAMES:
        raise KeyError(f"no full-size config {name!r}; known: {', '.join(NAMES)}")
    return json.loads(resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8"))


def _sd_parts(cfg: dict):
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_cfg = dict(cfg["text_encoder"])
    scheduler_cfg = dict(cfg["scheduler"])
    scheduler = getattr(diffusers, scheduler_cfg.pop("_class_name")).from_config(scheduler_cfg)
    return dict(unet=UNet2DConditionModel.from_config(cfg["unet"]), vae=AutoencoderKL.from_config(cfg["vae"]),
                text_encoder=CLIPTextModel(CLIPTextConfig(**text_cfg)), scheduler=scheduler,
                cls=getattr(diffusers, cfg["pipeline"]))


def _transformers_model(cfg: dict):
    import transformers

    arch = getattr(transformers, cfg["architecture"])
    return arch(arch.config_class(**cfg["config"]))


def build(name: str, folder: str, *, seed: int = 0, device=None, dtype=None) -> str:
    """Save `name` at full size with random weights (safetensors) to `folder`, in the hub layout.

    `device`/`dtype` (e.g. "cuda", torch.float16): where the random weights are made and the dtype they
    are made and saved in (default: the CPU; the config's `save_dtype`, else fp32). On a GPU machine
    `device="cuda"` makes IDM-VTON's 7.1 B parameters in seconds; the CPU's serial random generator
    takes minutes (bench/gpu.sh)."""
    cfg = load_config(name)
    with _made_on(device, None if cfg.get("layout") == "idm-vton" else dtype):   # idm-vton: per component
        _build(cfg, folder, seed, dtype)
    return folder


@contextlib.contextmanager
def _made_on(device, dtype):
    """New tensors on `device` (torch's default-device context) and in `dtype` (the default dtype)."""
    import torch

    old = torch.get_default_dtype()
    with contextlib.ExitStack() as stack:
        if device is not None:
            stack.enter_context(torch.device(device))
        if dtype is not None:
            torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(old)


def _build(cfg: dict, folder: str, seed: int, dtype) -> None:
    import torch

    torch.manual_seed(seed)
    os.makedirs(folder, exist_ok=True)
    if cfg.get("layout") == "idm-vton":   # component by component: ~28 GB in fp32 does not fit in RAM at once
        from reidtools.testing.fullsize.idmvton import build_idmvton

        build_idmvton(cfg, folder, seed=seed, dtype=dtype)
    elif cfg.get("layout") == "tryoffanyone":
        from reidtools.testing.fullsize.tryoff import build_tryoffanyone

        build_tryoffanyone(cfg, folder)
    elif cfg.get("layout") == "llm":      # LLaVA / Llama-2: real LLaMA tokenizer, depth cut to fit 24 GiB
        from reidtools.testing.fullsize.llm import build_llm

        build_llm(cfg, folder)
    elif cfg.get("pipeline"):
        from reidtools.testing.clip_bpe import write_clip_bpe_tokenizer

        tok = cfg["tokenizer"]
        tokenizer = write_clip_bpe_tokenizer(os.path.join(folder, "tokenizer"), pad_token=tok["pad_token"],
                                             max_length=tok["model_max_length"])
        parts = _sd_parts(cfg)
        cls = parts.pop("cls")
        pipe = cls(tokenizer=tokenizer, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                   **parts)
        pipe.save_pretrained(folder, safe_serialization=True)
    else:
        _transformers_model(cfg).save_pretrained(folder, safe_serialization=True)
        if cfg.get("preprocessor_config"):  # verbatim: the hub file's own (possibly legacy) keys
            with open(os.path.join(folder, "preprocessor_config.json"), "w", encoding="utf-8") as fh:
                json.dump(cfg["preprocessor_config"], fh, indent=2)
    with open(os.path.join(folder, "SOURCE.txt"), "w", encoding="utf-8") as fh:
        fh.write(f"random weights in the layout of {cfg['model']}\nconfig: {cfg['source']}\n")
        if cfg.get("depth_cut"):
            fh.write(f"depth cut to {cfg['depth_cut']['num_hidden_layers']} decoder layers: {cfg['depth_cut']['why']}\n")


def shapes(name: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """{component: {state-dict key: shape}} built on the meta device (no weights allocated)."""
    from accelerate import init_empty_weights

    cfg = load_config(name)
    if cfg.get("layout") == "idm-vton":   # the Resampler's published names are not a module's
        from reidtools.testing.fullsize.idmvton import idmvton_shapes

        return idmvton_shapes(cfg)
    with init_empty_weights():
        if cfg.get("layout") == "tryoffanyone":
            from reidtools.testing.fullsize.tryoff import components

            mods = components(cfg)
        elif cfg.get("pipeline"):
            parts = _sd_parts(cfg)
            mods = {k: parts[k] for k in ("unet", "vae", "text_encoder")}
        else:
            mods = {"model": _transformers_model(cfg)}
    return {k: {n: tuple(t.shape) for n, t in m.state_dict().items()} for k, m in mods.items()}
