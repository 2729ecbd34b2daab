"""Datasets: built-in synthetic human and hand sets, parsers and TFDS builders for the public
datasets, and the crop/augment/heatmap pipeline fed by grain."""
