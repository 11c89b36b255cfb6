"""Running exported models: the onnxruntime runner (`runtime`), torch-free. Writing them is `ganforge-export`
(ganforge.cli.export).
"""
