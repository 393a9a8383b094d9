#!/usr/bin/env python3
"""Build the locally built images the tests and the local inventory use.

No registry is reachable on the development and CI machines, so every image
comes from Debian's packages. Each directory under examples/images/ holding an
``image.json`` describes one image (or several variants of one Dockerfile):

    {"variants": [{"tag": "tradeops/bot:1.0.0", "args": {"BOT_VERSION": "1.0.0"}}],
     "context": "../.."}            # optional, relative to the directory

An image is rebuilt only when the content hash of its inputs (Dockerfile,
context files, build args, parent image) differs from the ``tradeops.context-hash``
label of the image already present. ``FROM tradeops/...`` parents are built first.

Two images are special: ``base`` (debootstrap + docker import, because
debian:bookworm-slim cannot be pulled here) and ``busybox`` (the static
busybox binary of the host, a 2 MB image for throw-away containers).

Usage: build.py [--force] [--list] [NAME ...]   (NAME = directory name)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HASH_LABEL = "tradeops.context-hash"
DEBIAN_MIRROR = os.environ.get("TRADEOPS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_SUITE = "bookworm"
BASE_PACKAGES = "python3,ca-certificates"
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".git"}


def log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def image_label(tag: str) -> str | None:
    """The content-hash label of a local image, or None when it is absent."""
    res = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{ index .Config.Labels %s }}" % json.dumps(HASH_LABEL), tag],
        capture_output=True,
        text=True,
    )
    return res.stdout.strip() if res.returncode == 0 else None


def hash_tree(root: Path, h: hashlib._Hash) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_dir() or SKIP_PARTS.intersection(path.parts):
            continue
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())


class Image:
    def __init__(self, directory: Path):
        self.dir = directory
        self.name = directory.name
        spec = json.loads((directory / "image.json").read_text())
        self.variants = spec["variants"]
        self.context = (directory / spec.get("context", ".")).resolve()
        self.dockerfile = directory / "Dockerfile"
        self.kind = spec.get("kind", "dockerfile")  # dockerfile | debootstrap | busybox

    @property
    def parents(self) -> list[str]:
        if not self.dockerfile.exists():
            return []
        names = re.findall(r"^FROM\s+tradeops/([\w.-]+):", self.dockerfile.read_text(), re.M)
        return sorted(set(names))

    def content_hash(self, variant: dict, parent_hashes: list[str]) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"kind": self.kind, "variant": variant, "parents": parent_hashes}, sort_keys=True).encode())
        if self.kind == "debootstrap":
            h.update(f"{BASE_SUITE} {BASE_PACKAGES} {DEBIAN_MIRROR}".encode())
        hash_tree(self.dir, h)
        if self.context != self.dir:
            hash_tree(self.context, h)
        return h.hexdigest()[:20]


def build_base(tag: str, digest: str) -> None:
    """Debian minbase with Python, via debootstrap + docker import."""
    if not shutil.which("debootstrap"):
        sys.exit("ERROR: debootstrap is needed to build the base image: apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="tradeops-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {BASE_SUITE} (about a minute)")
        run(
            ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", BASE_SUITE, str(rootfs), DEBIAN_MIRROR],
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(
            ["docker", "import", "-c", 'CMD ["/bin/bash"]', "-c", f"LABEL {HASH_LABEL}={digest}", "-", tag],
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            sys.exit("ERROR: tar of the debootstrap rootfs failed")


def build_busybox(tag: str, digest: str) -> None:
    """A 2 MB image from the host's static busybox (Debian's busybox-static)."""
    busybox = "/bin/busybox"  # Debian's busybox-static installs a static binary here
    if not Path(busybox).exists():
        sys.exit("ERROR: a static busybox is needed: apt-get install busybox-static")
    with tempfile.TemporaryDirectory(prefix="tradeops-busybox-") as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        (root / "tmp").mkdir(mode=0o1777)
        shutil.copy2(busybox, root / "bin/busybox")
        for applet in ("sh", "httpd", "nc", "sleep", "wget", "cat", "echo", "ls", "kill", "true", "false", "env"):
            (root / "bin" / applet).symlink_to("busybox")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run(
            ["docker", "import", "-c", 'CMD ["/bin/sh"]', "-c", f"LABEL {HASH_LABEL}={digest}", "-", tag],
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        tar.wait()


def build_dockerfile(img: Image, variant: dict, digest: str) -> None:
    cmd = [
        "docker",
        "build",
        "-q",
        "-f",
        str(img.dockerfile),
        "-t",
        variant["tag"],
        "--label",
        f"{HASH_LABEL}={digest}",
    ]
    for key, value in variant.get("args", {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    cmd.append(str(img.context))
    env = dict(os.environ, DOCKER_BUILDKIT="0")  # classic builder: no registry lookups for frontends
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-4000:])
        sys.exit(f"ERROR: docker build of {variant['tag']} failed (see above)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="image directories to build (default: all)")
    ap.add_argument("--force", action="store_true", help="rebuild even when the content hash matches")
    ap.add_argument("--list", action="store_true", help="list images and whether they are up to date")
    args = ap.parse_args()

    images = {d.name: Image(d) for d in sorted(HERE.iterdir()) if (d / "image.json").exists()}
    unknown = set(args.names) - images.keys()
    if unknown:
        sys.exit(f"ERROR: unknown image(s) {sorted(unknown)}; known: {sorted(images)}")

    hashes: dict[str, str] = {}  # name -> hash of its first variant (what children depend on)
    built = skipped = 0
    wanted = set(args.names or images)

    def ensure(name: str, stack: tuple = ()) -> None:
        nonlocal built, skipped
        if name in hashes:
            return
        if name in stack:
            sys.exit(f"ERROR: image dependency cycle: {' -> '.join((*stack, name))}")
        img = images[name]
        for parent in img.parents:
            if parent not in images:
                sys.exit(
                    f"ERROR: {img.dockerfile} builds FROM tradeops/{parent}, which has no examples/images/{parent}/"
                )
            ensure(parent, (*stack, name))
        parent_hashes = [hashes[p] for p in img.parents]
        for variant in img.variants:
            digest = img.content_hash(variant, parent_hashes)
            hashes.setdefault(name, digest)
            tag = variant["tag"]
            current = image_label(tag)
            if args.list:
                print(f"{tag:45} {'up to date' if current == digest else 'stale' if current else 'missing'}")
                continue
            if current == digest and not args.force:
                skipped += 1
                continue
            start = time.monotonic()
            log(f"building {tag} ({'changed' if current else 'missing'})")
            {"debootstrap": build_base, "busybox": build_busybox}.get(img.kind, lambda t, d: None)(tag, digest)
            if img.kind == "dockerfile":
                build_dockerfile(img, variant, digest)
            built += 1
            log(f"built {tag} in {time.monotonic() - start:.1f} s")

    total = time.monotonic()
    for name in sorted(wanted):
        ensure(name)
    if not args.list:
        log(f"{built} built, {skipped} up to date, {time.monotonic() - total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
