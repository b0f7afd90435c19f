"""The browser side of polyp-live: the live view (``--web``) and the files page (``polyp-live web``).

Both run an aiohttp server (the ``[web]`` extra) on a thread of its own; :mod:`.security` holds what
every page shares (where it binds, the access token, the Content-Security-Policy, the packaged
JavaScript and CSS).
"""
