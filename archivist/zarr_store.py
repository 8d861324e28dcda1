"""Zarr v3 storage: an event's array as a zarr array, or appended as one frame, in a store at any fsspec URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import tenacity
import zarr
import zarr.storage
from fsspec.core import split_protocol
from zarr.core.buffer import default_buffer_prototype
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.metadata.io import save_metadata
from zarr.core.sync import sync
from zarr.storage import StorePath
from zarr.storage._common import ensure_no_existing_node

from .errors import ArchivistError, ConfigError, DestinationExistsError, PayloadError
from .route import redact_url
from .store import OnExists, WriteError, Written, _suffixed, write_settings

log = logging.getLogger(__name__)

METADATA_SUFFIX = "_metadata"
# Records per chunk of the metadata array, which also grows a chunk at a time (so most appends save one shape, not
# two). Independent of frames_per_chunk: a record is some bytes of JSON, and a batch then rewrites one small chunk
# of records rather than one per chunk of frames (fewer writes per batch, fewer objects in the store).
METADATA_GROWTH = 1024
_LOCAL_PROTOCOLS = (None, "file", "local")
_OPEN_ARRAYS_LIMIT = 256
# Every chunk is stored, even one equal to the fill value: an all-zero frame is a frame, and zarr's default
# compares each chunk with the fill value first, which took half the time of an append.
_WRITE_CONFIG = {"write_empty_chunks": True}
_LAYOUTS_LIMIT = 64  # kinds of array (shape, dtype) whose metadata is kept
_GROUPS_LIMIT = 1024  # groups known to exist
BATCH_LINGER = 0.005  # seconds a batch waits at most for frames that are being prepared
T = TypeVar("T")
_Tails = tuple[np.ndarray | None, np.ndarray | None]  # an append target's frames and records past a chunk boundary


def check_compressors(compressors: Any) -> None:
    """Refuse a compressors setting zarr cannot use now, rather than at the first event."""
    try:
        zarr.create_array(zarr.storage.MemoryStore(), shape=(1,), dtype="u1", compressors=compressors)
    except Exception as exc:
        raise ConfigError(f"compressors: zarr cannot use {compressors!r}: {exc}") from exc


@dataclass(slots=True)
class _Plan:
    """What a write has settled on its first attempt, so a retry writes the same place again."""

    path: str | None = None
    index: int | None = None


@dataclass(slots=True, eq=False)
class _Frame:
    """One frame waiting to be appended, and, once its batch is written, what became of it. ``at``: where an
    earlier delivery may have stored it (a replay's recorded index); ``index``: where its batch put it."""

    frame: np.ndarray
    record: str
    resume: bool
    done: bool = False
    result: Written | None = None
    error: Exception | None = None
    at: int | None = None
    index: int | None = None


class _Target:
    """What callers writing one array share: ``claim``, held to claim the name of a whole array; for appends,
    the frames ``waiting`` in line, ``writing``: whether a batch of them is being written, and ``tails``: the
    frames and records after the arrays' last chunk boundary, as written (None: to be read from the store).

    Two conditions on one lock guard ``waiting`` and ``writing``: ``done`` is notified when a batch is
    written, so a caller whose frame was in it returns at once rather than queuing behind the next batch;
    ``joined`` when a frame joins the line, for a writer that waits for its batch to fill.
    """

    __slots__ = ("claim", "done", "joined", "tails", "users", "waiting", "writing")

    def __init__(self) -> None:
        guard = threading.Lock()
        self.claim = threading.Lock()
        self.done = threading.Condition(guard)
        self.joined = threading.Condition(guard)
        self.waiting: deque[_Frame] = deque()
        self.writing = False
        self.tails: _Tails = (None, None)
        self.users = 0


class ZarrStore:
    """Writes numpy arrays into zarr v3 stores; the zarr counterpart of :class:`archivist.store.Store`.

    Callers serialize calls for one array (ZarrArchiver does, in arrival order); calls for different
    arrays may run in parallel. Transient errors are retried with ``retrying``; the final failure is a
    WriteError, like a file write's.
    """

    def __init__(
        self,
        *,
        storage_options: dict[str, Any] | None = None,
        on_exists: OnExists = "suffix",
        retrying: tenacity.Retrying | None = None,
        frames_per_chunk: int = 1,
        compressors: Any = "auto",
    ) -> None:
        self._options, self._on_exists, self._retrying = write_settings(storage_options, on_exists, retrying)
        self._frames_per_chunk = frames_per_chunk
        self._compressors = compressors
        # Open append targets (data and metadata arrays) by (store URL, path); their cached shape is the truth
        # while this process is the only writer, and they are opened again after any failure.
        self._open: OrderedDict[tuple[str, str], tuple[zarr.Array, zarr.Array]] = OrderedDict()
        self._open_lock = threading.Lock()
        self._targets: dict[tuple[str, str], _Target] = {}  # only arrays being written now
        self._layouts: dict[Any, ArrayV3Metadata] = {}  # by shape and dtype (default mode)
        # (store URL, group path) whose groups up to the store's root this process made or found (default mode); a
        # group removed while it runs is not made again until the next start (its arrays are still written whole)
        self._groups: set[tuple[str, str]] = set()
        self._targets_lock = threading.Lock()

    # -- default mode: one array per event ----------------------------------------------------------------------

    def write(
        self, store_url: str, path: str, array: np.ndarray, attributes: dict[str, Any], *, resume: bool = False
    ) -> Written:
        """Write ``array`` with ``attributes`` as the array ``path`` in the store at ``store_url``.

        The chunks are stored first and the array's ``zarr.json`` last, so the array appears only once all
        its data is there. ``on_exists`` applies to ``path`` as to a file name; with ``resume``, an existing
        array holding exactly this data and these attributes counts as this write.
        """
        plan = _Plan()
        where = _where(store_url, path)
        with self._target(store_url, path) as target, target.claim:  # one writer claims a name at a time
            return self._retry(f"writing {where}", self._write_once, store_url, path, array, attributes, plan, resume)

    def _write_once(
        self,
        store_url: str,
        path: str,
        array: np.ndarray,
        attributes: dict[str, Any],
        plan: _Plan,
        resume: bool,
    ) -> Written:
        store = self._open_store(store_url)
        if plan.path is not None and _exists(store, plan.path):  # a retry, and the name is taken now
            if _holds(store, plan.path, array, attributes):  # by an earlier attempt whose reply was lost
                return Written(_where(store_url, plan.path), array.nbytes, plan.path != path)
            plan.path = None  # by another writer: claim a name again
        if plan.path is None:
            plan.path, stored = self._claim(store, store_url, path, array, attributes, resume)
            if stored:
                log.info("%s already holds this array; not stored again", _where(store_url, plan.path))
                return Written(_where(store_url, plan.path), array.nbytes, plan.path != path)
        layout = self._layout(array.shape, array.dtype).update_attributes(attributes)
        group = (store_url, plan.path.rpartition("/")[0])
        sync(_store_array(StorePath(store, plan.path), layout, array, ensure_parents=group not in self._groups))
        if len(self._groups) >= _GROUPS_LIMIT:
            self._groups.clear()
        self._groups.add(group)
        if plan.path != path:
            log.warning("%s exists; wrote %s instead", _where(store_url, path), plan.path)
        return Written(_where(store_url, plan.path), array.nbytes, plan.path != path)

    def _layout(self, shape: tuple[int, ...], dtype: np.dtype) -> ArrayV3Metadata:
        """The metadata of an array of this shape and dtype, without attributes, made by zarr once per kind of array:
        making it took zarr about 1 ms, a quarter of writing a 128 KiB array."""
        key = (shape, dtype)
        layout = self._layouts.get(key)
        if layout is None:
            spec = _array_spec(shape, dtype, "auto", self._compressors, {})
            layout = zarr.create_array(zarr.storage.MemoryStore(), **spec).metadata
            if len(self._layouts) >= _LAYOUTS_LIMIT:
                self._layouts.clear()
            self._layouts[key] = layout
        return layout

    def _claim(
        self, store: Any, store_url: str, path: str, array: np.ndarray, attributes: dict[str, Any], resume: bool
    ) -> tuple[str, bool]:
        """The array path to write, and whether it already holds this array (a resumed write)."""
        for n in range(1_000_000):
            candidate = path if n == 0 else _suffixed(path, n)
            if not _exists(store, candidate):
                return candidate, False
            if resume and _holds(store, candidate, array, attributes):
                return candidate, True
            if self._on_exists == "overwrite":
                sync(store.delete_dir(candidate))
                return candidate, False
            if self._on_exists == "error":
                raise DestinationExistsError(f"{_where(store_url, candidate)} exists and on_exists='error'")
        raise DestinationExistsError(f"no free array name left for {_where(store_url, path)}")

    # -- append mode: one frame per event ---------------------------------------------------------------------

    def append(
        self,
        store_url: str,
        path: str,
        frame: np.ndarray,
        record: str,
        *,
        resume: bool = False,
        place: AbstractContextManager[Any] | None = None,
        coming: Callable[[int], bool] | None = None,
        at: int | None = None,
    ) -> Written:
        """Append ``frame`` along axis 0 of the array ``path``, and ``record`` (a JSON text) to its metadata.

        The arrays are created on the first frame: ``path`` with shape ``(0, *frame.shape)``, chunked
        ``frames_per_chunk`` frames at a time, and ``path + "_metadata"`` holding one string per frame, chunked
        ``METADATA_GROWTH`` records at a time. A frame of another dtype or shape is a PayloadError and changes
        nothing.

        The frame takes its place in the array's line inside ``place`` (ZarrArchiver's arrival order), so
        frames are appended in the order their callers entered ``place``. A caller that finds no batch being
        written appends every frame waiting in line, as one batch with one commit, and the others find their
        frame written: under a backlog each append costs a fraction of a lone one. While ``coming(n)`` says
        more frames than the ``n`` in line are on their way, it waits up to ``BATCH_LINGER`` for them to join,
        so that under a backlog a batch does not start with the first frame alone. The index is chosen once
        per batch, so a retry after a lost reply never appends twice. Once a batch may have been committed, a
        frame that fails anyway fails with a WriteError whose ``destination`` names its index
        (``store :: path[17]``): the reply may only have been lost. With ``resume``, a lone frame counts as
        already appended if the array holds it, with the same record, at ``at`` (that recorded index), or
        without one as its last frame.
        """
        waiting = _Frame(frame, record, resume, at=at)
        with self._target(store_url, path) as target:
            with place or contextlib.nullcontext(), target.done:
                target.waiting.append(waiting)
                target.joined.notify()
            while not waiting.done:
                with target.done:
                    target.done.wait_for(lambda: waiting.done or not target.writing)
                    if waiting.done:
                        break
                    target.writing = True
                    if coming is not None:  # let frames on their way join this batch
                        target.joined.wait_for(lambda: not coming(len(target.waiting)), timeout=BATCH_LINGER)
                try:
                    self._append_waiting(store_url, path, target)
                finally:
                    with target.done:
                        target.writing = False
                        target.done.notify_all()
        if waiting.error is not None:
            raise waiting.error
        assert waiting.result is not None
        return waiting.result

    def _append_waiting(self, store_url: str, path: str, target: _Target) -> None:
        """Append every frame waiting for the array as one batch; each frame gets its result or error."""
        with target.done:
            batch = list(target.waiting)
            target.waiting.clear()
        try:
            what = f"appending to {_where(store_url, path)}"
            self._retry(what, self._append_once, store_url, path, target, batch, _Plan())
        except Exception as exc:
            for waiting in batch:
                if waiting.result is None and waiting.error is None:
                    index = waiting.at if waiting.index is None else waiting.index
                    waiting.error = _in_doubt(exc, _where(store_url, path), index)
        finally:
            with target.done:
                for waiting in batch:
                    waiting.done = True

    def _append_once(self, store_url: str, path: str, target: _Target, batch: list[_Frame], plan: _Plan) -> None:
        try:
            data, metadata = self._open_for_append(store_url, path, batch[0].frame)
            fits = []
            for waiting in batch:
                shape, dtype = waiting.frame.shape, waiting.frame.dtype
                if _same_dtype(dtype, data.dtype) and shape == data.shape[1:]:
                    fits.append(waiting)
                    continue
                waiting.error = PayloadError(
                    f"frame of shape {shape} and dtype {dtype} does not fit {_where(store_url, path)}, "
                    f"which holds frames of shape {data.shape[1:]} and dtype {data.dtype}"
                )
            if not fits:
                return
            index = data.shape[0] if plan.index is None else plan.index
            first = fits[0]
            if plan.index is None and len(fits) == 1 and first.resume:
                at = index - 1 if first.at is None else first.at
                if 0 <= at < index and _holds_frame(data, metadata, at, first.frame, first.record):
                    first.result = Written(f"{_where(store_url, path)}[{at}]", first.frame.nbytes, False)
                    return
            plan.index = index
            for offset, waiting in enumerate(fits):
                waiting.index = index + offset
            if data.shape[0] == index:  # else an earlier attempt committed the batch; only its reply was lost
                frames = [waiting.frame for waiting in fits]
                records = [waiting.record for waiting in fits]
                target.tails = sync(_append_frames(data, metadata, index, frames, records, target.tails))
        except Exception:
            target.tails = (None, None)
            with self._open_lock:
                self._open.pop((store_url, path), None)  # read the shapes from the store again on the next attempt
            raise
        where = _where(store_url, path)
        for waiting in fits:
            waiting.result = Written(f"{where}[{waiting.index}]", waiting.frame.nbytes, False)

    @contextlib.contextmanager
    def _target(self, store_url: str, path: str) -> Iterator[_Target]:
        """The array's lock and line, kept while someone uses them, so there is one per array being written."""
        key = (store_url, path)
        with self._targets_lock:
            target = self._targets.setdefault(key, _Target())
            target.users += 1
        try:
            yield target
        finally:
            with self._targets_lock:
                target.users -= 1
                if not target.users:
                    del self._targets[key]

    def _open_for_append(self, store_url: str, path: str, frame: np.ndarray) -> tuple[zarr.Array, zarr.Array]:
        key = (store_url, path)
        with self._open_lock:
            if key in self._open:
                self._open.move_to_end(key)
                return self._open[key]
        store = self._open_store(store_url)
        metadata_path = path + METADATA_SUFFIX
        data = _open_array(store, store_url, path) if _exists(store, path) else None
        if _exists(store, metadata_path):
            metadata = _open_array(store, store_url, metadata_path)
        else:  # for an array made elsewhere, a record per frame it holds: empty, no metadata
            length = 0 if data is None else data.shape[0]
            spec = _array_spec((length,), str, (METADATA_GROWTH,), self._compressors, {})
            metadata = zarr.create_array(store, name=metadata_path, **spec)
        if data is None:  # created after its metadata array, so an array archivist made always has one
            name = path.rpartition("/")[2] + METADATA_SUFFIX
            attributes = {"archivist": {"append_dim": 0, "frame_metadata": name}}
            chunks = (self._frames_per_chunk, *frame.shape)
            spec = _array_spec((0, *frame.shape), frame.dtype, chunks, self._compressors, attributes)
            data = zarr.create_array(store, name=path, **spec)
        data, metadata = data.with_config(_WRITE_CONFIG), metadata.with_config(_WRITE_CONFIG)
        with self._open_lock:
            self._open[key] = (data, metadata)
            while len(self._open) > _OPEN_ARRAYS_LIMIT:
                self._open.popitem(last=False)
        return data, metadata

    # -- shared ---------------------------------------------------------------------------------------------

    def _open_store(self, url: str) -> Any:
        """A zarr store at ``url``: LocalStore on local disk, FsspecStore (with storage_options) elsewhere."""
        protocol, path = split_protocol(url)
        if protocol in _LOCAL_PROTOCOLS:
            return zarr.storage.LocalStore(path)
        return zarr.storage.FsspecStore.from_url(url, storage_options=self._options)

    def _retry(self, what: str, attempt: Callable[..., T], *args: Any) -> T:
        try:  # one Retrying for every thread: tenacity keeps a call's state and statistics per thread
            return self._retrying(attempt, *args)
        except ArchivistError:
            raise
        except Exception as exc:
            attempts = self._retrying.statistics.get("attempt_number", 1)
            raise WriteError(f"{what} failed after {attempts} attempt(s): {exc}", attempts) from exc


async def _append_frames(
    data: zarr.Array, metadata: zarr.Array, index: int, frames: list[np.ndarray], records: list[str], tails: _Tails
) -> _Tails:
    """Store ``frames`` and their ``records`` from ``index`` on, and only then grow the frames array to cover them.
    Returns the new tails: the frames and records after the last chunk boundary, which the next append writes
    again.

    zarr's own ``Array.append`` saves the larger shape first and writes the chunks after, so a crash or a
    failed chunk write in between leaves the array claiming frames that were never stored. Here the chunks
    are written through views of the grown arrays that are never saved; ``resize`` then saves the frames
    array's new shape in a single write of its ``zarr.json`` (an atomic put on object stores, an atomic
    rename on local disk), which is the commit. Until then readers see the old shape and ignore the extra
    chunks, and the next attempt overwrites them.

    The metadata array is grown ahead, ``METADATA_GROWTH`` records at a time and before the commit, so it
    always holds a record for every frame; records past the frames array's length are empty (or left by an
    interrupted append) and mean nothing: the frames array's length is the number of frames.

    Both arrays are written a whole chunk at a time (see :func:`_whole_chunks`): zarr would otherwise read,
    decode and merge each partly filled chunk it is given, and copy every chunk of a batch into a new buffer.
    """
    frames_from, frames_block, frames_tail = await _whole_chunks(data, index, frames, tails[0])
    records_from, records_block, records_tail = await _whole_chunks(metadata, index, records, tails[1])
    records_end = records_from + len(records_block)
    records_shape = (max(metadata.shape[0], -(-records_end // METADATA_GROWTH) * METADATA_GROWTH),)
    records_view = metadata.async_array if records_shape == metadata.shape else _view(metadata, records_shape)
    frames_view = _view(data, (frames_from + len(frames_block), *data.shape[1:]))
    await asyncio.gather(
        *_chunk_writes(records_view, records_from, records_block),
        *_chunk_writes(frames_view, frames_from, frames_block),
    )
    if records_shape != metadata.shape:
        await metadata.async_array.resize(records_shape)
    await data.async_array.resize((index + len(frames), *data.shape[1:]))
    return frames_tail, records_tail


async def _whole_chunks(
    array: zarr.Array, index: int, items: Sequence[Any], tail: np.ndarray | None
) -> tuple[int, np.ndarray, np.ndarray]:
    """``items``, to be stored from ``index`` on, as whole chunks of ``array``: preceded by the ``tail`` (what
    is stored from the chunk boundary before ``index``, read from the store if not known) and padded with the
    fill value to the end of the chunk the items end in. Returns where the chunks begin, their contents, and
    the new tail once they are stored (a copy, so that the rest of the block is freed).

    ``array`` may end before ``index`` (a metadata array shorter than its frames array, which grew elsewhere):
    the stored tail is then shorter, the places up to ``index`` get the fill value (an empty record: no
    metadata), and the items still go at ``index``, never over or across the records before it.
    """
    per_chunk = _stored_chunk_shape(array)[0]
    start, end = index - index % per_chunk, index + len(items)
    if tail is None or len(tail) != index - start:
        tail = await array.async_array.getitem(slice(start, min(index, array.shape[0])))
    block = np.empty((-(-end // per_chunk) * per_chunk - start, *array.shape[1:]), dtype=array.dtype)
    block[: len(tail)] = tail
    block[len(tail) : index - start] = array.fill_value
    if array.ndim > 1:
        np.stack(items, out=block[index - start : end - start])
    else:
        block[index - start : end - start] = items
    block[end - start :] = array.fill_value
    return start, block, block[end - end % per_chunk - start : end - start].copy()


async def _store_array(where: StorePath, layout: ArrayV3Metadata, array: np.ndarray, *, ensure_parents: bool) -> None:
    """Store ``array``'s chunks, then its ``zarr.json``, so that the array appears only once all its data is there;
    unless another writer made a node at ``where`` meanwhile. ``ensure_parents``: also make any parent group that is
    missing (several requests of the store, which took as long as the rest of writing a 128 KiB array, so the
    caller asks once per group)."""
    await zarr.AsyncArray(layout, where, _WRITE_CONFIG).setitem(Ellipsis, array)
    await ensure_no_existing_node(where, zarr_format=3)
    await save_metadata(where, layout, ensure_parents=ensure_parents)


def _chunk_writes(array: zarr.AsyncArray, start: int, block: np.ndarray) -> list[Awaitable[None]]:
    """Each chunk of ``block`` (whole chunks from ``start``) stored by a call of its own, which zarr encodes as
    it is, without a copy. The calls run at once, so no two may share a stored key."""
    per_chunk = _stored_chunk_shape(array)[0]
    return [
        array.setitem(slice(start + offset, start + offset + per_chunk), block[offset : offset + per_chunk])
        for offset in range(0, len(block), per_chunk)
    ]


def _stored_chunk_shape(array: zarr.Array | zarr.AsyncArray) -> tuple[int, ...]:
    """What one key of ``array`` holds: a chunk, or in a sharded array (one made elsewhere) a whole shard, which
    zarr reads, merges and writes back whole."""
    return tuple(array.metadata.chunk_grid.chunk_shape)


def _view(array: zarr.Array, shape: tuple[int, ...], store_path: Any = None) -> zarr.AsyncArray:
    """``array``'s layout with another shape (at another ``store_path``), without saving any metadata."""
    return zarr.AsyncArray(array.metadata.update_shape(shape), store_path or array.store_path, array.config)


def _array_spec(
    shape: tuple[int, ...], dtype: Any, chunks: Any, compressors: Any, attributes: dict[str, Any]
) -> dict[str, Any]:
    return {
        "shape": shape,
        "dtype": dtype,
        "chunks": chunks,
        "compressors": compressors,
        "attributes": attributes,
        "zarr_format": 3,
    }


def _exists(store: Any, path: str) -> bool:
    """Whether a zarr node (array or group) is stored at ``path``.

    Reads its ``zarr.json`` rather than asking ``exists``, which some fsspec backends answer with False
    when the storage cannot be reached; an array that looked absent would then be created again, empty.
    """
    return sync(store.get(f"{path}/zarr.json", prototype=default_buffer_prototype())) is not None


def _open_array(store: Any, store_url: str, path: str) -> zarr.Array:
    try:
        return zarr.open_array(store, path=path, mode="r+")
    except zarr.errors.NodeTypeValidationError as exc:  # permanent: no retry makes a group an array
        raise DestinationExistsError(f"{_where(store_url, path)} is a zarr group, not an array") from exc


def _holds(store: Any, path: str, array: np.ndarray, attributes: dict[str, Any]) -> bool:
    try:
        existing = zarr.open_array(store, path=path, mode="r")
    except (zarr.errors.NodeNotFoundError, zarr.errors.NodeTypeValidationError):
        return False
    return (
        existing.shape == array.shape
        and _same_dtype(existing.dtype, array.dtype)
        and dict(existing.attrs) == attributes
        and np.array_equal(existing[...], array)
    )


def _same_dtype(a: np.dtype, b: np.dtype) -> bool:
    """Whether two dtypes are equal but for byte order: heros keeps a frame's byte order (``>u2``), zarr stores
    the values and reads an array back in native order (``uint16``), so a frame fits whatever its byte order."""
    return a.newbyteorder("=") == b.newbyteorder("=")


def _in_doubt(exc: Exception, where: str, index: int | None) -> Exception:
    """``exc`` for a frame that failed with it. Once its batch had an ``index`` (or an earlier delivery had one)
    the frame may be stored there, only the reply lost: a WriteError then says so and names the index as its
    ``destination``, which the spool entry records, so that a replay looks for the frame there rather than
    appending it a second time."""
    if index is None or not isinstance(exc, WriteError):
        return exc
    destination = f"{where}[{index}]"
    error = WriteError(f"{exc} (it may be stored as {destination})", exc.attempts, True, destination)
    error.__cause__ = exc.__cause__
    return error


def recorded_index(destination: str | None, store_url: str, path: str) -> int | None:
    """The index a failed append recorded in ``destination`` (``store :: path[17]``), if it names this array."""
    prefix = f"{_where(store_url, path)}["
    if destination and destination.startswith(prefix) and destination.endswith("]"):
        index = destination[len(prefix) : -1]
        return int(index) if index.isdecimal() else None
    return None


def _holds_frame(data: zarr.Array, metadata: zarr.Array, index: int, frame: np.ndarray, record: str) -> bool:
    return metadata.shape[0] > index and metadata[index] == record and np.array_equal(data[index], frame)


def _where(store_url: str, path: str) -> str:
    return f"{redact_url(store_url)} :: {path}"
