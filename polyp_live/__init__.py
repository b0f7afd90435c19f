"""polyp-live: real-time polyp segmentation for colonoscopy video.

The installed package is one namespace. Its parts live in the repository's top-level folders, mapped
in ``pyproject.toml``: ``polyp_live.realtime`` (the live product, ``realtime/``), ``polyp_live.engines``
(model files to backends, ``engines/``), ``polyp_live.calibration`` (``calibration/``),
``polyp_live.training`` (``training/``) and ``polyp_live.tools`` (the commands, ``tools/``).
Here, in ``polyp_live/`` itself: :mod:`~polyp_live.resources` (the bundled model and demo clip),
:mod:`~polyp_live.commands` (``polyp-live COMMAND``), :mod:`~polyp_live.arguments` (the shared option
style) and :mod:`~polyp_live.cache` (where INT8 models, engines and calibration sets go).
"""



def __getattr__(name: str) -> str:
    # __version__ is read on first use: importlib.metadata costs about 30 ms at start-up, a window in
    # which a Ctrl+C would still reach Python's default handler (a traceback) before polyp-live's own.
    if name != "__version__":
        raise AttributeError(f"module 'polyp_live' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version
    try:
        value = version("polyp-live")
    except PackageNotFoundError:  # running from a source tree that was never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
