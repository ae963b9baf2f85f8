"""Hook specifications: one hook per kind of component, each receiving a ``register`` callable.

A plugin is a module (found through the ``segkit`` entry-point group) that implements some of these
hooks with ``@segkit.hookimpl``. The host collects what they register into registries and owns the
policy (duplicates, unknown names, broken plugins); see ``segkit.registry``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("segkit")
hookimpl = pluggy.HookimplMarker("segkit")


@hookspec
def register_models(register):
    """Call ``register(name, factory, description=...)`` for each segmentation model.

    Contract: ``factory(in_channels=3, out_channels=1, **options)`` returns an ``nn.Module`` mapping
    ``(N, in_channels, H, W)`` float images to ``(N, out_channels, H, W)`` **logits** for any H and W.
    """


@hookspec
def register_losses(register):
    """Call ``register(name, factory, description=...)`` for each loss.

    Contract: ``factory(**options)`` returns a callable ``loss(logits, target)`` (usually an
    ``nn.Module``) taking logits and a ``{0, 1}`` float target of the same shape ``(N, C, H, W)``, and
    returning a finite scalar tensor. It may accept ``ignore=`` (a bool tensor of the same shape,
    True where pixels must not count).
    """


@hookspec
def register_datasets(register):
    """Call ``register(name, factory, description=..., defaults=...)`` for each dataset.

    Contract: ``factory(root=None, split="train", image_size=256, augment=None, **options)`` returns a
    ``torch.utils.data.Dataset``. ``augment`` names the augmentation pipeline (``None``: the split's
    default; the engine passes ``--augment`` for train and ``"none"`` for valid). Items are dicts
    with ``"image"`` (float tensor ``(C, H, W)``),
    ``"mask"`` (float tensor ``(1, H, W)`` with values in ``{0, 1}``) and ``"name"`` (str); optionally
    ``"ignore"`` (bool tensor ``(1, H, W)``, True where pixels must not count). Splits are ``train``,
    ``valid`` and ``test``. ``defaults`` (optional) is a dict of training settings this dataset
    suggests (``image_size``, ``epochs``, ``batch_size``, ``model_options`` per model name, ...); flags
    and config files override them. Optional dataset attributes the engine reads:
    ``normalization = {"mean": [...], "std": [...]}`` (stored in checkpoints, so prediction normalises
    photos alike), ``in_memory = True`` (no loader worker processes are started), and
    ``original_mask(index) -> (mask, ignore)`` (the mask at the photo's own size, for evaluation at
    original resolution).
    """


@hookspec
def register_callbacks(register):
    """Call ``register(name, factory, description=..., default=False)`` for each training callback.

    Contract: ``factory(run_dir=Path, **options)`` returns a ``segkit.callbacks.Callback``. Callbacks
    registered with ``default=True`` are enabled unless the user selects callbacks explicitly.
    """


@hookspec
def register_augmentations(register):
    """Call ``register(name, builder, description=...)`` for each augmentation pipeline.

    Contract: ``builder(image_size=int, train=bool)`` returns a callable taking and returning a dict
    with ``tv_tensors.Image`` ``"image"`` and ``tv_tensors.Mask`` ``"mask"`` (torchvision transforms v2),
    so geometric transforms move image and mask together.
    """


@hookspec
def register_recipes(register):
    """Call ``register(name, recipe, description=...)`` for each training recipe (a dict of settings)."""


@hookspec
def register_commands(cli):
    """Add ``click`` commands to the ``segkit`` command group ``cli``."""
