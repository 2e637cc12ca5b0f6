"""The packages `dlthub deploy` uploads: built by dlt's own PackageBuilder, read back with the
same files and the same content hash the client computes; hostile archives refused."""

import io
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dlt._workspace.deployment.package_builder import PackageBuilder

from dockyard.compat.dlthub import packages
from dockyard.controller import gitstore
from dockyard.errors import InvalidInput

LIMIT = 1 << 20


def dlt_package(root: Path, names: list[str]) -> tuple[bytes, str]:
    """What the client uploads: dlt's builder over `names` (relative to `root`)."""
    builder = PackageBuilder(SimpleNamespace(run_dir=str(root)))  # type: ignore[arg-type]
    out = io.BytesIO()
    selected = [(root / name, Path(name)) for name in names]
    digest = builder.write_package_to_stream(selected, out)  # type: ignore[arg-type]
    return out.getvalue(), digest


def test_a_package_reads_back_with_dlts_content_hash(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "__deployment__.py").write_text("from dlt.hub import run\n")
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "tool.sh").write_text("#!/bin/sh\n")
    (tmp_path / "tool.sh").chmod(0o755)
    os.symlink("pkg/mod.py", tmp_path / "alias.py")
    data, digest = dlt_package(tmp_path, ["__deployment__.py", "alias.py", "pkg/mod.py", "tool.sh"])

    package = packages.read(data, "the code package", LIMIT)

    assert package.content_hash == digest
    assert package.file_count == 4 and package.size_bytes == len(data)
    assert package.files["pkg/mod.py"] == gitstore.FileEntry(gitstore.MODE_FILE, b"x = 1\n")
    assert package.files["tool.sh"].mode == gitstore.MODE_EXEC
    assert package.files["alias.py"] == gitstore.FileEntry(gitstore.MODE_LINK, b"pkg/mod.py")
    # the same files, however they are held, hash the same (the repository's code/ tree)
    assert packages.content_hash(dict(reversed(package.files.items()))) == digest


def test_a_changed_file_changes_the_hash(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("a\n")
    _data, before = dlt_package(tmp_path, ["a.py"])
    (tmp_path / "a.py").write_text("b\n")
    data, after = dlt_package(tmp_path, ["a.py"])
    assert before != after == packages.read(data, "p", LIMIT).content_hash


def test_a_git_folder_counts_in_the_hash_but_is_not_deployed(tmp_path: Path) -> None:
    """dlt ships `.git` unless .gitignore names it: the client's hash covers it."""
    (tmp_path / ".git" / "refs").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".git").write_text("gitdir: ../.git\n")  # a worktree's .git file
    (tmp_path / "a.py").write_text("a\n")
    data, digest = dlt_package(tmp_path, [".git/HEAD", "a.py", "sub/.git"])

    package = packages.read(data, "the code package", LIMIT)

    assert package.content_hash == digest
    assert list(package.files) == ["a.py"] and package.left_out == 2


def archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, body in members:
            info.size = len(body) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(body) if info.isreg() else None)
    return out.getvalue()


def member(name: str, **fields: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for key, value in fields.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([(member("files/../../etc/passwd"), b"x")], "escapes the workspace"),
        ([(member("files/a/../../x"), b"x")], "escapes the workspace"),
        ([(member("/etc/passwd"), b"x")], "outside files/"),
        ([(member("other.py"), b"x")], "outside files/"),
        ([(member("files/dev", type=tarfile.CHRTYPE), b"")], "not a regular file"),
        ([(member("files/h", type=tarfile.LNKTYPE, linkname="files/a"), b"")], "not a regular"),
        ([(member("files/d", type=tarfile.DIRTYPE), b"")], "not a regular file"),
        ([(member("files/a"), b"1"), (member("files/a"), b"2")], "twice"),
    ],
)
def test_hostile_members_are_refused(members: list[Any], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        packages.read(archive(*members), "the code package", LIMIT)


def test_an_archive_that_unpacks_past_the_bound_stops_there() -> None:
    bomb = archive(*[(member(f"files/{i}"), b"\0" * 400_000) for i in range(5)])
    assert len(bomb) < 20_000  # zeros compress: the bound is on what it unpacks to
    with pytest.raises(InvalidInput, match="unpacks to more than 1048576 bytes"):
        packages.read(bomb, "the code package", LIMIT)


@pytest.mark.parametrize("data", [b"", b"not gzip at all", b"\x1f\x8b\x08\x00trailing"])
def test_what_is_not_a_package_is_refused_in_one_line(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="is not a gzip tar archive as dlt builds it"):
        packages.read(data, "the configuration package", LIMIT)
