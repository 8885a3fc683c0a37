"""Recipes are scripts in folders, not a package: tests import their modules by file path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe_module(recipe: str, name: str) -> ModuleType:
    """``recipes/<recipe>/<name>.py`` as a module (its folder on sys.path while it runs, for its own imports)."""
    folder = RECIPES / recipe
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(
            f"{recipe.replace('-', '_')}_{name}", folder / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))
