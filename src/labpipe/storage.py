"""One URI layer: every input or output may be a local path or `s3://bucket/key`.

S3 endpoint and credentials come from the standard AWS variables (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION), so the same code talks to AWS,
MinIO, Ceph/ODF or the pipeline server's object store. Writes are atomic: a local file appears
under its final name only when complete (write to a temporary sibling, then rename); an S3 object
appears only when its (multipart) upload completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from labpipe.errors import UserError

SHA256_META = "sha256"  # user metadata recorded on upload, checked on download
_MAX_WORKERS = 8


def is_s3(uri: str | os.PathLike) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UserError(f"{uri}: not a valid S3 URI; expected s3://bucket/key")
    return bucket, key


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=16 * 2**20, max_concurrency=8)


def sha256_file(path: str | Path, chunk: int = 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _readable_as_usual(path: Path) -> None:
    """Give an output the read (and directory search) bits an ordinary open()/mkdir() would (the umask's).

    Temporary files (mkstemp) and some writers (safetensors) make files owner-only (0600): another UID in the
    same group, such as the next pipeline task on OpenShift (arbitrary UID, group 0), could not read them.
    """
    mask = os.umask(0)
    os.umask(mask)
    if path.is_symlink():
        return
    mode = path.stat().st_mode
    wanted = (0o555 if path.is_dir() else 0o444) & ~mask
    if mode & wanted != wanted:
        path.chmod(mode | wanted)


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `dest`; rename it onto `dest` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _readable_as_usual(tmp_path)
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


OUTPUT_MARKER = ".labpipe-output"  # in every folder atomic_dir wrote: the names of the entries it put there
_OURS_PREFIX = ".labpipe-"  # our marker and temporary folders; never a user's


def _written_by_us(dest: Path) -> set[str]:
    try:
        return set(json.loads((dest / OUTPUT_MARKER).read_text())["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _not_ours(dest: Path) -> list[str]:
    ours = _written_by_us(dest)
    return sorted(p.name for p in dest.iterdir() if p.name not in ours and not p.name.startswith(_OURS_PREFIX))


@contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory; its contents become `dest` only if the block succeeds.

    Never deletes what the user had: a new or empty `dest` is filled by one rename; a `dest` that holds only
    what labpipe wrote there before (listed in its `.labpipe-output`) gets the new entries in place of those;
    a `dest` holding anything else (a user's notes, another tool's files) is refused before any work starts.
    `dest` may be `.` (the entries are moved into the current directory, which itself stays).
    """
    dest = Path(os.path.abspath(dest))
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest}: exists and is not a directory", fix="choose another output folder")
    if dest.is_dir() and (foreign := _not_ours(dest)):
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(
            f"{dest}: the output folder already holds files labpipe did not write ({shown}); nothing was changed",
            fix="choose a new or empty output folder, or move those files away first",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    inside = dest.is_dir()  # temporary folders inside an existing dest: same file system, its permissions
    tmp = Path(tempfile.mkdtemp(prefix=f"{_OURS_PREFIX}tmp-" if inside else f".{dest.name}.", suffix=".tmp",
                                dir=dest if inside else dest.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        entries = sorted(p.name for p in tmp.iterdir() if p.name != OUTPUT_MARKER)
        (tmp / OUTPUT_MARKER).write_text(json.dumps({"entries": entries}) + "\n")
        for path in (tmp, *tmp.rglob("*")):
            _readable_as_usual(path)
        if not dest.exists():
            os.replace(tmp, dest)
            return
        old = Path(tempfile.mkdtemp(prefix=f"{_OURS_PREFIX}old-", dir=dest))
        try:
            for name in sorted(_written_by_us(dest) | {OUTPUT_MARKER}):  # ours from before: set aside, then gone
                if (dest / name).exists() or (dest / name).is_symlink():
                    os.replace(dest / name, old / name)
            for name in entries:
                os.replace(tmp / name, dest / name)
            os.replace(tmp / OUTPUT_MARKER, dest / OUTPUT_MARKER)  # last: the folder is complete
        finally:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


LOCK_NAME = ".labpipe-lock"


@contextmanager
def writing_folder(out: str | Path) -> Iterator[Path]:
    """Hold `out` for one writer: a second labpipe process writing the same folder at the same time is refused
    (an advisory lock, released when this process ends however it ends) instead of paying for every request
    twice. A folder this call created is removed again if nothing was written into it."""
    import fcntl

    dest = Path(os.path.abspath(out))
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    lock = dest / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{dest}: another labpipe process is writing this folder now",
                        fix="wait for it to finish (rerunning then resumes from what it wrote), or pass another --out"
                        ) from None
    try:
        yield dest
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
        if created and not any(p.is_file() for p in dest.rglob("*")):
            shutil.rmtree(dest, ignore_errors=True)  # a teacher that was never reached leaves no empty --out


def exists(uri: str) -> bool:
    if not is_s3(uri):
        return Path(uri).exists()
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    client = s3_client()
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError:
        resp = client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
        return resp.get("KeyCount", 0) > 0


def read_bytes(uri: str) -> bytes:
    if not is_s3(uri):
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise UserError(f"{uri}: file not found", fix="check the path") from None
    bucket, key = split_s3(uri)
    try:
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # botocore raises many types; all mean "cannot read this object"
        raise UserError(f"{uri}: cannot read ({_short(exc)})", fix=_s3_fix()) from None


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    if not is_s3(uri):
        with atomic_path(uri) as tmp:
            tmp.write_bytes(data)
        return
    bucket, key = split_s3(uri)
    s3_client().put_object(
        Bucket=bucket, Key=key, Body=data, Metadata={SHA256_META: hashlib.sha256(data).hexdigest()}
    )


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def upload_file(local: str | Path, uri: str) -> None:
    bucket, key = split_s3(uri)
    s3_client().upload_file(
        str(local), bucket, key, Config=_transfer_config(),
        ExtraArgs={"Metadata": {SHA256_META: sha256_file(local)}},
    )


def upload_dir(local_dir: str | Path, uri: str) -> int:
    """Upload every file under `local_dir` to the prefix `uri`, in parallel. Returns the file count."""
    local_dir = Path(local_dir)
    files = [p for p in sorted(local_dir.rglob("*")) if p.is_file()]
    with ThreadPoolExecutor(_MAX_WORKERS) as pool:
        list(pool.map(lambda p: upload_file(p, join(uri, p.relative_to(local_dir).as_posix())), files))
    return len(files)


def _download_one(client, bucket: str, key: str, dest: Path, size: int) -> None:
    with atomic_path(dest) as tmp:
        client.download_file(bucket, key, str(tmp), Config=_transfer_config())
        got = tmp.stat().st_size
        if got != size:
            raise UserError(f"s3://{bucket}/{key}: downloaded {got} bytes, expected {size}")
        expected = client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(SHA256_META)
        if expected and sha256_file(tmp) != expected:
            raise UserError(
                f"s3://{bucket}/{key}: sha256 mismatch after download",
                fix="the object changed or was corrupted in transit; re-upload it",
            )


def download_dir(uri: str, local_dir: str | Path, include: Callable[[str], bool] | None = None) -> Path:
    """Download every object under the prefix `uri` into `local_dir` (parallel, size- and sha-checked);
    with `include`, only the objects whose path relative to the prefix it accepts."""
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    client = s3_client()
    objects = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            objects += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
    except Exception as exc:
        raise UserError(f"{uri}: cannot list ({_short(exc)})", fix=_s3_fix()) from None
    if not objects:
        raise UserError(f"{uri}: no objects under this prefix", fix="check the bucket and prefix")
    if include is not None:
        objects = [(key, size) for key, size in objects if include(key[len(prefix) :])]
        if not objects:
            raise UserError(f"{uri}: none of the files needed here", fix="check the bucket and prefix")
    local_dir = Path(local_dir)
    with ThreadPoolExecutor(_MAX_WORKERS) as pool:
        futures = [
            pool.submit(_download_one, client, bucket, key, local_dir / key[len(prefix) :], size)
            for key, size in objects
        ]
        for f in futures:
            f.result()
    return local_dir


def cache_dir() -> Path:
    return Path(os.environ.get("LABPIPE_CACHE", Path.home() / ".cache" / "labpipe"))


def materialize_dir(uri: str, *, kind: str = "models", include: Callable[[str], bool] | None = None) -> Path:
    """A local directory holding `uri`: the path itself, or a verified download cached by URI (and
    `kind`: pass a kind of its own with `include`, which downloads only the files it accepts)."""
    if not is_s3(uri):
        path = Path(uri)
        if not path.exists():
            raise UserError(f"{uri}: directory not found", fix="pass an existing local path or an s3:// URI")
        return path
    dest = cache_dir() / kind / hashlib.sha256(uri.encode()).hexdigest()[:16]
    marker = dest / ".labpipe-complete"
    if marker.exists():
        return dest
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent if dest.parent.exists() else None))
    try:
        download_dir(uri, staging, include)
        (staging / ".labpipe-complete").write_text(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def publish_dir(local_dir: str | Path, uri: str) -> None:
    """Copy a finished local directory to `uri` (local path or S3 prefix); locally via atomic rename."""
    if is_s3(uri):
        upload_dir(local_dir, uri)
        return
    if Path(local_dir).resolve() == Path(uri).resolve():
        return
    with atomic_dir(uri) as tmp:
        shutil.copytree(local_dir, tmp, dirs_exist_ok=True)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


def _s3_fix() -> str:
    return "check the URI and the AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables"
