"""Acoustic keyword-spotting toolchain: synthesize, train, distill, prune, quantize, evaluate, card."""
