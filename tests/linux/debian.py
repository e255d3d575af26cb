"""Debian packages for the Linux-guest tests, fetched at test time into the test cache.

Each distribution/architecture pair gets a private apt configuration under the cache (its own
sources list, package lists, apt cache and an empty dpkg status), so nothing of the host's apt
setup is read or changed: a bookworm amd64 machine fetches trixie riscv64 packages without a
foreign architecture or a system source entry. Packages are unpacked with ``dpkg-deb`` (only
the folders the tests use) into ``debian/<package>_<version>/``; which version a metapackage
meant is remembered in ``debian/<metapackage>.resolved``, so later sessions use no network."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from .cache import FetchError, cache_dir, locked, publish

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
LISTS_MAX_AGE = 24 * 3600  # seconds before a resolution refreshes the package lists


@dataclass(frozen=True)
class AptSource:
    """A private apt view of one Debian release for one architecture."""

    name: str
    arch: str
    suites: tuple[tuple[str, str], ...]  # (archive URI, suite)

    @property
    def root(self) -> Path:
        return cache_dir() / "apt" / self.name

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc::sourcelist": r / "sources.list",
            "Dir::Etc::sourceparts": r / "sources.list.d",
            "Dir::Etc::preferences": r / "preferences",
            "Dir::Etc::preferencesparts": r / "preferences.d",
            "Dir::State::Lists": r / "lists",
            "Dir::State::status": r / "status",
            "Dir::Cache": r / "cache",
            "APT::Architecture": self.arch,
            "APT::Architectures::": self.arch,
            "APT::Sandbox::User": "root",
            "Acquire::Languages": "none",
            "Acquire::Retries": "3",
        }
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def prepare(self) -> None:
        r = self.root
        for sub in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / "status").touch()
        (r / "preferences").touch()
        lines = [f"deb [arch={self.arch} signed-by={KEYRING}] {uri} {suite} main\n" for uri, suite in self.suites]
        (r / "sources.list").write_text("".join(lines))

    def update(self, force: bool = False) -> None:
        """``apt-get update`` of the private lists, unless they are fresh."""
        self.prepare()
        stamp = self.root / "updated"
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE:
            return
        _apt(["apt-get", *self.options(), "-q", "update"], f"apt-get update of the private {self.name} lists")
        stamp.touch()

    def depends(self, package: str) -> list[str]:
        out = _apt(["apt-cache", *self.options(), "depends", package], f"apt-cache depends {package} ({self.name})")
        return [m.group(1) for m in re.finditer(r"^\s*Depends:\s*(\S+)", out, re.M)]

    def download(self, package: str, into: Path) -> Path:
        """``apt-get download`` one package file into ``into``; returns its path."""
        into.mkdir(parents=True, exist_ok=True)
        _apt(["apt-get", *self.options(), "-q", "download", package], f"apt-get download {package} ({self.name})",
             cwd=into)
        debs = sorted(into.glob(f"{package.split('=')[0]}_*.deb"))
        if len(debs) != 1:
            raise FetchError(f"apt-get download {package} ({self.name}) left no single .deb in {into}")
        return debs[0]


BOOKWORM_AMD64 = AptSource("bookworm-amd64", "amd64", ((MIRROR, "bookworm"), (SECURITY, "bookworm-security")))
TRIXIE_RISCV64 = AptSource("trixie-riscv64", "riscv64", ((MIRROR, "trixie"), (SECURITY, "trixie-security")))


def _apt(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise FetchError(f"{what}: {cmd[0]} is not installed (a Debian machine is needed)")
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise FetchError(f"{what}: timed out after 900 s") from None
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(("E:", "Err:"))] or proc.stderr.splitlines()
        raise FetchError(f"{what} failed (status {proc.returncode}): {errors[-1] if errors else 'no message'}")
    return proc.stdout


def _deb_field(deb: Path, field: str) -> str:
    proc = subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise FetchError(f"dpkg-deb -f {deb.name} {field} failed: {proc.stderr.strip() or 'empty'}")
    return proc.stdout.strip()


def _unpack(deb: Path, dest: Path, members: tuple[str, ...]) -> None:
    """Unpack the members (tar patterns such as ``./boot/*``) of ``deb``'s file tree into ``dest``.

    dpkg-deb writes the tree in path order, so a pattern's members come in one run (they share
    its text before the first wildcard): reading stops after that run instead of decompressing
    the rest (a kernel package's ~400 MB of modules after ``./boot/``: ~6 s of CPU each)."""
    dest.mkdir(parents=True)
    prefixes = tuple(re.split(r"[*?\[]", m, maxsplit=1)[0] for m in members)
    pending = set(range(len(members)))  # patterns whose run has not ended yet
    feed = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert feed.stdout is not None
    try:
        with tarfile.open(fileobj=feed.stdout, mode="r|") as tree:
            for entry in tree:
                for i in list(pending):
                    if fnmatch.fnmatchcase(entry.name, members[i]):
                        tree.extract(entry, dest, filter="data")
                    elif entry.name > prefixes[i] and not entry.name.startswith(prefixes[i]):
                        pending.discard(i)  # past the run of this pattern's members
                if not pending:
                    break
    except (tarfile.TarError, OSError) as e:
        raise FetchError(f"unpacking {deb.name} failed: {e}") from None
    finally:
        stopped_early = feed.poll() is None
        feed.kill()
        _, err = feed.communicate()
    if feed.returncode != 0 and not stopped_early:
        raise FetchError(f"unpacking {deb.name} failed: {err.decode(errors='replace').strip() or feed.returncode}")
    if not any(dest.iterdir()):
        raise FetchError(f"{deb.name} has none of {', '.join(members)}")


def fetch(source: AptSource, meta: str, pattern: str, members: tuple[str, ...]) -> Path:
    """The unpacked folder of the package ``meta`` stands for: ``meta`` itself when ``pattern``
    is empty, else the one dependency of ``meta`` whose name matches ``pattern`` (as
    ``linux-image-amd64`` depends on ``linux-image-6.1.0-NN-amd64``). Cached; safe to call from
    concurrent processes."""
    base = cache_dir() / "debian"
    pointer = base / f"{source.name}_{meta}.resolved"
    with locked(f"debian-{source.name}"):
        if pointer.exists() and (base / pointer.read_text().strip()).is_dir():
            return base / pointer.read_text().strip()
        source.update()
        package = meta
        if pattern:
            deps = [d for d in source.depends(meta) if re.fullmatch(pattern, d)]
            if len(deps) != 1:
                raise FetchError(f"{meta} ({source.name}) does not depend on exactly one {pattern!r}: {deps}")
            package = deps[0]
        downloads = source.root / "downloads"
        shutil.rmtree(downloads, ignore_errors=True)
        try:
            deb = source.download(package, downloads)
        except FetchError:  # the lists may name a version the archive has dropped: refresh once
            source.update(force=True)
            deb = source.download(package, downloads)
        name = f"{_deb_field(deb, 'Package')}_{_deb_field(deb, 'Version')}"
        publish(base / name, lambda tmp: _unpack(deb, tmp, members))
        shutil.rmtree(downloads, ignore_errors=True)
        pointer.write_text(name + "\n")
        return base / name


@dataclass(frozen=True)
class DebianKernel:
    """A Debian kernel package's boot files."""

    package: str  # folder name: <package>_<version>
    image: Path  # riscv64: the flat Image (/boot/vmlinux-*); amd64: the bzImage (/boot/vmlinuz-*)
    config: Path

    @property
    def release(self) -> str:
        return self.config.name.removeprefix("config-")


def _kernel(root: Path, image_glob: str) -> DebianKernel:
    images = sorted((root / "boot").glob(image_glob))
    configs = sorted((root / "boot").glob("config-*"))
    if len(images) != 1 or len(configs) != 1:
        raise FetchError(f"{root.name}: expected one boot/{image_glob} and one boot/config-*")
    return DebianKernel(root.name, images[0], configs[0])


def bookworm_amd64_kernel() -> DebianKernel:
    """Debian bookworm's current ``linux-image-6.1.*-amd64`` (what ``linux-image-amd64`` depends on)."""
    root = fetch(BOOKWORM_AMD64, "linux-image-amd64", r"linux-image-6\.1\.\S*-amd64", ("./boot/*",))
    return _kernel(root, "vmlinuz-*")


def trixie_riscv64_kernel() -> DebianKernel:
    """Debian trixie's current ``linux-image-6.12.*-riscv64``."""
    root = fetch(TRIXIE_RISCV64, "linux-image-riscv64", r"linux-image-6\.12\.\S*-riscv64", ("./boot/*",))
    return _kernel(root, "vmlinux-*")


def trixie_opensbi() -> Path:
    """Debian trixie's OpenSBI ``fw_jump.bin`` for the generic riscv64 platform (``fw_dynamic.bin``
    lies beside it)."""
    root = fetch(TRIXIE_RISCV64, "opensbi", "", ("./usr/lib/riscv64-linux-gnu/opensbi/*",))
    fw = root / "usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
    if not fw.is_file():
        raise FetchError(f"{root.name} has no {fw.relative_to(root)}")
    return fw
