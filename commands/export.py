"""`reid export`: a ReID model to ONNX with its preprocessing in the metadata (CLI glue; the library
is reidtools.reid.export)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, seed_option

FORMATS = ("auto", "run", "torchreid", "fastreid", "cal", "clipreid", "transreid")


@command("export", short_help="Export a ReID model to ONNX, with its preprocessing in the metadata.")
@click.argument("model", metavar="RUN_DIR|CHECKPOINT")
@click.option("-o", "--output", required=True, metavar="FILE.onnx", help="The ONNX file to write.")
@click.option("--model-format", type=click.Choice(FORMATS), default="auto",
              help="What MODEL is: a `reid train` run folder or a published checkpoint (see docs/export.md); "
                   "auto tells them apart by the checkpoint's key names.")
@click.option("--feature", default=None, metavar="NAME",
              help="Which feature to export: post-bn (after the BNNeck) or pre-bn for a run folder "
                   "[default: post-bn, or the published model's test-time feature].")
@click.option("--opset", type=click.IntRange(min=14), default=17, help="ONNX opset version.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-4,
              help="Largest |ONNX - torch| allowed on the export check batch; above it nothing is written.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@seed_option
def cli(model, output, model_format, feature, opset, tolerance, overwrite, seed):
    """Export a ReID model to ONNX, with its preprocessing in the metadata.

    MODEL is a `reid train` run folder or a published checkpoint (torchreid, fast-reid, CAL,
    CLIP-ReID, TransReID). The graph maps a normalised float32 batch `images` (N, 3, H, W; N
    dynamic) to `features` (N, D). The input size, channel order, interpolation, mean/std, which
    feature is exported and whether the test protocol flip-averages are stored in the file's
    metadata_props (reid.*), which `reid eval --model FILE.onnx` reads. A random batch (--seed) is
    run through torch and onnxruntime; the largest difference is logged and recorded, and above
    --tolerance the export fails.

    \b
    Examples:
      reid export runs/prcc -o prcc.onnx
      reid export runs/prcc -o prcc-prebn.onnx --feature pre-bn
      reid export osnet_x1_0_market.pth.tar -o osnet.onnx --model-format torchreid
      reid eval q/ -g g/ --model prcc.onnx -p prcc
    """
    from reidtools.reid.export import export_onnx
    from reidtools.reid.extract import open_model

    net = open_model(model, model_format, feature)
    result = export_onnx(net, output, opset=opset, tolerance=tolerance, seed=seed, overwrite=overwrite)
    meta = result["metadata"]
    click.echo(f"{output}: {meta['reid.feature']} features ({meta['reid.feature_dim']}-d) at "
               f"{meta['reid.input_size']}, max |onnx - torch| {result['parity_max_abs']:.3g}", err=True)
