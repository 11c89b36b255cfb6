"""The command-line entry points (train, predict, eval, export, import, prepare, demo): all file IO lives here.

Kept empty so that importing one command (predict with an ONNX model: no torch) imports none of the others.
"""
