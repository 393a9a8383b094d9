# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A library the managed host may lack (the Docker SDK, requests, cryptography), imported without failing.

The module that needs it reports it by name when it runs (``missing_required_lib``), so that ansible-doc,
argument checking and the modules that do not need it still work where it is missing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib


def optional_import(name):
    """``(module, None)``, or ``(None, the ImportError)`` when ``name`` cannot be imported on this host."""
    try:
        return importlib.import_module(name), None
    except ImportError as exc:  # pragma: no cover - depends on the host
        return None, exc
