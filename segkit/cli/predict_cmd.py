"""``segkit predict``: masks, probability maps and overlays for images of any size."""

from __future__ import annotations

from pathlib import Path

import click

from segkit.cli.inference_choices import (
    device_option,
    inference_choice_options,
    resolve_inference_choices,
    resolve_tiling,
    tiling_options,
)
from segkit.inference.inputs import collect_inputs

#: A photo this many times the network input's side (or more), predicted by resizing, gets a hint.
RESIZE_HINT_FACTOR = 8


@click.command("predict")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=Path("predictions"),
    show_default=True,
    help="Folder for <name>_mask.png, <name>_overlay.png and (with --probabilities) <name>_prob.png "
    "(multiclass: an index PNG and <name>_prob_<class>.png; multilabel: <name>_mask_<class>.png).",
)
@click.option(
    "--threshold", type=float, help="Probability threshold for the mask. [default: the checkpoint's]"
)
@click.option(
    "--probabilities",
    is_flag=True,
    help="Also write the foreground probability (one map per class for multi-class models) as 8-bit PNGs.",
)
@click.option(
    "--no-overlay",
    is_flag=True,
    help="Do not write overlay pictures. (A TIFF predicted through tiles gets none anyway, with a note: "
    "it is read band by band, and an overlay would decode it whole.)",
)
@click.option(
    "--mask-format",
    type=click.Choice(["png", "tiff"]),
    default="png",
    show_default=True,
    help="File format of the masks: png, or tiff (<name>_mask.tif, written tile by tile with deflate "
    "compression, without another copy of the mask in memory; recommended for huge photos; for a "
    "georeferenced photo, a Cloud-Optimized GeoTIFF with the photo's CRS and transform). Without "
    "--probabilities, a TIFF photo predicted through tiles is read strip by strip (or tile by tile), "
    "never decoded whole: give huge photos as tiled TIFF.",
)
@inference_choice_options
@tiling_options
@click.option(
    "--min-size",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Post-process: drop foreground specks smaller than this many pixels.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Accept photos up to this many pixels (a guard against decompression bombs). [default: 50,000,000]",
)
@device_option()
def predict(
    checkpoint,
    inputs,
    out,
    threshold,
    probabilities,
    no_overlay,
    mask_format,
    tta,
    fill_holes,
    keep_largest,
    tile,
    no_tile,
    overlap,
    blend,
    min_size,
    max_pixels,
    device,
):
    """Predict masks for images, folders or glob patterns with a trained CHECKPOINT (a run folder or
    a .pt file), each at the image's own size: a 0/255 PNG for a binary model, an index PNG (pixel
    values are class ids, shown in the class colours) for a multiclass one, one 0/255 PNG per label
    for a multilabel one; overlays carry a legend of class names. A file that cannot be read is
    reported and skipped; the exit code is then 1."""
    from segkit.data.imageio import pixel_limit
    from segkit.data.tiff import read_photo
    from segkit.errors import DataError, UsageError
    from segkit.execution.device import resolve_device
    from segkit.inference.postprocess import postprocess_classes, postprocess_mask
    from segkit.inference.predictor import check_photo_bands, load_trained_model
    from segkit.progress import progress, write
    from segkit.reporting.run_evaluation import check_choices

    files = collect_inputs(inputs)
    trained = load_trained_model(checkpoint, device=resolve_device(device))
    threshold = trained.threshold if threshold is None else threshold
    tta, postprocess = resolve_inference_choices(trained, tta, fill_holes, keep_largest)
    check_choices(trained, threshold, postprocess)  # as evaluate checks them
    task = trained.task.with_threshold(threshold)
    tiling = resolve_tiling(trained, tile, no_tile, overlap, blend)
    geotiff_photos = georeferenced_photos(files, mask_format)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out} cannot be created: {error.strerror}") from None
    failures = 0
    stems: dict[str, int] = {}
    hinted = geo_noted = False
    geotiffs = 0
    for path in progress(files, desc="predict", unit="image"):
        try:
            with pixel_limit(max_pixels):
                image = read_photo(path, stream=band_by_band(tiling, probabilities))
            check_photo_bands(trained, image, path)
        except DataError as error:
            # Through the bar, so the message gets a line of its own instead of continuing the bar's.
            write(f"skipped: {error}")
            failures += 1
            continue
        geo = path in geotiff_photos
        if geo and mask_format == "png" and not geo_noted:
            geo_noted = True
            write(f"note: {path} is georeferenced; {GEOTIFF_NOTE}")
        if tiling is None and not hinted:
            hinted = hint_about_tiles(path, image, trained.image_size)
        probability, mask = predict_mask(trained, image, task, tta, tiling, keep_probability=probabilities)
        if task.supports_postprocess:
            mask = postprocess_mask(mask, min_size=min_size, **postprocess)
        mask = postprocess_classes(mask, task.kind, trained.class_postprocess)
        stem = unique_stem(path, stems)
        try:
            georeference = path if geo and mask_format == "tiff" else None
            write_prediction(
                out,
                stem,
                image,
                task,
                mask,
                probability if probabilities else None,
                no_overlay,
                mask_format,
                georeference=georeference,
            )
            geotiffs += georeference is not None
        except OSError as error:
            raise UsageError(f"cannot write into --out {out}: {error.strerror}") from None
    choices = {"threshold": threshold, "tta": tta, "postprocess": postprocess, "tiling": tiling}
    click.echo(summary_line(len(files) - failures, out, trained, task, choices, geotiffs))
    if failures:
        click.echo(f"{failures} file(s) could not be read", err=True)
        raise SystemExit(1)


