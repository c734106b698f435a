"""SFTP for a simulated guest: paramiko's server interface over the guest's sandbox.

Guest paths map into the sandbox (``/x`` -> ``<sandbox>/x``, relative -> ``<sandbox>/root/x``);
a path that would leave the sandbox is refused with permission denied.
"""

from __future__ import annotations

import os
from typing import IO, Any, Callable, TypeVar, Union

import paramiko
from paramiko.sftp import SFTP_OK

from .sandbox import Sandbox

T = TypeVar("T")


def _errors(call: Callable[[], T]) -> Union[T, int]:
    try:
        return call()
    except OSError as exc:
        return paramiko.SFTPServer.convert_errno(exc.errno or 1)


def _done(action: Callable[..., object], *args: Any) -> int:
    """Run an os call that returns nothing: SFTP_OK or the SFTP status of its error."""
    try:
        action(*args)
    except OSError as exc:
        return paramiko.SFTPServer.convert_errno(exc.errno or 1)
    return SFTP_OK


class _Handle(paramiko.SFTPHandle):
    readfile: IO[bytes]
    writefile: IO[bytes]

    def __init__(self, flags: int, fobj: IO[bytes], filename: str) -> None:
        super().__init__(flags)
        self.readfile = fobj
        self.writefile = fobj
        self.filename = filename

    def stat(self) -> Union[paramiko.SFTPAttributes, int]:
        handle = self.readfile or self.writefile
        return _errors(lambda: paramiko.SFTPAttributes.from_stat(os.fstat(handle.fileno())))

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        handle = self.readfile or self.writefile
        return _errors(lambda: _set_attrs(handle.fileno(), attr))


def _set_attrs(target: Any, attr: paramiko.SFTPAttributes) -> int:
    # ``target`` is a path or a file descriptor; os.chmod/os.truncate/os.utime take both
    if attr.st_mode is not None:
        os.chmod(target, attr.st_mode & 0o7777)
    if attr.st_size is not None:
        os.truncate(target, attr.st_size)
    if attr.st_atime is not None and attr.st_mtime is not None:
        os.utime(target, (attr.st_atime, attr.st_mtime))
    return SFTP_OK


class SandboxSFTP(paramiko.SFTPServerInterface):
    """``transport.set_subsystem_handler("sftp", paramiko.SFTPServer, SandboxSFTP, sandbox)``."""

    def __init__(self, server: Any, sandbox: Sandbox, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.sandbox = sandbox

    def canonicalize(self, path: str) -> str:
        return self.sandbox.guest_path(path)

    def list_folder(self, path: str) -> Any:
        def listing() -> list[paramiko.SFTPAttributes]:
            folder = self.sandbox.resolve(path)
            out = []
            for name in sorted(os.listdir(folder)):
                attr = paramiko.SFTPAttributes.from_stat(os.lstat(folder / name))
                attr.filename = name
                out.append(attr)
            return out

        return _errors(listing)

    def stat(self, path: str) -> Any:
        return _errors(
            lambda: paramiko.SFTPAttributes.from_stat(os.stat(self.sandbox.resolve(path)))
        )

    def lstat(self, path: str) -> Any:
        return _errors(
            lambda: paramiko.SFTPAttributes.from_stat(os.lstat(self.sandbox.resolve(path)))
        )

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> Any:
        def opened() -> _Handle:
            local = self.sandbox.resolve(path)
            mode = attr.st_mode if attr is not None and attr.st_mode is not None else 0o666
            fd = os.open(local, flags | getattr(os, "O_BINARY", 0), mode & 0o7777)
            if flags & os.O_CREAT and attr is not None:
                _set_attrs(fd, attr)  # the exact mode asked for, whatever our umask
            if flags & os.O_WRONLY:
                fmode = "ab" if flags & os.O_APPEND else "wb"
            elif flags & os.O_RDWR:
                fmode = "a+b" if flags & os.O_APPEND else "r+b"
            else:
                fmode = "rb"
            return _Handle(flags, os.fdopen(fd, fmode), str(local))

        return _errors(opened)

    def remove(self, path: str) -> Any:
        return _errors(lambda: _done(os.remove, self.sandbox.resolve(path)))

    def rename(self, oldpath: str, newpath: str) -> Any:
        def renamed() -> int:
            target = self.sandbox.resolve(newpath)
            if target.exists():  # SFTP v3 rename does not overwrite
                raise FileExistsError(17, "File exists")
            os.rename(self.sandbox.resolve(oldpath), target)
            return SFTP_OK

        return _errors(renamed)

    def posix_rename(self, oldpath: str, newpath: str) -> Any:
        return _errors(
            lambda: _done(os.replace, self.sandbox.resolve(oldpath), self.sandbox.resolve(newpath))
        )

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> Any:
        def made() -> int:
            mode = attr.st_mode if attr is not None and attr.st_mode is not None else 0o777
            os.mkdir(self.sandbox.resolve(path), mode & 0o7777)
            return SFTP_OK

        return _errors(made)

    def rmdir(self, path: str) -> Any:
        return _errors(lambda: _done(os.rmdir, self.sandbox.resolve(path)))

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> Any:
        return _errors(lambda: _set_attrs(str(self.sandbox.resolve(path)), attr))

    def readlink(self, path: str) -> Any:
        return _errors(lambda: os.readlink(self.sandbox.resolve(path)))

    def symlink(self, target_path: str, path: str) -> Any:
        return _errors(lambda: _done(os.symlink, target_path, self.sandbox.resolve(path)))
