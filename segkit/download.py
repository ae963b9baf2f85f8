"""``segkit.download`` for plugins (the README's "Writing a plugin" lists it): the module itself
lives in ``segkit.data.download``; importing either gives the same module object."""

import sys

from segkit.data import download

sys.modules[__name__] = download
