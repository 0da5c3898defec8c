"""`python -m kgooglenet.predict ...` (see kgooglenet.predict). A `__main__` of its own, so that running the
package's module never re-executes a module the package already imported (no runpy RuntimeWarning)."""

import sys

from kgooglenet.predict import main

if __name__ == "__main__":
    sys.exit(main())
