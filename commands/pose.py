"""`reid pose`: body keypoints into the metadata (CLI glue; the library is reidtools.vision)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, inputs_argument, output_option, overwrite_option, progress_enabled,
                                         resolve_task, seed_option, task_options)


@command("pose", short_help="Write body keypoints into the metadata.")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--engine", type=click.Choice(["mediapipe"]), default="mediapipe",
              help="mediapipe: MediaPipe Pose, 33 landmarks with visibility (the pose extra).")
@click.option("--model-complexity", type=click.Choice(["0", "1", "2"]), default="1",
              help="MediaPipe model; only 1 ships in the wheel (0 and 2 download on first use).")
@click.option("--min-detection-confidence", type=click.FloatRange(0, 1), default=0.5,
              help="MediaPipe person-detection threshold.")
@task_options
@seed_option
def cli(inputs, output, engine, model_complexity, min_detection_confidence, shard_index, num_shards, seed, overwrite):
    """Write body keypoints into the metadata.

    Adds `pose` = {"format": "mediapipe33", "points": [[x, y, confidence], ...], "detected": bool}
    to every sample: x, y normalised to [0, 1] by the image width and height, confidence =
    MediaPipe's visibility. An image without a detected person gets 33 zero points and
    "detected": false (so confidence rules reject it). Needs the extra: pip install 'reidtools[pose]'.
    """
    from reidtools.shards import expand_inputs, image, map_shards, meta
    from reidtools.vision.pose_mediapipe import MediaPipePose

    shards = expand_inputs(inputs)
    index, count = resolve_task(shard_index, num_shards)
    estimator = MediaPipePose(int(model_complexity), min_detection_confidence, segmentation=False)

    def fn(samples):
        for s in samples:
            pose, _ = estimator(image(s))
            meta(s)["pose"] = pose
            yield s

    try:
        map_shards(shards, output, fn, shard_index=index, num_shards=count, desc="pose", progress=progress_enabled(),
                   overwrite=overwrite)
    finally:
        estimator.close()
