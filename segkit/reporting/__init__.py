"""Reporting: evaluation of a trained model on a split, the report page, training curves and overlays."""
