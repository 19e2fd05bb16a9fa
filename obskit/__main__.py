"""The ``obskit`` console script and ``python -m obskit``.

``trace exec`` goes to its fast entry first (:mod:`obskit.otel.fastexec`: no CLI framework
imported, it wraps commands in deploy scripts); everything else, and anything the fast
entry hands back, goes to the CLI (``obskit.commands.main``).  From a source tree that was
not installed (``python -m obskit`` at the repository root), ``commands/`` is loaded as
``obskit.commands``, the mapping the installed package has.
"""

import sys
from typing import Callable


def _cli() -> Callable[[], int]:
    try:
        from obskit.commands import main as cli_main
    except ModuleNotFoundError as e:  # a source tree: `commands/` becomes obskit.commands only when installed
        if e.name != "obskit.commands":
            raise
        import importlib.util
        import os

        where = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "commands")
        spec = importlib.util.spec_from_file_location("obskit.commands", os.path.join(where, "__init__.py"),
                                                      submodule_search_locations=[where])
        if spec is None or spec.loader is None:
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules["obskit.commands"] = module
        spec.loader.exec_module(module)
        cli_main = module.main
    return cli_main  # type: ignore[no-any-return]


def main() -> int:
    args = sys.argv[1:]
    if args[:2] == ["trace", "exec"]:
        try:
            from obskit.otel.fastexec import run

            code = run(args[2:])
        except KeyboardInterrupt:  # (while the child runs, signals are forwarded, not raised)
            sys.stderr.write("obskit: error: interrupted\n")
            return 130
        if code is not None:
            return code
    return _cli()()


if __name__ == "__main__":
    sys.exit(main())