GEOTIFF_NOTE = (
    "--mask-format tiff writes its mask as a GeoTIFF with the photo's CRS and transform, which a GIS lays "
    "on top of it. Said once per run."
)


def georeferenced_photos(files: list[Path], mask_format: str) -> set[Path]:
    """The GeoTIFFs among ``files``; with ``--mask-format tiff`` their masks need rasterio, which is
    checked here, before any mask is written."""
    from segkit.data.geotiff import georeferenced, rasterio_or_error

    found = {path for path in files if georeferenced(path)}
    if found and mask_format == "tiff":
        rasterio_or_error(f"the mask of georeferenced photo {min(found)} (a GeoTIFF with its CRS)")
    return found


def unique_stem(path: Path, stems: dict[str, int]) -> str:
    """The file stem for ``path``'s outputs: its own, or ``stem-2`` (and so on) for a stem seen before."""
    stem = path.stem if path.stem not in stems else f"{path.stem}-{stems[path.stem] + 1}"
    stems[path.stem] = stems.get(path.stem, 0) + 1
    return stem


def summary_line(written: int, out: Path, trained, task, choices: dict, geotiffs: int) -> str:
    """The closing line: how many masks, where, and how they were made (as evaluate words it)."""
    from segkit.reporting.evaluation import describe_postprocess

    tiling = choices["tiling"]
    what = f"threshold {choices['threshold']}" if task.supports_threshold else "argmax over classes"
    how = (
        f"resized from {trained.image_size}x{trained.image_size} network input to each image's own size"
        if tiling is None
        else f"{tiling['tile']}x{tiling['tile']} tiles at native resolution"
    )
    flip = "horizontal flip" if choices["tta"] else "none"
    georeferenced_masks = f"; {geotiffs} as GeoTIFF with their photo's CRS and transform" if geotiffs else ""
    return (
        f"Wrote {written} mask(s) to {out} ({what}, {how}, test-time augmentation {flip}, "
        f"post-processing {describe_postprocess(choices['postprocess'])}{georeferenced_masks})"
    )


