"""Training: presets, datasets and weak labels, the trainer, export, metrics, evaluation, reports, the demo cache.

Start reading here: ``presets`` (every knob) → ``datasets`` (label rows, mixed batches) → ``train`` (the steps
of a run) → ``onnx_export`` (ONNX, int8, parity) → ``scoring`` (one split's metrics); ``cli`` holds
``reviews-mtl train | evaluate | predict``. Stands on ``reviews_mtl.data`` and ``reviews_mtl.model``; imports torch.
"""
