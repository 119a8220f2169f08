"""apt reads relative ``Dir::`` paths against /etc/apt, not the working directory, so the private
apt folder must reach apt as an absolute path: `paths.data_dir=cache/data` (relative) once made
`apt-get update` look for /etc/apt/cache/data/debian_apt/sources.list and fail."""

from __future__ import annotations

from pathlib import Path

from domain_distil.sources.debian_apt import PrivateApt


def test_every_dir_option_is_absolute_when_the_root_is_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    apt = PrivateApt("cache/data/debian_apt", "http://deb.debian.org/debian", "bookworm", ["main"],
                     "/usr/share/keyrings/debian-archive-keyring.gpg", ["en", "es", "en"])
    assert apt.root == tmp_path / "cache" / "data" / "debian_apt"
    options = apt.options()
    dir_values = [o.split("=", 1)[1] for o in options if o.startswith("Dir::") and not o.endswith("=-")]
    assert len(dir_values) == 4
    assert all(Path(value).is_absolute() and value.startswith(str(tmp_path)) for value in dir_values)
    assert apt.codes == ["en", "es"]
