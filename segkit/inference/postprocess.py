"""Optional clean-up of predicted masks with scikit-image (off unless asked for)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure, morphology


def postprocess_mask(
    mask: np.ndarray, fill_holes: bool = False, keep_largest: bool = False, min_size: int = 0
) -> np.ndarray:
    """A boolean (H, W) mask cleaned up: specks below ``min_size`` pixels dropped, holes filled, and
    only the largest connected component kept, in that order."""
    cleaned = mask.astype(bool)
    if min_size > 0 and cleaned.any():
        cleaned = morphology.remove_small_objects(cleaned, max_size=min_size - 1)
    if fill_holes:
        cleaned = ndimage.binary_fill_holes(cleaned)
    if keep_largest and cleaned.any():
        labels = measure.label(cleaned, connectivity=2)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        cleaned = labels == int(sizes.argmax())
    return cleaned


def postprocess_classes(mask: np.ndarray, kind: str, steps: dict[str, list[int]] | None) -> np.ndarray:
    """A multiclass ``(H, W)`` id mask or multilabel ``(K, H, W)`` bool mask cleaned up class by class:
    ``steps`` ``{"fill_holes": [ids], "keep_largest": [ids]}``. Multiclass: a class's holes become the
    class, and its pixels outside its largest component become the background (id 0); multilabel:
    each listed label's channel as ``postprocess_mask`` cleans a binary mask. Without steps (or for a
    binary mask) the mask is returned as it is."""
    fill, largest = set((steps or {}).get("fill_holes", [])), set((steps or {}).get("keep_largest", []))
    if not (fill or largest) or kind == "binary":
        return mask
    cleaned = np.array(mask, copy=True)
    if kind == "multilabel":
        for label in sorted(fill | largest):
            cleaned[label] = postprocess_mask(cleaned[label], label in fill, label in largest)
        return cleaned
    for class_id in sorted(fill | largest):
        region = cleaned == class_id
        kept = postprocess_mask(region, class_id in fill, class_id in largest)
        cleaned[kept & ~region] = class_id
        cleaned[region & ~kept] = 0
    return cleaned
