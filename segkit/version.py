"""segkit's installed version, for the files a run writes (the package root re-exports it)."""

from importlib import metadata

try:
    __version__ = metadata.version("segkit")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
