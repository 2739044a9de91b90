"""A directory as an object store: the embedded default for `make run` and tests.

Every write goes to a temporary file beside its target, is flushed to disk, then
renamed (or hard-linked, for create-if-absent) into place, so a reader or a crash
never sees half an object. Temporary names start with ``.``, which keys cannot.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from storage.base import NotFound, ObjectInfo, ObjectStore, StoreError, Unavailable

_TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(ObjectStore):
    """Objects as files under ``root``; safe for concurrent processes on one host."""

    def __init__(self, root: str | Path, *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.fsync = fsync
        self.url = self.root.as_uri()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot create store directory {self.root}: {exc}") from exc

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _write_temp(self, target: Path, write: Callable[[BinaryIO], object]) -> Path:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StoreError(f"a key on the path to {target} is an object, not a prefix") from exc
        tmp = target.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _commit(self, tmp: Path, target: Path) -> None:
        try:
            os.replace(tmp, target)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, IsADirectoryError):
                raise StoreError(f"{target} is a prefix of other objects, not an object") from exc
            raise
        if self.fsync:
            _fsync_dir(target.parent)

    def _guard(self, key: str, exc: OSError) -> StoreError:
        if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
            return NotFound(key)
        if exc.errno in (errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT, errno.EMFILE):
            return Unavailable(f"{self.root}: {exc}")
        return StoreError(f"{self.root}: {exc}")

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        target = self._path(key)
        try:
            self._commit(self._write_temp(target, lambda fh: fh.write(data)), target)
        except OSError as exc:
            raise self._guard(key, exc) from exc

    def _put_if_absent(self, key: str, data: bytes, content_type: str) -> bool:
        target = self._path(key)
        try:
            tmp = self._write_temp(target, lambda fh: fh.write(data))
            try:
                # link() fails if the target exists: the atomic create-if-absent.
                os.link(tmp, target)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            if self.fsync:
                _fsync_dir(target.parent)
            return True
        except OSError as exc:
            raise self._guard(key, exc) from exc

    def _put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        try:
            with open(path, "rb") as src:
                tmp = self._write_temp(target, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))
            self._commit(tmp, target)
        except FileNotFoundError as exc:
            if not path.exists():
                raise StoreError(f"local file {path} does not exist") from exc
            raise self._guard(key, exc) from exc
        except OSError as exc:
            raise self._guard(key, exc) from exc

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise self._guard(key, exc) from exc

    def _get_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        tmp = path.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._guard(key, exc) from exc

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            # Every write is a new file, so its inode tells apart two same-size writes
            # within one tick of the (often coarse) file-system clock.
            etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def _stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise self._guard(key, exc) from exc
        if not path.is_file():
            raise NotFound(key)
        return self._info(key, st)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        directory, _, start = prefix.rpartition("/")
        base = self._path(directory) if directory else self.root
        key_base = f"{directory}/" if directory else ""
        yield from self._walk(base, key_base, start)

    def _walk(self, directory: Path, key_base: str, start: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise Unavailable(f"{self.root}: {exc}") from exc
        # Sorting directories as "name/" yields keys in the same order S3 lists them.
        keyed = sorted(
            (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e)
            for e in entries
            if not e.name.startswith(".") and e.name.startswith(start)
        )
        for sort_name, entry in keyed:
            if sort_name.endswith("/"):
                yield from self._walk(Path(entry.path), key_base + sort_name, "")
            else:
                try:
                    yield self._info(key_base + entry.name, entry.stat(follow_symlinks=False))
                except FileNotFoundError:
                    continue  # deleted while listing

    def _delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as exc:
            raise self._guard(key, exc) from exc

    def ping(self) -> None:
        """Raise :class:`Unavailable` unless the root directory is writable."""
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise Unavailable(f"store directory {self.root} is not writable")
