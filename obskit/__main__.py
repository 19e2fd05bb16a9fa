"""The ``obskit`` console script and ``python -m obskit``.

``trace exec`` goes to its fast entry first (:mod:`obskit.otel.fastexec`: no CLI framework
imported, it wraps commands in deploy scripts); everything else, and anything the fast
entry hands back, goes to the CLI (``obskit.commands.main``).
"""

import sys


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
    from obskit.commands import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
