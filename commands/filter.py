"""`reid filter`: keep the samples that pass the selection rules (CLI glue; rules in reidtools.vision.rules)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, inputs_argument, output_option, overwrite_option, progress_enabled,
                                         resolve_task, seed_option, task_options)

RULES = ("frontal", "quality", "pose-ref", "pose-target", "pose-gen", "size")


@command("filter", short_help="Keep the samples that pass the selection rules.")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--rule", "rules", multiple=True, required=True, type=click.Choice(RULES),
              help="A rule; repeat to compose (a sample must pass all).")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report: input/kept counts and what each rule removed.")
@click.option("--frontal-mode", type=click.Choice(["eq2", "composite"]), default="eq2",
              help="frontal: HSGL eq. 2 (paper) or the released code's composite score.")
@click.option("--visibility", type=float, default=0.7, help="frontal: nose/eye visibility must exceed this (HSGL).")
@click.option("--visibility-mode", type=click.Choice(["all", "max"]), default="all",
              help="frontal: each of nose, left eye, right eye (paper text) or their max (eq. 2 as printed).")
@click.option("--eps-y", type=float, default=0.05, help="frontal eq2: max |y_left_eye - y_right_eye| (released code's value).")
@click.option("--eps-v", type=float, default=0.4, help="frontal eq2: max |v_left_ear - v_right_ear| (released code's value).")
@click.option("--min-resolution", type=int, default=0, help="quality: minimum w*h (HSGL gives no value).")
@click.option("--min-sharpness", type=float, default=0.0, help="quality: minimum variance of the Laplacian (HSGL gives no value).")
@click.option("--top-n-per-id", type=click.IntRange(min=1), default=None,
              help="quality: keep the N best images per identity (HSGL's SelectTopNPerID); reads the input twice.")
@click.option("--top-n", type=click.IntRange(min=1), default=None,
              help="quality: keep the N best images of the whole input (HSGL's SelectTopM); reads the input twice.")
@click.option("--rank-by", type=click.Choice(["sharpness", "resolution", "product"]), default="sharpness",
              help="quality: ranking score for --top-n/--top-n-per-id (ties broken by the other).")
@click.option("--tau-ref", type=float, default=0.6, help="pose-ref: min keypoint confidence (Pose-dIVE eq. 3; Fig. 4 best).")
@click.option("--tau-tar", type=float, default=0.6, help="pose-target: mean keypoint confidence (Pose-dIVE eq. 4).")
@click.option("--tau-gen", type=float, default=0.6, help="pose-gen: mean keypoint confidence of the generated image (eq. 6).")
@click.option("--eps-gen", type=float, default=0.1,
              help="pose-gen: max mean |conf_gen - conf_target| (eqs. 5-6; the paper: 'a small value', no number).")
@click.option("--keypoints", default="all", metavar="all|NAME,...",
              help="pose-*: the keypoint set K (names of the pose format, e.g. MediaPipe's).")
@click.option("--min-height", type=int, default=0, help="size: minimum image height.")
@click.option("--min-width", type=int, default=0, help="size: minimum image width.")
@click.option("--min-aspect", type=float, default=None, help="size: minimum height/width.")
@click.option("--max-aspect", type=float, default=None, help="size: maximum height/width.")
@task_options
@seed_option
def cli(inputs, output, rules, report, frontal_mode, visibility, visibility_mode, eps_y, eps_v, min_resolution,
        min_sharpness, top_n_per_id, top_n, rank_by, tau_ref, tau_tar, tau_gen, eps_gen, keypoints,
        min_height, min_width, min_aspect, max_aspect, shard_index, num_shards, seed, overwrite):
    """Keep the samples that pass the selection rules.

    Rules (repeat --rule to compose): frontal (HSGL eq. 2, or --frontal-mode composite: the
    released code's score), quality (HSGL: resolution and variance of the Laplacian, with
    --top-n-per-id / --top-n ranking), pose-ref, pose-target, pose-gen (Pose-dIVE eqs. 3-6) and
    size. Scores are recorded in the metadata (`quality`, `pose`). pose-gen reads the target
    pose from history[-1].parameters.target_pose (written by `reid posegen`). A sample lacking
    what a rule needs is an error naming the key and the command that makes the field.
    With --top-n/--top-n-per-id the whole input is scored first (stdin is spooled to a
    temporary file), then this task's shards are written.
    """
    import json
    import logging

    from reidtools.data.labels import POSE_FORMATS
    from reidtools.vision import rules as R

    names = None
    if keypoints.strip() != "all":
        names = [k.strip() for k in keypoints.split(",") if k.strip()]
        known = {n for table in POSE_FORMATS.values() for n in table}
        bad = [n for n in names if n not in known]
        if bad:
            raise click.BadParameter(f"unknown keypoint(s) {', '.join(bad)}", param_hint="--keypoints")
    if (top_n_per_id or top_n) and "quality" not in rules:
        raise click.UsageError("--top-n/--top-n-per-id belong to --rule quality")
    make = {
        "frontal": lambda: R.Frontal(frontal_mode, visibility, eps_y, eps_v, visibility_mode),
        "quality": lambda: R.Quality(min_resolution, min_sharpness, top_n_per_id, top_n, rank_by),
        "pose-ref": lambda: R.PoseRef(tau_ref, names),
        "pose-target": lambda: R.PoseTarget(tau_tar, names),
        "pose-gen": lambda: R.PoseGen(tau_gen, eps_gen, names),
        "size": lambda: R.Size(min_height, min_width, min_aspect, max_aspect),
    }
    chain = [make[r]() for r in dict.fromkeys(rules)]
    index, count = resolve_task(shard_index, num_shards)
    from reidtools.vision.filtering import run_filter

    counts = run_filter(list(inputs), output, chain, shard_index=index, num_shards=count,
                        progress=progress_enabled(), overwrite=overwrite)
    summary = counts.as_dict()
    logging.getLogger("reidtools").info("kept %d of %d (%s)", summary["kept"], summary["input"],
                                        ", ".join(f"{r['rule']} removed {r['removed']}" for r in summary["rules"]))
    if report:
        with open(report, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
