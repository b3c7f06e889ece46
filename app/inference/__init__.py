"""Inference: decode, preprocess, infer and predict; no web framework (compiler/ imports it)."""
