"""Run folders on object storage: an fsspec OUT (`s3://bucket/runs/vgg`, `gs://…`) behind a local stage.

Object stores have no rename and no lock, and ffmpeg, numpy and the workers need paths. So the run
folder lives in a local *stage directory* (`--stage-dir`, default `<system temp>/binauralize-stage/<digest
of the URL>`) and the runner commits each finished unit to OUT: a (stage, chunk) (its manifest, its
measurement cache, its clips' work folders, then its completion marker), each complete shard (tar,
parquet, then `.stats.json`), the run files. Every file is uploaded under a temporary key (`.tmp-<random>-
<name>` beside its target, the names manifests.io uses locally) and then moved to its final key, and the
marker goes last: OUT never shows a marker whose data are missing, and a reader never sees half a file.

OUT is the truth. A build first pulls OUT into the stage (files it lacks or holds with another size,
every marker), removes temporary keys a killed upload left, and deletes local markers OUT does not have
(a unit counts as done once it is committed), so a rerun on another machine or after /tmp was wiped redoes
nothing finished. `file://` URLs are plain local folders (atomic renames work there).
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import tempfile
import uuid

from manifests.io import TEMP_PREFIX, is_temp
from stages.base import ConfigError

log = logging.getLogger("pipeline")

STAGE_ROOT = "binauralize-stage"
# Small files that decide what is done: always taken from OUT on a pull, never trusted locally.
MARKER_DIRS = ("completions/",)
MARKER_SUFFIXES = (".stats.json",)
MARKER_FILES = ("input.json", "stats.json")
SHARD_TAR = "shards/"  # complete shard tars stay on OUT on a pull: only a rewrite needs them locally
STAGE_OWNER = ".stage-url"  # which OUT a stage directory belongs to
NOT_MIRRORED = (".lock", STAGE_OWNER)  # the stage's own flock and owner note
# What `status` needs from OUT: the small files, never work/ or shards/.
STATUS_FILES = ("config.yaml", "input.json", "preflight.json", "stats.json", "logs/build.log")
STATUS_FOLDERS = ("completions", "manifests")


class StorageError(RuntimeError):
    """OUT could not be written during the build: the stage keeps the work; rerunning resumes."""


def is_remote(path: str) -> bool:
    """An fsspec URL other than file:// (those are local folders)."""
    return "://" in (path or "") and not path.startswith("file://")


def local_path(path: str) -> str:
    """A local folder given as a path or a file:// URL, made absolute."""
    return os.path.abspath(path[len("file://"):] if path.startswith("file://") else path)


def is_marker(rel: str) -> bool:
    return rel.startswith(MARKER_DIRS) or rel.endswith(MARKER_SUFFIXES) or rel in MARKER_FILES


def default_stage_dir(url: str) -> str:
    name = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), STAGE_ROOT, name)


