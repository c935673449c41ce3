"""ONNX artifacts with their cards, and the toolchain that builds them (never imported by workers)."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
