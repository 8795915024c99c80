"""The run folder's file primitives: atomic writes, folder syncs where the system allows them, and
the run's state record."""

from __future__ import annotations

import errno
import json
import os

from common import runs


def test_an_atomic_write_leaves_exactly_the_new_bytes_and_no_partial_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")
    runs.write_bytes_atomically(b'{"a": 1}\n', target)
    assert target.read_bytes() == b'{"a": 1}\n'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]


def test_a_folder_the_system_will_not_open_is_not_synced_and_the_write_lands(tmp_path, monkeypatch):
    """Some file systems (and Windows) refuse to open a folder: the write still lands."""
    refused, real_open = [], os.open

    def refuse_folders(path, flags, *args):
        if os.path.isdir(path):
            refused.append(path)
            raise PermissionError(errno.EACCES, "refused", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_folders)
    runs.write_bytes_atomically(b"new", tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == b"new" and refused == [tmp_path]


def test_a_folder_the_system_will_not_fsync_is_skipped_and_the_write_lands(tmp_path, monkeypatch):
    folders, refused, real_open, real_fsync = set(), [], os.open, os.fsync

    def remember_folders(path, flags, *args):
        descriptor = real_open(path, flags, *args)
        if os.path.isdir(path):
            folders.add(descriptor)
        return descriptor

    def refuse_folder_fsync(descriptor):
        if descriptor in folders:
            refused.append(descriptor)
            raise OSError(errno.EINVAL, "refused")
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "open", remember_folders)
    monkeypatch.setattr(os, "fsync", refuse_folder_fsync)
    runs.write_bytes_atomically(b"new", tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == b"new" and len(refused) == 1


def test_the_state_record_keeps_earlier_keys_and_drops_an_old_message(tmp_path):
    runs.set_state(tmp_path, runs.FAILED, message="diverged at epoch 3", epoch=3)
    runs.set_state(tmp_path, runs.INTERRUPTED, signal="SIGTERM")
    record = json.loads((tmp_path / runs.STATE_FILE).read_text())
    assert record["state"] == runs.INTERRUPTED and record["signal"] == "SIGTERM" and record["epoch"] == 3
    assert "message" not in record
    assert runs.read_state(tmp_path) == record
