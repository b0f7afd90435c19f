"""polyp-live: real-time polyp segmentation for colonoscopy video.

The installed package is one namespace. Its parts live in the repository's top-level folders, mapped
in ``pyproject.toml``: ``polyp_live.realtime`` (the live product, ``realtime/``), ``polyp_live.engines``
(model files to backends, ``engines/``), ``polyp_live.calibration`` (``calibration/``),
``polyp_live.training`` (``training/``) and ``polyp_live.tools`` (the commands, ``tools/``).
Here, in ``polyp_live/`` itself: :mod:`~polyp_live.resources` (the bundled model and demo clip),
:mod:`~polyp_live.commands` (``polyp-live COMMAND``), :mod:`~polyp_live.arguments` (the shared option
style) and :mod:`~polyp_live.cache` (where INT8 models, engines and calibration sets go).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("polyp-live")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
