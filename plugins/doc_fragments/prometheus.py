# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Paired with PROMETHEUS_ARG_SPEC in plugins/module_utils/_prometheus.py.
    DOCUMENTATION = r"""
options:
  prometheus_url:
    description:
      - Base URL of the Prometheus server whose HTTP API (C(/api/v1/query), C(/api/v1/query_range)) is queried.
      - If not set, the value of the E(PROMETHEUS_URL) environment variable is used.
    type: str
    default: http://127.0.0.1:9090
  prometheus_timeout:
    description:
      - Seconds to wait for one Prometheus API call.
    type: float
    default: 10.0
"""
