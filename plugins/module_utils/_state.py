# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-side state of a stack: one directory per stack under /var/lib/tradeops.

Private to the collection. Every module that remembers something between runs
(release history, manifests, paper blocks, the deploy lock, the audit log,
Prometheus textfiles) goes through this file so that the layout, the atomic
write and the locking exist once:

    /var/lib/tradeops/<stack>/
        audit.log              append-only JSON lines (one per action)
        lock.json              the deploy lock (absent when free)
        releases/<svc>.json    per-service release history (rollout)
        manifests/             stack release manifests
        blocks/active.json     the active paper block (paper_block; rollout reads it)
        blocks/<id>.json       every block ever opened
        reports/               block reports
        metrics/*.prom         textfiles for node-exporter's textfile collector (_textfile)

State lives on the Docker host, not the controller, so it survives the loss
of the controller. Writes go to a temporary file in the same directory,
fsync, then rename: a crash leaves the old or the new file, never half of one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import getpass
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager, suppress

from ansible_collections.tradeops.stack.plugins.module_utils import _rules

DEFAULT_STATE_ROOT = "/var/lib/tradeops"
SUBDIRS = ("releases", "manifests", "blocks", "reports", "metrics")

# Options shared by every module that keeps host state; documented by the
# doc fragment tradeops.stack.state (plugins/doc_fragments/state.py).
STATE_ARG_SPEC = dict(
    stack=dict(type="str", required=True),
    state_root=dict(type="path", default=DEFAULT_STATE_ROOT),
    operator=dict(type="str"),
)

# Labels every container the collection starts carries: a re-run recognises
# what is already there, and paper_block snapshots the manifest from them.
LABEL_STACK = "tradeops.stack"
LABEL_SERVICE = "tradeops.service"
LABEL_COLOUR = "tradeops.colour"  # blue | green for blue_green, "main" otherwise
LABEL_RELEASE = "tradeops.release"  # release id of the service (see rollout)
LABEL_SPEC_HASH = "tradeops.spec-hash"  # hash of the desired container spec


_MISSING = object()  # read_json's default when a file is absent (a file can hold JSON null)


class StateError(Exception):
    """A state file or directory cannot be used; the message says which and why."""


def error_message(exc):
    """A StateError's own message; an OSError as an operator reads it: the path(s) and the reason.

    Every module's ``main()`` fails with this for the state and file system errors it did not expect,
    never with a traceback.
    """
    if not isinstance(exc, OSError):
        return str(exc)
    reason = exc.strerror or str(exc)
    paths = [p for p in (exc.filename, getattr(exc, "filename2", None)) if p]
    if not paths:
        return "file system error: %s" % reason
    return "cannot use %s: %s" % (" -> ".join(str(p) for p in paths), reason)


class LockLost(StateError):
    """The deploy lock is no longer held by the one who renews it (released or taken over)."""


def utcnow():
    return time.time()


def iso(ts):
    """Seconds since the epoch as an ISO 8601 UTC string (what humans and reports read)."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _write_all(fd, data):
    """os.write until every byte is out: a short write (full disk, file size limit) is retried, and the
    error the retry then gets (ENOSPC, EFBIG) is raised instead of being lost."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # never seen on Linux, but a zero write must not loop forever
            raise OSError(errno.EIO, "write returned %d" % written)
        view = view[written:]


def _written_temp(path, data, mode):
    """A temporary file next to ``path`` holding all of ``data``, fsynced; removed again if that fails."""
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=os.path.dirname(path) or ".")
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(path):
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _install(path, data, mode, replace):
    """Put ``data`` at ``path`` completely or not at all; any failure is a StateError naming ``path``.

    A temporary file in the same directory is written and fsynced, then renamed over ``path``
    (``replace=True``) or hard-linked to it unless ``path`` exists (``replace=False``: the existing
    content is returned, unchanged). On failure the temporary file is removed, so a full disk leaves
    the old file (or none), never a truncated one or a stray temp file. Returns the content at ``path``.
    """
    tmp = None
    try:
        tmp = _written_temp(path, data, mode)
        if replace:
            os.rename(tmp, path)
            tmp = None
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                with open(path, "rb") as handle:
                    return handle.read()
        _fsync_dir(path)  # so the rename or link itself survives a power loss
        return data
    except OSError as exc:
        raise StateError("cannot write state file %s: %s" % (path, exc.strerror or exc))
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


def atomic_write_bytes(path, data, mode=0o640):
    """Write ``path`` completely or not at all (replacing it); any failure is a StateError naming ``path``."""
    _install(path, data, mode, replace=True)


def create_once(path, data, mode=0o600):
    """Create ``path`` holding ``data`` unless it exists, completely or not at all (never replaces a file a
    concurrent run created first). Returns the file's content."""
    return _install(path, data, mode, replace=False)


def atomic_write_text(path, text, mode=0o640):
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path, data, mode=0o640):
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode)


@contextmanager
def undone_on_error(*paths):
    """Changes to ``paths`` inside the block are undone when the block raises: each file is put back as it
    was (or removed when it did not exist), so that a change whose audit line could not be written (full
    disk) is no change. The old content is kept by a hard link, not a copy: putting it back is a rename,
    which needs no free space. The error is re-raised as a StateError saying whether the undo worked."""
    kept = {}
    for path in paths:
        keep = None
        if os.path.exists(path):
            keep = "%s.undo-%d" % (path, os.getpid())
            with suppress(OSError):
                os.unlink(keep)
            os.link(path, keep)
        kept[path] = keep
    try:
        yield
    except Exception as exc:
        failed = []
        for path, keep in kept.items():
            try:
                if keep is not None and os.path.exists(path) and os.path.samefile(keep, path):
                    os.unlink(keep)  # never replaced; rename() between two links of one file does nothing
                elif keep is not None:
                    os.replace(keep, path)
                elif os.path.exists(path):
                    os.unlink(path)
            except OSError as undo:
                failed.append("%s (%s)" % (path, undo.strerror or undo))
        if failed:
            raise StateError("%s; the change could NOT be undone: check %s" % (exc, ", ".join(failed)))
        names = ", ".join(os.path.basename(p) for p in paths)
        where = os.path.dirname(paths[0]) if len({os.path.dirname(p) for p in paths}) == 1 else "their folders"
        raise StateError("%s; the change was undone (%s in %s as before): nothing was changed" % (exc, names, where))
    else:
        for keep in kept.values():
            if keep is not None:
                with suppress(OSError):
                    os.unlink(keep)


def lock_file(fd, wait=None, clock=time.monotonic, sleep=time.sleep):
    """An exclusive flock on an open file: wait as long as it takes (``wait`` None), or give up after
    ``wait`` seconds and return False. The lock goes with the file's last close, also when the process dies."""
    if wait is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = clock() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if clock() >= deadline:
                return False
            sleep(0.2)


def read_json(path, default=None):
    """The parsed file, or ``default`` when it does not exist. A corrupt file is an error, never ``default``."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return default
        raise StateError("cannot read state file %s: %s" % (path, exc))
    except ValueError as exc:
        raise StateError("state file %s is not valid JSON (%s); inspect it before removing it" % (path, exc))


def caller_identity(operator=None):
    """Who and from where, for the audit log.

    ``operator`` is the person the play runs for (the module option: the AWX launching user
    or the controller's login, passed by the roles). Only without it does the managed host's
    side decide (``sudo``'s user, else the login), which is the SSH user, not the person.
    """
    user = operator or os.environ.get("SUDO_USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry inside some containers
            user = str(os.getuid())
    return {"user": user, "host": socket.gethostname()}


class StackState:
    """The state directory of one stack on this host."""

    def __init__(self, stack, root=DEFAULT_STATE_ROOT, operator=None):
        problem = _rules.name_problem("stack", stack)
        if problem:
            raise StateError("stack name %r is invalid: %s" % (stack, problem))
        self.stack = stack
        self.root = root
        self.operator = operator
        self.path = os.path.join(root, stack)

    def sub(self, *parts):
        return os.path.join(self.path, *parts)

    def identity(self):
        """Who acts on this stack, and from which host: the ``user`` and ``host`` of every audit line."""
        return caller_identity(self.operator)

    def ensure(self):
        """Create the directory tree (idempotent). metrics/ is world-readable for node-exporter."""
        try:
            # every level 0750, the root included (os.makedirs gives intermediate levels the umask's mode)
            for path in (self.root, self.path, *(self.sub(name) for name in SUBDIRS)):
                if not os.path.isdir(path):
                    os.makedirs(path, mode=0o750, exist_ok=True)
                    os.chmod(path, 0o750)  # noqa: S103 - owner and group only, whatever the umask
            os.chmod(self.sub("metrics"), 0o755)  # noqa: S103 - node-exporter (another uid) reads it
        except OSError as exc:
            raise StateError("cannot create state directory %s: %s (is the state root writable?)" % (self.path, exc))
        return self

    def exists(self):
        return os.path.isdir(self.path)

    @contextmanager
    def mutex(self, name="state"):
        """An exclusive flock serialising read-modify-write cycles between concurrent runs."""
        self.ensure()
        path = self.sub(".%s.mutex" % name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise StateError("cannot open the lock file %s: %s" % (path, exc.strerror or exc))
        try:
            lock_file(fd)
            yield
        finally:
            os.close(fd)  # releases the flock

    # -- audit log ---------------------------------------------------------------
    def audit(self, action, result, **fields):
        """Append one JSON line: who, from where, what, result. Never pass secrets here.

        The line is written whole or not at all: a short write is continued, and when the rest cannot be
        written (full disk) the file is truncated back to its size before this event (recorded under the
        flock, so no other writer appended in between) and a StateError names the log. Concurrent writers
        hold the flock, so a line is never interleaved with another one.
        """
        self.ensure()
        event = {"ts": iso(utcnow()), "stack": self.stack, "action": action, "result": result}
        event.update(self.identity())
        event.update(fields)
        line = (json.dumps(event, sort_keys=True, default=str) + "\n").encode("utf-8")
        path = self.sub("audit.log")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise StateError("cannot append to the audit log %s: %s" % (path, exc.strerror or exc))
        try:
            lock_file(fd)
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except OSError as exc:
                try:
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                    undone = "the partial line was removed"
                except OSError as undo:
                    undone = "the partial line could NOT be removed (%s): inspect the end of the file" % undo.strerror
                raise StateError(
                    "cannot append to the audit log %s: %s; %s, event %s not recorded"
                    % (path, exc.strerror or exc, undone, action)
                )
        finally:
            os.close(fd)
        return event

    def read_audit(self, limit=None):
        """The events, oldest first.

        A line that is not one JSON object (torn by a full disk under an older version, which did not
        truncate it back, so the next event was glued onto it) does not hide the rest of the log: it is
        returned in place as ``{"action": "unreadable", "path", "line", "raw"}`` (the first 200 characters),
        and an event glued onto its end is recovered after it. Nothing is dropped silently.
        """
        path = self.sub("audit.log")
        try:
            with open(path, "rb") as handle:
                raw_lines = handle.read().decode("utf-8", "replace").split("\n")
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                return []
            raise StateError("cannot read the audit log %s: %s" % (path, exc.strerror or exc))
        events = []
        for number, text in enumerate(raw_lines, 1):
            if text.strip():
                events.extend(_audit_line(path, number, text))
        return events[-limit:] if limit else events

    # -- paper blocks (written by paper_block, read by rollout for the freeze) -----
    def active_block(self):
        """The active paper block, or None. A malformed blocks/active.json is a StateError, never "no block"."""
        path = self.sub("blocks", "active.json")
        record = read_json(path, default=_MISSING)
        try:
            return _rules.active_block(None if record is _MISSING else record, path, present=record is not _MISSING)
        except _rules.RuleError as exc:
            raise StateError(str(exc))


def _audit_line(path, number, text):
    try:
        event = json.loads(text)
        if isinstance(event, dict):
            return [event]
    except ValueError:
        pass
    out = [{"action": "unreadable", "result": "torn", "path": path, "line": number, "raw": text[:200]}]
    decoder = json.JSONDecoder()
    start = text.find("{", 1)
    while start != -1:  # the event glued onto the torn one: the first "{" from which the rest parses whole
        try:
            glued, end = decoder.raw_decode(text, start)
            if isinstance(glued, dict) and "action" in glued and "ts" in glued and not text[end:].strip():
                out.append(glued)
                break
        except ValueError:
            pass
        start = text.find("{", start + 1)
    return out


def pid_alive(pid):
    """Whether process ``pid`` runs on this host (a zombie does not).

    A killed controller's module process is orphaned and stays a zombie until
    init reaps it; in containers whose init reaps slowly or never, signal 0
    would report it alive and its lock would never look stale.
    """
    try:
        os.kill(int(pid), 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return False
    try:
        with open("/proc/%d/stat" % int(pid)) as handle:
            data = handle.read()
    except (IOError, OSError):
        return True  # no /proc (not Linux): signal 0 is all we know
    return data[data.rindex(")") + 2 :].split()[0] not in ("Z", "X")


# The longest a deploy lock may be taken for. A lock outlives a killed run that left no trace of its
# process by up to its TTL; a long rollout renews its lease instead of asking for a long TTL.
MAX_LOCK_TTL = 6 * 3600


def check_lock_ttl(ttl, option="ttl"):
    """``ttl`` as seconds, or a StateError naming ``option`` and the bounds."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_LOCK_TTL:
        raise StateError(
            "%s must be a number of seconds between 1 and %d (%d h), got %r; a long rollout renews its lock, it "
            "does not need a longer ttl" % (option, MAX_LOCK_TTL, MAX_LOCK_TTL // 3600, ttl)
        )
    return ttl


def machine_identity():
    """Where a process id means this process: ``<boot id>/<pid namespace>``, or None when unknown.

    A pid names one process only within one boot of one kernel and one pid namespace. The host name says
    neither (a bastion and a Docker host can share it, containers from one image do), nor does
    /etc/machine-id: it survives reboots (pids do not), is shared by cloned VMs and by containers built from
    one image, and is often absent in containers. The kernel's boot id is random per boot and shared by all
    containers on it, so the pid namespace is added to tell them apart.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return "%s/%s" % (boot, namespace) if boot and namespace else None


class DeployLock:
    """A host lock with holder, reason, TTL and wait, in <state>/lock.json.

    A lock is *stale* when its TTL has passed, or when it records an owner process on this very machine
    (same boot id and pid namespace, see machine_identity) that no longer exists (a killed
    ansible-playbook), unless the *worker* it records (a rollout module working under the play's lock,
    possibly an async job that outlives its controller) still runs there. A lock without a recorded
    machine (older versions) is stale by TTL only: its pid may belong to a live process elsewhere. A
    stale lock is reported, never silently stolen: the caller must pass ``take_over_stale=True``, and the
    take-over is audited. A holder extends its lease with renew().
    """

    def __init__(self, state):
        self.state = state
        self.file = state.sub("lock.json")

    def read(self):
        """The lock record, None when free; a lock.json of the wrong shape is a StateError naming the field."""
        record = read_json(self.file, default=_MISSING)
        if record is _MISSING:
            return None
        try:
            return _rules.check_record(record, self.file, _rules.LOCK_FIELDS, "deploy lock record")
        except _rules.RuleError as exc:
            raise StateError(str(exc))

    def staleness(self, lock, now=None, here=None):
        """Why ``lock`` is stale, or None when it is live. ``here`` is this machine's identity (default: probed)."""
        now = utcnow() if now is None else now
        if lock.get("expires_at") is not None and now >= lock["expires_at"]:
            return "TTL expired at %s" % iso(lock["expires_at"])
        here = machine_identity() if here is None else here

        def gone(role):
            pid, machine = lock.get(role + "_pid"), lock.get(role + "_machine")
            return bool(pid and machine and machine == here and not pid_alive(pid))

        if gone("owner") and (not lock.get("worker_pid") or gone("worker")):
            return "owner process %s on %s is gone" % (
                lock["owner_pid"],
                lock.get("owner_host") or lock["owner_machine"],
            )
        return None

    def status(self):
        lock = self.read()
        if not lock:
            return {"held": False, "stale": False}
        reason = self.staleness(lock)
        return dict(lock, held=True, stale=reason is not None, stale_reason=reason)

    def acquire(
        self,
        holder,
        reason,
        ttl,
        wait=0,
        poll=0.5,
        take_over_stale=False,
        owner_pid=None,
        owner_host=None,
        owner_machine=None,
    ):
        """Take the lock or raise StateError naming the holder. Re-acquiring one's own lock renews it.

        Returns ``(lock, changed, taken_over)``.
        """
        if not holder:
            raise StateError("lock holder must be a non-empty string")
        check_lock_ttl(ttl)
        deadline = utcnow() + max(0, wait)
        while True:
            with self.state.mutex("lock"):
                current = self.read()
                if current and current.get("holder") == holder:
                    return self._extend(current, ttl), False, None  # one's own lock again: a renewal
                taken_over = None
                if current:
                    stale = self.staleness(current)
                    if stale and take_over_stale:
                        taken_over = dict(current, stale_reason=stale)
                    elif utcnow() >= deadline:
                        raise StateError(self._held_message(current, stale))
                    else:
                        current = "wait"
                if current != "wait":
                    now = utcnow()
                    lock = {
                        "holder": holder,
                        "reason": reason,
                        "acquired_at": now if not current or taken_over else current.get("acquired_at", now),
                        "expires_at": now + ttl,
                        "ttl": ttl,
                        "owner_pid": owner_pid,
                        "owner_host": owner_host,
                        "owner_machine": owner_machine,
                    }
                    self._write_audited(
                        current,
                        lock,
                        ("lock_take_over", dict(holder=holder, reason=reason, previous=taken_over))
                        if taken_over
                        else None,
                        ("lock_acquire", dict(holder=holder, reason=reason, ttl=ttl)),
                    )
                    return lock, not current or bool(taken_over), taken_over
            time.sleep(poll)

    def renew(self, holder, ttl=None, worker=_MISSING):
        """Extend the lease of ``holder``'s lock by ``ttl`` (default: the TTL it was taken with) from now.

        ``worker``: ``(pid, host, machine)`` of the process now working under the lock (None: no one), which
        keeps it live while its owner is gone; left as recorded when not given.
        Raises StateError naming the holder when the lock is free or held by someone else (taken over
        while ``holder`` still worked): the caller must stop, it no longer runs under the lock.
        """
        with self.state.mutex("lock"):
            current = self.read()
            if not current or current.get("holder") != holder:
                raise LockLost(
                    "deploy lock on stack %r is no longer held by %r: %s"
                    % (
                        self.state.stack,
                        holder,
                        "it was released"
                        if not current
                        else "it is held by %r since %s (reason: %s)"
                        % (current.get("holder"), iso(current.get("acquired_at")), current.get("reason")),
                    )
                )
            return self._extend(current, check_lock_ttl(ttl or current.get("ttl") or 0), worker)

    def _extend(self, current, ttl, worker=_MISSING):
        """Extend the holder's ``current`` lock by ``ttl`` from now (the caller holds the mutex) and write it."""
        lock = dict(current, expires_at=utcnow() + ttl, ttl=ttl)
        if worker is not _MISSING:
            pid, host, machine = worker or (None, None, None)
            lock.update(worker_pid=pid, worker_host=host, worker_machine=machine)
        atomic_write_json(self.file, lock)  # no audit line: a renewal is not an action, the acquire was
        return lock

    def release(self, holder, force=False):
        """Release the lock. Returns False when it was already free; raises when someone else holds it."""
        with self.state.mutex("lock"):
            current = self.read()
            if not current:
                return False
            if current.get("holder") != holder and not force:
                raise StateError(
                    "deploy lock is held by %r (reason: %s), not by %r; pass force to release it anyway"
                    % (current.get("holder"), current.get("reason"), holder)
                )
            self._write_audited(
                current,
                None,
                ("lock_release", dict(holder=holder, forced=bool(force), previous_holder=current.get("holder"))),
            )
            return True

    def _write_audited(self, previous, lock, *events):
        """Write ``lock`` (None: remove the file), then audit ``events``; when the audit log cannot take them
        (full disk), put ``previous`` back, so that no lock change happens without its audit line."""
        if lock is None:
            os.unlink(self.file)
        else:
            atomic_write_json(self.file, lock)
        try:
            for event in events:
                if event:
                    self.state.audit(event[0], "ok", **event[1])
        except StateError as exc:
            try:
                if previous:
                    atomic_write_json(self.file, previous)
                elif lock is not None:
                    os.unlink(self.file)
                undone = "the lock was left as it was before"
            except (OSError, StateError) as undo:
                undone = "the lock could NOT be put back (%s): check %s" % (undo, self.file)
            raise StateError("%s; %s" % (exc, undone))

    def _held_message(self, lock, stale):
        msg = "deploy lock on stack %r is held by %r since %s (reason: %s)" % (
            self.state.stack,
            lock.get("holder"),
            iso(lock.get("acquired_at")),
            lock.get("reason"),
        )
        if stale:
            return (
                msg
                + (
                    "; the lock is STALE (%s): to take it over, pass -e tradeops_lock_take_over_stale=true "
                    "(playbooks) or take_over_stale: true (tradeops.stack.deploy_lock, rollout lock.take_over_stale); "
                    "audited"
                )
                % stale
            )
        if lock.get("worker_pid"):
            msg += "; rollout process %s on %s is working under it" % (lock["worker_pid"], lock.get("worker_host"))
        return msg + "; it expires at %s. Wait for it (lock wait) or ask the holder." % iso(lock.get("expires_at"))
