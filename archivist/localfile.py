"""Local files that appear whole or not at all, even when the process is killed in the middle of writing.

On Linux the data goes to an unnamed file (``O_TMPFILE``) that is linked into the folder only once complete,
so a crash leaves nothing behind, and linking refuses an existing name atomically, so another process's file
is never overwritten by accident. Where the kernel or filesystem lacks ``O_TMPFILE``, :func:`publish_file`
raises :class:`TmpfileUnsupported` and the caller falls back to a temporary name and :func:`rename_no_replace`.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterable

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
# What open(O_TMPFILE) answers where it is not supported: old kernels see O_DIRECTORY and say EISDIR.
_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS})
# What link() answers on filesystems without hard links.
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK})


class TmpfileUnsupported(OSError):
    """The folder's filesystem cannot create unnamed files; use a temporary name instead."""


def publish_file(path: str, chunks: Iterable[bytes | memoryview], *, replace: bool, fsync: bool = False) -> None:
    """Write ``chunks`` as the file ``path``, which appears only once complete.

    Raises FileExistsError when ``path`` exists and ``replace`` is False. With ``replace`` an existing file is
    swapped for the new one by a rename, so readers see the old file or the new one, never a mix.
    """
    if not _O_TMPFILE:
        raise TmpfileUnsupported(errno.EOPNOTSUPP, "O_TMPFILE is not available on this platform")
    folder, name = os.path.split(path)
    dir_fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = os.open(".", _O_TMPFILE | os.O_WRONLY, 0o666, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                raise TmpfileUnsupported(exc.errno, f"{folder}: no O_TMPFILE support") from exc
            raise
        try:
            for chunk in chunks:
                _write_all(fd, chunk)
            if fsync:
                os.fsync(fd)
            # linkat(AT_SYMLINK_FOLLOW) on the /proc link gives the unnamed file a name; os.link only uses
            # linkat (and so follows the link) when a dir_fd is given.
            target = f".{name}.{uuid.uuid4().hex[:12]}.link" if replace else name
            os.link(f"/proc/self/fd/{fd}", target, dst_dir_fd=dir_fd, follow_symlinks=True)
            if replace:
                try:
                    os.replace(target, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except BaseException:
                    os.unlink(target, dir_fd=dir_fd)
                    raise
        finally:
            os.close(fd)
        if fsync:
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rename_no_replace(source: str, target: str) -> None:
    """Rename ``source`` to ``target``, raising FileExistsError when ``target`` exists (where O_TMPFILE is missing).

    A hard link refuses a taken name atomically; on a filesystem without hard links (vfat, some SMB mounts) the
    name is looked up just before the rename, which another process could still take in between.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, f"{target} exists") from exc
        os.rename(source, target)
        return
    os.unlink(source)


def _write_all(fd: int, chunk: bytes | memoryview) -> None:
    view = memoryview(chunk).cast("B")
    while view:
        view = view[os.write(fd, view) :]
