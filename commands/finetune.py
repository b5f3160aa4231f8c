"""`reid finetune`: fine-tune an inpainting pipeline on masked images and their clothing prompts.

CLI glue only; the library is reidtools.generate.inpaint.training.
"""

from __future__ import annotations

import click

from reidtools.commands._options import SD_INPAINT, command, inputs_argument, output_option, progress_enabled, seed_option


@command("finetune", short_help="Fine-tune an inpainting pipeline on masked images and their clothing prompts.")
@inputs_argument
@output_option(help="Output folder: the pipeline (full) or the LoRA adapter (lora), finetune.json, loss.jsonl, "
                    "checkpoint-N/.")
@click.option("--model", default=SD_INPAINT, help="Inpainting pipeline to start from: hub id (local cache) or folder.")
@click.option("--method", type=click.Choice(["lora", "full"]), default="lora",
              help="lora: adapters on the U-Net attention projections, only the adapter is saved (real SD models); "
                   "full: every U-Net (and text encoder) weight, the whole pipeline is saved (tiny models).")
@click.option("--steps", type=click.IntRange(min=1), default=1000, help="Optimiser steps of the U-Net phase.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, help="Samples per step and process.")
@click.option("--lr", type=float, default=1e-4, help="AdamW learning rate of the U-Net phase.")
@click.option("--rank", type=click.IntRange(min=1), default=8, help="--method lora: LoRA rank (alpha = rank).")
@click.option("--lora-targets", default="to_q,to_k,to_v,to_out.0",
              help="--method lora: comma-separated U-Net module names that get LoRA.")
@click.option("--size", default="768x256", help="Training size HxW, multiples of 8 (DLCR generates at 768x256).")
@click.option("--prompt-field", default="clothes_prompt",
              help="Metadata field holding each sample's prompt (`reid caption` writes clothes_prompt).")
@click.option("--mask-field", default="mask.png", help="The L-mode mask field (255 = repaint).")
@click.option("--outside-weight", type=click.FloatRange(0.0, 1.0), default=0.1,
              help="Loss weight of latent pixels outside the mask (inside: 1). Outside pixels are composited "
                   "back from the source at inference.")
@click.option("--caption-dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1,
              help="Fraction of prompts replaced by the empty prompt (for classifier-free guidance).")
@click.option("--prediction-type", type=click.Choice(["epsilon", "v_prediction"]), default=None,
              help="Train (and save the scheduler) with this target [default: the model scheduler's own].")
@click.option("--zero-snr", is_flag=True,
              help="--method full: train on the noise schedule rescaled to zero terminal SNR and save a DDIM "
                   "scheduler on it (Lin et al. 2024; needs --prediction-type v_prediction). SD's schedule leaks "
                   "each garment's mean colour through its last timestep, so a model trained on it ignores the "
                   "prompt's colours when sampling from pure noise.")
@click.option("--train-text-encoder/--freeze-text-encoder", default=True,
              help="--method full: also train the text encoder.")
@click.option("--vae-steps", type=click.IntRange(min=0), default=0,
              help="--method full: first train the VAE as an autoencoder for N steps (a random-weight VAE needs it; "
                   "a real one does not).")
@click.option("--vae-lr", type=float, default=1e-3, help="--vae-steps: AdamW learning rate of the VAE.")
@click.option("--flip/--no-flip", default=True, help="Random horizontal flips.")
@click.option("--mixed-precision", type=click.Choice(["auto", "no", "fp16", "bf16"]), default="auto",
              help="accelerate mixed precision; auto = fp16 on CUDA, none on CPU. fp16 needs a GPU; "
                   "bf16 on a CPU without bf16 kernels is warned about (many times slower than no).")
@click.option("--save-every", type=click.IntRange(min=0), default=0,
              help="Write a resumable checkpoint-N/ every N steps (0: only the final save).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint-N/ in -o.")
@click.option("--device", default=None, help="cpu to force the CPU [default: accelerate's choice].")
@seed_option
def cli(inputs, output, lora_targets, size, resume, device, **options) -> None:
    """Fine-tune an inpainting pipeline on masked images and their clothing prompts.

    Every input sample needs an image, a mask (`reid mask`) and a prompt (`reid caption`). The
    objective is diffusers' inpainting one: the U-Net sees the noisy latents, the downsampled mask
    and the latents of the image with the mask blanked (9 channels) and predicts the noise (or v),
    with the MSE weighted 1 inside the mask and --outside-weight outside. The output folder loads
    with `reid inpaint --model DIR`: with --method full it is a whole pipeline, with --method lora
    it holds only the adapter and the base's id (the base must be loadable where it is used).
    finetune.json records the options and each weight file's SHA-256; loss.jsonl one row per step.
    Runs on several GPUs with `accelerate launch`.

    \b
    Examples:
      reid finetune cap/train-*.tar -o sd-lora/ --steps 2000 --size 512x256
      reid inpaint cap/ -o gen/ --model sd-lora/ --prompts bank:bank.json
      reid finetune cap/ -o tiny/ --model tiny-base/ --method full --vae-steps 300 --size 32x16 --lr 1e-3 \
        --prediction-type v_prediction --zero-snr
      accelerate launch -m reidtools finetune cap/ -o sd-lora/ --save-every 500 --resume
    """
    from reidtools.commands._options import parse_size
    from reidtools.generate.inpaint.training import FinetuneOptions, finetune
    from reidtools.shards import expand_inputs

    if output == "-":
        raise click.UsageError("-o names a folder (the pipeline or adapter); - is not possible")
    if options["method"] == "lora" and options["vae_steps"]:
        raise click.BadParameter("trains the VAE, which only --method full does", param_hint="--vae-steps")
    if options["method"] == "lora" and options["zero_snr"]:
        raise click.BadParameter("changes the whole U-Net's noise schedule, which only --method full retrains",
                                 param_hint="--zero-snr")
    if options["zero_snr"] and options["prediction_type"] == "epsilon":
        raise click.BadParameter("needs --prediction-type v_prediction (epsilon is undefined at zero SNR)",
                                 param_hint="--zero-snr")
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip())
    if not targets:
        raise click.BadParameter("names no module", param_hint="--lora-targets")
    h, w = parse_size(size, "--size", multiple=8)
    opts = FinetuneOptions(lora_targets=targets, size=(h, w), **options)
    cfg = finetune(expand_inputs(list(inputs)), output, opts, resume=resume, progress=progress_enabled(),
                   device=device)
    import logging

    logging.getLogger("reidtools").info("%s: %s fine-tuning done, %d steps, final loss %.4f", output, opts.method,
                                        cfg["steps"], cfg["final_loss"] if cfg["final_loss"] is not None else float("nan"))
