"""Health probe: exit 0 when GET /health answers 200, else 1 with the reasons on stdout.

The image's own HEALTHCHECK uses curl (cheaper every 2 s); this script stays for
healthchecks that name it (``[CMD, python3, /app/healthcheck.py]``) and honours HTTP_PORT.
"""

import json
import os
import sys
import urllib.error
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8000')}/health"
try:
    with urllib.request.urlopen(url, timeout=1.5) as resp:
        sys.exit(0)
except urllib.error.HTTPError as exc:
    try:
        print("; ".join(json.loads(exc.read()).get("reasons", [])) or f"HTTP {exc.code}")
    except ValueError:
        print(f"HTTP {exc.code}")
except OSError as exc:
    print(f"/health unreachable: {exc}")
sys.exit(1)
