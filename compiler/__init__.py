"""Compiling a fastai export into one ONNX file: the only code that imports fastai or torch.

The serving package (app/) never imports this one; it runs `python -m compiler`
as a child process when it has to (app/inference/loading.py), and tests/test_boundary.py
holds that line.
"""
