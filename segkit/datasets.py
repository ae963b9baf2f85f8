"""``segkit.datasets`` for plugins (the README's "Writing a plugin" lists it): the module itself
lives in ``segkit.data.datasets``; importing either gives the same module object."""

import sys

from segkit.data import datasets

sys.modules[__name__] = datasets
