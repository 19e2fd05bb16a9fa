"""``python -m obskit`` works like the ``obskit`` console script (installed, or from a source tree)."""

import sys

try:
    from obskit.commands import main
except ModuleNotFoundError as e:  # a source tree: `commands/` becomes obskit.commands only when installed
    if e.name != "obskit.commands":
        raise
    import importlib.util
    import os

    _dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "commands")
    _spec = importlib.util.spec_from_file_location("obskit.commands", os.path.join(_dir, "__init__.py"),
                                                   submodule_search_locations=[_dir])
    if _spec is None or _spec.loader is None:
        raise
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["obskit.commands"] = _mod
    _spec.loader.exec_module(_mod)
    main = _mod.main

if __name__ == "__main__":
    sys.exit(main())
