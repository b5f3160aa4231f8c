"""`reid filter`: keep the samples that pass the selection rules (CLI glue; rules in reidtools.vision.rules)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, inputs_argument, output_option, overwrite_option, progress_enabled,
                                         resolve_task, seed_option, task_options)
from reidtools.vision.filtering import RULES  # torch-free: the rules are imported when they run

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
@click.option("--rank-by", type=click.Choice(["resolution", "released", "sharpness", "product"]), default="resolution",
              help="quality: ranking for --top-n/--top-n-per-id: resolution, ties by sharpness (HSGL §3.2.1); "
                   "released = R*(10 + 0.5*min(S/100, 1)) (HSGL's code); sharpness; product R*S.")
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
def cli(keypoints: str, shard_index, num_shards, **options) -> None:
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
    from reidtools.data.labels import POSE_FORMATS
    from reidtools.vision.filtering import FilterRun, run_filter

    names = None
    if keypoints.strip() != "all":
        names = [k.strip() for k in keypoints.split(",") if k.strip()]
        known = {n for table in POSE_FORMATS.values() for n in table}
        bad = [n for n in names if n not in known]
        if bad:
            raise click.BadParameter(f"unknown keypoint(s) {', '.join(bad)}", param_hint="--keypoints")
    if (options["top_n_per_id"] or options["top_n"]) and "quality" not in options["rules"]:
        raise click.UsageError("--top-n/--top-n-per-id belong to --rule quality")
    index, count = resolve_task(shard_index, num_shards)
    run_filter(FilterRun(keypoints=names, shard_index=index, num_shards=count, **options), progress=progress_enabled())
