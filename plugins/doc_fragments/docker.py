# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Paired with DOCKER_ARG_SPEC in plugins/module_utils/_docker.py.
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - URL of the Docker engine API on the managed host, as the Docker SDK for Python expects it.
      - If not set, the value of the E(DOCKER_HOST) environment variable is used, then the local socket.
    type: str
    default: unix:///var/run/docker.sock
    aliases: [docker_url]
  api_timeout:
    description:
      - Seconds to wait for one Docker API call.
      - If not set, the value of the E(DOCKER_TIMEOUT) environment variable is used.
    type: int
    default: 60
requirements:
  - docker (Python SDK) >= 5.0.3
"""
