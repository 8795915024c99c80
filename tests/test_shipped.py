"""The shipped models in models/pretrained/ hold nothing of the machine they were trained on."""

from __future__ import annotations

import re
import zipfile

from common.core import runs

# A path from the root of a Unix or Windows file system, inside a string of a shipped file.
ABSOLUTE_PATH = re.compile(
    r"""(?:["'=\s]|^)(?:/(?:home|root|work|tmp|Users|mnt|opt|srv|var|data)/|[A-Z]:\\)"""
)


def _texts():
    for folder in sorted(runs.pretrained_dir("mnist").parent.iterdir()):
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".toml", ".json", ".csv", ".md", ".txt"):
                yield path, path.read_text(encoding="utf-8")
            elif path.suffix == ".keras":
                with zipfile.ZipFile(path) as archive:
                    for name in archive.namelist():
                        if name.endswith(".json"):
                            yield path / name, archive.read(name).decode("utf-8")


def test_no_shipped_file_holds_an_absolute_path():
    checked = 0
    for path, text in _texts():
        checked += 1
        found = [line.strip() for line in text.splitlines() if ABSOLUTE_PATH.search(line)]
        assert not found, f"{path}: {found[:3]}"
    assert checked >= 9  # config, metrics and model of each of the three shipped models


def test_the_pattern_finds_the_paths_it_is_for():
    for line in ['path = "/home/ana/mnist.npz"', '"data_source": "MNIST from /work/x.npz"', "C:\\data\\x"]:
        assert ABSOLUTE_PATH.search(line), line
    for line in ['path = ""', '"data_source": "MNIST (mnist.npz)"', "ratio 1/2", "dates 2018/01/02"]:
        assert not ABSOLUTE_PATH.search(line), line
