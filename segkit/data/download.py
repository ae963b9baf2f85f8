"""Downloading public datasets: fetch archives, verify their checksums, extract them safely.

A dataset plugin makes its dataset downloadable by registering a ``RemoteDataset`` with it
(``register("oxford_pet", factory, download=OXFORD_PET)``; see the ``register_datasets`` hookspec).
``download_dataset("oxford-pet", DIR)`` (CLI: ``segkit data download oxford-pet DIR``) finds that spec
through the dataset registry, fetches the archives with torchvision's download helpers, checks their
MD5 sums, and extracts them into DIR so that ``create_dataset("oxford_pet", root=DIR)`` loads them.

- Archives already in DIR with the right checksum are not downloaded again; archives already
  extracted (a marker file records which) are not extracted again.
- Every archive is downloaded and verified before any is extracted, so a bad checksum leaves DIR
  without a partial dataset; a file with the wrong checksum is deleted.
- Extraction refuses, before writing anything, members that would land outside DIR (absolute paths,
  ``..``), symlinks and hard links pointing outside it, and device files; it then extracts with
  ``tarfile``'s ``"data"`` filter where Python has it, into a staging folder moved into place at the end.
- Mirrors and tests: the base URL can be overridden per dataset by an environment variable
  (``RemoteDataset.url_env``, e.g. ``SEGKIT_OXFORD_PET_URL``) or argument; the archive file names
  are appended to it (``file://`` URLs work too).

Extraction is segkit's own rather than torchvision's ``extract_archive``, which does not guard against
members that escape the target folder.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from segkit.components import list_components
from segkit.errors import DataError, UsageError
from segkit.lazy import lazy_module
from segkit.progress import progress

# torchvision's download helpers, imported on first use: oxford_pet imports this module at startup.
tv_download = lazy_module("torchvision.datasets.utils")

#: Name of the marker file recording that an archive (with a given MD5) was extracted into a folder.
MARKER_PREFIX = ".segkit-extracted-"


@dataclass(frozen=True)
class Archive:
    """One file to fetch: its name (appended to the base URL) and MD5 checksum (hex)."""

    filename: str
    md5: str


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset published as archives under one base URL, as a dataset plugin registers it
    (``register(name, factory, download=RemoteDataset(...))``).

    ``name`` is what ``segkit data download NAME DIR`` accepts (the registered dataset's own name
    works too); ``url_env`` names the environment variable that overrides ``base_url``;
    ``segkit_dataset`` is the registered dataset that loads the extracted folder.
    """

    name: str
    base_url: str
    archives: tuple[Archive, ...]
    url_env: str
    #: Paths (relative to the target folder) that must exist after extraction.
    expected: tuple[str, ...]
    segkit_dataset: str


def downloadable_datasets() -> dict[str, RemoteDataset]:
    """The download specs registered datasets carry (their ``download`` metadata), by spec name."""

    found: dict[str, RemoteDataset] = {}
    for component in list_components("dataset"):
        spec = component.metadata.get("download")
        if isinstance(spec, RemoteDataset):
            found[spec.name] = spec
    return found


def find_downloadable(name: str) -> RemoteDataset | None:
    """The download spec called ``name``, or carried by the dataset registered as ``name``; None if
    there is none. ``-`` and ``_`` are interchangeable and case does not matter (``oxford_pet``)."""

    wanted = _spelling(name)
    for component in list_components("dataset"):
        spec = component.metadata.get("download")
        if isinstance(spec, RemoteDataset) and wanted in (_spelling(spec.name), _spelling(component.name)):
            return spec
    return None


def _spelling(name: str) -> str:
    return name.replace("_", "-").lower()


