"""Finding the emulator jars, through the public `find_jars`: the install advice, and the order.

The README's two set-ups both pass: gcloud components (the SDK's platform/ folder) and the shared
jars beside the checkout. The jars found on this machine are linked into made-up layouts, and
PATH and EMULATORS_DIR decide which one `find_jars()` sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from local import emulators as emu


@pytest.fixture(scope="module")
def real() -> emu.Jars:
    """The jars this machine has, wherever they are (gcloud components or the shared folder)."""
    return emu.find_jars()


def platform_layout(folder: Path, jars: emu.Jars) -> Path:
    """A folder laid out like the SDK's platform/: pubsub-emulator/lib/…jar, cloud-firestore-emulator/…jar."""
    (folder / "pubsub-emulator" / "lib").mkdir(parents=True)
    (folder / "cloud-firestore-emulator").mkdir()
    (folder / "pubsub-emulator" / "lib" / jars.pubsub.name).symlink_to(jars.pubsub)
    (folder / "cloud-firestore-emulator" / jars.firestore.name).symlink_to(jars.firestore)
    return folder


def sdk_with_gcloud(root: Path, jars: emu.Jars) -> Path:
    """An SDK folder as `gcloud components install` leaves it: bin/gcloud and platform/; returns bin/."""
    platform_layout(root / "platform", jars)
    (root / "bin").mkdir()
    gcloud = root / "bin" / "gcloud"
    gcloud.write_text("#!/bin/sh\nexit 1\n")  # never run: its folder is enough to find the SDK
    gcloud.chmod(0o755)
    return root / "bin"


def test_no_emulators_anywhere_fails_with_install_advice(tmp_path: Path) -> None:
    with pytest.raises(emu.EmulatorError) as error:
        emu.find_jars([("empty", tmp_path)])
    # docs/troubleshooting.md's row for "Google Cloud emulators not found"
    assert "gcloud components install pubsub-emulator cloud-firestore-emulator" in str(error.value)
    assert "EMULATORS_DIR" in str(error.value)


def test_the_gcloud_sdk_comes_first(tmp_path: Path, real: emu.Jars, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(sdk_with_gcloud(tmp_path / "sdk", real)))
    monkeypatch.setenv("EMULATORS_DIR", str(platform_layout(tmp_path / "other", real)))
    jars = emu.find_jars()
    assert jars.source == "gcloud"
    assert jars.pubsub.parent == tmp_path / "sdk" / "platform" / "pubsub-emulator" / "lib"
    assert jars.pubsub.resolve() == real.pubsub.resolve()


def test_emulators_dir_comes_before_the_shared_jars(
    tmp_path: Path, real: emu.Jars, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-gcloud-here"))
    monkeypatch.setenv("EMULATORS_DIR", str(platform_layout(tmp_path / "mine", real)))
    jars = emu.find_jars()
    assert jars.source == "EMULATORS_DIR"
    assert jars.firestore.parent == tmp_path / "mine" / "cloud-firestore-emulator"


def test_without_gcloud_or_emulators_dir_only_the_shared_jars_remain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-gcloud-here"))
    monkeypatch.delenv("EMULATORS_DIR", raising=False)
    shared = emu.REPO.parent / "shared" / "emulators"  # README: ../shared/emulators beside the checkout
    if any(shared.glob("pubsub-emulator/lib/*.jar")):
        assert emu.find_jars().source == "shared"
    else:  # a machine set up with gcloud components only: nothing left once gcloud is hidden
        with pytest.raises(emu.EmulatorError, match="gcloud components install"):
            emu.find_jars()
