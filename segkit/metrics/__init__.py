"""Metrics: Dice and IoU for binary masks, per class for several, boundary scores, and the threshold chosen
on validation."""