def describe_error(exc: BaseException, url: str) -> str:
    """What went wrong talking to object storage, and how to fix it (botocore/s3fs/gcsfs errors by name)."""
    kinds = {type(exc).__name__} | {t.__name__ for t in type(exc).__mro__}
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        kinds |= {t.__name__ for t in type(cause).__mro__}
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    where = f" (endpoint {endpoint}, from AWS_ENDPOINT_URL)" if endpoint else ""
    if kinds & {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"}:
        return (f"{url}: no credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                "or configure fsspec (~/.config/fsspec/<scheme>.json); for Google Cloud, GOOGLE_APPLICATION_CREDENTIALS")
    if kinds & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionError",
                "ConnectionRefusedError", "ServerDisconnectedError"}:
        return (f"{url}: cannot reach the storage endpoint{where}: {exc}. Check AWS_ENDPOINT_URL (for S3-compatible "
                "storage such as MinIO), the network, and that the service is running")
    if kinds & {"PermissionError", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
        return (f"{url}: access denied{where}: {exc}. Check the credentials (AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY / AWS_PROFILE) and that they may read and write this bucket")
    if kinds & {"FileNotFoundError", "NoSuchBucket"}:
        return f"{url}: the bucket does not exist{where}: {exc}. Create it first (e.g. `aws s3 mb s3://BUCKET`)"
    return f"{url}: {type(exc).__name__}: {exc}"


def open_url(url: str, what: str):
    """(filesystem, root path) for an fsspec URL; a missing backend or unknown scheme is a ConfigError."""
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        scheme = url.split("://", 1)[0]
        package = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(scheme)
        how = f"it with `pip install {package}`" if package else "the fsspec backend for this scheme"
        raise ConfigError(f"{what} {url}: the {scheme}:// backend is not installed ({exc}); install {how} "
                          "into the environment of every node") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {url}: {exc}") from None
    return fs, root.rstrip("/")


def check_media_root(url: str) -> None:
    """An object-store MEDIA_ROOT must be readable with the credentials at hand, checked before any work."""
    fs, root = open_url(url, "--media-root")
    try:
        found = fs.exists(root) and fs.isdir(root)
    except Exception as exc:  # noqa: BLE001 - every backend raises its own errors: described by name
        raise ConfigError(f"--media-root {describe_error(exc, url)}") from None
    if not found:
        raise ConfigError(f"--media-root {url} does not exist (no object under that prefix); "
                          "give the prefix relative video paths are resolved against")


class RemoteRun:
    """An fsspec OUT mirrored from a local stage directory (see the module docstring)."""

    def __init__(self, url: str, stage_dir: str = ""):
        self.url = url.rstrip("/")
        self.fs, self.root = open_url(self.url, "--out")
        self.stage = os.path.abspath(stage_dir) if stage_dir else default_stage_dir(self.url)
        self.uploaded = 0
        self.stored: dict[str, int] = {}  # rel -> size of complete shard tars OUT holds and the stage lacks

    # -- before any work ------------------------------------------------------------------------
    def check(self) -> None:
        """Credentials, endpoint, bucket and write permission, with a probe object that is removed again."""
        if os.path.exists(self.stage) and not os.path.isdir(self.stage):
            raise ConfigError(f"--stage-dir {self.stage} is a file; give a local folder for the run's staging copy")
        owner = self._owner()
        if owner and owner != self.url:
            raise ConfigError(f"--stage-dir {self.stage} stages {owner}, not {self.url}; give another --stage-dir "
                              "(or delete that folder if its run is finished)")
        probe = f"{self.root}/{TEMP_PREFIX}probe-{uuid.uuid4().hex}"
        try:
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"--out {describe_error(exc, self.url)}") from None

    # -- OUT -> stage ---------------------------------------------------------------------------
    def _listing(self, prefix: str = "") -> dict[str, int]:
        """rel path -> size of every object under OUT/prefix (temporary keys included)."""
        try:
            found = self.fs.find(f"{self.root}/{prefix}".rstrip("/"), detail=True)
        except FileNotFoundError:
            return {}
        listing = {}
        for name, info in found.items():
            if info.get("type", "file") != "file":
                continue
            rel = name[len(self.root):].lstrip("/")
            if rel:
                listing[rel] = int(info.get("size") or 0)
        return listing

    def _owner(self) -> str:
        try:
            with open(os.path.join(self.stage, STAGE_OWNER)) as fh:
                return fh.read().strip()
        except OSError:
            return ""

    def pull(self) -> int:
        """Make the stage agree with OUT; returns the number of files downloaded."""
        os.makedirs(self.stage, exist_ok=True)
        with open(os.path.join(self.stage, STAGE_OWNER), "w") as fh:
            fh.write(self.url + "\n")
        self.fs.invalidate_cache()
        listing = self._listing()
        stale = [rel for rel in listing if is_temp(rel)]
        if stale:  # uploads a killed build left unfinished
            self.fs.rm([f"{self.root}/{rel}" for rel in stale])
            log.info("removed %d unfinished upload(s) from %s", len(stale), self.url)
        wanted = []  # (key, local temp name, local path): downloaded together, then renamed into place
        self.stored = {rel: size for rel, size in listing.items() if self._complete_tar(rel, listing)}
        for rel, size in sorted(listing.items()):
            local = os.path.join(self.stage, rel)
            if rel in self.stored and not os.path.exists(local):
                continue
            if not is_temp(rel) and (is_marker(rel) or not os.path.exists(local) or os.path.getsize(local) != size):
                os.makedirs(os.path.dirname(local), exist_ok=True)
                tmp = os.path.join(os.path.dirname(local), f"{TEMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(local)}")
                wanted.append((f"{self.root}/{rel}", tmp, local))
        if wanted:
            try:
                self.fs.get([k for k, _, _ in wanted], [t for _, t, _ in wanted])
                for _, tmp, local in wanted:
                    os.replace(tmp, local)
            finally:
                for _, tmp, _ in wanted:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        fetched = len(wanted)
        local_markers = [os.path.join(self.stage, name) for name in MARKER_FILES]
        for top in ("completions", "shards"):  # where markers live (never walk work/: millions of files)
            for folder, _, files in os.walk(os.path.join(self.stage, top)):
                local_markers.extend(os.path.join(folder, name) for name in files)
        for path in local_markers:  # a local marker OUT lacks was never committed: not done
            rel = os.path.relpath(path, self.stage).replace(os.sep, "/")
            if is_marker(rel) and rel not in listing and os.path.exists(path):
                os.unlink(path)
        if fetched:
            log.info("pulled %d file(s) from %s into the stage %s", fetched, self.url, self.stage)
        return fetched

    @staticmethod
    def _complete_tar(rel: str, listing: dict[str, int]) -> bool:
        """A shard tar whose .stats.json (its marker, committed after it) is on OUT."""
        return rel.startswith(SHARD_TAR) and rel.endswith(".tar") and rel[:-4] + ".stats.json" in listing

    def stored_size(self, path: str) -> int | None:
        """Size of a complete shard tar OUT holds that was not downloaded; None otherwise."""
        rel = os.path.relpath(path, self.stage).replace(os.sep, "/")
        return self.stored.get(rel)

    def snapshot(self, dest: str) -> None:
        """The small files `status` reads (run files, markers, manifests) copied into `dest`."""
        self.fs.invalidate_cache()
        wanted = [rel for rel in self._listing() if not is_temp(rel)
                  and (rel in STATUS_FILES or rel.startswith(tuple(f + "/" for f in STATUS_FOLDERS)))]
        if wanted:
            for rel in wanted:
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            self.fs.get([f"{self.root}/{rel}" for rel in wanted], [os.path.join(dest, rel) for rel in wanted])

    # -- stage -> OUT ---------------------------------------------------------------------------
    def _files(self, paths) -> list[str]:
        files = []
        for path in paths:
            if os.path.isdir(path):
                for folder, dirs, names in os.walk(path):
                    dirs.sort()
                    files.extend(os.path.join(folder, n) for n in sorted(names) if not is_temp(n))
            elif os.path.isfile(path) and not is_temp(path):
                files.append(path)
        return files

    def commit(self, paths) -> None:
        """Upload files and folders of the stage to OUT: every file to a temporary key beside its target
        (`.tmp-<random>-<name>`), then the data files moved onto their final keys, then the markers among
        them (completions/, *.stats.json, input.json, stats.json), then the temporary keys removed."""
        data, markers = [], []
        for path in self._files(paths):
            rel = os.path.relpath(path, self.stage).replace(os.sep, "/")
            if not rel.startswith("..") and rel not in NOT_MIRRORED:
                final = f"{self.root}/{rel}"
                tmp = f"{posixpath.dirname(final)}/{TEMP_PREFIX}{uuid.uuid4().hex}-{posixpath.basename(final)}"
                (markers if is_marker(rel) else data).append((path, tmp, final))
        if not data and not markers:
            return
        every = data + markers
        try:
            self.fs.put([p for p, _, _ in every], [t for _, t, _ in every])  # in parallel where the backend can
            for group in (data, markers):
                if group:
                    self.fs.copy([t for _, t, _ in group], [f for _, _, f in group])
        except Exception as exc:  # noqa: BLE001 - every backend raises its own errors: described by name
            raise StorageError(f"uploading to --out {describe_error(exc, self.url)}") from exc
        finally:
            self._forget([t for _, t, _ in every])
        self.uploaded += len(every)

    def prune(self, rel_folder: str) -> int:
        """Delete objects under OUT/rel_folder whose local file is gone (stale shards, released staging)."""
        self.fs.invalidate_cache()
        gone = [rel for rel in self._listing(rel_folder.strip("/") + "/")
                if not os.path.exists(os.path.join(self.stage, rel)) and not self._kept_remote(rel)]
        if gone:
            self.fs.rm([f"{self.root}/{rel}" for rel in gone])
        return len(gone)

    def _kept_remote(self, rel: str) -> bool:
        """A tar left on OUT by the pull whose shard is still complete locally (its stats file is there)."""
        return rel in self.stored and os.path.exists(os.path.join(self.stage, rel[:-4] + ".stats.json"))

    def clear(self, names) -> None:
        """--force with another input: delete what a build wrote under OUT (only those entries)."""
        self.stored = {}
        for name in names:
            target = f"{self.root}/{name}"
            if self.fs.exists(target):
                self.fs.rm(target, recursive=True)

    def _forget(self, keys: list[str]) -> None:
        try:
            self.fs.rm(keys)
        except Exception:  # noqa: BLE001 - best effort; the next pull removes temporary keys anyway
            pass
