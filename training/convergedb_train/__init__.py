"""Reference training pipeline for convergedb model bundles (see docs/training.md)."""
