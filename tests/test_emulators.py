"""Finding the emulator jars: the advice when they are missing, and the folder layouts we accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from local import emulators as emu


def test_no_emulators_anywhere_fails_with_install_advice(tmp_path: Path) -> None:
    with pytest.raises(emu.EmulatorError) as error:
        emu.find_jars([("empty", tmp_path)])
    assert "gcloud components install pubsub-emulator cloud-firestore-emulator" in str(error.value)
    assert "EMULATORS_DIR" in str(error.value)


def test_a_folder_laid_out_like_the_sdk_platform_is_used(tmp_path: Path) -> None:
    real = emu.find_jars()
    (tmp_path / "pubsub-emulator" / "lib").mkdir(parents=True)
    (tmp_path / "cloud-firestore-emulator").mkdir()
    (tmp_path / "pubsub-emulator" / "lib" / real.pubsub.name).symlink_to(real.pubsub)
    (tmp_path / "cloud-firestore-emulator" / real.firestore.name).symlink_to(real.firestore)
    jars = emu.find_jars([("empty", tmp_path / "nothing"), ("EMULATORS_DIR", tmp_path)])
    assert jars.source == "EMULATORS_DIR"
    assert jars.pubsub.resolve() == real.pubsub.resolve()


def test_the_shared_jars_are_the_last_resort() -> None:
    sources = [source for source, _ in emu._candidate_dirs()]
    assert sources[-1] == "shared"
    assert emu.find_jars([("shared", emu.REPO.parent / "shared" / "emulators")]).source == "shared"
