import dataclasses
import hashlib
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sim2real_edit import styles as styles_module
from sim2real_edit.styles import HOME_ENV_VAR, StyleRegistry, get_style
from sim2real_edit.textures import TEXTURE_PRESETS

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPECTED_MATERIALS = {
    "wood": "wood",
    "gold": "gold",
    "leather": "leather",
    "stone": "stone",
    "steel": "steel",
    "white_marble": "white marble",
    "black_marble": "black marble",
}


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV_VAR, str(root))
    return root


@pytest.fixture()
def registry(home) -> StyleRegistry:
    return StyleRegistry.load()


def test_registry_loads_the_seven_styles_with_their_instructions(registry, home):
    assert registry.source == styles_module.STYLES_YAML
    assert {style.name: style.material for style in registry} == EXPECTED_MATERIALS
    assert registry.get("white_marble").instruction == "make the cupboard out of white marble"
    assert registry.get("wood").instruction == "make the cupboard out of wood"
    for style in registry:
        assert style.exemplar_dir == home / "exemplars" / style.name
        assert style.specialist_dir == home / "specialists" / style.name


def test_alias_and_spelling(registry):
    assert registry.get("marble") is registry.get("white_marble")
    assert registry.get("Black Marble").name == "black_marble"
    assert "marble" in registry and "plastic" not in registry
    assert get_style("marble").name == "white_marble"


def test_unknown_style_lists_the_known_ones(registry):
    with pytest.raises(ValueError) as error:
        registry.get("plastic")
    message = str(error.value)
    assert "plastic" in message
    for name in EXPECTED_MATERIALS:
        assert name in message
    assert "marble -> white_marble" in message


def test_missing_exemplars_error_says_where_and_how(registry, home):
    style = registry.get("wood")
    with pytest.raises(FileNotFoundError) as error:
        style.exemplars(generate_if_missing=False)
    message = str(error.value)
    assert str(home / "exemplars" / "wood") in message
    assert "python scripts/make_exemplars.py --style wood" in message
    assert not style.exemplar_dir.exists()
    with pytest.raises(FileNotFoundError, match="make_exemplars"):
        style.exemplar_hashes()


def test_missing_exemplars_are_generated_once_with_a_warning(registry, caplog):
    style = registry.get("gold")
    with caplog.at_level(logging.WARNING, logger="sim2real_edit.styles"):
        images = style.exemplars(size=64)
    assert len(images) == 5
    assert [path.name for path in sorted(style.exemplar_dir.iterdir())] == [
        f"procedural_{index:02d}.png" for index in range(5)
    ]
    assert all(image.shape == (64, 64, 3) and image.dtype == np.uint8 for image in images)
    red, green, blue = np.mean([image.reshape(-1, 3).mean(axis=0) for image in images], axis=0)
    assert red > green > blue
    assert len(caplog.records) == 1 and "Real photos give real results" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sim2real_edit.styles"):
        again = style.exemplars(size=64)
    assert not caplog.records
    for first, second in zip(images, again, strict=True):
        np.testing.assert_array_equal(first, second)
    # The five exemplars are different images, not one image five times.
    assert min(np.abs(images[0].astype(int) - image.astype(int)).mean() for image in images[1:]) > 3


def _file_bytes(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(folder.iterdir())]


def test_generation_is_deterministic_per_seed_and_differs_by_seed_and_material(registry, tmp_path):
    marble = registry.get("white_marble")
    marble.write_default_exemplars(tmp_path / "a", count=2, size=48, seed=7)
    marble.write_default_exemplars(tmp_path / "b", count=2, size=48, seed=7)
    marble.write_default_exemplars(tmp_path / "c", count=2, size=48, seed=8)
    assert _file_bytes(tmp_path / "a") == _file_bytes(tmp_path / "b")
    # Written under temporary names and renamed into place: nothing else is left in the folder.
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["procedural_00.png", "procedural_01.png"]
    assert _file_bytes(tmp_path / "a")[0] != _file_bytes(tmp_path / "c")[0]
    registry.get("black_marble").write_default_exemplars(tmp_path / "d", count=2, size=48, seed=7)
    white = np.asarray(Image.open(tmp_path / "a" / "procedural_00.png")).astype(float)
    black = np.asarray(Image.open(tmp_path / "d" / "procedural_00.png")).astype(float)
    assert white.mean() > 170 and black.mean() < 70


def test_user_photos_are_preferred_over_procedural_images(registry):
    style = registry.get("leather")
    style.exemplars(size=32)
    rng = np.random.default_rng(0)
    photo_b = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    photo_a = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    Image.fromarray(photo_b).save(style.exemplar_dir / "b_photo.png")
    Image.fromarray(photo_a).save(style.exemplar_dir / "a_photo.PNG")
    Image.fromarray(photo_a).convert("L").save(style.exemplar_dir / "c_photo.jpg")
    (style.exemplar_dir / "notes.txt").write_text("not an image")
    paths = style.exemplar_paths()
    assert [path.name for path in paths] == ["a_photo.PNG", "b_photo.png", "c_photo.jpg"]
    native = style.exemplars(size=None)
    np.testing.assert_array_equal(native[0], photo_a)
    np.testing.assert_array_equal(native[1], photo_b)
    assert native[2].shape == (50, 50, 3)
    resized = style.exemplars(size=20)
    assert all(image.shape == (20, 20, 3) for image in resized)
    assert set(style.exemplar_hashes()) == {"a_photo.PNG", "b_photo.png", "c_photo.jpg"}


