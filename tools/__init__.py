"""Support code outside the book's package: the browser check, the printed book, fake hub models.

``browser``        headless Chromium on a site served from this machine, network blocked
``sitecheck``      open every page of the built site and report problems (``tests/test_site.py``)
``print_book``     print the single-page edition to one PDF (``make pdf``)
``hub_snapshots``  fake offline hub snapshots of two real models (``tests/test_hub_layout.py``,
                   ``bench/hub_models.py``)

Import it as ``tools.<module>`` and run its scripts as modules from the repository root,
e.g. ``.venv/bin/python -m tools.print_book``. pytest finds it through ``pythonpath`` in
``pyproject.toml``; other scripts through the editable install (``make install``).
"""
