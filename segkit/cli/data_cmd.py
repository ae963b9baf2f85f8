"""``segkit data``: get datasets onto disk (``segkit data download oxford-pet DIR``) and write any
dataset as a folder of photos and masks (``segkit data convert coco SRC DST``).

The downloadable datasets are those whose registration carries a download spec (``download=`` in
``register_datasets``), found through the dataset registry. Conversion is ``segkit.data.convert``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from segkit.data.download import RemoteDataset, download_dataset, downloadable_datasets, find_downloadable


@click.group("data")
def data() -> None:
    """Download datasets, and convert them to folders of photos and masks."""


def _dataset_name(ctx: click.Context, param: click.Parameter, value: str) -> RemoteDataset:
    spec = find_downloadable(value)
    if spec is None:
        available = ", ".join(sorted(downloadable_datasets())) or "(none registered)"
        raise click.BadParameter(f"{value!r} is not downloadable; choose from {available}")
    return spec


def _checksums(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    checksums = {}
    for value in values:
        archive, separator, md5 = value.partition("=")
        if not separator or not archive or len(md5) != 32:
            raise click.BadParameter(f"{value!r} is not ARCHIVE=MD5 (an archive file name and 32 hex digits)")
        checksums[archive] = md5
    return checksums


@data.command("download")
@click.argument("dataset", metavar="DATASET", callback=_dataset_name)
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--base-url",
    metavar="URL",
    default=None,
    help="Fetch the archives from this URL (a mirror, or file:// for local copies) instead of the official "
    "site; archive names are appended. [default: the dataset's environment variable "
    "($SEGKIT_OXFORD_PET_URL for oxford-pet), else the official URL]",
)
@click.option(
    "--md5",
    "checksums",
    multiple=True,
    metavar="ARCHIVE=MD5",
    callback=_checksums,
    help="Expect this checksum for an archive (for mirrors that repackage it). Repeatable. "
    "[default: the checksums the dataset declares]",
)
@click.option(
    "--keep-archives/--remove-archives",
    default=True,
    show_default=True,
    help="Keep the downloaded archives (a re-run then skips the download) or delete them after extraction.",
)
def download(
    dataset: RemoteDataset, directory: Path, base_url: str | None, checksums: dict, keep_archives: bool
) -> None:
    """Download DATASET (e.g. oxford-pet) into DIR: fetch, verify MD5 checksums, extract safely.

    Verified archives already in DIR are not downloaded again. Nothing is extracted unless every
    archive passes its checksum, and archive members that would land outside DIR are refused.
    """
    download_dataset(
        dataset,
        directory,
        base_url=base_url,
        md5_overrides=checksums,
        keep_archives=keep_archives,
        log=lambda message: click.echo(message, err=True),
    )


@data.command("convert", short_help="Any dataset as folders of photos and masks.")
@click.argument("dataset", metavar="FORMAT")
@click.argument("source", metavar="SRC", type=click.Path(path_type=Path))
@click.argument("destination", metavar="DST", type=click.Path(path_type=Path))
@click.option(
    "--dataset-option",
    "dataset_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option of the FORMAT dataset, repeatable (`segkit plugins --kind dataset --options` lists them); "
    "root and split come from SRC and --split. [default: none]",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(["train", "valid", "test"]),
    help="Convert this split, which must exist; repeatable. [default: every split FORMAT has in SRC]",
)
@click.option("--overwrite", is_flag=True, help="Replace DST when it exists and is not empty.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def convert(
    dataset: str, source: Path, destination: Path, dataset_options: tuple[str, ...], splits, overwrite, quiet
) -> None:
    """Write the FORMAT dataset in SRC as a folder dataset in DST, for files you can look at.

    FORMAT is a dataset name (coco, voc, cityscapes, cvat, label_studio, oxford_pet, folder, ...).
    DST gets train/, valid/ and test/ (the splits FORMAT has), each holding images/ (the photos,
    copied as they are) and masks/ (PNGs at each photo's size: binary 0/255; multiclass class ids,
    255 ignored, named in DST/classes.txt; multilabel: masks_NAME/ per label, named in DST/labels.txt).
    Nothing is left half-written: DST appears only once complete.
    """
    from segkit.config.options import parse_options
    from segkit.data.convert import convert_to_folder
    from segkit.progress import write

    options = parse_options(dataset_options, "--dataset-option")
    done = convert_to_folder(
        dataset,
        source,
        destination,
        options,
        splits=splits or None,
        overwrite=overwrite,
        quiet=quiet,
        log=write,
    )
    counts = ", ".join(f"{split} {count}" for split, count in done.written.items())
    click.echo(f"wrote {sum(done.written.values())} photos of {dataset} {source} to {destination} ({counts})")
    click.echo(f"  {done.masks_description()}")
    command = ["segkit", "run", "--dataset", "folder", "--data-path", str(destination)]
    for key, value in done.folder_options().items():
        command += ["--dataset-option", f"{key}={value}"]
    click.echo(f"train on it: {shlex.join(command)}")
