"""Data: age groups and descriptions (FFHQ-AT), the demo face set, relabeling, datasets."""
