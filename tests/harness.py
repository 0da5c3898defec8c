"""What several test files share: loading a recipe script as a module.

Recipes are scripts, not a package; `load_recipe("tune")` runs recipes/tune.py's top level (imports and definitions
only: every recipe keeps its work in `main(argv)`) and returns the module.
"""

import importlib.util
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def load_recipe(name: str):
    """recipes/<name>.py as a module, with its `main(argv)`."""
    spec = importlib.util.spec_from_file_location(f"recipes_{name}", os.path.join(ROOT, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
