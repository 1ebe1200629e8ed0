"""trainable package."""
