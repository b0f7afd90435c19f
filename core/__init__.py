"""The per-frame core that every other layer imports, and which imports nothing else of polyp-live.

The sidecar spec, the one preprocessing function, the Backend contract, the field of view, smoothing,
the presence decision, postprocessing, the Segmenter, the image readers, the metrics, the comparator
and the error base. Layers (``tests/test_layers.py`` checks that imports only point down):

    commands (tools/, polyp_live/commands.py, realtime/cli.py)
    live pipeline (realtime/) | training and evaluation (training/) | calibration (calibration/)
    backends (engines/)
    core (core/)
"""
