"""``segkit data``: get datasets onto disk (``segkit data download oxford-pet DIR``).

The downloadable datasets are those whose registration carries a download spec (``download=`` in
``register_datasets``), found through the dataset registry.
"""

from __future__ import annotations

from pathlib import Path

import click

from segkit.data.download import RemoteDataset, download_dataset, downloadable_datasets, find_downloadable


@click.group("data")
def data() -> None:
    """Download and prepare datasets."""


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