def hint_about_tiles(path: Path, image, network_size: int) -> bool:
    """Say (once per run: True when said) that a photo far larger than the network input loses its
    detail when it is resized to it."""
    from segkit.progress import write

    if max(image.width, image.height) < RESIZE_HINT_FACTOR * network_size:
        return False
    write(
        f"note: {path} ({image.width}x{image.height}) is seen at the network's {network_size}x"
        f"{network_size} input and its mask resized back, losing detail; --tile {2 * network_size} "
        "predicts through tiles at native resolution instead (best with a model trained on crops: "
        "segkit run --crop-size). Said once per run."
    )
    return True


def predict_mask(trained, image, task, tta: bool, tiling, keep_probability: bool):
    """``(probability or None, mask)`` of one photo. A tiled run whose probabilities are not wanted
    goes band by band: never a float copy of the whole photo (bounded memory for huge photos)."""
    from segkit.inference.predictor import predict_probability
    from segkit.inference.tiling import predict_tiled_mask

    if band_by_band(tiling, keep_probability):
        tile_args = (tiling["tile"], tiling["overlap"], tiling["blend"])
        return None, predict_tiled_mask(trained, image, *tile_args, tta=tta, task=task)
    probability = predict_probability(trained, image, tta=tta, tiling=tiling)
    return probability, task.mask_from_probability(probability)


def band_by_band(tiling, keep_probability: bool) -> bool:
    """Whether the photo is predicted band by band (tiles at scale 1, no probability maps wanted)."""
    return tiling is not None and not keep_probability and tiling["scale"] == 1.0


def write_prediction(
    out: Path,
    stem: str,
    image,
    task,
    mask,
    probability,
    no_overlay: bool,
    mask_format: str = "png",
    georeference: Path | None = None,
) -> None:
    """The mask files the task writes, the probability maps (when asked for) and the overlay (not for a
    photo streamed from a TIFF, nor for a band photo: a note says so). The overlay is painted into
    ``image`` itself, band by band: predict is done with the photo, and a huge one gets no second copy.
    ``georeference``: the georeferenced photo whose CRS and transform TIFF masks carry."""
    import numpy as np
    from PIL import Image

    from segkit.data.geotiff import Raster
    from segkit.data.tiff import TiffRows, write_mask_tiffs
    from segkit.reporting.overlays import binary_overlay, class_overlay

    if mask_format == "tiff":
        write_mask_tiffs(out, stem, task, mask, georeference=georeference)
    else:
        for suffix, picture in task.mask_images(mask).items():
            picture.save(out / f"{stem}_{suffix}.png")
    if probability is not None:
        if task.kind == "binary":
            Image.fromarray((probability * 255).round().astype(np.uint8)).save(out / f"{stem}_prob.png")
        else:
            for index, name in enumerate(task.class_names):
                pixels = (probability[index] * 255).round().astype(np.uint8)
                Image.fromarray(pixels).save(out / f"{stem}_prob_{name}.png")
    if no_overlay:
        return
    if isinstance(image, TiffRows):
        note_no_overlay(image.path)
        return
    if isinstance(image, Raster):
        if image.bands:
            note_no_overlay(image.path, f"its {image.channels} bands are no RGB picture")
            return
        image = Image.fromarray(image.read_rows(0, image.height))
    if task.kind == "binary":
        binary_overlay(image, mask, in_place=True).save(out / f"{stem}_overlay.png")
        return

    def rows(top: int, bottom: int):
        part = mask[..., top:bottom, :]
        colours, tinted = task.colour_mask(part)
        labels = part if task.kind == "multiclass" else np.argmax(part, axis=0) + part.any(axis=0)
        return colours, tinted, labels

    legend = list(zip(task.class_names, task.palette, strict=True))
    class_overlay(image, rows, legend, in_place=True).save(out / f"{stem}_overlay.png")


def note_no_overlay(path: Path, reason: str = "") -> None:
    """A streamed TIFF gets no overlay: drawing one would decode the whole photo; nor does a band photo."""
    from segkit.progress import write

    reason = reason or "a TIFF read band by band would have to be decoded whole for it"
    write(f"note: no overlay for {path}: {reason} (--no-overlay silences this note)")  # through the bar
