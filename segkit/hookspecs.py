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

    Optional model attributes segkit reads:

    - ``encoder``: an ``nn.Module``, the part of the model that extracts features (typically the
      pretrained backbone). ``segkit run --freeze-encoder F`` freezes its parameters and BatchNorm
      statistics for the first fraction F of the run; a model without one gets a usage error there.
    - ``export_blocker``: a one-line ``str`` saying why the model cannot be exported with dynamic
      height and width (e.g. adaptive pooling to fixed bins, which tracing freezes); ``segkit export``
      then refuses with that reason instead of writing a file that fails on other sizes. Absent or
      None: the model exports like any other.
    """


@hookspec
def register_losses(register):
    """Call ``register(name, factory, description=..., tasks=(...))`` for each loss.

    ``factory(**options)`` returns a callable (usually an ``nn.Module``) returning a finite scalar
    tensor. ``tasks`` names the task kinds it serves, and with them its contract:

    - ``"binary"`` and ``"multilabel"``: ``loss(logits, target)`` takes ``(N, C, H, W)`` logits and a
      ``{0, 1}`` float target of the same shape (C = 1 for binary; for multilabel, C independent
      channels, each a sigmoid). It may accept ``ignore=`` (a bool tensor of the same shape, True
      where pixels must not count). Base: ``segkit.losses.SegmentationLoss`` (checks the inputs,
      honours ``ignore`` and computes in float32; implement ``compute(logits, target, valid)``), with
      ``segkit.losses.soft_dice_coefficient``, ``soft_tversky_index`` (both take ``per_channel=True``
      to score each channel on its own) and ``valid_mean``.
    - ``"multiclass"``: ``loss(logits, target)`` takes ``(N, K, H, W)`` logits (K mutually exclusive
      classes) and an ``(N, H, W)`` int64 target of class indices in ``[0, K)``; pixels whose target is
      the ignore value (255, or the loss's ``ignore_index`` option) count for nothing in value and
      gradient. It may accept ``ignore=`` (a bool ``(N, H, W)`` tensor). Base:
      ``segkit.losses.MulticlassLoss`` (validates, masks ignored pixels, builds one-hot targets and
      computes in float32; implement ``compute(logits, target, one_hot, valid)``), with
      ``segkit.losses.class_mean`` and the option ``segkit.losses.CLASS_WEIGHTS``.

    A loss registered without ``tasks`` serves ``("binary", "multilabel")``. segkit refuses a loss
    for a task it does not serve with ``segkit.losses.check_loss_task``, naming those that do.
    """


@hookspec
def register_datasets(register):
    """Call ``register(name, factory, description=..., defaults=..., download=...)`` for each dataset.

    Contract: ``factory(root=None, split="train", image_size=256, augment=None, **options)`` returns a
    ``torch.utils.data.Dataset``. ``augment`` names the augmentation pipeline (``None``: the split's
    default; the engine passes ``--augment`` for train and ``"none"`` for valid). Splits are
    ``train``, ``valid`` and ``test``. Register ``options=SPEC`` (``segkit.component_options``) to
    have ``segkit plugins --options`` list them; a dataset that reads no folder leaves ``root`` out of
    its spec, and ``segkit run --data-path`` is then refused for it instead of ignored.

    The dataset's ``task`` attribute says what its masks mean ("binary" when absent). Items are dicts
    with ``"image"`` (float tensor ``(C, H, W)``), ``"name"`` (str), and by task:

    - ``"binary"``: ``"mask"`` float ``(1, H, W)`` in ``{0, 1}``; optionally ``"ignore"`` (bool
      ``(1, H, W)``, True where pixels must not count).
    - ``"multiclass"`` (K mutually exclusive classes): ``"mask"`` **int64** ``(1, H, W)`` of class ids
      in ``[0, K)``, or ``ignore_index`` (255) where pixels must not count; ``"ignore"`` bool
      ``(1, H, W)``, True exactly where the mask is ``ignore_index``, always present (possibly all
      False). Masks are resized and augmented by nearest neighbour only; pixels an augmentation
      invents are ignored.
    - ``"multilabel"`` (K independent, possibly overlapping labels): ``"mask"`` float ``(K, H, W)`` in
      ``{0, 1}``, one channel per class; optionally ``"ignore"`` bool ``(K, H, W)``.

    Task attributes (read with defaults and checked by ``segkit.datasets.dataset_task_info``):
    ``task``; ``class_names`` (K distinct str in id / channel order; for binary absent or
    ``["foreground"]``; a multiclass class named "background" is the background); ``palette``
    (optional, K ``[r, g, b]`` overlay colours; default ``segkit.datasets.default_palette``);
    ``ignore_index`` (multiclass; 255). ``defaults`` (optional) is a dict of training settings this
    dataset suggests (``image_size``, ``epochs``, ``batch_size``, ``model_options`` per model name,
    ...); flags and config files override them. Other optional dataset attributes the engine reads:
    ``normalization = {"mean": [...], "std": [...]}`` (stored in checkpoints, so prediction normalises
    photos alike), ``in_memory = True`` (no loader worker processes are started), and
    ``original_mask(index) -> (mask, ignore)`` (the mask at the photo's own size, for evaluation at
    original resolution, numpy: binary ``{0, 1}`` ``(H, W)``; multiclass int64 ``(H, W)`` ids with
    ``ignore_index`` kept and a bool ``(H, W)`` ignore; multilabel ``{0, 1}`` ``(K, H, W)`` and a bool
    ``(K, H, W)`` ignore or None). ``download`` (optional) is a ``segkit.download.RemoteDataset``: where the
    dataset's archives are published and their checksums; ``segkit data download NAME DIR`` (NAME
    being the spec's name or the dataset's) fetches, verifies and safely extracts them into DIR.
    Base for photos and masks on disk: ``segkit.datasets.PairedImageDataset`` (with ``match_pairs``,
    ``check_root`` and the common options ``ROOT``, ``SPLIT``, ``IMAGE_SIZE``, ``AUGMENT``).
    """


@hookspec
def register_callbacks(register):
    """Call ``register(name, factory, description=..., default=False)`` for each training callback.

    Contract: ``factory(run_dir=Path, **options)`` returns a ``segkit.callbacks.Callback``. Callbacks
    registered with ``default=True`` run in every run unless the user leaves one out
    (``--no-callback NAME``); ``--callback NAME`` adds others. Register ``options=SPEC``
    (``segkit.component_options``) so that ``segkit plugins --kind callback --options`` lists them.
    """


@hookspec
def register_augmentations(register):
    """Call ``register(name, builder, description=...)`` for each augmentation pipeline.

    Contract: ``builder(image_size=int, train=bool)`` returns a callable taking and returning a dict
    with ``tv_tensors.Image`` ``"image"`` and ``tv_tensors.Mask`` ``"mask"`` (torchvision transforms v2),
    so geometric transforms move image and mask together. It ends with the image as normalised floats
    (``segkit.data.transforms.to_float_and_normalize``). A builder that also accepts ``crop=bool`` works
    with ``--crop-size``: with ``crop=True`` it receives an ``image_size`` x ``image_size`` crop cut at
    native resolution and must augment it without resizing it (no ``RandomResizedCrop``); builders
    without that parameter are refused with ``--crop-size`` (see ``segkit.data.sampling``).
    """


@hookspec
def register_recipes(register):
    """Call ``register(name, recipe, description=...)`` for each training recipe (a dict of settings)."""


@hookspec
def register_planners(register):
    """Call ``register(name, planner, description=...)`` for each planner: a recipe computed from the data.

    Contract: ``planner(request: segkit.planning.PlanRequest) -> segkit.planning.Plan``. The request
    holds the settings resolved without a recipe and the names the user set; it builds the training
    split, its fingerprint (cached beside the data) and step timings on the run's device on demand.
    ``--recipe NAME`` runs the planner when no fixed recipe has that name; the plan's settings take the
    recipe's place among the layers (the config file and flags override them) and its seconds count in
    the time budget. See ``segkit.planning``.
    """


@hookspec
def register_commands(cli):
    """Add ``click`` commands to the ``segkit`` command group ``cli``."""
