"""Hook specifications: one hook per kind of component, each receiving a ``register`` callable.

A plugin is a module (found through the ``segkit`` entry-point group) that implements some of these
hooks with ``@segkit.hookimpl``. The host collects what they register into registries and owns the
policy (duplicates, unknown names, broken plugins); see ``segkit.registry``.

``register(name, factory, description=None, **metadata)``: keywords beyond ``description`` are kept
in ``component.metadata``. Every kind takes ``options=SPEC``, the factory's option declaration
(``{"name": segkit.component_options.Option(...)}``), so that segkit can list a component's options;
the factory checks what it is given against the same SPEC with
``segkit.component_options.parse_component_options``.

What plugins build on lives in ``segkit`` (a plugin imports ``segkit``, never ``segkit_builtin``):
``segkit.component_options`` (declaring and checking options), ``segkit.models.AnySizeModel`` and
``segkit.blocks`` (models), ``segkit.losses.SegmentationLoss`` and its functional math (losses),
``segkit.datasets.PairedImageDataset`` (datasets of photo and mask files), ``segkit.callbacks.Callback``
(callbacks), ``segkit.download.RemoteDataset`` (downloadable datasets) and ``segkit.testing`` (the
conformance kit for a plugin's own tests).
"""

import pluggy

hookspec = pluggy.HookspecMarker("segkit")
hookimpl = pluggy.HookimplMarker("segkit")


@hookspec
def register_models(register):
    """Call ``register(name, factory, description=...)`` for each segmentation model.

    Contract: ``factory(in_channels=3, out_channels=1, **options)`` returns an ``nn.Module`` mapping
    ``(N, in_channels, H, W)`` float images to ``(N, out_channels, H, W)`` **logits** for any H and W.
    Bases: ``segkit.models.AnySizeModel`` (pads any H and W to what the network needs and crops the
    logits back), the conv blocks of ``segkit.blocks``, and the shared options ``segkit.models.IN_CHANNELS``,
    ``OUT_CHANNELS`` and ``PAD_MODE``.
    """


@hookspec
def register_losses(register):
    """Call ``register(name, factory, description=...)`` for each loss.

    Contract: ``factory(**options)`` returns a callable ``loss(logits, target)`` (usually an
    ``nn.Module``) taking logits and a ``{0, 1}`` float target of the same shape ``(N, C, H, W)``, and
    returning a finite scalar tensor. It may accept ``ignore=`` (a bool tensor of the same shape,
    True where pixels must not count). Base: ``segkit.losses.SegmentationLoss`` (checks the inputs,
    honours ``ignore`` and computes in float32; implement ``compute(logits, target, valid)``), with
    ``segkit.losses.soft_dice_coefficient``, ``soft_tversky_index`` and ``valid_mean``.
    """


@hookspec
def register_datasets(register):
    """Call ``register(name, factory, description=..., defaults=..., download=...)`` for each dataset.

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
    original resolution). ``download`` (optional) is a ``segkit.download.RemoteDataset``: where the
    dataset's archives are published and their checksums; ``segkit data download NAME DIR`` (NAME
    being the spec's name or the dataset's) fetches, verifies and safely extracts them into DIR.
    Base for photos and masks on disk: ``segkit.datasets.PairedImageDataset`` (with ``match_pairs``,
    ``check_root`` and the common options ``ROOT``, ``SPLIT``, ``IMAGE_SIZE``, ``AUGMENT``).
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
