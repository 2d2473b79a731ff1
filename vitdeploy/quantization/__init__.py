"""Post-training quantization of converted artifacts."""
