"""`reid posegen`: Pose-dIVE training (fit) and pose/viewpoint-diversified generation (sample).

CLI glue only; the library is reidtools.generate.posegen.training and reidtools.generate.posegen.sample.
"""

from __future__ import annotations

import click

from reidtools.commands._options import (command, device_option, dtype_option, fit_checkpoint_options, inputs_argument,
                                         output_option, progress_enabled, resolve_task, seed_option, task_options)

HELP = "Re-render identities in new poses and viewpoints (Pose-dIVE)."
DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_IMAGE_ENCODER = "openai/clip-vit-large-patch14"


@click.group("posegen", short_help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Re-render identities in new poses and viewpoints (Pose-dIVE).

    A reference U-Net encodes an identity image; a denoising U-Net of the same architecture generates
    the person in a target pose, attending over the reference's self-attention features, with CLIP
    image embeddings of the reference in place of text and the target's skeleton (and optional
    depth.png / normal.png maps) added through zero-initialised pose guiders. `fit` trains it on
    (reference, target) pairs of one identity; `poses` samples target viewpoints and poses and
    renders their skeleton, depth and normal maps from a parametric 3D body; `sample` renders every
    identity in those targets (or in poses drawn from a pose bank) and records each target pose for
    `reid filter --rule pose-gen`.

    \b
    Examples:
      reid pose train/ -o posed/
      reid posegen fit posed/ -o ckpt/ --steps 30000 --conditions skeleton,depth,normal --render-conditions
      reid posegen poses posed/ -o targets/ --viewpoints uniform --per-id 15
      reid posegen sample ckpt/ posed/ -o gen/ --targets targets/
      reid pose gen/ -o gen-posed/ && reid filter gen-posed/ --rule pose-gen -o gen-kept/
    """


def _quiet_loaders() -> None:
    """-q: no 'Loading weights' bars from transformers/diffusers either."""
    if not progress_enabled():
        import diffusers.utils.logging
        import transformers.utils.logging

        transformers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.disable_progress_bar()


def _split(value: str | None, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter("give at least one name", param_hint=option)
    return items


def _keypoints(value: str | None) -> tuple[str, ...] | None:
    names = _split(value, "--keypoints")
    if names:
        from reidtools.data.labels import MEDIAPIPE33

        bad = [n for n in names if n not in MEDIAPIPE33]
        if bad:
            raise click.BadParameter(f"unknown keypoint(s) {', '.join(bad)} (MediaPipe-33 names, e.g. left_ankle)",
                                     param_hint="--keypoints")
    return names


_tau_ref = click.option("--tau-ref", type=click.FloatRange(0, 1), default=0.6,
                        help="References: min keypoint confidence >= tau (eq. 3; Fig. 4: 0.6 best).")
_tau_tar = click.option("--tau-tar", type=click.FloatRange(0, 1), default=0.6,
                        help="Target poses: mean keypoint confidence >= tau (eq. 4).")
_kp = click.option("--keypoints", default=None,
                   help="Comma-separated keypoint set K for eqs. 3-4 [default: all 33].")


@command("posegen fit", short_help="Train pose guiders and the denoising U-Net on same-identity pairs.")
@inputs_argument
@output_option(help="Checkpoint folder (denoising_unet/, pose_guiders.safetensors, manifest.json, ...).")
@click.option("--base", default=DEFAULT_BASE, help="Stable Diffusion 1.x folder or hub id; both U-Nets start from it.")
@click.option("--image-encoder", default=DEFAULT_IMAGE_ENCODER,
              help="CLIP vision model (with projection) whose image embedding replaces the text.")
@click.option("--conditions", default="skeleton",
              help="Comma-separated: skeleton, depth (depth.png), normal (normal.png); one guider each.")
@click.option("--guider-channels", default="16,32,96,256",
              help="Pose-guider widths; one stride-2 stage between consecutive widths (3 = SD's 1/8).")
@click.option("--inject", type=click.Choice(["conv_in", "latent"]), default="conv_in",
              help="Add the guiders' output after conv_in (paper: 'projected noise') or to the noisy latent.")
@click.option("--train-reference/--freeze-reference", default=False,
              help="Also train the reference U-Net (the paper does not say; default frozen).")
@click.option("--lr", type=float, default=1e-5, help="AdamW learning rate (no paper value; AnimateAnyone: 1e-5).")
@click.option("--steps", type=click.IntRange(min=1), default=30_000, help="Optimiser steps (no paper value).")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, help="Pairs per step and process.")
@click.option("--size", default="512x256", help="Training size HxW, a multiple of 8 (x the VAE factor).")
@_tau_ref
@_tau_tar
@_kp
@click.option("--skeleton-threshold", type=click.FloatRange(0, 1), default=0.3,
              help="Keypoints below this confidence are not drawn in the skeleton.")
@click.option("--render-conditions", is_flag=True,
              help="Render the depth/normal maps of each target image from its own lifted pose with the "
                   "body renderer of `reid posegen poses` (instead of reading depth.png/normal.png).")
@click.option("--uncond-prob", type=click.FloatRange(0, 1, max_open=True), default=0.1,
              help="Steps that drop the reference, for classifier-free guidance (AnimateAnyone's code: 0.1).")
@fit_checkpoint_options("Training targets re-rendered from another image of their pid at each validation.")
@seed_option
def fit_cmd(inputs, output, conditions, guider_channels, size, keypoints, resume, device, **options):
    """Train pose guiders and the denoising U-Net on same-identity pairs.

    Every input sample needs `pid`, `pose` (run `reid pose`) and an image; depth/normal conditions
    need `depth.png`/`normal.png`, or --render-conditions to render them from the pose. Targets pass
    pose-target (eq. 4) and have another image of their pid passing pose-ref (eq. 3), which is drawn
    as the reference. Loss: eq. 1 (noise MSE). The checkpoint is written every --save-every steps
    (-o/checkpoint-N/) and at the end (into -o, with each weight file's SHA-256); --resume continues
    from the newest checkpoint-N/ with the same batches a single run would have seen. Runs on
    several GPUs with `accelerate launch`.
    """
    import logging

    from reidtools.commands._options import parse_size
    from reidtools.generate.posegen.training import FitOptions, fit
    from reidtools.shards import expand_inputs

    if output == "-":
        raise click.BadParameter("fit writes a checkpoint folder, not a stream", param_hint="-o")
    try:
        channels = tuple(int(c) for c in guider_channels.split(","))
    except ValueError:
        raise click.BadParameter(f"{guider_channels!r} is not a comma-separated list of integers",
                                 param_hint="--guider-channels") from None
    if len(channels) < 2 or min(channels) < 1:
        raise click.BadParameter("give at least two positive widths", param_hint="--guider-channels")
    opts = FitOptions(conditions=_split(conditions, "--conditions"), guider_channels=channels,
                      size=parse_size(size, "--size", multiple=8), keypoints=_keypoints(keypoints), **options)
    _quiet_loaders()
    manifest = fit(expand_inputs(list(inputs)), output, opts, resume=resume, progress=progress_enabled(), device=device)
    logging.getLogger("reidtools").info("checkpoint %s: %d pairs' targets over %d ids, step %d, loss %.4f", output,
                                        manifest["pairs"]["targets"], manifest["pairs"]["ids"], manifest["step"],
                                        manifest.get("last_loss", float("nan")))


@command("posegen sample", short_help="Render every identity in poses from a pose bank.")
@click.argument("ckpt_dir", metavar="CKPT_DIR")
@click.argument("inputs", nargs=-1, required=True, metavar="PERSON_SHARDS...")
@output_option()
@click.option("--poses", multiple=True, metavar="POSE_SHARDS|dataset",
              help="Target poses: shards (paths, globs, brace patterns; repeatable) [default: dataset = the "
                   "person shards' own poses].")
@click.option("--targets", multiple=True, metavar="TARGET_SHARDS",
              help="Target conditions from `reid posegen poses` (pose, depth.png, normal.png per identity; "
                   "repeatable): one image per target of each identity, instead of --poses/--per-id.")
@click.option("--per-id", type=click.IntRange(min=1), default=15, help="Images per identity (paper Fig. 2: ~15 best).")
@click.option("--steps", type=click.IntRange(min=1), default=25, help="Denoising steps (no paper value).")
@click.option("--scheduler", type=click.Choice(["ddim", "dpm++"]), default="ddim", help="Sampler (AnimateAnyone: DDIM).")
@click.option("--guidance", type=float, default=3.5,
              help="Classifier-free guidance on the reference (1 = off; AnimateAnyone: 3.5).")
@click.option("--size", default=None, help="Output size HxW [default: the training size].")
@_tau_ref
@_tau_tar
@_kp
@click.option("--base", default=None, help="Base SD folder/id for VAE and scheduler [default: the manifest's].")
@click.option("--image-encoder", default=None, help="CLIP vision model [default: the manifest's].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Images per denoising batch.")
@dtype_option()
@device_option
@task_options
@seed_option
def sample_cmd(size, keypoints, shard_index, num_shards, **options):
    """Render every identity in poses from a pose bank.

    For each pid of PERSON_SHARDS, --per-id images: each draws a reference image of the pid passing
    pose-ref (eq. 3) and a target pose passing pose-target (eq. 4) from the bank, from (--seed, pid,
    index), with its own noise seed, so output depends on neither --batch-size nor task splitting.
    With --targets (from `reid posegen poses`), a pid gets one image per target made for it, which
    supplies the pose and the depth/normal maps.
    Output shards follow the input shard holding each pid's first image; keys are
    `REFKEY-poseNNN`, with `source` = the reference and the target pose in
    history[-1].parameters.target_pose for `reid filter --rule pose-gen`. The reference's own `pose`
    (and view/quality) is dropped from the metadata: run `reid pose` on the output.
    """
    from reidtools.commands._options import parse_size
    from reidtools.generate.posegen.sample import SampleRun, run_sample

    if options["targets"]:
        ctx = click.get_current_context()
        for name, hint in (("poses", "--poses"), ("per_id", "--per-id")):
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                raise click.BadParameter("--targets sets each identity's target poses and their number",
                                         param_hint=hint)
    if "dataset" in options["poses"] and list(options["poses"]) != ["dataset"]:
        raise click.BadParameter("`dataset` cannot be mixed with pose shards", param_hint="--poses")
    index, count = resolve_task(shard_index, num_shards)
    _quiet_loaders()
    hw = parse_size(size, "--size", multiple=8) if size else None
    run_sample(SampleRun(size=hw, keypoints=_keypoints(keypoints), shard_index=index, num_shards=count, **options),
               progress=progress_enabled())


def _elevation(value: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in value.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or not all(-90 <= v <= 90 for v in parts):
        raise click.BadParameter(f"{value!r} is not DEG or LO:HI in degrees (-90..90)", param_hint="--elevation")
    lo, hi = parts[0], parts[-1]
    if hi < lo:
        raise click.BadParameter(f"{value!r}: LO must not exceed HI", param_hint="--elevation")
    return lo, hi


@command("posegen poses", short_help="Sample target viewpoints and poses; render skeleton, depth and normal maps.")
@inputs_argument
@output_option(help="Output directory for target shards (one per input shard), or - for one tar on stdout.")
@click.option("--viewpoints", default="uniform", metavar="uniform|dataset|FILE",
              help="Azimuths: uniform over 360 deg, the input poses' own histogram (36 bins), or a histogram "
                   "file {\"edges\": [deg...], \"weights\": [...]}.")
@click.option("--poses", "poses", default="dataset", metavar="dataset|FILE",
              help="Pose bank: the input shards' keypoints lifted to 3D, or a JSON file of 3D joints "
                   "{\"format\": \"mediapipe33\", \"poses\": [{\"name\", \"joints\"}]} (body frame, docs/posegen.md).")
@click.option("--per-id", type=click.IntRange(min=1), default=15, help="Targets per identity (paper §D: ~15 best).")
@click.option("--conditions", default="skeleton,depth,normal",
              help="Comma-separated maps to write: skeleton (skeleton.png), depth (depth.png, 16-bit), normal (normal.png).")
@click.option("--size", default="512x256", help="Map size HxW (posegen fit's default training size).")
@click.option("--elevation", default="0", metavar="DEG|LO:HI",
              help="Camera elevation in degrees, uniform in LO:HI (no paper value; the lift assumes 0).")
@click.option("--body", type=click.Choice(["capsules", "smpl"]), default="capsules",
              help="3D body: the built-in parametric capsule body; smpl is not available in this version.")
@click.option("--smpl-model", type=click.Path(), default=None, help="SMPL model file (for --body smpl).")
@click.option("--shape-spread", type=click.FloatRange(0, 0.3), default=0.05,
              help="Std of the per-identity body-shape multipliers (widths, limb lengths; girth 2x).")
@_tau_tar
@_kp
@click.option("--skeleton-threshold", type=click.FloatRange(0, 1), default=0.3,
              help="Keypoints below this confidence are not drawn in skeleton.png.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, help="Targets rendered together.")
@click.option("--device", default=None, help="Torch device for rendering [default: cpu].")
@task_options
@seed_option
def poses_cmd(inputs, output, conditions, size, elevation, body, smpl_model, keypoints, device, shard_index,
              num_shards, **options):
    """Sample target viewpoints and poses; render skeleton, depth and normal maps.

    For every identity of INPUTS (person shards with `pid` and `pose`), --per-id target samples,
    each a pose from the bank (the inputs' poses passing pose-target, eq. 4, lifted to 3D under a
    bone-length prior; or a FILE of 3D joints), an azimuth from --viewpoints and an elevation,
    posed on the identity's body (a parametric capsule body; one shape per identity) and rendered
    analytically per pixel. Each target holds skeleton.png, depth.png (16-bit, near = bright),
    normal.png (RGB unit normals), json pose (projected keypoints), viewpoint, body, source and
    history; `reid posegen sample --targets` conditions on them. Keys are FIRSTKEY-tgtNNN; output
    shards follow the input shard of each identity's first image.
    """
    import os

    from reidtools.commands._options import parse_size
    from reidtools.generate.posegen.targets import CONDITIONS, PosesOptions, targets_to
    from reidtools.shards import expand_inputs

    conds = _split(conditions, "--conditions")
    bad = [c for c in conds if c not in CONDITIONS]
    if bad:
        raise click.BadParameter(f"unknown {', '.join(bad)} (choose from {', '.join(CONDITIONS)})",
                                 param_hint="--conditions")
    if body == "smpl":
        raise click.UsageError("--body smpl is not available in this version (SMPL through smplx is not "
                               "implemented); use --body capsules, the built-in parametric body")
    if smpl_model is not None:
        raise click.BadParameter("only used with --body smpl", param_hint="--smpl-model")
    for name, value in (("--viewpoints", options["viewpoints"]), ("--poses", options["poses"])):
        if value not in ("uniform", "dataset") and not os.path.isfile(value):
            raise click.BadParameter(f"{value!r} is neither a mode nor a file", param_hint=name)
    if options["poses"] == "uniform":
        raise click.BadParameter("give dataset or a FILE", param_hint="--poses")
    opts = PosesOptions(conditions=conds, size=parse_size(size, "--size"), elevation=_elevation(elevation),
                        keypoints=_keypoints(keypoints), **options)
    index, count = resolve_task(shard_index, num_shards)
    n = targets_to(expand_inputs(list(inputs)), output, opts, device=device, task=(index, count),
                   progress=progress_enabled())
    import logging

    logging.getLogger("reidtools").info("%d targets written", n)


cli.add_command(fit_cmd, name="fit")
cli.add_command(sample_cmd, name="sample")
cli.add_command(poses_cmd, name="poses")