def download_dataset(
    name: str | RemoteDataset,
    directory: str | os.PathLike,
    base_url: str | None = None,
    md5_overrides: Mapping[str, str] | None = None,
    keep_archives: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download, verify and extract the dataset ``name`` into ``directory``; return the directory.

    ``name`` is a downloadable dataset's name (see ``find_downloadable``) or a ``RemoteDataset``.

    ``base_url`` overrides the official location (else the dataset's environment variable, else the
    official URL). ``md5_overrides`` maps archive file names to checksums for mirrors that repackage
    the archives. ``keep_archives=False`` deletes each archive once extracted. ``log`` receives
    progress messages. Raises ``UsageError`` for an unknown dataset, ``DataError`` for download,
    checksum or extraction problems.
    """
    dataset = name if isinstance(name, RemoteDataset) else find_downloadable(name)
    if dataset is None:
        available = ", ".join(sorted(downloadable_datasets())) or "(none registered)"
        raise UsageError(f"no downloadable dataset {name!r}; available: {available}")
    say = log or (lambda message: None)
    directory = Path(directory).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create the target folder {directory}: {error.strerror or error}") from None
    base = base_url or os.environ.get(dataset.url_env) or dataset.base_url
    base = base if base.endswith("/") else base + "/"
    overrides = dict(md5_overrides or {})
    unknown = set(overrides) - {archive.filename for archive in dataset.archives}
    if unknown:
        raise UsageError(
            f"checksum override for unknown archive(s) {', '.join(sorted(unknown))}; "
            f"{dataset.name} has {', '.join(a.filename for a in dataset.archives)}"
        )
    archives = [Archive(a.filename, overrides.get(a.filename, a.md5).lower()) for a in dataset.archives]

    pending = [archive for archive in archives if not _already_extracted(directory, archive)]
    for archive in archives:
        if archive not in pending:
            say(f"{archive.filename}: already extracted in {directory}, skipping")
    # Download and verify everything first: a bad archive must not leave half a dataset behind.
    for archive in pending:
        fetch_archive(base + archive.filename, directory, archive, say)
    for archive in pending:
        path = directory / archive.filename
        say(f"{archive.filename}: extracting into {directory}")
        safe_extract(path, directory)
        (directory / f"{MARKER_PREFIX}{archive.filename}").write_text(archive.md5 + "\n")
        if not keep_archives:
            path.unlink()
    missing = [relative for relative in dataset.expected if not (directory / relative).exists()]
    if missing:
        raise DataError(
            f"after extracting {dataset.name} into {directory}, these are missing: {', '.join(missing)}; "
            "the archives do not have the expected layout"
        )
    say(
        f"{dataset.name} is ready in {directory} "
        f"(segkit dataset {dataset.segkit_dataset!r}, root={directory})"
    )
    return directory


def fetch_archive(url: str, directory: Path, archive: Archive, log: Callable[[str], None]) -> Path:
    """Download ``url`` to ``directory/archive.filename`` unless a verified copy is there already."""
    path = directory / archive.filename
    if tv_download.check_integrity(path, archive.md5):
        log(f"{archive.filename}: already downloaded, checksum verified")
        return path
    log(f"{archive.filename}: downloading {url}")
    try:
        if urllib.parse.urlsplit(url).scheme == "file":
            _copy_local(url, path)
        else:
            # download_url shows a progress bar and checks the MD5 itself (raising RuntimeError).
            tv_download.download_url(url, str(directory), filename=archive.filename, md5=archive.md5)
        if not tv_download.check_integrity(path, archive.md5):
            raise RuntimeError("checksum mismatch")
    except RuntimeError:
        actual = tv_download.calculate_md5(path) if path.is_file() else "nothing (no file was written)"
        path.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: expected MD5 {archive.md5}, got {actual}. The download is "
            "broken or the server holds a different file; it was deleted and nothing was extracted"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        path.unlink(missing_ok=True)
        raise DataError(f"cannot download {url}: {error}") from None
    return path


def _copy_local(url: str, path: Path) -> None:
    """Copy a ``file://`` URL (torchvision's downloader expects HTTP responses) with a progress bar."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    with source.open("rb") as reader, path.open("wb") as writer:
        with progress(total=source.stat().st_size, unit="B", unit_scale=True, desc=source.name) as bar:
            while chunk := reader.read(1 << 20):
                writer.write(chunk)
                bar.update(len(chunk))


def safe_extract(archive_path: str | os.PathLike, directory: str | os.PathLike) -> list[str]:
    """Extract a tar archive into ``directory`` only if every member stays inside it.

    All members are checked before anything is written (see ``unsafe_members``); then the archive is
    extracted into a staging folder inside ``directory`` (with the ``"data"`` filter where available)
    and moved into place. Returns the member names. Raises ``DataError`` naming the archive and the
    refused members, or the read error.
    """
    archive_path, directory = Path(archive_path), Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".segkit-extract-", dir=directory))
    try:
        try:
            with tarfile.open(archive_path, "r:*") as tar:
                members = tar.getmembers()
                refused = unsafe_members(members, staging)
                if refused:
                    shown = "; ".join(refused[:20]) + (
                        f"; and {len(refused) - 20} more" if len(refused) > 20 else ""
                    )
                    raise DataError(f"refusing to extract {archive_path}: {shown}")
                _extract_all(tar, members, staging, archive_path)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DataError(f"cannot extract {archive_path}: {type(error).__name__}: {error}") from None
        _move_into(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [member.name for member in members]


def unsafe_members(members: Iterable[tarfile.TarInfo], directory: Path) -> list[str]:
    """Why each dangerous member of an archive to be extracted into ``directory`` is refused.

    Refused: absolute names, names reaching outside through ``..``, symbolic links whose target
    (relative to the link's folder) lies outside, hard links to a path outside, device files and FIFOs.
    """
    root = directory.resolve()
    reasons = []
    for member in members:
        name = member.name
        if _is_absolute(name):
            reasons.append(f"member {name!r} has an absolute path")
            continue
        destination = root / name
        if not _inside(destination, root):
            reasons.append(f"member {name!r} would be written outside {directory}")
            continue
        if (member.issym() or member.islnk()) and Path(os.path.normpath(destination)) == root:
            reasons.append(f"link {name!r} would replace the target folder itself")
        elif member.issym():
            # Relative to the folder the member name says, as tarfile's "data" filter computes it.
            target = member.linkname
            if _is_absolute(target) or not _inside(root / os.path.dirname(name) / target, root):
                reasons.append(f"symlink {name!r} points outside {directory} (to {target!r})")
        elif member.islnk():
            target = member.linkname
            if _is_absolute(target) or not _inside(root / target, root):
                reasons.append(f"hard link {name!r} points outside {directory} (to {target!r})")
        elif member.isdev():
            reasons.append(f"member {name!r} is a device file or FIFO")
    return reasons


def _is_absolute(name: str) -> bool:
    return PurePosixPath(name).is_absolute() or name.startswith("\\") or (len(name) > 1 and name[1] == ":")


def _inside(path: Path, root: Path) -> bool:
    resolved = Path(os.path.normpath(path))
    # Symlinks already on disk (there are none in a fresh staging folder) would also be followed.
    resolved = resolved.resolve() if resolved.exists() else resolved
    return resolved == root or root in resolved.parents


def _extract_all(tar: tarfile.TarFile, members: list[tarfile.TarInfo], staging: Path, archive: Path) -> None:
    bar = progress(members, desc="extracting", unit="file", leave=False)
    if hasattr(tarfile, "data_filter"):
        try:
            tar.extractall(staging, members=bar, filter="data")
        except tarfile.FilterError as error:  # what unsafe_members missed, the filter still refuses
            raise DataError(f"refusing to extract {archive}: {error}") from None
    else:  # Python without extraction filters: unsafe_members already vetted every member
        tar.extractall(staging, members=bar)


def _move_into(source: Path, destination: Path) -> None:
    """Move the contents of ``source`` into ``destination``, merging folders, replacing files."""
    for entry in source.iterdir():
        target = destination / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _move_into(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def _already_extracted(directory: Path, archive: Archive) -> bool:
    marker = directory / f"{MARKER_PREFIX}{archive.filename}"
    try:
        return marker.read_text().strip() == archive.md5
    except OSError:
        return False
