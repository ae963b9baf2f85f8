"""``segkit.component_options`` for plugins (the README's "Writing a plugin" lists it): the module itself
lives in ``segkit.config.component_options``; importing either gives the same module object."""

import sys

from segkit.config import component_options

sys.modules[__name__] = component_options
