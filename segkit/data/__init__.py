"""Data: photos and masks read from disk, the paired-image dataset bases, transforms and crops, file checks
and their cache, downloads, and the splits a run builds."""