def test_user_photos_in_an_empty_folder_stop_generation(registry):
    style = registry.get("stone")
    style.exemplar_dir.mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(
        style.exemplar_dir / "granite.webp", lossless=True
    )
    images = style.exemplars(size=8)
    assert len(images) == 1 and int(images[0].mean()) == 200
    assert not list(style.exemplar_dir.glob("procedural_*"))


def test_exemplar_hashes_are_sha256_of_the_files_and_stable(registry):
    style = registry.get("steel")
    style.exemplars(size=32)
    hashes = style.exemplar_hashes()
    assert list(hashes) == [f"procedural_{index:02d}.png" for index in range(5)]
    for name, digest in hashes.items():
        assert digest == hashlib.sha256((style.exemplar_dir / name).read_bytes()).hexdigest()
    assert style.exemplar_hashes() == hashes
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(style.exemplar_dir / "procedural_00.png")
    changed = style.exemplar_hashes()
    assert changed["procedural_00.png"] != hashes["procedural_00.png"]
    assert changed["procedural_01.png"] == hashes["procedural_01.png"]


def test_trained_specialist_dir(registry):
    style = registry.get("marble")
    with pytest.raises(FileNotFoundError) as error:
        style.trained_specialist_dir()
    assert "python scripts/train_specialist.py --style white_marble" in str(error.value)
    assert str(style.specialist_dir) in str(error.value)
    style.specialist_dir.mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        style.trained_specialist_dir()
    (style.specialist_dir / "model_card.md").write_text("white marble")
    assert style.trained_specialist_dir() == style.specialist_dir


def test_root_priority(tmp_path, monkeypatch):
    config = yaml.safe_load(styles_module.STYLES_YAML.read_text())
    config["root"] = "data"
    config_path = tmp_path / "configs" / "styles.yaml"
    config_path.parent.mkdir()
    config_path.write_text(yaml.safe_dump(config))
    monkeypatch.delenv(HOME_ENV_VAR, raising=False)
    assert StyleRegistry.load(config_path).root == tmp_path / "configs" / "data"
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "env"))
    assert StyleRegistry.load(config_path).get("wood").exemplar_dir == tmp_path / "env" / "exemplars" / "wood"
    assert StyleRegistry.load(config_path, root=tmp_path / "arg").root == tmp_path / "arg"
    monkeypatch.delenv(HOME_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert StyleRegistry.load().root == tmp_path / "xdg" / "sim2real_edit"


def test_shipped_yaml_recipes_equal_the_texture_presets():
    config = yaml.safe_load(styles_module.STYLES_YAML.read_text())
    for name, settings in config["styles"].items():
        preset = TEXTURE_PRESETS[settings["texture"]["preset"]]
        expected = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(preset).items()
        }
        assert settings["texture"]["params"] == expected, name


def test_builtin_table_matches_the_yaml(home, monkeypatch):
    from_yaml = StyleRegistry.load()
    monkeypatch.setattr(styles_module, "STYLES_YAML", home / "missing.yaml")
    builtin = StyleRegistry.load()
    assert builtin.source is None
    assert builtin.aliases == from_yaml.aliases
    for name in EXPECTED_MATERIALS:
        yaml_style, builtin_style = from_yaml.get(name), builtin.get(name)
        assert dataclasses.replace(yaml_style, texture_params={}) == builtin_style
        preset = dataclasses.asdict(TEXTURE_PRESETS[yaml_style.texture])
        assert yaml_style.texture_params.keys() == preset.keys()


def test_bad_configs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown style"):
        StyleRegistry.from_config({"styles": {"wood": {"material": "wood"}}, "aliases": {"oak": "maple"}})
    with pytest.raises(ValueError, match="material"):
        StyleRegistry.from_config({"styles": {"wood": {}}})
    with pytest.raises(ValueError, match="preset"):
        StyleRegistry.from_config({"styles": {"glass": {"material": "glass"}}})
    with pytest.raises(FileNotFoundError):
        StyleRegistry.load(tmp_path / "nope.yaml")


def _load_script():
    # Run the script's main() in this process: a subprocess would pay the package import again.
    spec = importlib.util.spec_from_file_location(
        "make_exemplars", REPO_ROOT / "scripts" / "make_exemplars.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_exemplars_script(tmp_path, home, capsys):
    script = _load_script()
    script.main(["--style", "marble", "--count", "2", "--size", "32", "--seed", "3"])
    written = sorted((home / "exemplars" / "white_marble").iterdir())
    assert [path.name for path in written] == ["procedural_00.png", "procedural_01.png"]
    assert Image.open(written[0]).size == (32, 32)
    assert "white_marble: wrote 2 images" in capsys.readouterr().out
    out = tmp_path / "all"
    script.main(["--style", "all", "--out", str(out), "--count", "1", "--size", "16"])
    assert sorted(path.name for path in out.iterdir()) == sorted(EXPECTED_MATERIALS)
    assert all((out / name / "procedural_00.png").is_file() for name in EXPECTED_MATERIALS)
    with pytest.raises(ValueError, match="Known styles"):
        script.main(["--style", "plastic"])
