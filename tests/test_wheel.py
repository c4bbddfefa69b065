"""A wheel installed outside the checkout finds its shipped weights as package data and searches with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from helpers import write_csv_slice

REPO = Path(__file__).resolve().parents[1]


def test_an_installed_wheel_searches_with_the_shipped_weights(tmp_path, demo_slice):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True, timeout=600, capture_output=True)
    (wheel,) = wheels.glob("mirage_core-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    target = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                    str(target), str(wheel)], check=True, timeout=300, capture_output=True)
    # the dependencies (torch and the rest) come from this environment, after the wheel on the path; a plain
    # path line in a .pth file does not run that folder's .pth files, so the editable checkout stays out of sight
    (target / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    corpus = write_csv_slice(tmp_path / "corpus" / "slice.csv", demo_slice.records[:12])
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRAGE_")}
    env.update(HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH="")
    python = venv / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import mirage_core, mirage_core.config as c; "
                            "print(mirage_core.__file__); print(c.shipped('lite-encoder'))"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert where[0].startswith(str(target)) and where[1].startswith(str(target))
    done = subprocess.run([str(python), "-m", "mirage_core", "search", "chest x-ray", "--roco", str(corpus),
                           "--k", "3", "--json"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["results"]) == 3
    assert (tmp_path / "cache" / "mirage" / "indexes").is_dir()  # its index went to the user's cache
    assert not any(target.rglob("*.npy"))  # nothing was written into the installed package
