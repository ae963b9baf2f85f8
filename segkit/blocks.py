"""``segkit.blocks`` for plugins (the README's "Writing a plugin" lists it): the module itself
lives in ``segkit.models.blocks``; importing either gives the same module object."""

import sys

from segkit.models import blocks

sys.modules[__name__] = blocks
