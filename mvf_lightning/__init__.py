"""mvf_lightning."""
