"""intake: turns email into a well-run application process.

See README.md for the shape of the system; each module names its one purpose in its
docstring.
"""

__version__ = "0.1.0"
